"""The ARM fake's HTTP side: a threaded server on 127.0.0.1 that hands every request to one ``handle(method, target,
body)`` and writes its answer back as Azure does (JSON, an ``x-ms-request-id``, keep-alive)."""

from __future__ import annotations

import json
import sys
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.arm_state import Answer

Handle = Callable[[str, str, bytes], Answer]  # (method, path with query, raw body) → answer


class _Server(ThreadingHTTPServer):
    """The fake's HTTP server: a client killed mid-request (the SIGKILL tests) is not an error of the fake's."""

    daemon_threads = True

    def __init__(self, handle: Handle) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer = handle

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's requests session expects
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall per request
    server: _Server

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        status, headers, body = self.server.answer(self.command, self.path, raw)
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet: the fake's ``requests`` list is the log."""


def serve(handle: Handle) -> ThreadingHTTPServer:
    """Binds 127.0.0.1 on a free port and serves ``handle`` in a daemon thread until ``shutdown()``."""
    server = _Server(handle)
    threading.Thread(target=server.serve_forever, args=(0.05,), name="arm-fake", daemon=True).start()
    return server
