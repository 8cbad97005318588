"""Auto Scaling lifecycle hooks that hold instances, as AWS does.

moto 5.2.5 puts new instances InService at once, terminates on scale-in at
once, drops a hook's metadata and target, and answers CompleteLifecycleAction
and RecordLifecycleActionHeartbeat with 500 NotImplemented. Here:
- a launching hook holds new instances in Pending:Wait, a terminating hook
  holds leaving ones in Terminating:Wait, and a notification (with the
  hook's metadata) is published to the hook's SNS target;
- CompleteLifecycleAction moves the instance on (InService, or terminated
  and replaced on ABANDON); a heartbeat extends the timeout; when the
  heartbeat timeout passes, the hook's default result applies.
One hook per transition per group is honoured (the first one).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from moto.autoscaling import models as asg_models
from moto.autoscaling import responses as asg_responses
from moto.core.exceptions import ServiceException
from moto.core.responses import EmptyResult
from moto.sns.models import sns_backends

import notifications
import settings

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"

_LOCK = threading.RLock()


class ValidationError(ServiceException):
    code = "ValidationError"


@dataclass
class Action:
    token: str
    group: Any
    state: Any
    hook: Any
    transition: str
    deadline: float
    done: bool = False
    result: str | None = None
    history: list[str] = field(default_factory=list)
    # Wall-clock times (benchmarks: how long a node held its instance).
    started: float = field(default_factory=time.time)
    ended: float | None = None


_ACTIONS: dict[str, Action] = {}


def actions() -> list[dict[str, Any]]:
    with _LOCK:
        return [{"token": a.token, "group": a.group.name, "instance_id": a.state.instance.id,
                 "hook": a.hook.name, "transition": a.transition, "done": a.done, "result": a.result,
                 "history": list(a.history), "started": a.started, "ended": a.ended}
                for a in _ACTIONS.values()]


def hooks(group: str | None = None) -> list[dict[str, Any]]:
    """Every lifecycle hook, for test assertions."""
    out = []
    for by_region in asg_models.autoscaling_backends.values():
        for backend in by_region.values():
            for h in backend.lifecycle_hooks.values():
                if group and h.auto_scaling_group_name != group:
                    continue
                out.append({"group": h.auto_scaling_group_name, "name": h.name,
                            "transition": h.lifecycle_transition, "heartbeat_timeout": h.heartbeat_timeout,
                            "default_result": h.default_result, "role_arn": h.role_arn,
                            "notification_target_arn": getattr(h, "craftlb_target", None),
                            "metadata": getattr(h, "craftlb_metadata", None)})
    return out


def _hook_for(group: Any, transition: str) -> Any | None:
    backend = group.autoscaling_backend
    for hook in backend.lifecycle_hooks.values():
        if hook.auto_scaling_group_name == group.name and hook.lifecycle_transition == transition:
            return hook
    return None


def _publish(action: Action) -> None:
    hook = action.hook
    target = getattr(hook, "craftlb_target", None)
    if not target or ":sns:" not in target:
        return
    region, account = target.split(":")[3], target.split(":")[4]
    message = {
        "Origin": "EC2" if action.transition == LAUNCHING else "AutoScalingGroup",
        "Destination": "AutoScalingGroup" if action.transition == LAUNCHING else "EC2",
        "LifecycleHookName": hook.name,
        "AccountId": account,
        "RequestId": str(uuid.uuid4()),
        "LifecycleTransition": action.transition,
        "AutoScalingGroupName": action.group.name,
        "Service": "AWS Auto Scaling",
        "Time": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "EC2InstanceId": action.state.instance.id,
        "LifecycleActionToken": action.token,
    }
    metadata = getattr(hook, "craftlb_metadata", None)
    if metadata is not None:
        message["NotificationMetadata"] = metadata
    verb = "LAUNCHING" if action.transition == LAUNCHING else "TERMINATING"
    subject = f"Auto Scaling:  Lifecycle action '{verb}' for instance {action.state.instance.id} in progress."
    sns_backends[account][region].publish(json.dumps(message), arn=target, subject=subject)


def _start(group: Any, state: Any, transition: str, hook: Any) -> None:
    state.lifecycle_state = "Pending:Wait" if transition == LAUNCHING else "Terminating:Wait"
    action = Action(token=str(uuid.uuid4()), group=group, state=state, hook=hook, transition=transition,
                    deadline=time.monotonic() + float(hook.heartbeat_timeout))
    with _LOCK:
        _ACTIONS[action.token] = action
    # Published after the API call that caused it has answered, as AWS does.
    threading.Thread(target=_publish, args=(action,), daemon=True).start()
    stand_in = notifications.stand_in_for(group.name) if transition == LAUNCHING else None
    if stand_in is not None:
        threading.Thread(target=_stand_in, args=(action, *stand_in), daemon=True).start()


def stand_in_now(group: str) -> int:
    """The stand-in was just set for `group`: launches already held wait
    for it too (as their nodes would, once they boot). Returns how many."""
    policy = notifications.stand_in_for(group)
    if policy is None:
        return 0
    with _LOCK:
        held = [a for a in _ACTIONS.values()
                if not a.done and a.transition == LAUNCHING and a.group.name == group]
    for action in held:
        threading.Thread(target=_stand_in, args=(action, *policy), daemon=True).start()
    return len(held)


def _stand_in(action: Action, result: str, after: float) -> None:
    """The test's stand-in node: completes the launching action once the
    instance runs (as a node's user data would), `after` seconds later."""
    deadline = time.monotonic() + after
    while True:
        time.sleep(0.1)
        with _LOCK:
            if action.done:
                return
            running = action.state.instance._state.name == "running"
            if running and time.monotonic() >= deadline:
                _finish(action, result, "stand-in")
                return


def _finish(action: Action, result: str, why: str) -> None:
    """Moves the instance on; caller holds _LOCK."""
    action.done = True
    action.result = result
    action.ended = time.time()
    action.history.append(f"{why}:{result}")
    group, state = action.group, action.state
    if action.transition == LAUNCHING and result == "CONTINUE":
        state.lifecycle_state = "InService"
        notifications.publish(group, notifications.LAUNCH, state, "Launching a new EC2 instance")
        return
    # A terminating instance goes whatever the result; an abandoned launch
    # is terminated and replaced.
    state.lifecycle_state = "Terminated"
    group.autoscaling_backend.ec2_backend.terminate_instances([state.instance.id])
    group.instance_states = [s for s in group.instance_states if s is not state]
    if action.transition == LAUNCHING:
        notifications.publish(group, notifications.LAUNCH_ERROR, state, "Launching a new EC2 instance",
                              status="Failed")
        group.set_desired_capacity(group.desired_capacity)
    else:
        notifications.publish(group, notifications.TERMINATE, state, "Terminating EC2 instance",
                              status="Successful")


def _find(group_name: str, hook_name: str, instance_id: str | None, token: str | None) -> Action:
    with _LOCK:
        for a in _ACTIONS.values():
            if a.done or a.group.name != group_name or a.hook.name != hook_name:
                continue
            if (token and a.token == token) or (not token and instance_id and a.state.instance.id == instance_id):
                return a
    raise ValidationError(f"No active Lifecycle Action found with instance ID {instance_id or token}")


# --- moto patches ---------------------------------------------------------------

_orig_replace = asg_models.FakeAutoScalingGroup.replace_autoscaling_group_instances


def replace_autoscaling_group_instances(self: Any, count_needed: int, propagated_tags: dict[str, str]) -> None:
    before = set(id(s) for s in self.instance_states)
    _orig_replace(self, count_needed, propagated_tags)
    version = launch_version(self)
    for state in self.instance_states:
        if id(state) not in before:
            state.craftlb_lt_version = version
    hook = _hook_for(self, LAUNCHING)
    for state in self.instance_states:
        if id(state) not in before:
            if hook is None:
                notifications.publish(self, notifications.LAUNCH, state, "Launching a new EC2 instance")
            else:
                _start(self, state, LAUNCHING, hook)


def launch_version(group: Any) -> str | None:
    """The launch template version a new instance of the group gets: the
    one an instance refresh rolls to while it runs, else the group's number,
    or what $Default / $Latest resolve to now."""
    lt = group.ec2_launch_template
    if lt is None:
        return None
    override = getattr(group, "craftlb_launch_version", None)
    if override:
        return str(override)
    version = group.launch_template_version or "$Default"
    if version == "$Default":
        return str(lt.default_version_number)
    if version == "$Latest":
        return str(lt.latest_version_number)
    return str(version)


def instance_launch_template(self: Any) -> dict[str, Any] | None:
    # AWS: an instance reports the launch template version it was launched
    # with; moto reports the template's current default for every instance,
    # so an instance refresh could never tell old instances from new.
    group = self.auto_scaling_group
    if group is None or group.ec2_launch_template is None:
        return None
    version = getattr(self, "craftlb_lt_version", None) or launch_version(group)
    return {"LaunchTemplateId": group.ec2_launch_template.id,
            "LaunchTemplateName": group.ec2_launch_template.name, "Version": version}


def active_instances(self: Any) -> list[Any]:
    # AWS counts instances still launching towards the desired capacity.
    return [s for s in self.instance_states
            if s.lifecycle_state in ("InService", "Pending", "Pending:Wait", "Pending:Proceed")]


_orig_set_desired = asg_models.FakeAutoScalingGroup.set_desired_capacity


def set_desired_capacity(self: Any, new_capacity: int | None) -> None:
    hook = _hook_for(self, TERMINATING)
    target = self.min_size if new_capacity is None else new_capacity
    excess = len(self.active_instances()) - (target or 0)
    if hook is None or excess <= 0:
        before = list(self.instance_states)
        _orig_set_desired(self, new_capacity)
        for state in before:
            if state not in self.instance_states:
                notifications.publish(self, notifications.TERMINATE, state, "Terminating EC2 instance",
                                      status="Successful")
        return
    self.desired_capacity = target
    candidates = [s for s in self.active_instances() if not s.protected_from_scale_in]
    # Pending instances first, then the newest (AWS's default policy balances
    # AZs first; one AZ here).
    ordered = sorted(enumerate(candidates), key=lambda p: (p[1].lifecycle_state == "InService", -p[0]))
    for _, state in ordered[:excess]:
        _start(self, state, TERMINATING, hook)


_orig_terminate = asg_models.AutoScalingBackend.terminate_instance


def terminate_instance(self: Any, instance_id: str, should_decrement: bool) -> Any:
    # AWS: TerminateInstanceInAutoScalingGroup takes the instance through the
    # group's terminating hook (Terminating:Wait) like any scale-in, and
    # launches a replacement unless the desired capacity is decremented.
    # moto detaches and terminates it at once, hooks or not.
    for group in self.autoscaling_groups.values():
        state = next((s for s in group.instance_states if s.instance.id == instance_id), None)
        if state is None:
            continue
        hook = _hook_for(group, TERMINATING)
        if hook is None or state.lifecycle_state.startswith("Terminat"):
            break
        original = group.desired_capacity
        if should_decrement:
            group.desired_capacity = original - 1
        _start(group, state, TERMINATING, hook)
        group.set_desired_capacity(group.desired_capacity)
        return asg_models.TerminateInstanceActivity(state.instance, original)
    return _orig_terminate(self, instance_id, should_decrement)


def put_lifecycle_hook(self: Any) -> Any:
    # AWS (PutLifecycleHook, https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_PutLifecycleHook.html):
    # a new hook needs its transition (and a role when it has an SNS/SQS
    # target); on an existing hook "optional when updating": a member not
    # given keeps its value, and an empty NotificationTargetARN removes the
    # target. moto replaces the whole hook on every put, drops target, role
    # and metadata, and describes placeholder ARNs instead.
    group = self._get_param("AutoScalingGroupName")
    backend = self.autoscaling_backend
    if group not in backend.autoscaling_groups:
        raise ValidationError(f"No Auto Scaling group found with name {group}")
    name = self._get_param("LifecycleHookName")
    given = {k: self._get_param(k) for k in ("LifecycleTransition", "NotificationTargetARN", "RoleARN",
                                              "NotificationMetadata", "DefaultResult")}
    timeout = self._get_int_param("HeartbeatTimeout")
    hook = backend.lifecycle_hooks.get(f"{group}_{name}")
    if hook is None:
        if not given["LifecycleTransition"]:
            raise ValidationError("LifecycleTransition is required for a new lifecycle hook")
        target = given["NotificationTargetARN"] or None
        role = given["RoleARN"]
    else:
        target = (given["NotificationTargetARN"] or None if given["NotificationTargetARN"] is not None
                  else hook.notification_target_arn)
        role = given["RoleARN"] if given["RoleARN"] is not None else hook.role_arn
    if target and not role:
        raise ValidationError("RoleARN is required when a notification target is specified")
    check_publishable(self.current_account, target, role)
    if hook is None:
        hook = backend.create_lifecycle_hook(name=name, as_name=group, transition=given["LifecycleTransition"],
                                             timeout=timeout, result=given["DefaultResult"])
        configure(hook, target, role, given["NotificationMetadata"])
        return EmptyResult()
    if given["LifecycleTransition"]:
        hook.lifecycle_transition = given["LifecycleTransition"]
    if timeout is not None:
        hook.heartbeat_timeout = timeout
    if given["DefaultResult"]:
        hook.default_result = given["DefaultResult"]
    metadata = given["NotificationMetadata"] if given["NotificationMetadata"] is not None else hook.craftlb_metadata
    configure(hook, target, role, metadata)
    return EmptyResult()


def check_publishable(account: str, target: str | None, role: str | None) -> None:
    """AWS publishes a test message to a hook's target with its role when
    the hook is put (or the group is created with it); a role too young for
    Auto Scaling to assume fails that (IAM propagation, settings.py)."""
    if target and settings.role_propagating(account, role):
        raise ValidationError(f"Unable to publish test message to notification target {target} using IAM role "
                              f"{role}. Please check your target and role configuration and try to put lifecycle "
                              "hook again.")


def configure(hook: Any, target: str | None, role: str | None, metadata: str | None) -> None:
    """What AWS keeps of a hook that moto drops or makes up."""
    hook.craftlb_target = target or None
    hook.craftlb_metadata = metadata or None
    hook.notification_target_arn = target or None
    hook.role_arn = role or None
    hook.notification_metadata = hook.craftlb_metadata
    # AWS: the global timeout is 100 x the heartbeat timeout, at most 48 h.
    hook.global_timeout = min(100 * int(hook.heartbeat_timeout), 172800)




def complete_lifecycle_action(self: Any) -> Any:
    # moto: 500 NotImplemented. AWS: moves the instance on, or
    # ValidationError "No active Lifecycle Action found".
    action = _find(self._get_param("AutoScalingGroupName"), self._get_param("LifecycleHookName"),
                   self._get_param("InstanceId"), self._get_param("LifecycleActionToken"))
    result = self._get_param("LifecycleActionResult")
    if result not in ("CONTINUE", "ABANDON"):
        raise ValidationError(f"Invalid LifecycleActionResult {result!r}")
    with _LOCK:
        if action.done:
            raise ValidationError(f"No active Lifecycle Action found with instance ID {action.state.instance.id}")
        _finish(action, result, "complete")
    return EmptyResult()


def record_lifecycle_action_heartbeat(self: Any) -> Any:
    # moto: 500 NotImplemented. AWS: restarts the heartbeat timeout.
    action = _find(self._get_param("AutoScalingGroupName"), self._get_param("LifecycleHookName"),
                   self._get_param("InstanceId"), self._get_param("LifecycleActionToken"))
    with _LOCK:
        action.deadline = time.monotonic() + float(action.hook.heartbeat_timeout)
        action.history.append("heartbeat")
    return EmptyResult()


def _timeouts() -> None:
    while True:
        time.sleep(0.2)
        now = time.monotonic()
        with _LOCK:
            for a in list(_ACTIONS.values()):
                if not a.done and now >= a.deadline:
                    _finish(a, a.hook.default_result or "ABANDON", "timeout")


asg_models.FakeAutoScalingGroup.replace_autoscaling_group_instances = replace_autoscaling_group_instances
asg_models.FakeAutoScalingGroup.active_instances = active_instances
asg_models.InstanceState.launch_template = property(instance_launch_template)  # type: ignore[assignment]
asg_models.FakeAutoScalingGroup.set_desired_capacity = set_desired_capacity
asg_models.AutoScalingBackend.terminate_instance = terminate_instance
asg_responses.AutoScalingResponse.put_lifecycle_hook = put_lifecycle_hook
asg_responses.AutoScalingResponse.complete_lifecycle_action = complete_lifecycle_action
asg_responses.AutoScalingResponse.record_lifecycle_action_heartbeat = record_lifecycle_action_heartbeat
threading.Thread(target=_timeouts, daemon=True, name="lifecycle-timeouts").start()
