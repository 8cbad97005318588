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
  InService instance (only those on another launch template version with
  SkipMatching), at the pace its preferences set: with MaxHealthyPercentage
  above 100 it launches replacements first (through the launching hook),
  waits until they are InService, then terminates the old ones through the
  terminating hook; at 100 it terminates first, as many at a time as
  MinHealthyPercentage allows (at least one). DesiredConfiguration rolls to
  that launch template version and applies it to the group only on success.
  Replacements that never become healthy (abandoned by the launching hook
  and replaced again) fail the refresh after `refresh_stall_seconds` (AWS:
  one hour); with AutoRollback the refresh then replaces the new instances
  with the original version (RollbackInProgress, RollbackSuccessful).
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
import notifications
import settings


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
        lifecycle.check_publishable(self.current_account, spec.get("NotificationTargetARN"), spec.get("RoleARN"))
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
        for st in group.instance_states:
            notifications.publish(group, notifications.TERMINATE, st, "Terminating EC2 instance",
                                  status="Successful")
        group.instance_states = []
        for key in [k for k, h in backend.lifecycle_hooks.items() if h.auto_scaling_group_name == name]:
            backend.lifecycle_hooks.pop(key, None)
        for r in _REFRESHES.values():
            if r.group is group and r.status in ("Pending", "InProgress"):
                r.cancel = True
        backend.autoscaling_groups.pop(name, None)
        notifications.forget_group(str(self.current_account), str(self.region), name)
    return EmptyResult()


_orig_delete = asg_responses.AutoScalingResponse.delete_auto_scaling_group


@dataclass
class Refresh:
    id: str
    group: Any
    preferences: dict[str, Any]
    # The launch template version the refresh rolls to (DesiredConfiguration,
    # else the group's own) and the one a rollback returns to.
    target: str | None = None
    original: str | None = None
    desired_template: dict[str, Any] | None = None
    status: str = "Pending"
    reason: str = ""
    start: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    end: datetime | None = None
    to_update: int = 0
    done: int = 0
    cancel: bool = False
    rollback: dict[str, Any] | None = None
    # What happened, step by step, for test assertions.
    steps: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "InstanceRefreshId": self.id, "AutoScalingGroupName": self.group.name, "Status": self.status,
            "StartTime": self.start, "PercentageComplete": (100 * self.done // self.to_update
                                                             if self.to_update else
                                                             (100 if self.status == "Successful" else 0)),
            "InstancesToUpdate": max(self.to_update - self.done, 0), "Preferences": self.preferences,
            "Strategy": "Rolling",
        }
        if self.desired_template:
            out["DesiredConfiguration"] = {"LaunchTemplate": self.desired_template}
        if self.reason:
            out["StatusReason"] = self.reason
        if self.end:
            out["EndTime"] = self.end
        if self.rollback:
            out["RollbackDetails"] = self.rollback
        return out


_REFRESHES: dict[str, Refresh] = {}


def refreshes() -> list[dict[str, Any]]:
    """Every refresh, for test assertions."""
    out = []
    for r in _REFRESHES.values():
        d = {**r.describe(), "StartTime": r.start.isoformat(), "EndTime": r.end.isoformat() if r.end else None,
             "Steps": list(r.steps)}
        if r.rollback and r.rollback.get("RollbackStartTime"):
            d["RollbackDetails"] = {**r.rollback, "RollbackStartTime": r.rollback["RollbackStartTime"].isoformat()}
        out.append(d)
    return out


def _end(r: Refresh, status: str, reason: str = "") -> None:
    r.status, r.reason, r.end = status, reason, datetime.now(timezone.utc)
    r.group.craftlb_launch_version = None


def _pct(prefs: dict[str, Any], key: str, default: int) -> int:
    value = prefs.get(key)
    return default if value in (None, "") else int(value)


def _batches(desired: int, prefs: dict[str, Any]) -> tuple[str, int]:
    """AWS's pace from the preferences: launch before terminating when the
    group may run above its desired capacity (MaxHealthyPercentage > 100),
    up to that many at a time; else terminate first, as many as the minimum
    healthy percentage leaves room for, at least one
    (https://docs.aws.amazon.com/autoscaling/ec2/userguide/instance-maintenance-policy-overview-and-considerations.html).
    """
    lo, hi = _pct(prefs, "MinHealthyPercentage", 90), _pct(prefs, "MaxHealthyPercentage", 100)
    extra = desired * hi // 100 - desired
    if extra >= 1:
        return "launch-first", extra
    return "terminate-first", max(desired - -(-desired * lo // 100), 1)


def _healthy(state: Any) -> bool:
    return state.lifecycle_state == "InService"


def _replace(r: Refresh, is_old: Any, new_version: str | None, stall: float) -> str | None:
    """Replaces every instance of the group that `is_old`, batch by batch,
    with instances on `new_version`; None when done, else why it stopped."""
    group = r.group
    with lifecycle._LOCK:
        group.craftlb_launch_version = new_version
        desired = group.desired_capacity or 0
        mode, batch = _batches(desired, r.preferences)
        r.steps.append(f"{mode}:{batch}")
    while True:
        if r.cancel:
            return "cancelled"
        with lifecycle._LOCK:
            old = [s for s in group.instance_states
                   if s.lifecycle_state in ("InService", "Pending", "Pending:Wait") and is_old(s)]
            if not old:
                return None
            take = old[:batch]
            before = {id(s) for s in group.instance_states}
            max_size = group.max_size
            if mode == "launch-first":
                # The group may run above its size while it launches first.
                group.max_size = max(max_size, desired + len(take))
                group.set_desired_capacity(desired + len(take))
                r.steps.append(f"launch:{len(take)}")
            else:
                for st in take:
                    group.autoscaling_backend.terminate_instance(st.instance.id, should_decrement=False)
                r.steps.append(f"terminate:{len(take)}")
        if mode == "terminate-first":
            if not _until(lambda: not any(st in group.instance_states for st in take), r, 3600):
                return "cancelled" if r.cancel else "old instances did not leave"
        # The replacements: new instances on the target version, in service.
        # An abandoned one is replaced by the group (on the same version);
        # no progress for `stall` seconds fails the refresh (AWS: an hour).
        need = len(take)
        got = _until(lambda: sum(1 for st in group.instance_states if id(st) not in before and _healthy(st)
                                 and getattr(st, "craftlb_lt_version", None) == new_version) >= need, r, stall)
        if mode == "launch-first":
            with lifecycle._LOCK:
                if not got:
                    # Give the surplus back: back to the desired capacity.
                    group.set_desired_capacity(desired)
                    group.max_size = max_size
                    return "cancelled" if r.cancel else (
                        f"{need} replacement instance(s) on launch template version {new_version} did not "
                        f"become healthy within {stall:.0f} s")
                for st in take:
                    if st in group.instance_states:
                        group.autoscaling_backend.terminate_instance(st.instance.id, should_decrement=True)
                r.steps.append(f"terminate:{len(take)}")
            if not _until(lambda: not any(st in group.instance_states for st in take), r, 3600):
                return "cancelled" if r.cancel else "old instances did not leave"
            with lifecycle._LOCK:
                group.max_size = max_size
        elif not got:
            return "cancelled" if r.cancel else (
                f"{need} replacement instance(s) on launch template version {new_version} did not become "
                f"healthy within {stall:.0f} s")
        with lifecycle._LOCK:
            r.done = min(r.to_update, r.done + need)


def _until(cond: Any, r: Refresh, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if r.cancel:
            return False
        with lifecycle._LOCK:
            if cond():
                return True
        time.sleep(0.2)
    return False


def _run(r: Refresh) -> None:
    group = r.group
    skip = str(r.preferences.get("SkipMatching", "false")).lower() == "true"
    stall = settings.get("refresh_stall_seconds")
    with lifecycle._LOCK:
        target = r.target
        # Without SkipMatching every instance is replaced, matching or not.
        old = {id(s) for s in group.instance_states if s.lifecycle_state == "InService"
               and (not skip or getattr(s, "craftlb_lt_version", target) != target)}
        r.to_update, r.status = len(old), "InProgress"
        if not old:
            _finish_success(r)
            return
    why = _replace(r, lambda st: id(st) in old, target, stall)
    if why is None:
        _finish_success(r)
        return
    if why == "cancelled":
        _end(r, "Cancelled")
        return
    auto = str(r.preferences.get("AutoRollback", "false")).lower() == "true"
    if not auto:
        _end(r, "Failed", why)
        return
    # AWS: with AutoRollback a failed refresh puts back what the group had:
    # instances on the new version are replaced by the original one.
    r.status, r.reason = "RollbackInProgress", why
    r.rollback = {"RollbackReason": f"Instance refresh failed: {why}", "RollbackStartTime":
                  datetime.now(timezone.utc), "PercentageCompleteOnRollback": 0,
                  "InstancesToUpdateOnRollback": 0}
    r.steps.append("rollback")

    def on_target(st: Any) -> bool:
        return getattr(st, "craftlb_lt_version", None) == target

    with lifecycle._LOCK:
        r.rollback["InstancesToUpdateOnRollback"] = sum(1 for st in group.instance_states if on_target(st))
    back = _replace(r, on_target, r.original, stall)
    if back is None:
        r.rollback["PercentageCompleteOnRollback"] = 100
        _end(r, "RollbackSuccessful", why)
    else:
        _end(r, "RollbackFailed", f"{why}; rollback: {back}")


def _finish_success(r: Refresh) -> None:
    with lifecycle._LOCK:
        r.done = r.to_update
        if r.desired_template is not None:
            # AWS applies the desired configuration to the group only once
            # the refresh succeeded.
            r.group.launch_template_version = r.target
            r.group.provided_launch_template_version = r.target
    _end(r, "Successful")


def _refresh_target(group: Any, prefs: dict[str, Any], desired: dict[str, Any]) -> tuple[str | None, dict | None]:
    """The version the refresh rolls to, validated as AWS does."""
    template = (desired or {}).get("LaunchTemplate")
    auto = str(prefs.get("AutoRollback", "false")).lower() == "true"
    if auto and not template:
        raise lifecycle.ValidationError("AutoRollback requires a desired configuration (DesiredConfiguration) "
                                        "for the instance refresh.")
    if auto and (group.launch_template_version or "$Default") in ("$Latest", "$Default"):
        raise lifecycle.ValidationError("AutoRollback is not supported for an Auto Scaling group that uses "
                                        "the $Latest or $Default launch template version.")
    lo, hi = prefs.get("MinHealthyPercentage"), prefs.get("MaxHealthyPercentage")
    if hi not in (None, ""):
        if lo in (None, ""):
            raise lifecycle.ValidationError("MinHealthyPercentage is required when MaxHealthyPercentage is set.")
        if not (100 <= int(hi) <= 200) or not (0 <= int(lo) <= 100) or int(hi) - int(lo) > 100:
            raise lifecycle.ValidationError("MaxHealthyPercentage must be 100-200, MinHealthyPercentage 0-100, "
                                            "and they may differ by at most 100.")
    if not template:
        return lifecycle.launch_version(group), None
    lt = group.ec2_launch_template
    version = str(template.get("Version") or "$Default")
    if version == "$Latest":
        version = str(lt.latest_version_number)
    elif version == "$Default":
        version = str(lt.default_version_number)
    return version, template


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
    params = self._get_params()
    prefs = params.get("Preferences") or {}
    target, template = _refresh_target(group, prefs, params.get("DesiredConfiguration") or {})
    r = Refresh(id=str(uuid.uuid4()), group=group, preferences=prefs, target=target,
                original=lifecycle.launch_version(group), desired_template=template)
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
