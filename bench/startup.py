"""Benchmark: start-up wall time of the CLI, this tree against a baseline commit.

Times `privend --help` (the CLI's own start-up) and `privend plan --env prod`
(the offline platform program, imports included), each as a fresh subprocess
`python -m privend ...`, and prints the median and the minimum of N runs for
this tree and for a baseline commit, and the ratio of the medians.

The baseline is checked out with `git worktree add --detach` into a temporary
folder (removed at the end with `git worktree remove --force`) and run with
that folder first on PYTHONPATH and as the working directory, so its own
privend (and, in the older layout, its top-level components and policies)
imports from there; this interpreter's environment provides the third-party
packages. This tree runs the same way, from its own folder. Before timing, one
run per tree prints where privend and its components import from, and stops
the benchmark if that is not the tree meant.

Runs are interleaved (baseline, current, baseline, current, ...) so that a
change in machine load hits both sides alike, after one untimed warm-up run of
each command per tree (the fresh checkout compiles its bytecode then). Figures
only, no timed assertions.

    python bench/startup.py [--baseline REF] [--help-runs 7] [--plan-runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASELINE = "f0ce2ef"

# Where a tree's code imports from: privend, and every module of the project that
# its platform program loads (privend.components now; top-level components and
# policies packages in the older layout).
WHERE = """
import json, sys
import privend.cli, privend.platform, privend.policy
ours = {name: getattr(module, "__file__", None) for name, module in sys.modules.items()
        if name.split(".")[0] in ("privend", "components", "policies")}
print(json.dumps(ours))
"""


def tree_env(tree: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PRIVEND_REGISTRY", "PRIVEND_ENV")}
    env["PYTHONPATH"] = str(tree)
    env["PRIVEND_HOME"] = str(home)  # an empty registry of its own: plan covers the platform stack
    return env


def where(tree: Path, env: dict[str, str]) -> dict[str, str]:
    """The project's modules as the tree's own code imports them; all must come from the tree."""
    done = subprocess.run([sys.executable, "-c", WHERE], cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"cannot import privend from {tree}:\n{done.stderr}")
    found = json.loads(done.stdout)
    outside = {name: file for name, file in found.items()
               if file is None or not Path(file).resolve().is_relative_to(tree.resolve())}
    if outside:
        raise SystemExit(f"{tree}: modules imported from outside the tree, nothing to compare: {outside}")
    return found


def run_once(args: list[str], tree: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "privend", *args], cwd=tree, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"`privend {' '.join(args)}` failed in {tree} (exit {done.returncode}):\n{done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help=f"commit to compare with (default {DEFAULT_BASELINE})")
    parser.add_argument("--help-runs", type=int, default=7, help="timed runs of `privend --help` per tree (7)")
    parser.add_argument("--plan-runs", type=int, default=3, help="timed runs of `privend plan --env prod` per tree (3)")
    args = parser.parse_args()
    commands = [(["--help"], args.help_runs), (["plan", "--env", "prod"], args.plan_runs)]

    with tempfile.TemporaryDirectory(prefix="privend-startup-") as scratch:
        scratch = Path(scratch)
        baseline = scratch / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--quiet", "--detach", str(baseline), args.baseline],
                       check=True)
        try:
            commit = subprocess.run(["git", "-C", str(baseline), "rev-parse", "--short", "HEAD"], check=True,
                                    capture_output=True, text=True).stdout.strip()
            trees = {"baseline": baseline, "current": ROOT}
            envs = {name: tree_env(tree, scratch / f"home-{name}") for name, tree in trees.items()}
            print(f"python {sys.version.split()[0]} ({sys.executable})")
            for name, tree in trees.items():
                found = where(tree, envs[name])
                components = next(n for n in ("privend.components", "components") if n in found)
                label = f"{name} ({commit})" if name == "baseline" else name
                print(f"{label}: privend from {found['privend']}, {components} from {found[components]} "
                      f"({len(found)} project modules, all from {tree})")

            results: dict[tuple[str, str], list[float]] = {}
            for command, runs in commands:
                for name, tree in trees.items():  # warm-up, untimed
                    run_once(command, tree, envs[name])
                for _ in range(runs):
                    for name, tree in trees.items():  # interleaved: baseline, current, baseline, ...
                        results.setdefault((" ".join(command), name), []).append(run_once(command, tree, envs[name]))
        finally:
            removed = subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)])
    if removed.returncode != 0:  # the folder is gone with the scratch directory; drop git's record of it
        subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"])

    print()
    print(f"{'command':<26} {'runs':>4}  {'baseline median':>15} {'(min)':>8}  {'current median':>14} {'(min)':>8}  "
          f"{'current/baseline':>16}")
    for command, runs in commands:
        label = " ".join(["privend", *command])
        base = results[(" ".join(command), "baseline")]
        cur = results[(" ".join(command), "current")]
        ratio = statistics.median(cur) / statistics.median(base)
        print(f"{label:<26} {runs:>4}  {statistics.median(base):>13.3f} s {min(base):>6.3f} s  "
              f"{statistics.median(cur):>12.3f} s {min(cur):>6.3f} s  {ratio:>16.2f}")


if __name__ == "__main__":
    main()
