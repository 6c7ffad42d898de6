"""How an endpoint's replicas follow its traffic: the one place for the KEDA settings.

`privend.render` writes these values into each endpoint's ScaledObject and
`privend.simulator` replays traffic under the same values, so what is simulated
is what is deployed.

KEDA drives a HorizontalPodAutoscaler from the engine's queue (CloudWatch
`QueueSize`, averaged over `metric_period_seconds`, read every
`polling_interval_seconds`): desired replicas = ceil(queue / target). Up is
immediate (the HPA's default scale-up policy); down waits for the HPA's
stabilisation window (the highest recommendation of the last
`scale_down_stabilization_seconds` wins); the last replica of a scale-to-zero
endpoint goes only after `cooldown_seconds` without activity.

The simulator has token counts, not queues: it reads the queue target as "one
replica per replica's worth of work", a replica running at its sustainable
rate (privend.throughput, at the latency target) being the point at which its
queue holds `queue_target` requests. So desired replicas = ceil(work in
replicas), seen `metric_period_seconds` + `polling_interval_seconds` late.
"""

from __future__ import annotations

from dataclasses import dataclass

QUEUE_METRIC = "QueueSize"
QUEUE_TARGET = 4  # waiting requests per replica before KEDA adds one
METRIC_PERIOD_SECONDS = 60
POLLING_INTERVAL_SECONDS = 30  # KEDA's default, written out so the simulator and the object agree
COOLDOWN_SCALE_TO_ZERO_SECONDS = 900
COOLDOWN_SECONDS = 300
# The HPA's default downscale stabilisation window (KEDA leaves it unset).
SCALE_DOWN_STABILIZATION_SECONDS = 300


@dataclass(frozen=True)
class ScalingPolicy:
    """The autoscaling behaviour of one endpoint."""

    min_replicas: int
    max_replicas: int
    queue_target: int = QUEUE_TARGET
    metric_period_seconds: int = METRIC_PERIOD_SECONDS
    polling_interval_seconds: int = POLLING_INTERVAL_SECONDS
    cooldown_seconds: int = COOLDOWN_SECONDS
    scale_down_stabilization_seconds: int = SCALE_DOWN_STABILIZATION_SECONDS

    @property
    def scale_to_zero(self) -> bool:
        return self.min_replicas == 0

    @property
    def reaction_seconds(self) -> int:
        """How late the autoscaler sees a change of load: one metric period plus one poll."""
        return self.metric_period_seconds + self.polling_interval_seconds


def scaling_policy(min_replicas: int, max_replicas: int) -> ScalingPolicy:
    cooldown = COOLDOWN_SCALE_TO_ZERO_SECONDS if min_replicas == 0 else COOLDOWN_SECONDS
    return ScalingPolicy(min_replicas, max_replicas, cooldown_seconds=cooldown)
