"""EC2 behaviour moto 5.2.5 gets wrong, patched to what AWS does.

Imported for its side effects by server.py. Each patch names the AWS
behaviour it restores.
"""

from __future__ import annotations

from typing import Any

from moto.core.common_models import BaseModel  # noqa: F401  (keeps moto's import order)
from moto.ec2.models import launch_templates as lt_models
from moto.ec2.utils import parse_user_data


# AWS: DescribeLaunchTemplates returns the template's tags as they are now
# (CreateTags/DeleteTags on the lt- id change them). moto copies them once,
# at creation, into `tags`; read them from the tag store instead.
def _tags(self: Any) -> list[dict[str, str]]:
    return self.get_tags()


def _set_tags(self: Any, _value: Any) -> None:
    pass


lt_models.LaunchTemplate.tags = property(_tags, _set_tags)  # type: ignore[assignment]


# AWS: a launch template version made by CreateLaunchTemplateVersion launches
# instances with its user data like any other. moto parses UserData into its
# Base64EncodedString only in CreateLaunchTemplate, and its Auto Scaling
# asserts that type, so a group on version 2+ with user data cannot launch
# (an instance refresh after a user data change fails with AssertionError).
def _user_data(self: Any) -> Any:
    value = self.data.get("UserData")
    if isinstance(value, (str, bytes)):
        value = parse_user_data(value)
        self.data["UserData"] = value
    return value


lt_models.LaunchTemplateVersion.user_data = property(_user_data)  # type: ignore[assignment]


# --- AWS's timing, which moto does not have ---------------------------------
# A new instance is `pending` before it is `running`, and has no public
# address until then ("Instance lifecycle",
# https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-instance-lifecycle.html);
# AssociateAddress refuses it meanwhile ("The pending instance 'i-...' is not
# in a valid state for this operation", code InvalidInstanceID). moto makes
# instances `running`, with their public IP, at once. The window is
# `ec2_pending_seconds` (settings.py).
#
# Right after RunInstances or CreateSecurityGroup, a call naming the new
# resource may answer InvalidInstanceID.NotFound / InvalidGroup.NotFound:
# "eventual consistency"
# (https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html).
# Here every call of craftlb's code that names a resource younger than
# `ec2_visibility_seconds` gets that answer (see not_visible_yet).

import threading  # noqa: E402
import time  # noqa: E402

from moto.ec2.exceptions import EC2ClientError  # noqa: E402
from moto.ec2.models import elastic_ip_addresses as eip_models  # noqa: E402
from moto.ec2.models import instances as instance_models  # noqa: E402
from moto.ec2.models import security_groups as sg_models  # noqa: E402

import settings  # noqa: E402

_LOCK = threading.Lock()
_BORN: dict[str, float] = {}  # resource id -> monotonic creation time
_PENDING: list[tuple[float, Any]] = []  # (running at, instance)

_orig_instance_init = instance_models.Instance.__init__


def _instance_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _orig_instance_init(self, *args, **kwargs)
    now = time.monotonic()
    with _LOCK:
        _BORN[self.id] = now
    wait = settings.get("ec2_pending_seconds")
    if wait <= 0:
        return
    self._state = instance_models.InstanceState("pending", 0)
    nic = self.nics.get(0) if isinstance(self.nics, dict) else (self.nics[0] if self.nics else None)
    if nic is not None and nic.public_ip:
        self.craftlb_public_ip, nic.public_ip = nic.public_ip, None
    with _LOCK:
        _PENDING.append((now + wait, self))


def _running_loop() -> None:
    while True:
        time.sleep(0.1)
        now = time.monotonic()
        with _LOCK:
            due = [p for p in _PENDING if p[0] <= now]
            _PENDING[:] = [p for p in _PENDING if p[0] > now]
        for _, inst in due:
            if inst._state.name != "pending":
                continue  # terminated (or stopped) while pending
            inst._state = instance_models.InstanceState("running", 16)
            ip = getattr(inst, "craftlb_public_ip", None)
            nic = inst.nics.get(0) if isinstance(inst.nics, dict) else (inst.nics[0] if inst.nics else None)
            if ip and nic is not None and not nic.public_ip:
                nic.public_ip = ip


_orig_sg_init = sg_models.SecurityGroup.__init__


def _sg_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _orig_sg_init(self, *args, **kwargs)
    with _LOCK:
        _BORN[self.id] = time.monotonic()


_orig_associate = eip_models.ElasticAddressBackend.associate_address


def _associate_address(self: Any, instance: Any = None, *args: Any, **kwargs: Any) -> Any:
    if instance is not None and instance._state.name == "pending":
        raise EC2ClientError("InvalidInstanceID",
                             f"The pending instance '{instance.id}' is not in a valid state for this operation.")
    return _orig_associate(self, instance, *args, **kwargs)


_ID_KEYS = ("InstanceId", "InstanceIds", "GroupId", "GroupIds", "Resources")


def not_visible_yet(params: dict[str, Any] | None) -> tuple[str, str] | None:
    """(code, message) when a request names an instance or security group
    made less than `ec2_visibility_seconds` ago; None otherwise."""
    window = settings.get("ec2_visibility_seconds")
    if window <= 0 or not params:
        return None
    named: list[str] = []
    for key in _ID_KEYS:
        value = params.get(key)
        named.extend(value if isinstance(value, list) else [value] if isinstance(value, str) else [])
    for perm in params.get("IpPermissions") or []:
        named.extend(p.get("GroupId") for p in perm.get("UserIdGroupPairs") or [] if p.get("GroupId"))
    now = time.monotonic()
    with _LOCK:
        young = [r for r in named if r in _BORN and now - _BORN[r] < window]
    if not young:
        return None
    rid = young[0]
    if rid.startswith("i-"):
        return "InvalidInstanceID.NotFound", f"The instance ID '{rid}' does not exist"
    return "InvalidGroup.NotFound", f"The security group '{rid}' does not exist"


_orig_terminate = instance_models.Instance.terminate


def _terminate(self: Any) -> Any:
    # AWS: when an instance terminates, "the Elastic IP address is
    # disassociated from the instance" and stays allocated
    # (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-instance-lifecycle.html);
    # moto keeps the association to the terminated instance.
    previous = _orig_terminate(self)
    for eip in self.ec2_backend.addresses:
        if eip.instance is not None and eip.instance.id == self.id:
            eip.instance, eip.eni, eip.association_id = None, None, None
    return previous


_orig_allocate = eip_models.ElasticAddressBackend.allocate_address


def _allocate_address(self: Any, domain: str, address: str | None = None, tags: Any = None) -> Any:
    # AWS allocates Elastic IPs from its public ranges; moto draws them from
    # 127.0.0.0/8, which Route 53 (rightly) refuses to health-check.
    import random
    if not address:
        taken = {a.public_ip for a in self.addresses}
        while not address or address in taken:
            address = f"3.{random.randint(208, 239)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
    return _orig_allocate(self, domain, address=address, tags=tags)


eip_models.ElasticAddressBackend.allocate_address = _allocate_address  # type: ignore[method-assign]
instance_models.Instance.terminate = _terminate  # type: ignore[method-assign]
instance_models.Instance.__init__ = _instance_init  # type: ignore[method-assign]
sg_models.SecurityGroup.__init__ = _sg_init  # type: ignore[method-assign]
eip_models.ElasticAddressBackend.associate_address = _associate_address  # type: ignore[method-assign]
threading.Thread(target=_running_loop, daemon=True, name="ec2-pending").start()


# GetConsoleOutput: AWS returns what the instance wrote to its console (the
# user data's log, where craftlb's boot writes why a node failed); moto
# returns a fixed kernel banner. The test bed's node host puts each booted
# node's console here (PUT /_craftlb/ec2/console/<instance-id>).
from moto.core.responses import ActionResult  # noqa: E402
from moto.core.utils import utcnow  # noqa: E402
from moto.ec2.responses import general as general_responses  # noqa: E402
from moto.ec2.utils import Base64EncodedString  # noqa: E402

_CONSOLES: dict[str, str] = {}


def set_console(instance_id: str, text: str) -> None:
    with _LOCK:
        _CONSOLES[instance_id] = text


_orig_console = general_responses.General.get_console_output


def _get_console_output(self: Any) -> Any:
    instance_id = self._get_param("InstanceId")
    with _LOCK:
        text = _CONSOLES.get(instance_id)
    if text is None:
        return _orig_console(self)
    self.ec2_backend.get_instance(instance_id)  # InvalidInstanceID.NotFound as AWS answers
    return ActionResult({"InstanceId": instance_id, "Timestamp": utcnow(),
                         "Output": Base64EncodedString.from_raw_string(text)})


general_responses.General.get_console_output = _get_console_output  # type: ignore[method-assign]
