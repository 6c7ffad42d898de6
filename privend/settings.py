"""Settings: what the process environment says about where things are, read once.

The CLI reads the environment variables into one `Settings` at start-up and passes
it down (through click's context, to the services); no other module reads them.
`privend demo` and the tests make their own `Settings` instead of changing the
process environment.

| variable | setting | default |
|---|---|---|
| `PRIVEND_HOME` | `home`: the embedded registry and state backend | `.privend` in the project root (see below) |
| `PRIVEND_ENV` | `env`: the environment commands act on | `dev` |
| `PRIVEND_REGISTRY` | `registry_url`: `dynamodb://<table>?region=<region>` | the SQLite file under `home` |
| `PRIVEND_STACKS_DIR` | `stacks_dir`: the stack files | `./stacks`, else the project's |
| `PRIVEND_PLANS` | `plans_path`: the plans catalog | `plans.yaml` beside the stack files |
| `PRIVEND_ALERT_TOPIC_ARN` | `alert_topic_arn`: where billing alerts are published | none |
| `PRIVEND_PULUMI_ORG` | `pulumi_org`: the platform stack's organization | `organization` |
| `PULUMI_BACKEND_URL` | `pulumi_backend_url`: the state backend | a file backend under `home` |
| `PULUMI_CONFIG_PASSPHRASE` | `config_passphrase` (secret) | empty |
| `HF_TOKEN` | `hf_token` (secret): stored only as a Pulumi secret of each endpoint stack | none |
| `KUBECONFIG` | `kubeconfig`: what `privend doctor` checks for kubectl access | `~/.kube/config` |

The project root is the nearest directory, from the working directory up, that holds
`Pulumi.yaml` (as git finds `.git`), so `privend` run in a subdirectory of the project uses
the project's registry, and run anywhere else it creates no `.privend` of its own: outside a
project, without PRIVEND_HOME, a command that needs the embedded registry says so and stops.

Standard library only: the CLI reads it before it knows which command runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from privend.errors import InputError

DEFAULT_ENV = "dev"
DEFAULT_PULUMI_ORG = "organization"  # the organization of a file (self-managed) backend
PROJECT_DIR = Path(__file__).resolve().parent.parent
PROJECT_FILE = "Pulumi.yaml"
HOME_DIR = ".privend"


def project_root(start: Path) -> Path | None:
    """The nearest directory from `start` up that holds Pulumi.yaml, or None outside every project."""
    start = start.resolve()
    for directory in (start, *start.parents):
        if (directory / PROJECT_FILE).is_file():
            return directory
    return None


class Secret:
    """A secret value: shown as `Secret('**********')`, never as itself, in reprs and logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    """Where the registry, stack files, plans and state live, and the secrets a deploy passes on."""

    home: Path | None = None  # None: outside a project and PRIVEND_HOME unset
    env: str = DEFAULT_ENV
    registry_url: str | None = None
    stacks_dir: Path | None = None
    plans_path: Path | None = None
    alert_topic_arn: str | None = None
    pulumi_org: str = DEFAULT_PULUMI_ORG
    pulumi_backend_url: str | None = None
    config_passphrase: Secret = field(default_factory=lambda: Secret(""))
    hf_token: Secret | None = None
    kubeconfig: Path | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], cwd: Path | None = None) -> Settings:
        """The settings the variables in `environ` give, run in `cwd` (default the working directory);
        an empty variable counts as unset."""
        def given(name: str) -> str | None:
            return environ.get(name) or None

        def path(name: str) -> Path | None:
            value = given(name)
            return Path(value) if value is not None else None

        token = given("HF_TOKEN")
        kubeconfig = given("KUBECONFIG")
        home = path("PRIVEND_HOME")
        if home is None:
            root = project_root(cwd if cwd is not None else Path.cwd())
            home = root / HOME_DIR if root is not None else None
        return cls(
            home=home,
            env=given("PRIVEND_ENV") or DEFAULT_ENV,
            registry_url=given("PRIVEND_REGISTRY"),
            stacks_dir=path("PRIVEND_STACKS_DIR"),
            plans_path=path("PRIVEND_PLANS"),
            alert_topic_arn=given("PRIVEND_ALERT_TOPIC_ARN"),
            pulumi_org=given("PRIVEND_PULUMI_ORG") or DEFAULT_PULUMI_ORG,
            pulumi_backend_url=given("PULUMI_BACKEND_URL"),
            config_passphrase=Secret(given("PULUMI_CONFIG_PASSPHRASE") or ""),
            hf_token=Secret(token) if token is not None else None,
            # KUBECONFIG may list several files; the first is the one kubectl writes.
            kubeconfig=Path(kubeconfig.split(":")[0]) if kubeconfig else None,
        )

    def replace(self, **changes: object) -> Settings:
        """These settings with `changes` (`privend demo` points `home` at a scratch registry this way)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def registry_home(self) -> Path:
        """`home`, or InputError (exit 2) outside a project when PRIVEND_HOME is not set."""
        if self.home is None:
            raise InputError(f"not inside a Private Endpoint project (no {PROJECT_FILE} in {Path.cwd()} or above): "
                             "run privend in the project, or set PRIVEND_HOME to the registry's directory")
        return self.home

    @property
    def stacks(self) -> Path:
        """The directory of the stack files."""
        return stacks_dir(self.stacks_dir)

    @property
    def plans(self) -> Path:
        """The plans catalog."""
        return self.plans_path if self.plans_path is not None else self.stacks / "plans.yaml"


def stacks_dir(override: Path | None = None) -> Path:
    """Where the stack files live: `override` (the PRIVEND_STACKS_DIR setting), else `./stacks`,
    else the project's `stacks/`."""
    if override is not None:
        return Path(override)
    local = Path.cwd() / "stacks"
    if local.is_dir():
        return local
    return PROJECT_DIR / "stacks"
