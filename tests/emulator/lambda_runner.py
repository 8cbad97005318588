"""Runs a function's own `bootstrap` (provided.al2023) for SNS deliveries.

moto invokes Lambda functions through docker, which these machines lack.
Here, each invocation extracts the function's uploaded zip, starts a local
Lambda Runtime API (next / response / error) on a free loopback port, and
runs `bootstrap` as its own process with the environment Lambda sets — one
process per concurrent invocation, as AWS does. The function talks back to
the emulator through AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tempfile
import threading
import time
import uuid
import zipfile
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from moto.awslambda import models as lambda_models

_LOCK = threading.Lock()
_INVOCATIONS: list[dict[str, Any]] = []
_CODE_DIR = tempfile.mkdtemp(prefix="craftlb-lambda-code-")
_CONFIG: dict[str, str] = {"endpoint_url": ""}


def configure(endpoint_url: str) -> None:
    _CONFIG["endpoint_url"] = endpoint_url


def invocations() -> list[dict[str, Any]]:
    with _LOCK:
        return [dict(i) for i in _INVOCATIONS]


def _code_path(code: bytes) -> str:
    digest = hashlib.sha256(code).hexdigest()
    path = os.path.join(_CODE_DIR, digest)
    with _LOCK:
        if not os.path.isdir(path):
            tmp = f"{path}.{uuid.uuid4().hex}"
            with zipfile.ZipFile(io.BytesIO(code)) as zf:
                zf.extractall(tmp)
            bootstrap = os.path.join(tmp, "bootstrap")
            if os.path.exists(bootstrap):
                os.chmod(bootstrap, 0o755)
            os.replace(tmp, path)
    return path


def _peak_rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class _RuntimeApi:
    """One invocation's Runtime API: hands out the event once, then waits."""

    def __init__(self, request_id: str, payload: bytes, function_arn: str, deadline_ms: int) -> None:
        self.request_id = request_id
        self.payload = payload
        self.function_arn = function_arn
        self.deadline_ms = deadline_ms
        self.delivered = False
        self.first_next: float | None = None
        self.done = threading.Event()
        self.result: dict[str, Any] = {}
        self.server = make_server("127.0.0.1", 0, self, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        req = Request(environ)
        path = req.path
        base = "/2018-06-01/runtime"
        if req.method == "GET" and path == f"{base}/invocation/next":
            if self.delivered:
                # A real environment would be frozen here; we just wait to be killed.
                self.done.wait(timeout=60)
                return Response("shutting down", status=500)(environ, start_response)
            self.delivered = True
            self.first_next = time.monotonic()
            headers = {
                "Lambda-Runtime-Aws-Request-Id": self.request_id,
                "Lambda-Runtime-Deadline-Ms": str(self.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": self.function_arn,
                "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]};Sampled=0",
            }
            return Response(self.payload, status=200, headers=headers, mimetype="application/json")(environ, start_response)
        if req.method == "POST" and path == f"{base}/invocation/{self.request_id}/response":
            self.result = {"status": "ok", "response": req.get_data(as_text=True)}
            self.done.set()
            return Response('{"status":"OK"}', status=202)(environ, start_response)
        if req.method == "POST" and path == f"{base}/invocation/{self.request_id}/error":
            self.result = {"status": "error", "response": req.get_data(as_text=True)}
            self.done.set()
            return Response('{"status":"OK"}', status=202)(environ, start_response)
        if req.method == "POST" and path == f"{base}/init/error":
            self.result = {"status": "init_error", "response": req.get_data(as_text=True)}
            self.done.set()
            return Response('{"status":"OK"}', status=202)(environ, start_response)
        return Response("not found", status=404)(environ, start_response)

    def close(self) -> None:
        self.done.set()
        self.server.shutdown()


def invoke_sync(account_id: str, region: str, function_name: str, payload: Any) -> dict[str, Any]:
    """Runs one invocation to the end (the emulator's direct-invoke path)."""
    from moto.awslambda.utils import get_backend

    fn = get_backend(account_id, region).get_function(function_name)
    return _invoke(fn, payload)


def _invoke(fn: Any, payload: Any) -> dict[str, Any]:
    request_id = str(uuid.uuid4())
    timeout = int(getattr(fn, "timeout", 3) or 3)
    started = time.monotonic()
    record: dict[str, Any] = {"function": fn.function_name, "request_id": request_id, "status": "running",
                              "logs": [], "payload": payload}
    with _LOCK:
        _INVOCATIONS.append(record)
    code_dir = _code_path(fn.code_bytes)
    api = _RuntimeApi(request_id, json.dumps(payload).encode(), fn.function_arn,
                      int(time.time() * 1000) + timeout * 1000)
    env = {
        "PATH": "/usr/bin:/bin",
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(getattr(fn, "memory_size", 128) or 128),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": request_id,
        "AWS_REGION": fn.region,
        "AWS_DEFAULT_REGION": fn.region,
        "AWS_EXECUTION_ENV": "AWS_Lambda_provided.al2023",
        "_HANDLER": getattr(fn, "handler", "bootstrap") or "bootstrap",
        "LAMBDA_TASK_ROOT": code_dir,
        # Fixed dummy credentials, as the emulator uses everywhere.
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_ENDPOINT_URL": _CONFIG["endpoint_url"],
    }
    env.update(getattr(fn, "environment_vars", None) or {})
    spawned = time.monotonic()
    # make dist runs arm64 builds through qemu-user (CRAFTLB_LAMBDA_EXEC_PREFIX).
    prefix = os.environ.get("CRAFTLB_LAMBDA_EXEC_PREFIX", "").split()
    proc = subprocess.Popen([*prefix, os.path.join(code_dir, "bootstrap")], cwd=code_dir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finished = api.done.wait(timeout=timeout)
    max_rss_kb = _peak_rss_kb(proc.pid)
    proc.kill()
    out, err = proc.communicate(timeout=10)
    api.close()
    with _LOCK:
        record.update(api.result if finished else {"status": "timeout"})
        record["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
        # Process start to its first /next: the runtime's cold init.
        record["init_ms"] = round((api.first_next - spawned) * 1000, 1) if api.first_next else None
        record["max_rss_kb"] = max_rss_kb
        record["logs"] = [line for line in out.splitlines() if line.strip()]
        record["stderr"] = err[-4000:]
        return dict(record)


def send_sns_message(self: Any, function_name: str, message: str, subject: str | None = None,
                     qualifier: str | None = None, topic_arn: str = "") -> None:
    # AWS delivers SNS to Lambda asynchronously, in the shape below; moto runs
    # it synchronously through docker.
    fn = self.get_function(function_name, qualifier)
    payload = {"Records": [{
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": f"{topic_arn or 'arn:aws:sns:' + fn.region + ':' + fn.account_id + ':topic'}:{uuid.uuid4()}",
        "Sns": {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": topic_arn or f"arn:aws:sns:{fn.region}:{fn.account_id}:topic",
            "Subject": subject,
            "Message": message,
            "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
            "SigningCertUrl": "https://sns.example.invalid/cert.pem",
            "UnsubscribeUrl": "https://sns.example.invalid/unsubscribe",
            "MessageAttributes": {},
        },
    }]}
    threading.Thread(target=_invoke_async, args=(fn, payload), daemon=True).start()


# AWS retries a failed asynchronous invocation twice, about 1 and 2 minutes
# later; here 1 and 2 seconds, so tests stay short.
ASYNC_RETRY_DELAYS = (1.0, 2.0)


def _invoke_async(fn: Any, payload: Any) -> None:
    for delay in (0.0, *ASYNC_RETRY_DELAYS):
        time.sleep(delay)
        if _invoke(fn, payload).get("status") == "ok":
            return


lambda_models.LambdaBackend.send_sns_message = send_sns_message
