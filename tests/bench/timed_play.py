"""One play, each task's wall time (callback_plugins/task_times.py): what the
module benches share."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(play: list[dict], work: Path, **env: str) -> list[dict] | None:
    """Runs the play from the repository (its ansible.cfg, library/) with
    `env` added; the task times, or None after printing the failure."""
    (work / "play.yml").write_text(json.dumps(play))
    full = dict(os.environ, CRAFTLB_TASK_TIMES=str(work / "times.json"),
                ANSIBLE_CALLBACK_PLUGINS=str(ROOT / "tests/bench/callback_plugins"),
                ANSIBLE_CALLBACKS_ENABLED="task_times", **env)
    out = subprocess.run([str(ROOT / ".venv/bin/ansible-playbook"), str(work / "play.yml")], cwd=ROOT, env=full,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(out.stdout[-4000:], out.stderr[-2000:])
        return None
    return json.loads((work / "times.json").read_text())


def stats(times: list[dict], prefix: str) -> tuple[float, float]:
    """Median and p90 wall time of the tasks whose name starts with prefix."""
    xs = sorted(t["seconds"] for t in times if t["name"].startswith(prefix))
    return statistics.median(xs), xs[min(len(xs) - 1, round(0.9 * (len(xs) - 1)))]
