"""Auto Scaling group behaviour moto 5.2.5 lacks, as AWS does it.

Imported for its side effects by server.py (after lifecycle.py):
- CreateAutoScalingGroup with LifecycleHookSpecificationList: the hooks
  exist before the first instance launches, so it is held by them (moto
  ignores the list);
- DeleteAutoScalingGroup: ForceDelete terminates the instances at once and
  deletes the group's hooks with it; without it, a group that still has
  instances is refused with ResourceInUse (moto scales to 0 through any
  terminating hook and leaves the hooks behind);
- instance refreshes: StartInstanceRefresh, DescribeInstanceRefreshes and
  CancelInstanceRefresh (moto: NotImplemented). A refresh replaces every
  InService instance whose launch template version differs from the
  group's (all of them without SkipMatching): it launches the replacements
  first (through the launching hook), waits until they are InService, then
  terminates the old ones through the terminating hook and waits until they
  are gone - AWS's order with MaxHealthyPercentage 200. Lower percentages
  are accepted and run the same way here.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from moto.autoscaling import models as asg_models
from moto.autoscaling import responses as asg_responses
from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult, EmptyResult

import lifecycle


class ResourceInUse(ServiceException):
    code = "ResourceInUse"


class InstanceRefreshInProgress(ServiceException):
    code = "InstanceRefreshInProgress"


class ActiveInstanceRefreshNotFound(ServiceException):
    code = "ActiveInstanceRefreshNotFound"


_orig_create = asg_responses.AutoScalingResponse.create_auto_scaling_group


def create_auto_scaling_group(self: Any) -> Any:
    name = self._get_param("AutoScalingGroupName")
    backend = self.autoscaling_backend
    specs = self._get_params().get("LifecycleHookSpecificationList") or []
    if name in backend.autoscaling_groups or not specs:
        return _orig_create(self)
    made = []
    for spec in specs:
        hook = backend.create_lifecycle_hook(
            name=spec.get("LifecycleHookName"), as_name=name, transition=spec.get("LifecycleTransition"),
            timeout=int(spec["HeartbeatTimeout"]) if spec.get("HeartbeatTimeout") else None,
            result=spec.get("DefaultResult"))
        lifecycle.configure(hook, spec.get("NotificationTargetARN"), spec.get("RoleARN"),
                            spec.get("NotificationMetadata"))
        made.append(f"{name}_{hook.name}")
    try:
        return _orig_create(self)
    except Exception:
        for key in made:
            backend.lifecycle_hooks.pop(key, None)
        raise


def delete_auto_scaling_group(self: Any) -> Any:
    name = self._get_param("AutoScalingGroupName")
    backend = self.autoscaling_backend
    group = backend.autoscaling_groups.get(name)
    if group is None:
        return _orig_delete(self)
    force = str(self._get_param("ForceDelete", "false")).lower() == "true"
    if not force and group.instance_states:
        raise ResourceInUse("You cannot delete an AutoScalingGroup while there are instances or pending "
                            "Spot instance request(s) still in the group.")
    with lifecycle._LOCK:
        for action in lifecycle._ACTIONS.values():
            if action.group is group and not action.done:
                action.done, action.result, action.ended = True, "ABANDON", time.time()
                action.history.append("group-deleted:ABANDON")
        ids = [s.instance.id for s in group.instance_states]
        if ids:
            backend.ec2_backend.terminate_instances(ids)
        group.instance_states = []
        for key in [k for k, h in backend.lifecycle_hooks.items() if h.auto_scaling_group_name == name]:
            backend.lifecycle_hooks.pop(key, None)
        for r in _REFRESHES.values():
            if r.group is group and r.status in ("Pending", "InProgress"):
                r.cancel = True
        backend.autoscaling_groups.pop(name, None)
    return EmptyResult()


_orig_delete = asg_responses.AutoScalingResponse.delete_auto_scaling_group


@dataclass
class Refresh:
    id: str
    group: Any
    preferences: dict[str, Any]
    status: str = "Pending"
    reason: str = ""
    start: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    end: datetime | None = None
    to_update: int = 0
    done: int = 0
    cancel: bool = False

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "InstanceRefreshId": self.id, "AutoScalingGroupName": self.group.name, "Status": self.status,
            "StartTime": self.start, "PercentageComplete": (100 * self.done // self.to_update
                                                             if self.to_update else
                                                             (100 if self.status == "Successful" else 0)),
            "InstancesToUpdate": max(self.to_update - self.done, 0), "Preferences": self.preferences,
            "Strategy": "Rolling",
        }
        if self.reason:
            out["StatusReason"] = self.reason
        if self.end:
            out["EndTime"] = self.end
        return out


_REFRESHES: dict[str, Refresh] = {}


def refreshes() -> list[dict[str, Any]]:
    """Every refresh, for test assertions."""
    return [{**r.describe(), "StartTime": r.start.isoformat(),
             "EndTime": r.end.isoformat() if r.end else None} for r in _REFRESHES.values()]


def _wait(cond: Any, r: Refresh, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if r.cancel:
            return False
        with lifecycle._LOCK:
            if cond():
                return True
        time.sleep(0.2)
    return False


def _end(r: Refresh, status: str, reason: str = "") -> None:
    r.status, r.reason, r.end = status, reason, datetime.now(timezone.utc)


def _run(r: Refresh) -> None:
    group = r.group
    skip = str(r.preferences.get("SkipMatching", "false")).lower() == "true"
    with lifecycle._LOCK:
        want = lifecycle.launch_version(group)
        old = [s for s in group.instance_states if s.lifecycle_state == "InService"
               and (not skip or getattr(s, "craftlb_lt_version", want) != want)]
        r.to_update, r.status = len(old), "InProgress"
        if not old:
            _end(r, "Successful")
            return
        before = {id(s) for s in group.instance_states}
        max_size, desired = group.max_size, group.desired_capacity or 0
        # Launch before terminate: the group may exceed its size meanwhile.
        group.max_size = max(max_size, desired + len(old))
        group.set_desired_capacity(desired + len(old))
        new = [s for s in group.instance_states if id(s) not in before]
    timeout = float(r.preferences.get("InstanceWarmup") or 0) + 600
    if not _wait(lambda: all(s.lifecycle_state == "InService" for s in new)
                 and all(s in group.instance_states for s in new), r, timeout):
        with lifecycle._LOCK:
            group.max_size = max_size
        _end(r, "Cancelled" if r.cancel else "Failed",
             "" if r.cancel else "replacement instances did not reach InService")
        return
    with lifecycle._LOCK:
        for s in old:
            if s in group.instance_states:
                group.autoscaling_backend.terminate_instance(s.instance.id, should_decrement=True)
    if not _wait(lambda: not any(s in group.instance_states for s in old), r, 3600):
        _end(r, "Cancelled" if r.cancel else "Failed", "" if r.cancel else "old instances did not leave")
        return
    with lifecycle._LOCK:
        group.max_size = max_size
        r.done = r.to_update
    _end(r, "Successful")


def _group(self: Any) -> Any:
    name = self._get_param("AutoScalingGroupName")
    group = self.autoscaling_backend.autoscaling_groups.get(name)
    if group is None:
        raise lifecycle.ValidationError(f"AutoScalingGroup name not found - AutoScalingGroup '{name}' not found")
    return group


def start_instance_refresh(self: Any) -> Any:
    group = _group(self)
    if any(r.group is group and r.status in ("Pending", "InProgress") for r in _REFRESHES.values()):
        raise InstanceRefreshInProgress("An Instance Refresh is already in progress and blocks the execution "
                                        "of this Instance Refresh.")
    prefs = self._get_params().get("Preferences") or {}
    r = Refresh(id=str(uuid.uuid4()), group=group, preferences=prefs)
    _REFRESHES[r.id] = r
    threading.Thread(target=_run, args=(r,), daemon=True, name=f"refresh-{r.id}").start()
    return ActionResult({"InstanceRefreshId": r.id})


def describe_instance_refreshes(self: Any) -> Any:
    group = _group(self)
    ids = self._get_params().get("InstanceRefreshIds") or []
    found = [r.describe() for r in sorted(_REFRESHES.values(), key=lambda r: r.start, reverse=True)
             if r.group is group and (not ids or r.id in ids)]
    return ActionResult({"InstanceRefreshes": found})


def cancel_instance_refresh(self: Any) -> Any:
    group = _group(self)
    for r in _REFRESHES.values():
        if r.group is group and r.status in ("Pending", "InProgress"):
            r.cancel, r.status = True, "Cancelling"
            return ActionResult({"InstanceRefreshId": r.id})
    raise ActiveInstanceRefreshNotFound("No in progress or pending Instance Refresh found for Auto Scaling "
                                        f"group {group.name}")


asg_responses.AutoScalingResponse.create_auto_scaling_group = create_auto_scaling_group
asg_responses.AutoScalingResponse.delete_auto_scaling_group = delete_auto_scaling_group
asg_responses.AutoScalingResponse.start_instance_refresh = start_instance_refresh
asg_responses.AutoScalingResponse.describe_instance_refreshes = describe_instance_refreshes
asg_responses.AutoScalingResponse.cancel_instance_refresh = cancel_instance_refresh
_ = asg_models  # the models are patched through lifecycle.py
