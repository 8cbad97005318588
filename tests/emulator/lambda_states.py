"""Lambda as AWS runs it, where moto 5.2.5 does not.

Imported for its side effects by server.py. Each patch names the AWS
behaviour it restores.

- Asynchronous states. AWS: a new function is `Pending` (StateReasonCode
  Creating) for a while before it is `Active`; after UpdateFunctionCode or
  UpdateFunctionConfiguration its LastUpdateStatus is `InProgress` before
  `Successful`; while either lasts, another update is refused with
  ResourceConflictException. moto is Active and Successful at once, so a
  client that does not wait would pass here and fail on AWS. The window
  lasts `lambda_state_seconds` (settings.py, default 1.5 s).
- UpdateFunctionConfiguration: moto ignores TracingConfig, DeadLetterConfig
  and KMSKeyArn and fails on an Environment without Variables (how AWS is
  told to clear them); UpdateFunctionCode ignores Architectures.
- IAM propagation. AWS: a role made seconds ago may not yet be assumable by
  Lambda; CreateFunction then fails with InvalidParameterValueException "The
  role defined for the function cannot be assumed by Lambda." The window
  here is `iam_propagation_seconds` after the role's creation (settings.py,
  on by default), so a client that does not retry fails here as on AWS.
- Resource policy: AWS turns an account-id principal into
  `{"AWS": "arn:aws:iam::<id>:root"}`; moto keeps the bare id.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from moto.awslambda import models as lambda_models
from moto.awslambda import policy as lambda_policy
from moto.awslambda.exceptions import LambdaClientError

import settings

_LOCK = threading.Lock()
# function ARN -> {"pending_until": t, "updating_until": t} (monotonic)
_TIMES: dict[str, dict[str, float]] = {}


class ResourceConflict(LambdaClientError):
    code = 409

    def __init__(self, arn: str) -> None:
        super().__init__("ResourceConflictException",
                         f"The operation cannot be performed at this time. An update is in progress for resource: {arn}")


def _window(fn: Any) -> dict[str, float]:
    with _LOCK:
        return _TIMES.setdefault(fn.function_arn, {"pending_until": 0.0, "updating_until": 0.0})


def settle() -> int:
    """Ends every Pending / InProgress window now (POST /_craftlb/lambda/settle):
    a test holds a window open with a long lambda_state_seconds to meet it for
    sure, however slow the machine, then ends it here. Returns how many."""
    with _LOCK:
        now = time.monotonic()
        n = sum(1 for t in _TIMES.values() if max(t.values()) > now)
        for t in _TIMES.values():
            t["pending_until"] = t["updating_until"] = 0.0
        return n


def _busy(fn: Any) -> bool:
    t = _window(fn)
    now = time.monotonic()
    return now < t["pending_until"] or now < t["updating_until"]


_orig_create = lambda_models.LambdaBackend.create_function


def create_function(self: Any, spec: dict[str, Any]) -> Any:
    if settings.role_propagating(self.account_id, spec.get("Role", "")):
        raise LambdaClientError("InvalidParameterValueException",
                                "The role defined for the function cannot be assumed by Lambda.")
    fn = _orig_create(self, spec)
    _window(fn)["pending_until"] = time.monotonic() + settings.get("lambda_state_seconds")
    fn.craftlb_dead_letter = (spec.get("DeadLetterConfig") or {}).get("TargetArn")
    return fn


_orig_get_configuration = lambda_models.LambdaFunction.get_configuration


def get_configuration(self: Any, on_create: bool = False) -> dict[str, Any]:
    config = _orig_get_configuration(self, on_create)
    t = _window(self)
    now = time.monotonic()
    if now < t["pending_until"]:
        config.update(State="Pending", StateReason="The function is being created.", StateReasonCode="Creating")
        config.pop("LastUpdateStatus", None)
    elif now < t["updating_until"]:
        config.update(LastUpdateStatus="InProgress", LastUpdateStatusReason="The function is being updated.",
                      LastUpdateStatusReasonCode="Updating")
    if getattr(self, "craftlb_dead_letter", None):
        config["DeadLetterConfig"] = {"TargetArn": self.craftlb_dead_letter}
    if not config.get("KMSKeyArn"):
        config.pop("KMSKeyArn", None)
    return config


_orig_update_configuration = lambda_models.LambdaFunction.update_configuration


def update_configuration(self: Any, config_updates: dict[str, Any]) -> dict[str, Any]:
    if _busy(self):
        raise ResourceConflict(self.function_arn)
    updates = dict(config_updates)
    if "Environment" in updates:
        self.environment_vars = (updates.pop("Environment") or {}).get("Variables") or {}
    if "TracingConfig" in updates:
        self.tracing_config = updates.pop("TracingConfig")
    if "DeadLetterConfig" in updates:
        self.craftlb_dead_letter = (updates.pop("DeadLetterConfig") or {}).get("TargetArn") or None
    if "KMSKeyArn" in updates:
        self.kms_key_arn = updates.pop("KMSKeyArn") or None
    result = _orig_update_configuration(self, updates)
    _window(self)["updating_until"] = time.monotonic() + settings.get("lambda_state_seconds")
    return result


_orig_update_code = lambda_models.LambdaFunction.update_function_code


def update_function_code(self: Any, updated_spec: dict[str, Any]) -> dict[str, Any]:
    if _busy(self):
        raise ResourceConflict(self.function_arn)
    if updated_spec.get("Architectures"):
        self.architectures = updated_spec["Architectures"]
    result = _orig_update_code(self, updated_spec)
    _window(self)["updating_until"] = time.monotonic() + settings.get("lambda_state_seconds")
    return result


def backend_update_function_code(self: Any, function_name: str, qualifier: str, body: dict[str, Any]) -> Any:
    # moto applies the update twice (once more for the return value); with
    # the InProgress window above the second one would conflict with the first.
    fn = self.get_function(function_name, qualifier)
    result = fn.update_function_code(body)
    if body.get("Publish", False):
        self.publish_version(function_name)
    return result


_orig_principal = lambda_policy.Policy.principal_formatter


def principal_formatter(self: Any, obj: Any) -> Any:
    if isinstance(obj, str) and obj.isdigit() and len(obj) == 12:
        return {"AWS": f"arn:aws:iam::{obj}:root"}
    return _orig_principal(self, obj)


lambda_models.LambdaBackend.create_function = create_function
lambda_models.LambdaFunction.get_configuration = get_configuration
lambda_models.LambdaFunction.update_configuration = update_configuration
lambda_models.LambdaFunction.update_function_code = update_function_code
lambda_models.LambdaBackend.update_function_code = backend_update_function_code
lambda_policy.Policy.principal_formatter = principal_formatter
