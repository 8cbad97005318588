"""Records each task's wall time (start to next task start) as JSON.

Enabled by the benchmarks only: CRAFTLB_TASK_TIMES names the output file.
"""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_times"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._times: list[dict[str, object]] = []
        self._current: tuple[str, str, float] | None = None

    def _close(self) -> None:
        if self._current is not None:
            name, action, start = self._current
            self._times.append({"name": name, "action": action, "seconds": time.perf_counter() - start})
            self._current = None

    def v2_playbook_on_task_start(self, task, is_conditional):  # noqa: ANN001
        self._close()
        self._current = (task.get_name(), task.action, time.perf_counter())

    def v2_playbook_on_stats(self, stats):  # noqa: ANN001
        self._close()
        out = os.environ.get("CRAFTLB_TASK_TIMES")
        if out:
            with open(out, "w", encoding="utf-8") as f:
                json.dump(self._times, f)
