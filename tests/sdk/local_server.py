"""A real HTTP server for the SDK's tests: a threaded `http.server` on 127.0.0.1 (ephemeral port).

It answers from a table of handlers and records every request and the most requests it had in
flight at once, so concurrency is measured on the wire rather than by mocking the client.
(Not a conftest.py: tests/e2e import the top-level `conftest` by name, and a second one would
shadow it.)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# handler(body) -> (status, JSON body, bytes sent as they are, or None[, extra headers])
Handler = Callable[[Any], tuple[Any, ...]]


@dataclass
class LocalServer:
    url: str
    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    delay: float = 0.0  # seconds each request is held, so that concurrent ones overlap
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    max_in_flight: int = 0
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _enter(self, method: str, path: str, body: Any) -> None:
        with self._lock:
            self.requests.append((method, path, body))
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1


def _handler_class(server: LocalServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            server._enter(self.command, self.path, body)
            try:
                time.sleep(server.delay)
                route = server.routes.get((self.command, self.path))
                if route is None:
                    status, answer = 404, {"error": {"type": "not_found", "message": self.path}}
                    headers = {}
                else:
                    status, answer, *more = route(body)
                    headers = more[0] if more else {}
            finally:
                server._leave()
            if isinstance(answer, bytes):
                data, kind = answer, "text/html"
            else:
                kind = "application/json"
                data = b"" if answer is None else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    return Handler


@contextmanager
def running_server() -> Iterator[LocalServer]:
    """A `LocalServer` listening until the block ends; callers fill in `routes` and `delay`."""
    state = LocalServer(url="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(state))
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    # a short poll interval, so that shutdown() returns at once
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
