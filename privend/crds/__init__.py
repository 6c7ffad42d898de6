"""Upstream CRD schemas shipped with the project, for offline validation of custom resources."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

CRDS_DIR = Path(__file__).parent
CRD_FILES = {
    ("keda.sh", "ScaledObject"): "keda.sh_scaledobjects.yaml",
    ("keda.sh", "TriggerAuthentication"): "keda.sh_triggerauthentications.yaml",
    ("elbv2.k8s.aws", "TargetGroupBinding"): "elbv2.k8s.aws_targetgroupbindings.yaml",
}


@lru_cache(maxsize=None)
def crd_schema(api_version: str, kind: str) -> dict:
    """The openAPIV3Schema of `kind` at `api_version` (group/version), from the shipped CRD."""
    group, version = api_version.split("/")
    document = yaml.safe_load((CRDS_DIR / CRD_FILES[(group, kind)]).read_text())
    for entry in document["spec"]["versions"]:
        if entry["name"] == version:
            return entry["schema"]["openAPIV3Schema"]
    raise KeyError(f"{kind} {api_version} is not in the shipped CRD")


def is_custom(api_version: str, kind: str) -> bool:
    return "/" in api_version and (api_version.split("/")[0], kind) in CRD_FILES
