"""Requests checked against AWS's own service models, before moto sees them.

AWS validates every request against the constraints its API model declares
(required members, string and list lengths, numeric ranges, enums,
patterns) and refuses a request that breaks one with a 400 before acting on
it. moto mostly does not, so a module could send an empty RoleARN or a
2,000-character description and pass every test. botocore ships those very
models (botocore/data/<service>/<version>/service-2.json, the files AWS
publishes for its SDKs); this module parses each request with the model of
its operation (moto's own protocol parsers) and checks it the way AWS does.

The answers follow AWS's shapes:
- Coral services (Auto Scaling, IAM, STS, Lambda, Route 53): "N validation
  error(s) detected: Value 'x' at 'memberName' failed to satisfy constraint:
  Member must ..." with the service's code (ValidationError, ValidationException,
  InvalidInput), as in
  https://docs.aws.amazon.com/autoscaling/ec2/APIReference/CommonErrors.html
  and https://docs.aws.amazon.com/Route53/latest/APIReference/API_ChangeResourceRecordSets.html#API_ChangeResourceRecordSets_Errors
- SNS: InvalidParameter, "Invalid parameter: <Member>"
  (https://docs.aws.amazon.com/sns/latest/api/CommonErrors.html);
- EC2: MissingParameter / InvalidParameterValue
  (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html).

Java regular expressions of the models are run with the `regex` module
(\\p{L}, \\p{ASCII}); Java's surrogate-pair notation for the supplementary
planes is rewritten as the code point range it means.
"""

from __future__ import annotations

import json
import threading
from functools import lru_cache
from typing import Any

import regex

# Service -> (error code, HTTP status) for a request that breaks the model.
CODES = {
    "autoscaling": ("ValidationError", 400),
    "iam": ("ValidationError", 400),
    "sts": ("ValidationError", 400),
    "lambda": ("ValidationException", 400),
    "route53": ("InvalidInput", 400),
    "sns": ("InvalidParameter", 400),
    "ec2": ("InvalidParameterValue", 400),
    "s3": ("InvalidArgument", 400),
}
# The services craftlb calls; others pass unchecked.
SERVICES = frozenset(CODES)

_JAVA_SUPPLEMENTARY = "\\uD800\\uDC00-\\uDBFF\\uDFFF"


@lru_cache(maxsize=None)
def _pattern(java: str) -> Any:
    return regex.compile(java.replace(_JAVA_SUPPLEMENTARY, "\\U00010000-\\U0010FFFF"))


def _lc(name: str) -> str:
    """Coral names members in lower camel case ('RoleARN' -> 'roleARN')."""
    return name[:1].lower() + name[1:]


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bytes):
        return "java.nio.HeapByteBuffer"
    return "'" + str(value) + "'" if isinstance(value, str) else str(value)


class Problem:
    __slots__ = ("path", "value", "constraint", "member")

    def __init__(self, path: str, value: Any, constraint: str, member: str) -> None:
        self.path, self.value, self.constraint, self.member = path, value, constraint, member

    def coral(self) -> str:
        return f"Value {_show(self.value)} at '{self.path}' failed to satisfy constraint: {self.constraint}"


def _bounds(meta: dict[str, Any], n: Any, what: str, path: str, value: Any, member: str) -> list[Problem]:
    """A length or value outside the model's min/max, in AWS's words."""
    out = []
    if "min" in meta and n < meta["min"]:
        out.append(Problem(path, value, f"Member must have {what} greater than or equal to {meta['min']}", member))
    if "max" in meta and n > meta["max"]:
        out.append(Problem(path, value, f"Member must have {what} less than or equal to {meta['max']}", member))
    return out


def check(shape: Any, value: Any, path: str = "", member: str = "") -> list[Problem]:
    """Every constraint of `shape` that `value` breaks."""
    out: list[Problem] = []
    meta = shape.metadata
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return out
        for name in shape.required_members:
            if value.get(name) is None:
                out.append(Problem(_join(path, _lc(name)), None, "Member must not be null", name))
        for name, v in value.items():
            sub = shape.members.get(name)
            if sub is not None and v is not None:
                out.extend(check(sub, v, _join(path, _lc(name)), name))
        return out
    if kind in ("string", "blob"):
        text = value if isinstance(value, (str, bytes)) else str(value)
        n = len(text)
        out.extend(_bounds(meta, n, "length", path, value, member))
        if kind == "string" and shape.enum and text not in shape.enum:
            out.append(Problem(path, value, f"Member must satisfy enum value set: [{', '.join(shape.enum)}]",
                               member))
        pattern = meta.get("pattern")
        # A value already too short or too long is reported for its length only.
        if kind == "string" and pattern and not out and _pattern(pattern).fullmatch(text) is None:
            out.append(Problem(path, value, f"Member must satisfy regular expression pattern: {pattern}", member))
        return out
    if kind in ("integer", "long", "float", "double"):
        return _bounds(meta, value, "value", path, value, member)
    if kind == "list" and isinstance(value, list):
        out.extend(_bounds(meta, len(value), "length", path, value, member))
        for i, item in enumerate(value, 1):
            out.extend(check(shape.member, item, f"{path}.{i}.member", member))
        return out
    if kind == "map" and isinstance(value, dict):
        out.extend(_bounds({"max": meta["max"]} if "max" in meta else {}, len(value), "length", path, value,
                           member))
        for k, v in value.items():
            out.extend(check(shape.key, k, f"{path}.key", member))
            out.extend(check(shape.value, v, f"{path}.{k}.member", member))
    return out


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def message(service: str, problems: list[Problem]) -> str:
    """The error message AWS's service gives for these problems."""
    first = problems[0]
    if service == "sns":
        return f"Invalid parameter: {first.member}"
    if service == "ec2":
        if first.value is None:
            return f"The request must contain the parameter {first.member}"
        return f"Value ({first.value}) for parameter {_lc(first.member)} is invalid. {first.constraint}"
    n = len(problems)
    head = f"{n} validation error{'s' if n > 1 else ''} detected: "
    return head + "; ".join(p.coral() for p in problems)


def code(service: str, problems: list[Problem]) -> tuple[str, int]:
    if service == "ec2" and problems[0].value is None:
        return "MissingParameter", 400
    return CODES[service]


MODES = ("enforce", "report", "off")


class Validator:
    """Per-emulator switch and the record of what was refused.

    Modes: "enforce" (the default: refuse as AWS does), "report" (record
    what would be refused and let it through: how a whole test run is
    surveyed without one refusal stopping the test that would show the
    next), "off". CRAFTLB_EMULATOR_VALIDATE sets the mode at start."""

    def __init__(self, mode: str = "enforce", refusals_file: str | None = None) -> None:
        self.lock = threading.Lock()
        self.mode = "enforce"
        self.configure(mode)
        self.refused: list[dict[str, Any]] = []
        # CRAFTLB_EMULATOR_REFUSALS=<file>: every refusal is also appended
        # there as a JSON line, to count them over a whole test run (many
        # emulators, one per test).
        self.refusals_file = refusals_file

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def configure(self, mode: Any) -> None:
        """A mode name, or a bool (true: enforce, false: off)."""
        if isinstance(mode, bool):
            mode = "enforce" if mode else "off"
        if mode not in MODES:
            raise ValueError(f"validate must be one of {', '.join(MODES)} or a bool, not {mode!r}")
        with self.lock:
            self.mode = mode

    def refusals(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.refused)

    def validate(self, service: str, operation: str, response: Any,
                 caller: str = "") -> tuple[tuple[str, int, str] | None, dict[str, Any] | None]:
        """(refusal, params): the refusal (code, status, message) when the
        request breaks its operation's model and the mode enforces it, and
        the request's parameters as the model reads them (for the request
        log), None when the service is not one of ours."""
        if service not in SERVICES:
            return None, None
        parsed = parse(service, operation, response)
        if parsed is None:
            return None, None
        shape, params = parsed
        if not self.enabled:
            return None, params
        problems = check(shape, params)
        if not problems:
            return None, params
        err, status = code(service, problems)
        msg = message(service, problems)
        entry = {"service": service, "operation": operation, "code": err, "message": msg, "mode": self.mode,
                 "agent": caller}
        with self.lock:
            self.refused.append(entry)
            enforce = self.mode == "enforce"
            if self.refusals_file:
                with open(self.refusals_file, "a", encoding="utf-8") as f:
                    f.write(json.dumps(entry) + "\n")
        return ((err, status, msg) if enforce else None), params


def loggable(value: Any, limit: int = 2000) -> Any:
    """A request's parameters as the request log keeps them: JSON, blobs as
    their size, very long strings cut (a zip or a policy is not the point
    of a log line)."""
    if isinstance(value, dict):
        return {str(k): loggable(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [loggable(v, limit) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": len(value)}
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + f"...({len(value)} chars)"
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return str(value)


def parse(service: str, operation: str, response: Any) -> tuple[Any, dict[str, Any]] | None:
    """The request as its operation's input shape sees it, parsed by moto's
    protocol parser for the service (the same one moto uses where it parses
    from the model)."""
    from moto.core.parse import PROTOCOL_PARSERS
    from moto.core.request import determine_request_protocol
    from moto.core.utils import get_service_model

    try:
        model = get_service_model(service)
        op = model.operation_model(operation)
    except Exception:  # noqa: BLE001 - an operation the model lacks: moto answers
        return None
    if op.input_shape is None:
        return None
    request = response.normalized_request
    protocol = determine_request_protocol(model, request.content_type)
    parser = PROTOCOL_PARSERS[protocol](op)
    try:
        parsed = parser.parse({
            "method": request.method,
            "values": request.values,
            "headers": request.headers,
            "body": request.data,
            "url_path": request.path,
            "url_params": getattr(response, "uri_match", None) or {},
        })
    except Exception:  # noqa: BLE001 - unparseable: AWS would answer its own error; moto does
        return None
    return op.input_shape, dict(parsed)
