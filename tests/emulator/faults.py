"""Fault injection for the emulator: throttling, 5xx and latency by rate.

Errors are rendered in the calling service's own wire protocol with the
codes real AWS uses, so the SDK's retry classifier treats them exactly as it
would treat AWS's.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

# What each service answers when it throttles (code, HTTP status).
# Route 53/IAM/Auto Scaling/SNS/STS: "Throttling" 400; EC2: RequestLimitExceeded 503;
# Lambda: TooManyRequestsException 429.
THROTTLE = {
    "ec2": ("RequestLimitExceeded", 503),
    "lambda": ("TooManyRequestsException", 429),
}
DEFAULT_THROTTLE = ("Throttling", 400)
# 5xx: AWS answers InternalError 500 or ServiceUnavailable 503; we alternate.
SERVER_ERRORS = [("InternalError", 500), ("ServiceUnavailable", 503)]


@lru_cache(maxsize=None)
def _protocol(service: str) -> str:
    import botocore.session

    try:
        return botocore.session.get_session().get_service_model(service).protocol
    except Exception:  # noqa: BLE001 - unknown service: XML is the common case
        return "query"


def render_error(service: str, code: str, status: int, message: str) -> tuple[int, dict[str, str], str]:
    request_id = str(uuid.uuid4())
    protocol = _protocol(service)
    if protocol in ("json", "rest-json"):
        body = json.dumps({"__type": code, "message": message})
        headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": code,
                   "x-amzn-RequestId": request_id}
        return status, headers, body
    if protocol == "ec2":
        body = (f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
                f"<Message>{message}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>")
    else:
        body = (f'<?xml version="1.0"?><ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>'
                f"<Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>")
    return status, {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}, body


@dataclass
class Fault:
    kind: str | None  # "throttle", "error" or None (latency only)
    latency_ms: int
    choice: int

    def response(self, service: str) -> tuple[int, dict[str, str], str]:
        if self.kind == "throttle":
            code, status = THROTTLE.get(service, DEFAULT_THROTTLE)
            return render_error(service, code, status, "Rate exceeded")
        code, status = SERVER_ERRORS[self.choice % len(SERVER_ERRORS)]
        return render_error(service, code, status, "injected server error")


@dataclass
class Rule:
    service: str = "*"
    operation: str = "*"
    throttle: float = 0.0
    error: float = 0.0
    latency_ms: int = 0
    # Substring of the caller's User-Agent ("" = any caller), e.g.
    # "aws-sdk-rust" to fault only the code under test, not the test driver.
    agent: str = ""

    def matches(self, service: str, operation: str, agent: str) -> bool:
        return (self.service in ("*", service) and self.operation in ("*", operation)
                and self.agent in agent)


class FaultInjector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._rng = random.Random(0)

    def configure(self, cfg: dict[str, Any]) -> None:
        rules = [Rule(**r) for r in cfg.get("rules", [])]
        for r in rules:
            if not (0 <= r.throttle <= 1 and 0 <= r.error <= 1 and r.throttle + r.error <= 1):
                raise ValueError(f"rates must be within 0..1 and add up to at most 1: {r}")
        with self._lock:
            self._rules = rules
            self._rng = random.Random(cfg.get("seed", 0))

    def decide(self, service: str, operation: str, agent: str = "") -> Fault | None:
        with self._lock:
            rule = next((r for r in self._rules if r.matches(service, operation, agent)), None)
            if rule is None:
                return None
            x = self._rng.random()
            choice = self._rng.randrange(1 << 16)
        kind = "throttle" if x < rule.throttle else "error" if x < rule.throttle + rule.error else None
        if kind is None and not rule.latency_ms:
            return None
        return Fault(kind=kind, latency_ms=rule.latency_ms, choice=choice)


class RateLimit:
    """AWS's own request rate limit, as a token bucket: Route 53 allows
    five requests per second per account, shared by every caller
    ("Quotas", https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/DNSLimitations.html;
    newer pages describe larger buckets per operation: the stricter figure
    is kept, so code that copes here copes there). A request beyond it is
    answered Throttling "Rate exceeded", as a real throttle is."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}
        self._at: dict[str, float] = {}

    def allow(self, key: str, per_second: float, burst: float) -> bool:
        if per_second <= 0:
            return True
        import time
        with self._lock:
            now = time.monotonic()
            tokens = min(burst, self._tokens.get(key, burst) + (now - self._at.get(key, now)) * per_second)
            self._at[key] = now
            if tokens < 1:
                self._tokens[key] = tokens
                return False
            self._tokens[key] = tokens - 1
            return True
