"""craftlb's AWS emulator: a pinned moto server plus what moto lacks.

Run: python tests/emulator/server.py [--host 127.0.0.1] [--port 0] [--port-file F]
Prints "craftlb-emulator listening on http://HOST:PORT" once ready, then
serves until SIGTERM/SIGINT.

Additions over stock moto (each marked where it is implemented):
- a request log of every AWS call (service, operation, HTTP status, fault),
- every request checked against AWS's own service model (botocore's
  service-2.json: required members, lengths, ranges, enums, patterns) and
  refused as AWS refuses it (validation.py),
- fault injection (throttling, 5xx, added latency) by rate, per service and
  operation, with a seeded RNG so failing runs can be replayed,
- EC2 fixes: launch template tags as they are now (ec2_fixes.py),
- Route 53 fixes: CallerReference idempotency, ListHealthChecks pagination,
  health-check versions, NoSuchHealthCheck on delete,
- a lifecycle loop: hooks hold instances in Pending:Wait / Terminating:Wait,
  notify their SNS target, and CompleteLifecycleAction / heartbeats /
  timeouts move them on (lifecycle.py),
- Auto Scaling: hooks given at group creation, ForceDelete, instance
  refreshes at the pace of their preferences, with rollback (asg_fixes.py),
  group notifications (EC2_INSTANCE_LAUNCH, ...) and a stand-in node
  (notifications.py),
- EC2 and Route 53 as AWS times them: instances pending before running,
  new resources not yet visible, Route 53's request rate and the addresses
  it refuses to check (ec2_fixes.py, route53_fixes.py, faults.py),
- SNS -> Lambda delivery running the function's own bootstrap through a
  local Lambda Runtime API (lambda_runner.py),
- Lambda's asynchronous states (Pending after create, LastUpdateStatus
  InProgress after an update, ResourceConflictException meanwhile), the
  configuration fields moto drops, and policy principals as AWS writes them
  (lambda_states.py).

Control API (plain HTTP, JSON), under /_craftlb/:
  GET    /_craftlb/health                  -> {"ok": true}
  GET    /_craftlb/requests                -> [{"service", "operation", "status", "fault", "ms", "agent",
                                                "params"}...] (params: the request as AWS's model reads it)
  DELETE /_craftlb/requests                -> clears the log
  PUT    /_craftlb/faults   {"seed": 1, "rules": [{"service": "route53", "operation": "*",
                             "throttle": 0.3, "error": 0.1, "latency_ms": 0, "agent": ""}]}
  DELETE /_craftlb/faults                  -> no faults
  GET    /_craftlb/route53/healthchecks    -> every health check with its tags
  GET    /_craftlb/lambda/invocations      -> every local Lambda run: status, logs, payload
  GET    /_craftlb/autoscaling/actions     -> lifecycle actions and how they ended
  GET    /_craftlb/autoscaling/hooks[?group=G] -> every lifecycle hook (all accounts and regions)
  GET    /_craftlb/autoscaling/refreshes   -> every instance refresh and how it ended
  POST   /_craftlb/autoscaling/stand-in {"group": G, "result": "CONTINUE", "after_seconds": 0}
                                            -> complete G's launching actions as a ready node would
  POST   /_craftlb/sns/confirm[?endpoint=E] -> confirm pending SNS subscriptions (the endpoint's part)
  PUT    /_craftlb/settings {"lambda_state_seconds": 1.5, "iam_propagation_seconds": 3, "validate": "enforce"}
                                            -> AWS's behaviours and delays here (settings.py); validate:
                                               requests checked against AWS's models (enforce|report|off)
  GET    /_craftlb/settings                -> them all
  GET    /_craftlb/validation              -> every request refused for breaking its operation's model
  PUT/GET /_craftlb/imds/<instance-id>/latest/...  -> IMDSv2 of that instance (imds.py)
  POST   /_craftlb/lambda/invoke/NAME      -> run function NAME (us-east-1) on the JSON body, wait, return the run
  POST   /_craftlb/lambda/settle           -> end every function's Pending / InProgress window now
  PUT    /_craftlb/ec2/console/<instance-id>  (text) -> what GetConsoleOutput answers for it
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
import uuid
from urllib.parse import parse_qs, urlparse
from typing import Any

# AWS's managed policies exist in every account (arn:aws:iam::aws:policy/...);
# moto loads them only when asked.
os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")

from werkzeug.serving import make_server  # noqa: E402
from werkzeug.wrappers import Request, Response  # noqa: E402

from moto.core import responses as moto_responses  # noqa: E402
from moto.s3 import responses as s3_responses  # noqa: E402
from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ec2_fixes  # noqa: E402, F401  (patches moto's EC2 on import)
import imds  # noqa: E402  (per-instance IMDSv2)
import lambda_runner  # noqa: E402  (runs SNS-delivered functions' bootstrap locally)
import lambda_states  # noqa: E402  (Lambda's Pending/InProgress states, config fields, policy principals)
import lifecycle  # noqa: E402  (lifecycle hooks that hold instances)
import notifications  # noqa: E402  (group notifications; the stand-in node)
import asg_fixes  # noqa: E402  (hooks at group creation, ForceDelete, instance refreshes; after lifecycle)
import route53_fixes  # noqa: E402  (patches moto's Route 53 on import)
import settings as settings_mod  # noqa: E402  (the AWS-behaviour switches)
import sns_fixes  # noqa: E402  (subscriptions pending confirmation)
from faults import FaultInjector, RateLimit, render_error  # noqa: E402
from validation import MODES, Validator, loggable  # noqa: E402


class State:
    """Everything the control API reads and writes, behind one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.faults = FaultInjector()
        self.rate = RateLimit()
        self.validator = Validator(os.environ.get("CRAFTLB_EMULATOR_VALIDATE", "enforce"),
                                   os.environ.get("CRAFTLB_EMULATOR_REFUSALS"))

    def log(self, entry: dict[str, Any]) -> None:
        # "t": when it was answered (Unix time), for tests that order what
        # AWS did against what a client saw.
        with self.lock:
            self.requests.append({**entry, "t": time.time()})


STATE = State()


def _install_call_hook() -> None:
    """Wrap moto's per-request dispatch: it is the one place where the
    service and operation name are both known, for every protocol."""
    original = moto_responses.BaseResponse.call_action

    def call_action(self: Any) -> Any:
        service = self.boto3_service_name
        try:
            operation = self._get_action()
        except Exception:  # noqa: BLE001 - unknown operation: moto answers itself
            operation = "?"
        agent = str(getattr(self, "headers", {}).get("User-Agent", "") or "")
        # Who called: "aws-sdk-rust/…" (craftlb's code) or "Boto3/…" (test drivers).
        caller = agent.split(" ", 1)[0]
        fault = STATE.faults.decide(service, operation, agent)
        if fault and fault.latency_ms:
            time.sleep(fault.latency_ms / 1000.0)
        if fault and fault.kind:
            status, headers, body = fault.response(service)
            STATE.log({"service": service, "operation": operation, "status": status, "fault": fault.kind,
                       "agent": caller})
            return status, headers, body
        # AWS's behaviours apply to craftlb's code (the Rust SDK); the
        # tests' own drivers (boto3) only look, and must not be perturbed.
        ours = caller.startswith("aws-sdk-rust")
        account = _account_of(self)
        if ours and service == "route53" and not STATE.rate.allow(
                f"route53:{account}", settings_mod.get("route53_requests_per_second"),
                settings_mod.get("route53_requests_per_second")):
            status, headers, body = render_error(service, "Throttling", 400, "Rate exceeded")
            STATE.log({"service": service, "operation": operation, "status": status, "fault": "rate-limit",
                       "agent": caller})
            return status, headers, body
        refused, params = STATE.validator.validate(service, operation, self, caller)
        shown = loggable(params) if params is not None else None
        if refused:
            code, status, message = refused
            STATE.log({"service": service, "operation": operation, "status": status, "fault": "validation",
                       "agent": caller, "code": code, "message": message, "params": shown})
            return render_error(service, code, status, message)
        hidden = ec2_fixes.not_visible_yet(params) if ours and service == "ec2" else None
        if hidden:
            code, message = hidden
            status, headers, body = render_error(service, code, 400, message)
            STATE.log({"service": service, "operation": operation, "status": status, "fault": "not-visible-yet",
                       "agent": caller, "code": code, "params": shown})
            return status, headers, body
        started = time.monotonic()
        status, headers, body = original(self)
        STATE.log({"service": service, "operation": operation, "status": int(status), "fault": None,
                   "ms": round((time.monotonic() - started) * 1000, 2), "agent": caller, "params": shown})
        return status, headers, body

    moto_responses.BaseResponse.call_action = call_action

    # S3 (REST-XML) does not go through call_action: moto dispatches on the
    # path. Log its calls under the operation names AWS uses (moto's own map
    # calls HeadObject "GetObject").
    def logged(original: Any, kind: str) -> Any:
        def handler(self: Any, request: Any, full_url: str, headers: Any) -> Any:
            operation = s3_operation(kind, request.method, full_url, request.headers)
            agent = str(request.headers.get("User-Agent", "") or "")
            fault = STATE.faults.decide("s3", operation, agent)
            if fault and fault.latency_ms:
                time.sleep(fault.latency_ms / 1000.0)
            if fault and fault.kind:
                status, hdrs, body = fault.response("s3")
                STATE.log({"service": "s3", "operation": operation, "status": status, "fault": fault.kind,
                           "agent": agent.split(" ", 1)[0]})
                return status, hdrs, body
            refused, params = STATE.validator.validate("s3", operation, _S3Request(request, full_url),
                                                       agent.split(" ", 1)[0])
            shown = loggable(params) if params is not None else None
            if refused:
                code, status, message = refused
                STATE.log({"service": "s3", "operation": operation, "status": status, "fault": "validation",
                           "agent": agent.split(" ", 1)[0], "code": code, "message": message, "params": shown})
                return render_error("s3", code, status, message)
            started = time.monotonic()
            status, hdrs, body = original(self, request, full_url, headers)
            STATE.log({"service": "s3", "operation": operation, "status": int(status), "fault": None,
                       "ms": round((time.monotonic() - started) * 1000, 2), "agent": agent.split(" ", 1)[0],
                       "params": shown})
            return status, hdrs, body
        return handler

    s3_responses.S3Response.bucket_response = logged(s3_responses.S3Response.bucket_response, "bucket")
    s3_responses.S3Response.key_response = logged(s3_responses.S3Response.key_response, "key")


class _S3Request:
    """What the validator reads of an S3 request: moto dispatches S3 on the
    path (path-style addressing, as against any endpoint URL) without the
    model's URI labels, so Bucket and Key are taken from the path here."""

    def __init__(self, request: Any, full_url: str) -> None:
        self.normalized_request = request
        parts = urlparse(full_url).path.lstrip("/").split("/", 1)
        self.uri_match = {"Bucket": parts[0]}
        if len(parts) > 1 and parts[1]:
            from urllib.parse import unquote
            self.uri_match["Key"] = unquote(parts[1])


def _account_of(response: Any) -> str:
    try:
        return str(response.current_account)
    except Exception:  # noqa: BLE001 - before moto resolved it: the default account
        return "123456789012"


_S3_SUBRESOURCES = {"tagging": "BucketTagging", "publicAccessBlock": "PublicAccessBlock"}


def s3_operation(kind: str, method: str, full_url: str, headers: Any) -> str:
    """The S3 operation a request is, by method, path kind and query."""
    query = parse_qs(urlparse(full_url).query, keep_blank_values=True)
    if kind == "key":
        if method == "PUT" and headers.get("x-amz-copy-source"):
            return "CopyObject"
        return {"HEAD": "HeadObject", "GET": "GetObject", "PUT": "PutObject",
                "DELETE": "DeleteObject"}.get(method, "?")
    for sub, name in _S3_SUBRESOURCES.items():
        if sub in query:
            return {"GET": f"Get{name}", "PUT": f"Put{name}", "DELETE": f"Delete{name}"}.get(method, "?")
    if method == "POST" and "delete" in query:
        return "DeleteObjects"
    if method == "GET":
        return "ListObjectVersions" if "versions" in query else (
            "GetBucketLocation" if "location" in query else
            "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects")
    return {"HEAD": "HeadBucket", "PUT": "CreateBucket", "DELETE": "DeleteBucket"}.get(method, "?")


class App:
    """WSGI front: the control API, else moto."""

    def __init__(self) -> None:
        self.moto = DomainDispatcherApplication(create_backend_app)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_craftlb/"):
            return self.control(Request(environ))(environ, start_response)
        return self.moto(environ, start_response)

    def control(self, req: Request) -> Response:
        def reply(obj: Any, status: int = 200) -> Response:
            return Response(json.dumps(obj), status=status, mimetype="application/json")

        route = (req.method, req.path)
        if req.path.startswith("/_craftlb/imds/"):
            status, text, headers = imds.handle(req.method, req.path[len("/_craftlb/imds/"):], req.headers)
            return Response(text, status=status, mimetype="text/plain", headers=headers)
        if route == ("GET", "/_craftlb/health"):
            return reply({"ok": True})
        if route == ("GET", "/_craftlb/requests"):
            with STATE.lock:
                return reply(list(STATE.requests))
        if route == ("DELETE", "/_craftlb/requests"):
            with STATE.lock:
                STATE.requests.clear()
            return reply({"ok": True})
        if route in (("PUT", "/_craftlb/faults"), ("POST", "/_craftlb/faults")):
            try:
                STATE.faults.configure(json.loads(req.get_data(as_text=True) or "{}"))
            except (ValueError, TypeError, KeyError) as e:
                return reply({"error": f"bad fault configuration: {e}"}, 400)
            return reply({"ok": True})
        if route == ("DELETE", "/_craftlb/faults"):
            STATE.faults.configure({})
            return reply({"ok": True})
        if route == ("GET", "/_craftlb/route53/healthchecks"):
            return reply(route53_fixes.dump_health_checks())
        if route == ("GET", "/_craftlb/lambda/invocations"):
            return reply(lambda_runner.invocations())
        if req.method == "POST" and req.path.startswith("/_craftlb/lambda/invoke/"):
            name = req.path.rsplit("/", 1)[-1]
            try:
                payload = json.loads(req.get_data(as_text=True) or "{}")
            except ValueError as e:
                return reply({"error": f"payload is not JSON: {e}"}, 400)
            return reply(lambda_runner.invoke_sync("123456789012", "us-east-1", name, payload))
        if req.method == "PUT" and req.path.startswith("/_craftlb/ec2/console/"):
            ec2_fixes.set_console(req.path.rsplit("/", 1)[-1], req.get_data(as_text=True))
            return reply({"ok": True})
        if route == ("POST", "/_craftlb/lambda/settle"):
            return reply({"settled": lambda_states.settle()})
        if route == ("GET", "/_craftlb/autoscaling/actions"):
            return reply(lifecycle.actions())
        if route == ("PUT", "/_craftlb/settings"):
            try:
                settings = json.loads(req.get_data(as_text=True) or "{}")
                mode = settings.pop("validate", None)
                if mode is not None and mode not in (True, False, *MODES):
                    raise ValueError(f"validate must be one of {', '.join(MODES)} or a bool, not {mode!r}")
                answer: dict[str, Any] = settings_mod.configure(settings)
                if mode is not None:
                    STATE.validator.configure(mode)
                answer["validate"] = STATE.validator.mode
                return reply(answer)
            except (ValueError, TypeError, AttributeError) as e:
                return reply({"error": str(e)}, 400)
        if route == ("GET", "/_craftlb/settings"):
            return reply({**settings_mod.snapshot(), "validate": STATE.validator.mode})
        if route == ("GET", "/_craftlb/validation"):
            return reply(STATE.validator.refusals())
        if route == ("POST", "/_craftlb/sns/confirm"):
            return reply(sns_fixes.confirm(req.args.get("endpoint")))
        if route == ("GET", "/_craftlb/autoscaling/hooks"):
            return reply(lifecycle.hooks(req.args.get("group")))
        if route == ("POST", "/_craftlb/autoscaling/stand-in"):
            try:
                body = json.loads(req.get_data(as_text=True) or "{}")
                answer = notifications.stand_in(body["group"], body.get("result", "CONTINUE"),
                                                body.get("after_seconds", 0))
                lifecycle.stand_in_now(body["group"])
                return reply(answer)
            except (ValueError, TypeError, KeyError) as e:
                return reply({"error": f"bad stand-in request: {e}"}, 400)
        if route == ("GET", "/_craftlb/autoscaling/refreshes"):
            return reply(asg_fixes.refreshes())
        return reply({"error": f"no such control endpoint: {req.method} {req.path}"}, 404)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="write the chosen port here once listening")
    args = ap.parse_args()

    # moto reads these at request time; fixed dummy values, never real keys.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "false")

    _install_call_hook()
    server = make_server(args.host, args.port, App(), threaded=True, request_handler=MotoRequestHandler)
    host, port = server.server_address[:2]
    lambda_runner.configure(f"http://{host}:{port}")

    def stop(_sig: int, _frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.port_file:
        tmp = f"{args.port_file}.{uuid.uuid4().hex}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(str(port))
        os.replace(tmp, args.port_file)
    print(f"craftlb-emulator listening on http://{host}:{port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    random.seed()
    sys.exit(main())
