"""The offline engine: run a Pulumi program in-process under Pulumi's mock runtime.

No Pulumi CLI, no credentials, no network. Every resource the program declares
is recorded with the exact inputs the engine would receive (camelCase property
names, secrets still marked), and the invokes the programs make are answered
here with plausible values derived from the environment: this module is the one
place that stands in for the cloud.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc, settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from privend.errors import PrivendError

PROJECT = "private-endpoint"
OFFLINE_ACCOUNT_ID = "123456789012"
SECRET_PLACEHOLDER = "[secret]"
_SECRET_SIG = rpc._special_sig_key
_SECRET_VALUE = rpc._special_secret_sig


@dataclass
class PlannedResource:
    """One resource as the engine would receive it."""

    stack: str
    type: str
    name: str
    urn: str
    parent: str | None
    custom: bool
    inputs: dict[str, Any]  # secrets replaced by SECRET_PLACEHOLDER
    secret_paths: list[str] = field(default_factory=list)  # dotted paths of secret inputs
    provider: str | None = None
    id: str | None = None  # the id the offline cloud assigned
    outputs: dict[str, Any] = field(default_factory=dict)  # state the offline cloud answered with

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "type": self.type,
            "name": self.name,
            "urn": self.urn,
            "parent": self.parent,
            "inputs": self.inputs,
        }


@dataclass
class StackPlan:
    stack: str
    resources: list[PlannedResource]
    outputs: dict[str, Any]  # secret outputs replaced by SECRET_PLACEHOLDER
    secret_outputs: set[str]

    def by_type(self, type_: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == type_]


def redact(value: Any, path: str = "", found: list[str] | None = None) -> Any:
    """Replace Pulumi secret wrappers by a placeholder, collecting their paths."""
    if isinstance(value, dict):
        if value.get(_SECRET_SIG) == _SECRET_VALUE:
            if found is not None:
                found.append(path)
            return SECRET_PLACEHOLDER
        return {k: redact(v, f"{path}.{k}" if path else k, found) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, f"{path}[{i}]", found) for i, v in enumerate(value)]
    return value


def _short_hash(*parts: str, length: int = 17) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


class OfflineCloud(pulumi_mocks.Mocks):
    """Answers resource registrations and invokes with plausible, deterministic values."""

    def __init__(self, region: str, stack_outputs: Mapping[str, Mapping[str, Any]] | None = None,
                 account_id: str = OFFLINE_ACCOUNT_ID):
        self.region = region
        self.account_id = account_id
        self.stack_outputs = dict(stack_outputs or {})

    # Resource state: inputs echoed back, plus the computed outputs programs read.
    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str | None, dict]:
        inputs = dict(args.inputs)
        if args.typ == "pulumi:pulumi:StackReference":
            ref = inputs.get("name", args.name)
            if ref not in self.stack_outputs:
                raise PrivendError(f"offline engine has no outputs for stack reference {ref!r}")
            outputs = dict(self.stack_outputs[ref])
            secret_names = sorted(k for k, v in outputs.items() if v == SECRET_PLACEHOLDER)
            return ref, {"name": ref, "outputs": outputs, "secretOutputNames": secret_names}
        computed = self._computed(args.typ, args.name, inputs)
        rid = computed.pop("id", None) or f"{args.name}-{_short_hash(args.typ, args.name, length=8)}"
        return rid, {**inputs, **computed}

    def _arn(self, service: str, resource: str, region: bool = True) -> str:
        return f"arn:aws:{service}:{self.region if region else ''}:{self.account_id}:{resource}"

    def _computed(self, typ: str, name: str, inputs: dict) -> dict:
        h = _short_hash(typ, name)
        region, acct = self.region, self.account_id
        if typ == "aws:eks/cluster:Cluster":
            issuer_id = h.upper() + "0" * (32 - len(h))
            return {
                "arn": self._arn("eks", f"cluster/{inputs.get('name', name)}"),
                "endpoint": f"https://{issuer_id}.gr7.{region}.eks.amazonaws.com",
                "certificateAuthority": {"data": base64.b64encode(f"offline-ca-{h}".encode()).decode()},
                "identities": [{"oidcs": [{"issuer": f"https://oidc.eks.{region}.amazonaws.com/id/{issuer_id}"}]}],
                "vpcConfig": {**inputs.get("vpcConfig", {}), "clusterSecurityGroupId": f"sg-{h}",
                              "vpcId": f"vpc-{h}"},
                "status": "ACTIVE",
            }
        if typ == "aws:eks/nodeGroup:NodeGroup":
            ng = inputs.get("nodeGroupName", name)
            return {
                "arn": self._arn("eks", f"nodegroup/{ng}/{h}"),
                "resources": [{"autoscalingGroups": [{"name": f"eks-{ng}-{h[:8]}"}], "remoteAccessSecurityGroupId": ""}],
                "status": "ACTIVE",
            }
        if typ == "aws:iam/role:Role":
            role_name = inputs.get("name") or f"{name}-{h[:7]}"
            return {"arn": f"arn:aws:iam::{acct}:role/{role_name}", "name": role_name, "uniqueId": "AROA" + h.upper()}
        if typ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
            url = str(inputs.get("url", "")).removeprefix("https://")
            return {"arn": f"arn:aws:iam::{acct}:oidc-provider/{url}"}
        if typ == "aws:ec2/launchTemplate:LaunchTemplate":
            return {"id": f"lt-{h}", "latestVersion": 1, "arn": self._arn("ec2", f"launch-template/lt-{h}")}
        if typ == "aws:kms/key:Key":
            key_id = f"{h[:8]}-{h[8:12]}-4{h[12:15]}-8{h[:3]}-{h[3:15]}"
            return {"arn": self._arn("kms", f"key/{key_id}"), "keyId": key_id}
        if typ == "aws:dynamodb/table:Table":
            return {"arn": self._arn("dynamodb", f"table/{inputs.get('name', name)}")}
        if typ == "aws:sns/topic:Topic":
            topic = inputs.get("name") or name
            return {"arn": self._arn("sns", topic), "name": topic}
        if typ == "aws:ecr/repository:Repository":
            repo = inputs.get("name", name)
            return {"arn": self._arn("ecr", f"repository/{repo}"),
                    "repositoryUrl": f"{acct}.dkr.ecr.{region}.amazonaws.com/{repo}"}
        if typ == "aws:lb/loadBalancer:LoadBalancer":
            lb = inputs.get("name", name)
            return {"arn": self._arn("elasticloadbalancing", f"loadbalancer/net/{lb}/{h[:16]}"),
                    "dnsName": f"{lb}-{h[:10]}.elb.{region}.amazonaws.com", "arnSuffix": f"net/{lb}/{h[:16]}"}
        if typ == "aws:lb/targetGroup:TargetGroup":
            tg = inputs.get("name", name)
            return {"arn": self._arn("elasticloadbalancing", f"targetgroup/{tg}/{h[:16]}"), "arnSuffix": f"targetgroup/{tg}/{h[:16]}"}
        if typ == "aws:ec2/vpcEndpointService:VpcEndpointService":
            computed: dict[str, Any] = {"serviceName": f"com.amazonaws.vpce.{region}.vpce-svc-{h}",
                        "arn": self._arn("ec2", f"vpc-endpoint-service/vpce-svc-{h}")}
            if inputs.get("privateDnsName"):
                # What AWS asks the owner to publish to prove the domain: a TXT record under it.
                computed["privateDnsNameConfigurations"] = [{
                    "name": f"_vpce-verify-{h[:8]}.{inputs['privateDnsName']}", "type": "TXT",
                    "value": f"vpce:{h}", "state": "pendingVerification"}]
            return computed
        if typ == "aws:acm/certificate:Certificate":
            domain = str(inputs.get("domainName", "")).removeprefix("*.")
            return {"arn": self._arn("acm", f"certificate/{h}"), "domainValidationOptions": [{
                "domainName": inputs.get("domainName"), "resourceRecordName": f"_{h[:16]}.{domain}.",
                "resourceRecordType": "CNAME", "resourceRecordValue": f"_{h[16:]}.acm-validations.aws."}]}
        if typ == "aws:acm/certificateValidation:CertificateValidation":
            return {"certificateArn": inputs.get("certificateArn")}
        if typ == "aws:route53/record:Record":
            return {"fqdn": str(inputs.get("name", "")).rstrip(".")}
        if typ.startswith("random:"):
            return {"result": base64.urlsafe_b64encode(hashlib.sha256(f"offline/{name}".encode()).digest()).decode()[:40]}
        if typ.startswith("aws:ec2/"):
            prefix = {"vpc:Vpc": "vpc", "subnet:Subnet": "subnet", "securityGroup:SecurityGroup": "sg",
                      "natGateway:NatGateway": "nat", "internetGateway:InternetGateway": "igw",
                      "routeTable:RouteTable": "rtb", "eip:Eip": "eipalloc", "vpcEndpoint:VpcEndpoint": "vpce"}
            short = prefix.get(typ.split("/", 1)[1])
            if short:
                return {"id": f"{short}-{h}", "arn": self._arn("ec2", f"{short}/{short}-{h}")}
        if typ.startswith("aws:"):
            return {"arn": self._arn(typ.split(":")[1].split("/")[0], f"{name}")}
        return {}

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict, list[tuple[str, str]] | None]:
        # The result and its check failures (property, reason). Always a list: the SDK's
        # MockMonitor.Invoke iterates the failures of a tuple without checking for None.
        return self._invoke(args.token), []

    def _invoke(self, token: str) -> dict:
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = [f"{self.region}{c}" for c in "abcdef"]
            return {"names": names, "zoneIds": [f"use1-az{i + 1}" for i in range(len(names))], "id": self.region}
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": self.account_id, "arn": f"arn:aws:iam::{self.account_id}:user/offline",
                    "userId": "AIDAOFFLINE", "id": self.account_id}
        if token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
        if token == "aws:index/getRegion:getRegion":
            return {"name": self.region, "region": self.region, "id": self.region}
        raise PrivendError(f"offline engine cannot answer invoke {token}")


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    """MockMonitor that keeps every registration with its parent and raw inputs."""

    def __init__(self, mocks: OfflineCloud, stack: str):
        super().__init__(mocks)
        self.stack = stack
        self.records: list[PlannedResource] = []
        self._lock = threading.Lock()

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        # Like the engine: the root stack is not part of a child's qualified type.
        if parent and "::pulumi:pulumi:Stack::" not in parent:
            qualified = parent.split("::")[2]
            type_ = qualified + "$" + type_
        return "urn:pulumi:" + "::".join([self.stack, PROJECT, type_, name])

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self._record(request, response.urn, response.id)
        return response

    def _record(self, request, urn: str, rid: str) -> None:
        inputs = rpc.deserialize_properties(request.object, keep_unknowns=True)
        secret_paths: list[str] = []
        clean = redact(inputs, "", secret_paths)
        parent = request.parent if request.parent and "::pulumi:pulumi:Stack::" not in request.parent else None
        record = PlannedResource(
            stack=self.stack, type=request.type, name=request.name, urn=urn, parent=parent,
            custom=bool(request.custom), inputs=clean, secret_paths=sorted(secret_paths),
            provider=request.provider or None, id=rid or None,
            outputs=redact(self.resources[urn].state) if urn in self.resources else {},
        )
        with self._lock:
            self.records.append(record)


def run_program(program: Callable[[], Mapping[str, Any] | None], *, stack: str, cloud: OfflineCloud) -> StackPlan:
    """Run `program` as stack `stack` under the mock runtime and return what it declared."""
    settings.ROOT.set(None)
    monitor = _RecordingMonitor(cloud, stack)
    pulumi.runtime.set_mocks(cloud, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    outputs: dict[str, Any] = {}
    secret_outputs: set[str] = set()

    async def body() -> None:
        result = program() or {}
        for key, value in result.items():
            out = pulumi.Output.from_input(value)
            resolved = await out.future()
            if await out.is_secret():
                secret_outputs.add(key)
                outputs[key] = SECRET_PLACEHOLDER
            else:
                outputs[key] = redact(resolved)

    _sync_await(run_pulumi_func(body))
    resources = sorted(monitor.records, key=lambda r: r.urn)
    return StackPlan(stack=stack, resources=resources, outputs=outputs, secret_outputs=secret_outputs)
