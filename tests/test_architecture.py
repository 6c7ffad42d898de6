"""The structure the layers contract, the settings and the lazy command group promise."""

from __future__ import annotations

import ast
import pkgutil
import tomllib
from pathlib import Path

import click
import pytest

import privend
from privend.cli import COMMANDS, main
from privend.settings import Secret, Settings

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(privend.__file__).resolve().parent


def all_modules() -> set[str]:
    """Every module the distribution installs: privend/ and the folders package-dir maps into it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    roots = {"privend": PACKAGE, **{name: ROOT / folder
                                    for name, folder in config["tool"]["setuptools"]["package-dir"].items()}}
    return {m.name for name, folder in roots.items()
            for m in pkgutil.walk_packages([str(folder)], prefix=name + ".")} | set(roots)


def layer_modules() -> list[set[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    [contract] = [c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    # "(module)" marks a layer optional: present in the wheel, not in the source tree's import graph.
    return [{name.strip().strip("()") for name in layer.replace("|", ":").split(":")} for layer in contract["layers"]]


def test_every_module_of_the_package_sits_in_a_layer():
    listed = set().union(*layer_modules())
    covered = {m for m in all_modules() if any(m == name or m.startswith(name + ".") for name in listed)}
    # Package __init__ modules that only gather their children need no layer of their own.
    packages = {m.name for m in pkgutil.walk_packages([str(PACKAGE)], prefix="privend.") if m.ispkg}
    unlisted = sorted(m for m in all_modules() - covered - packages if m not in ("privend", "privend.components",
                                                                                  "privend.policies"))
    assert unlisted == []


def test_layers_name_only_modules_that_exist():
    modules = all_modules()
    assert sorted(name for layer in layer_modules() for name in layer if name not in modules) == []


def _environ_reads(path: Path) -> list[int]:
    tree = ast.parse(path.read_text())
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv")
            and isinstance(node.value, ast.Name) and node.value.id == "os"]


def test_only_the_cli_entry_reads_the_process_environment():
    readers = {str(p.relative_to(ROOT)): lines for p in sorted(PACKAGE.rglob("*.py")) if (lines := _environ_reads(p))}
    assert readers == {"privend/cli/__init__.py": readers.get("privend/cli/__init__.py", [])}
    assert readers["privend/cli/__init__.py"] != []


def test_settings_come_from_the_documented_variables_and_empty_ones_count_as_unset(tmp_path):
    settings = Settings.from_environ({
        "PRIVEND_HOME": "/srv/privend", "PRIVEND_ENV": "prod", "PRIVEND_REGISTRY": "dynamodb://t?region=eu-west-1",
        "PRIVEND_STACKS_DIR": "/srv/stacks", "PRIVEND_PLANS": "/srv/plans.yaml", "PRIVEND_ALERT_TOPIC_ARN": "",
        "PRIVEND_PULUMI_ORG": "acme", "PULUMI_BACKEND_URL": "s3://state", "HF_TOKEN": "hf_secret",
    })
    assert settings.home == Path("/srv/privend")
    assert settings.env == "prod"
    assert settings.registry_url == "dynamodb://t?region=eu-west-1"
    assert (settings.stacks, settings.plans) == (Path("/srv/stacks"), Path("/srv/plans.yaml"))
    assert settings.alert_topic_arn is None
    assert (settings.pulumi_org, settings.pulumi_backend_url) == ("acme", "s3://state")
    assert settings.hf_token == Secret("hf_secret")
    # Outside every project, with nothing set: the defaults, and no registry directory.
    assert Settings.from_environ({}, cwd=tmp_path) == Settings()
    assert Settings().home is None


def test_secrets_in_settings_never_show_in_their_repr():
    settings = Settings.from_environ({"HF_TOKEN": "hf_secret", "PULUMI_CONFIG_PASSPHRASE": "s3cr3t-words"})
    assert "hf_secret" not in repr(settings)
    assert "s3cr3t-words" not in repr(settings)
    assert settings.hf_token is not None
    assert settings.hf_token.reveal() == "hf_secret"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_top_level_help_lines_are_the_commands_own(name):
    command = main.get_command(click.Context(main), name)
    assert command is not None
    assert click.Command(name, help=COMMANDS[name][2]).get_short_help_str(200) == command.get_short_help_str(200)


def test_root_help_lists_every_command_without_importing_the_services():
    import subprocess
    import sys

    code = ("import sys; from click.testing import CliRunner; from privend.cli import main; "
            "out = CliRunner().invoke(main, ['--help']).output; "
            "print(sorted(m for m in sys.modules if m.startswith('privend.service') or m == 'pydantic')); print(out)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded, _, help_text = out.partition("\n")
    assert loaded == "[]"
    for name in COMMANDS:
        assert f"  {name} " in help_text


def test_every_package_of_the_tree_is_in_the_distribution():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    packages = {m.name for m in pkgutil.walk_packages([str(PACKAGE)], prefix="privend.") if m.ispkg} | {"privend"}
    assert sorted(packages - listed) == []
