"""Packaging: one top-level package, `privend`; components/ and policies/ install inside it.

The repository keeps components/ and policies/ as top-level folders; pyproject.toml
maps them to privend.components and privend.policies. These tests build a real
wheel, look at it and import from it, and check the installed environment (the
README's editable install) from a directory outside the repository, where the
checkout is not on sys.path.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DIST_INFO = f"private_endpoint-{version('private-endpoint')}.dist-info"
# Repository folder -> where its files land in the wheel.
SOURCE_FOLDERS = {"privend": "privend", "components": "privend/components", "policies": "privend/policies"}
PACK_FILES = ("PulumiPolicy.yaml", "policy-config.json", "requirements.txt", "__main__.py", "rules.py")


def _source_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def _python(code: str, cwd: Path, **env: str) -> str:
    """Run `code` with this interpreter in `cwd` (outside the checkout) and return its stdout."""
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built once from a copy of the sources.

    A copy, so no build/ or egg-info left in the checkout (setuptools reuses a stale
    build/lib) and no race with another test process. Built offline: the test extra
    installs the build backend, hence --no-build-isolation.
    """
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for folder in SOURCE_FOLDERS:
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = base / "dist"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", str(out), str(src)], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def wheel_names(wheel) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


@pytest.fixture(scope="module")
def unpacked_wheel(wheel, tmp_path_factory) -> Path:
    """The wheel's contents in a folder: what pip puts in site-packages for a pure-Python wheel."""
    target = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    return target


def test_wheel_installs_privend_as_its_only_top_level_package(wheel_names):
    assert {name.split("/", 1)[0] for name in wheel_names} == {"privend", DIST_INFO}


def test_wheel_records_privend_as_its_only_top_level_name(wheel):
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read(f"{DIST_INFO}/top_level.txt").decode().split() == ["privend"]


def test_wheel_carries_every_source_file_at_its_mapped_place(wheel_names):
    expected = {f"{target}/{name}" for folder, target in SOURCE_FOLDERS.items()
                for name in _source_files(ROOT / folder)}
    assert {name for name in wheel_names if not name.startswith(DIST_INFO + "/")} == expected
    assert {f"privend/policies/{name}" for name in PACK_FILES} <= wheel_names
    assert "privend/components/endpoint.py" in wheel_names


def test_wheel_install_resolves_the_pack_and_components_inside_privend(unpacked_wheel, tmp_path):
    code = """
import json
from importlib.resources import files
import privend, privend.components.endpoint, privend.policies.rules
from privend import deploy, policy
missing = []
for name in ("components", "policies", "rules"):
    try:
        __import__(name)
    except ModuleNotFoundError:
        missing.append(name)
print(json.dumps({"privend": privend.__file__, "components": privend.components.endpoint.__file__,
                  "pack": str(files("privend.policies")), "deploy": str(deploy.policy_pack_dir()),
                  "config": str(policy.PACK_CONFIG), "missing": missing}))
"""
    found = json.loads(_python(code, tmp_path, PYTHONPATH=str(unpacked_wheel)))
    site = unpacked_wheel.resolve()
    assert Path(found["privend"]) == site / "privend" / "__init__.py"
    assert Path(found["components"]) == site / "privend" / "components" / "endpoint.py"
    assert Path(found["pack"]) == Path(found["deploy"]) == site / "privend" / "policies"
    assert Path(found["config"]) == site / "privend" / "policies" / "policy-config.json"
    assert found["missing"] == ["components", "policies", "rules"]


def test_installed_environment_imports_the_moved_packages_from_outside_the_checkout(tmp_path):
    code = """
import json
from importlib.resources import files
import privend.components.endpoint, privend.policies.rules, privend.policies.__main__ as pack
from privend import deploy
missing = []
for name in ("components", "policies", "rules"):
    try:
        __import__(name)
    except ModuleNotFoundError:
        missing.append(name)
print(json.dumps({"components": privend.components.endpoint.__file__, "pack": str(files("privend.policies")),
                  "deploy": str(deploy.policy_pack_dir()), "gpus": len(pack.load_context().gpu_instance_types),
                  "missing": missing}))
"""
    found = json.loads(_python(code, tmp_path))
    assert found["missing"] == ["components", "policies", "rules"]
    assert Path(found["pack"]) == Path(found["deploy"])
    assert Path(found["components"]).parent.parent == Path(found["pack"]).parent
    assert found["gpus"] >= 20


def test_pack_folder_is_the_installed_privend_policies_package():
    import privend
    from privend import deploy, policy

    pack = files("privend.policies")
    assert isinstance(pack, Path) and pack.is_dir()
    assert {"PulumiPolicy.yaml", "policy-config.json", "requirements.txt"} <= {p.name for p in pack.iterdir()}
    assert deploy.policy_pack_dir() == pack
    assert policy.PACK_CONFIG == pack / "policy-config.json"
    if Path(privend.__file__).resolve().parent == ROOT / "privend":  # the README's editable install
        assert pack.resolve() == ROOT / "policies"


def test_pack_requirements_install_the_checkout_the_pack_belongs_to():
    pack = files("privend.policies")
    lines = [line.strip() for line in (pack / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert lines == ["pulumi-policy>=1.13,<2", "pyyaml>=6,<7", "-e .."]
    # pip, run in the pack's folder of a checkout, takes `..` as the checkout: this project.
    assert 'name = "private-endpoint"' in (ROOT / "policies" / "..").resolve().joinpath("pyproject.toml").read_text()


def test_pack_main_takes_its_rules_from_the_package_without_touching_sys_path():
    source = (ROOT / "policies" / "__main__.py").read_text()
    assert "sys.path" not in source
    assert "from privend.policies import rules" in source
    assert "__file__" not in source


def test_pack_module_imports_as_a_module_without_serving():
    import privend.policies.__main__ as pack
    from privend.policies import rules

    assert pack.rules is rules
    ctx = pack.load_context(cost_tags=("cost-center",))
    assert "g5.xlarge" in ctx.gpu_instance_types
    assert ctx.allowed_registries and ctx.cost_tags == ("cost-center",)


def _imported_top_level(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".", 1)[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".", 1)[0])
    return names


def test_no_source_imports_components_policies_or_rules_as_top_level_packages():
    sources = [ROOT / "__main__.py", *[p for folder in ("privend", "components", "policies", "tests", "bench")
                                       for p in (ROOT / folder).rglob("*.py")]]
    offenders = {str(p.relative_to(ROOT)) for p in sources
                 if _imported_top_level(p) & {"components", "policies", "rules"}}
    assert offenders == set()


def test_platform_program_imports_only_privend_and_pulumi():
    assert _imported_top_level(ROOT / "__main__.py") == {"pulumi", "privend"}


def test_pack_serves_its_rules_to_the_engine_from_the_installed_package():
    """Start the pack the way the Pulumi CLI does (`python -m pulumi.policy <engine> .` in the pack's folder).

    PolicyPack serves on a loopback port it prints; the test asks it for its policies
    and has it check one internet-facing load balancer, then stops it.
    """
    import grpc
    from google.protobuf import empty_pb2, struct_pb2
    from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

    from privend.deploy import policy_pack_dir
    from privend.policies import rules

    proc = subprocess.Popen([sys.executable, "-m", "pulumi.policy", "127.0.0.1:1", "."], cwd=policy_pack_dir(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(60, proc.kill)  # a pack that never prints its port must not hang the suite
    watchdog.start()
    try:
        line = proc.stdout.readline()
        assert line.strip().isdigit(), proc.stderr.read() if proc.poll() is not None else line
        with grpc.insecure_channel(f"127.0.0.1:{int(line)}") as channel:
            stub = analyzer_pb2_grpc.AnalyzerStub(channel)
            info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
            assert info.name == "private-endpoint-guardrails"
            assert [p.name for p in info.policies] == [r.name for r in rules.RULES if r.check or r.stack_check]
            props = struct_pb2.Struct()
            props.update({"internal": False, "loadBalancerType": "network",
                          "tags": {"environment": "dev", "managed-by": "privend"}})
            urn = "urn:pulumi:dev-chat::private-endpoint::aws:lb/loadBalancer:LoadBalancer::chat-nlb"
            response = stub.Analyze(analyzer_pb2.AnalyzeRequest(type="aws:lb/loadBalancer:LoadBalancer",
                                                                properties=props, urn=urn, name="chat-nlb"),
                                    timeout=30)
            reported = {d.policyName: d.message for d in response.diagnostics}
            assert reported["internal-load-balancers"].endswith("load balancer chat-nlb is internet-facing")
    finally:
        watchdog.cancel()
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
