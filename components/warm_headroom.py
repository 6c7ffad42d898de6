"""WarmHeadroom: the placeholder pods that keep a warm GPU buffer in each shared pool.

Thin wiring: the objects and the pattern's reasoning are in privend.headroom; this
component creates them with the platform's Kubernetes provider.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from privend import headroom
from privend.config import EnvironmentConfig


@dataclass(frozen=True)
class WarmHeadroomArgs:
    cfg: EnvironmentConfig


class WarmHeadroom(pulumi.ComponentResource):
    """PriorityClass privend-warm-headroom, namespace privend-headroom, one placeholder Deployment per warm pool."""

    priority_class: str
    namespace: str
    placeholders: dict[str, int]  # pool -> placeholder pods (GPUs held), only pools with warmHeadroomGpus > 0

    def __init__(self, name: str, args: WarmHeadroomArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("private-endpoint:compute:WarmHeadroom", name, None, opts)
        self._name = name
        self.priority_class = headroom.PRIORITY_CLASS
        self.namespace = headroom.NAMESPACE
        self.placeholders = headroom.headroom_gpus(args.cfg)

        pc = headroom.priority_class()
        self._priority_class = k8s.scheduling.v1.PriorityClass(
            f"{name}-priority-class", metadata=pc["metadata"], value=pc["value"], global_default=pc["globalDefault"],
            preemption_policy=pc["preemptionPolicy"], description=pc["description"], opts=self._opts(),
        )
        ns = headroom.namespace()
        self._ns = k8s.core.v1.Namespace(f"{name}-namespace", metadata=ns["metadata"], opts=self._opts())
        deny = headroom.deny_all()
        k8s.networking.v1.NetworkPolicy(f"{name}-{deny['metadata']['name']}", metadata=deny["metadata"],
                                        spec=deny["spec"], opts=self._opts(depends_on=[self._ns]))
        for pool, (pods, pod_gpus) in sorted(headroom.placeholder_pods(args.cfg).items()):
            obj = headroom.placeholder_deployment(pool, pods, pod_gpus=pod_gpus)
            k8s.apps.v1.Deployment(f"{name}-{pool}", metadata=obj["metadata"], spec=obj["spec"],
                                   opts=self._opts(depends_on=[self._ns, self._priority_class]))

        self.register_outputs({
            "priorityClass": self.priority_class,
            "namespace": self.namespace,
            "placeholders": self.placeholders,
        })

    def _opts(self, **kwargs) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)
