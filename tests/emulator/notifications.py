"""Auto Scaling group notifications, as AWS sends them (moto has none).

PutNotificationConfiguration / DescribeNotificationConfigurations /
DeleteNotificationConfiguration, and the notifications themselves: when an
instance of the group enters service (after its launching hook, if any,
ended in CONTINUE) `autoscaling:EC2_INSTANCE_LAUNCH`; when a launch fails
(the launching hook ended in ABANDON) `autoscaling:EC2_INSTANCE_LAUNCH_ERROR`;
when an instance has been terminated `autoscaling:EC2_INSTANCE_TERMINATE`.
The message is the JSON AWS publishes to the topic ("Amazon SNS notification
options", https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-sns-notifications.html).

Also the stand-in node: POST /_craftlb/autoscaling/stand-in {"group": G,
"result": "CONTINUE", "after_seconds": 0.5} makes the emulator complete the
launching action of every new instance of G once it runs, as a node that
became ready would (tests of the Lambda and of launch-lb.yml that run no
node); {"group": G, "result": null} stops it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from moto.autoscaling import responses as asg_responses
from moto.core.responses import ActionResult, EmptyResult
from moto.sns.models import sns_backends

LAUNCH = "autoscaling:EC2_INSTANCE_LAUNCH"
LAUNCH_ERROR = "autoscaling:EC2_INSTANCE_LAUNCH_ERROR"
TERMINATE = "autoscaling:EC2_INSTANCE_TERMINATE"
TERMINATE_ERROR = "autoscaling:EC2_INSTANCE_TERMINATE_ERROR"
TYPES = (LAUNCH, LAUNCH_ERROR, TERMINATE, TERMINATE_ERROR, "autoscaling:TEST_NOTIFICATION")

_LOCK = threading.Lock()
# (account, region, group) -> {topic ARN: [types]}
_CONFIGS: dict[tuple[str, str, str], dict[str, list[str]]] = {}
# group name -> (result, after seconds): the stand-in node.
_STAND_INS: dict[str, tuple[str, float]] = {}


def _key(response: Any, group: str) -> tuple[str, str, str]:
    return (str(response.current_account), str(response.region), group)


def put_notification_configuration(self: Any) -> Any:
    group = self._get_param("AutoScalingGroupName")
    if group not in self.autoscaling_backend.autoscaling_groups:
        from lifecycle import ValidationError
        raise ValidationError(f"AutoScalingGroup name not found - AutoScalingGroup '{group}' not found")
    topic = self._get_param("TopicARN")
    types = self._get_params().get("NotificationTypes") or []
    with _LOCK:
        # AWS: "overwrites any existing configuration" for this topic.
        _CONFIGS.setdefault(_key(self, group), {})[topic] = list(types)
    return EmptyResult()


def describe_notification_configurations(self: Any) -> Any:
    groups = self._get_params().get("AutoScalingGroupNames") or []
    out = []
    with _LOCK:
        for (account, region, group), topics in sorted(_CONFIGS.items()):
            if (account, region) != (str(self.current_account), str(self.region)):
                continue
            if groups and group not in groups:
                continue
            for topic, types in sorted(topics.items()):
                out.extend({"AutoScalingGroupName": group, "TopicARN": topic, "NotificationType": t}
                           for t in types)
    return ActionResult({"NotificationConfigurations": out})


def delete_notification_configuration(self: Any) -> Any:
    group = self._get_param("AutoScalingGroupName")
    topic = self._get_param("TopicARN")
    with _LOCK:
        topics = _CONFIGS.get(_key(self, group), {})
        if topic not in topics:
            from lifecycle import ValidationError
            raise ValidationError(f"No notification configuration found for group {group} and topic {topic}")
        del topics[topic]
    return EmptyResult()


def forget_group(account: str, region: str, group: str) -> None:
    """A deleted group's configurations go with it."""
    with _LOCK:
        _CONFIGS.pop((account, region, group), None)


def _account_region(group: Any) -> tuple[str, str]:
    backend = group.autoscaling_backend
    return str(backend.account_id), str(backend.region_name)


def publish(group: Any, event: str, state: Any, description: str, status: str = "InProgress") -> None:
    """Publishes `event` for the instance to every topic configured for it,
    on a thread of its own (after the call that caused it has answered)."""
    account, region = _account_region(group)
    with _LOCK:
        topics = [t for t, types in _CONFIGS.get((account, region, group.name), {}).items() if event in types]
    if not topics:
        return
    instance = state.instance
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    message = {
        "Origin": "EC2" if event in (LAUNCH, LAUNCH_ERROR) else "AutoScalingGroup",
        "Destination": "AutoScalingGroup" if event in (LAUNCH, LAUNCH_ERROR) else "EC2",
        "Progress": 50, "AccountId": account, "Description": f"{description}: {instance.id}",
        "RequestId": str(uuid.uuid4()), "EndTime": now, "AutoScalingGroupARN": group.arn,
        "ActivityId": str(uuid.uuid4()), "StartTime": now, "Service": "AWS Auto Scaling", "Time": now,
        "EC2InstanceId": instance.id, "StatusCode": status, "StatusMessage": "",
        "Details": {"Subnet ID": getattr(instance, "subnet_id", None) or "",
                    "Availability Zone": getattr(instance, "availability_zone", None) or ""},
        "AutoScalingGroupName": group.name, "Cause": f"At {now} an instance was {description.lower()}.",
        "Event": event,
    }
    verb = {LAUNCH: "launch", LAUNCH_ERROR: "failed launch", TERMINATE: "termination",
            TERMINATE_ERROR: "failed termination"}.get(event, "event")
    subject = f'Auto Scaling: {verb} for group "{group.name}"'

    def send() -> None:
        for topic in topics:
            t_region, t_account = topic.split(":")[3], topic.split(":")[4]
            try:
                sns_backends[t_account][t_region].publish(json.dumps(message), arn=topic, subject=subject)
            except Exception:  # noqa: BLE001 - a deleted topic: AWS drops the notification too
                pass

    threading.Thread(target=send, daemon=True).start()


def stand_in(group: str, result: str | None, after: float) -> dict[str, Any]:
    with _LOCK:
        if result is None:
            _STAND_INS.pop(group, None)
        else:
            if result not in ("CONTINUE", "ABANDON"):
                raise ValueError(f"result must be CONTINUE, ABANDON or null, not {result!r}")
            _STAND_INS[group] = (result, max(float(after), 0.0))
        return {g: {"result": r, "after_seconds": a} for g, (r, a) in _STAND_INS.items()}


def stand_in_for(group: str) -> tuple[str, float] | None:
    with _LOCK:
        return _STAND_INS.get(group)


asg_responses.AutoScalingResponse.put_notification_configuration = put_notification_configuration
asg_responses.AutoScalingResponse.describe_notification_configurations = describe_notification_configurations
asg_responses.AutoScalingResponse.delete_notification_configuration = delete_notification_configuration
