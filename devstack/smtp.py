"""An SMTP sink: accepts every message and keeps it for inspection.

Messages are kept in memory (for tests) and, when a folder is given, written as
``.eml`` files (for ``make up``, so a developer can open the mails the
notifications service sent). Run standalone with ``python -m devstack.smtp``.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import itertools
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from devstack.received import Received


class ReceivedMessage(EmailMessage):
    """A received mail, plus the SMTP envelope it came with."""

    envelope_from: str = ""
    envelope_to: tuple[str, ...] = ()

    def text(self) -> str:
        """The plain-text body (or the HTML one when there is no plain part)."""
        part = self.get_body(preferencelist=("plain", "html"))
        if part is None:
            return ""
        content: str = part.get_content()
        return content


class _Handler:
    """aiosmtpd handler; runs on the controller's event-loop thread."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd hook name
        raw: bytes = envelope.original_content or envelope.content
        self._sink._deliver(envelope.mail_from or "", tuple(envelope.rcpt_tos), raw)
        return "250 Message accepted for delivery"


class SmtpSink:
    """An SMTP server on ``host:port`` that stores everything it receives."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 1025, folder: Path | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.folder = folder
        self._received: Received[ReceivedMessage] = Received("mail")
        self._counter = itertools.count(1)
        self._controller: Controller | None = None

    def start(self) -> None:
        if self._controller is not None:
            return
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        # The default 8-bit-clean mode keeps the raw bytes, which we parse
        # ourselves with the modern email policy.
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def messages(self) -> list[ReceivedMessage]:
        """A snapshot of the messages received so far, oldest first."""
        return self._received.snapshot()

    def clear(self) -> None:
        """Forget the messages received so far (files on disk are kept)."""
        self._received.clear()

    def wait_for(
        self, predicate: Callable[[ReceivedMessage], bool], timeout: float = 10.0
    ) -> ReceivedMessage:
        """Return the first message matching ``predicate``, waiting up to ``timeout`` s."""
        return self._received.wait_for(predicate, timeout)

    def _deliver(self, mail_from: str, rcpt_tos: tuple[str, ...], raw: bytes) -> None:
        message = email.message_from_bytes(raw, _class=ReceivedMessage, policy=email.policy.default)
        assert isinstance(message, ReceivedMessage)  # guaranteed by _class; narrows for mypy
        message.envelope_from = mail_from
        message.envelope_to = rcpt_tos
        if self.folder is not None:
            self._write_eml(mail_from, rcpt_tos, raw)
        self._received.append(message)

    def _write_eml(self, mail_from: str, rcpt_tos: tuple[str, ...], raw: bytes) -> None:
        assert self.folder is not None
        # The envelope is not part of the message itself; keep it as headers so
        # a mail client shows who it was really delivered to.
        envelope = f"X-Envelope-From: {mail_from}\r\nX-Envelope-To: {', '.join(rcpt_tos)}\r\n"
        stamp = time.strftime("%Y%m%dT%H%M%S")
        name = f"{stamp}-{next(self._counter):05d}.eml"
        partial = self.folder / f".{name}.part"
        partial.write_bytes(envelope.encode() + raw)
        partial.rename(self.folder / name)  # readers never see half a file


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the Rapport SMTP sink.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--folder", type=Path, help="also store each mail as an .eml file here")
    args = parser.parse_args(argv)
    sink = SmtpSink(args.host, args.port, args.folder)
    sink.start()
    print(f"SMTP sink listening on {args.host}:{args.port}; Ctrl-C to stop", flush=True)
    seen = 0
    try:
        while True:
            time.sleep(0.5)
            received = sink.messages
            for message in received[seen:]:
                to = ", ".join(message.envelope_to)
                subject = message["Subject"]
                print(f"mail from {message.envelope_from} to {to}: {subject}", flush=True)
            seen = len(received)
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()


if __name__ == "__main__":
    main()
