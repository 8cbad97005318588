"""EC2 instance metadata (IMDSv2) for emulated instances.

moto serves no per-instance metadata. Here each instance has its own IMDS
under /_craftlb/imds/<instance-id>/, so a test points one node's
AWS_EC2_METADATA_SERVICE_ENDPOINT there and the node sees itself as that
instance: id, region, private IP, and the Auto Scaling target lifecycle state
(what a node polls to drain before it is terminated).
"""

from __future__ import annotations

import secrets
import threading
from typing import Any

from moto.autoscaling.models import autoscaling_backends
from moto.ec2.models import ec2_backends

ACCOUNT = "123456789012"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
_LOCK = threading.Lock()
_TOKENS: set[str] = set()


def _find_instance(instance_id: str) -> tuple[str, Any] | None:
    for region, backend in ec2_backends[ACCOUNT].items():
        for reservation in backend.reservations.values():
            for inst in reservation.instances:
                if inst.id == instance_id:
                    return region, inst
    return None


def _target_lifecycle_state(region: str, instance_id: str) -> str | None:
    # AWS: InService while launching or in service, Terminated once the
    # instance is on its way out (Terminating:Wait included).
    for group in autoscaling_backends[ACCOUNT][region].autoscaling_groups.values():
        for state in group.instance_states:
            if state.instance.id != instance_id:
                continue
            s = state.lifecycle_state
            if s.startswith("Terminat"):
                return "Terminated"
            if s.startswith("Standby"):
                return "Standby"
            if s.startswith("Detach"):
                return "Detached"
            return "InService"
    return None


def handle(method: str, rest: str, headers: Any) -> tuple[int, str, dict[str, str]]:
    """rest: the path after /_craftlb/imds/, "<instance-id>/latest/...". """
    instance_id, _, path = rest.partition("/")
    path = "/" + path
    if method == "PUT" and path == "/latest/api/token":
        ttl = headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        if not ttl:
            return 400, "missing X-aws-ec2-metadata-token-ttl-seconds", {}
        token = secrets.token_urlsafe(24)
        with _LOCK:
            _TOKENS.add(token)
        return 200, token, {"X-aws-ec2-metadata-token-ttl-seconds": ttl}
    if method != "GET":
        return 405, "method not allowed", {}
    with _LOCK:
        if headers.get(TOKEN_HEADER) not in _TOKENS:
            return 401, "unauthorized (IMDSv2 token required)", {}
    found = _find_instance(instance_id)
    if found is None:
        return 404, f"no such instance {instance_id}", {}
    region, inst = found
    if path == "/latest/meta-data/instance-id":
        return 200, inst.id, {}
    if path == "/latest/meta-data/placement/region":
        return 200, region, {}
    if path == "/latest/meta-data/placement/availability-zone":
        return 200, inst.placement, {}
    if path == "/latest/meta-data/local-ipv4":
        return 200, inst.private_ip, {}
    if path == "/latest/meta-data/autoscaling/target-lifecycle-state":
        state = _target_lifecycle_state(region, inst.id)
        return (200, state, {}) if state else (404, "not in an Auto Scaling group", {})
    return 404, f"no metadata at {path}", {}
