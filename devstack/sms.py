"""An SMS provider sink: accepts what the notifications service sends and keeps it.

It speaks the provider API ``SmsSender`` uses: ``POST /messages`` with JSON
``{to, text, idempotency_key, sender}`` and ``Authorization: Bearer <key>`` (checked only
when the sink is given a key). A repeated idempotency key is answered like the first
and not stored twice. ``fail_next(status)`` makes the next answers fail, for tests of
retries. Run standalone with ``python -m devstack.sms --port 1026``.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from devstack.received import Received

MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class SmsMessage:
    to: str
    text: str
    idempotency_key: str
    sender: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class SmsSink:
    """An HTTP server on ``host:port`` (0: a free port) that stores every SMS it gets."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1026, api_key: str | None = None):
        self.host = host
        self.port = port
        self.api_key = api_key
        self._received: Received[SmsMessage] = Received("SMS")
        self._keys: set[str] = set()
        self._failures: list[int] = []
        self._lock = self._received.lock
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/messages"

    def start(self) -> None:
        if self._server is not None:
            return
        self._server = ThreadingHTTPServer((self.host, self.port), _handler_for(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SmsSink:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def messages(self) -> list[SmsMessage]:
        return self._received.snapshot()

    def clear(self) -> None:
        with self._lock:
            self._received.clear()
            self._keys.clear()
            self._failures.clear()

    def fail_next(self, status: int, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``status`` (and store nothing)."""
        with self._lock:
            self._failures.extend([status] * times)

    def wait_for(
        self, predicate: Callable[[SmsMessage], bool], timeout: float = 10.0
    ) -> SmsMessage:
        """The first message matching ``predicate``, waiting up to ``timeout`` s."""
        return self._received.wait_for(predicate, timeout)

    def _receive(self, payload: Any, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if self._failures:
                return self._failures.pop(0), {"error": "failure requested by the test"}
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {"error": "bad API key"}
        if not isinstance(payload, dict):
            return 400, {"error": "send a JSON object"}
        to, text, key = payload.get("to"), payload.get("text"), payload.get("idempotency_key")
        if not isinstance(to, str) or not isinstance(text, str) or not isinstance(key, str):
            return 422, {"error": "to, text and idempotency_key are strings"}
        sender = payload.get("sender")
        with self._lock:
            if key in self._keys:
                return 200, {"id": key, "status": "duplicate"}
            self._keys.add(key)
            self._received.append(
                SmsMessage(to, text, key, sender if isinstance(sender, str) else None, headers)
            )
        return 202, {"id": key, "status": "accepted"}


def _handler_for(sink: SmsSink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if self.path.rstrip("/") != "/messages":
                self._answer(404, {"error": "POST /messages"})
                return
            if length > MAX_BODY:
                self._answer(413, {"error": "too large"})
                return
            try:
                payload = json.loads(self.rfile.read(length) or b"null")
            except ValueError:
                self._answer(400, {"error": "not JSON"})
                return
            headers = {name.lower(): value for name, value in self.headers.items()}
            status, answer = sink._receive(payload, headers)
            self._answer(status, answer)

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the Rapport SMS provider sink.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1026)
    parser.add_argument("--api-key", help="require Authorization: Bearer <key>")
    args = parser.parse_args(argv)
    sink = SmsSink(args.host, args.port, args.api_key)
    sink.start()
    print(f"SMS sink listening on {sink.url}; Ctrl-C to stop", flush=True)
    seen = 0
    try:
        while True:
            time.sleep(0.5)
            received = sink.messages
            for message in received[seen:]:
                print(f"SMS to {message.to}: {message.text}", flush=True)
            seen = len(received)
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()


if __name__ == "__main__":
    main()
