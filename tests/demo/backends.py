"""Demo backends: small HTTP and HTTPS servers that answer with their name.

`make demo` routes real requests through the launched nodes' haproxy to
these. Each spec is NAME=ADDRESS:PORT[:tls]; a TLS backend terminates TLS
itself (the load balancer passes TLS through, routed by SNI) with a
self-signed certificate made at start. Runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def handler(name: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = f"backend {name} answered {self.headers.get('Host', '')}{self.path}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    return Handler


def certificate(directory: Path) -> ssl.SSLContext:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=craftlb-demo-backend", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec", nargs="+", help="NAME=ADDRESS:PORT[:tls]")
    args = ap.parse_args()
    servers = []
    with tempfile.TemporaryDirectory() as tmp:
        tls = None
        for spec in args.spec:
            name, _, where = spec.partition("=")
            parts = where.split(":")
            server = ThreadingHTTPServer((parts[0], int(parts[1])), handler(name))
            if len(parts) > 2 and parts[2] == "tls":
                tls = tls or certificate(Path(tmp))
                server.socket = tls.wrap_socket(server.socket, server_side=True)
            servers.append(server)
            threading.Thread(target=server.serve_forever, daemon=True).start()
        print("ready", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        stop.wait()
        for s in servers:
            s.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
