"""The emulator's switches for AWS behaviours moto lacks, in one place.

Each behaviour is on by default, as AWS is, so a test passes only when the
code under test copes with it; a test that needs it off (or a window made
shorter or longer) says so through PUT /_craftlb/settings, or the whole
emulator is started with CRAFTLB_<NAME> in its environment (upper case).
GET /_craftlb/settings shows them all.

- lambda_state_seconds: how long a function stays Pending after its
  creation and LastUpdateStatus InProgress after an update (lambda_states.py).
- iam_propagation_seconds: how long a new IAM role cannot be used by
  another service: Lambda cannot assume it (lambda_states.py), Auto Scaling
  cannot publish a hook's test message with it (lifecycle.py). AWS: "changes
  ... can take time to become visible" (IAM eventual consistency,
  https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency).
- refresh_stall_seconds: how long an instance refresh waits for healthy
  replacements before it fails (asg_fixes.py). AWS: "keeps retrying for an
  hour ... If the problem persists after an hour, the operation fails"
  (https://docs.aws.amazon.com/autoscaling/ec2/userguide/instance-refresh-overview.html);
  shorter here so a test sees it.
- ec2_pending_seconds: how long a new instance is `pending`, without a
  public address, refused by AssociateAddress (ec2_fixes.py).
- ec2_visibility_seconds: how long a new instance or security group is
  unknown to calls that name it (InvalidInstanceID.NotFound /
  InvalidGroup.NotFound: EC2's eventual consistency, ec2_fixes.py).
- route53_requests_per_second: Route 53's request rate limit per account
  (faults.RateLimit); 0 turns it off.
The EC2 windows and the Route 53 rate apply to craftlb's own calls (the
Rust SDK), not to the tests' boto3 drivers, which only look.
- validate: requests checked against AWS's service models: "enforce",
  "report" or "off" (validation.py; the validator keeps the mode itself).
"""

from __future__ import annotations

import os
import threading
from typing import Any

_LOCK = threading.Lock()

_DEFAULTS: dict[str, float] = {
    "lambda_state_seconds": 1.5,
    "iam_propagation_seconds": 3.0,
    "refresh_stall_seconds": 60.0,
    "ec2_pending_seconds": 2.0,
    "ec2_visibility_seconds": 1.0,
    "route53_requests_per_second": 5.0,
}


def _from_env(name: str, default: float) -> float:
    raw = os.environ.get(f"CRAFTLB_{name.upper()}")
    return float(raw) if raw not in (None, "") else default


SETTINGS: dict[str, float] = {k: _from_env(k, v) for k, v in _DEFAULTS.items()}


def get(name: str) -> float:
    with _LOCK:
        return SETTINGS[name]


def configure(changes: dict[str, Any]) -> dict[str, float]:
    """Applies numeric settings; an unknown name changes nothing and fails."""
    unknown = [k for k in changes if k not in SETTINGS]
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(map(repr, unknown))} (known: {', '.join(SETTINGS)}, "
                         "validate)")
    values = {k: float(v) for k, v in changes.items()}
    if any(v < 0 for v in values.values()):
        raise ValueError(f"settings are seconds, not negative: {values}")
    with _LOCK:
        SETTINGS.update(values)
        return dict(SETTINGS)


def snapshot() -> dict[str, float]:
    with _LOCK:
        return dict(SETTINGS)


def role_propagating(account_id: str, role_arn: str | None) -> bool:
    """Whether the role is younger than iam_propagation_seconds: not yet
    usable by another AWS service. An unknown role is not "propagating"
    (the caller's own checks refuse it)."""
    if not role_arn:
        return False
    from moto.core.utils import utcnow
    from moto.iam.exceptions import NotFoundException
    from moto.iam.models import iam_backends

    try:
        role = iam_backends[account_id]["aws"].get_role_by_arn(role_arn)
    except (NotFoundException, KeyError):
        return False
    return (utcnow() - role.create_date).total_seconds() < get("iam_propagation_seconds")
