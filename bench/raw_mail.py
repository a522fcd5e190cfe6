"""The pipeline benchmark's e-mail baseline: a thank-you e-mail per purchase, done raw.

The pipeline's baseline (a ledger entry and a ``$inc`` per purchase) is what profiles
and analytics do; notifications does that kind of work too and, on top, builds and sends
an e-mail through an SMTP server. This consumer does the least a hand-written sender
would for the same purchases, on the same broker, store and SMTP sink, so the figure
says what an e-mail costs here before any of Rapport's rules, preferences, templates,
quiet hours, retries, inbox or events:

It runs as a process of its own (``python -m bench.raw_mail ...``, until SIGTERM), as the
services do, so the benchmark's SMTP sink does not share its interpreter. Per poll it
does this: decode each CloudEvent; read the customers' addresses with one ``$in`` (the
notifications service's directory, which the benchmark's setup filled); build each
thank-you as a plain-text ``MIMEText``; send them over ``CONNECTIONS`` kept aiosmtplib
connections at once; then, in one transaction, ``insert_many`` the idempotency markers and
the sent records; then commit the offsets.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from email.mime.text import MIMEText
from email.utils import formatdate
from typing import Any

import aiosmtplib

from bench.raw import RawLoop
from services.notifications.deliveries_domain import delivery_id
from services.notifications.domain import Channel
from services.notifications.planning import purchase_subject
from services.notifications.rules import PURCHASE_THANK_YOU
from shared.events.envelope import decode
from shared.events.purchases import PurchaseCompleted
from shared.mongo import (
    Database,
    MongoClient,
    Session,
    create_client,
    find_in,
    in_transaction,
)

MAIL_BASELINE = "mail-baseline"  # its name in the benchmark's lines, group and database
CONNECTIONS = 16  # as many as the notifications dispatcher sends at once
SENDER = "shop@example.com"


class RawMailer(RawLoop):
    """A plain aiokafka consumer that e-mails a thank-you for each purchase."""

    collections = ("mail_markers", "mail_sent")

    def __init__(
        self,
        bootstrap: list[str],
        topic: str,
        group: str,
        client: MongoClient,
        db: Database,
        directory: Database,
        smtp: tuple[str, int],
    ) -> None:
        super().__init__(bootstrap, topic, group, client, db, client_id="bench-mail-baseline")
        self.customers = directory["customers"]
        self.smtp = smtp
        self.connections: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()

    async def start(self) -> None:
        host, port = self.smtp
        for _ in range(CONNECTIONS):
            connection = aiosmtplib.SMTP(hostname=host, port=port, start_tls=False)
            await connection.connect()
            self.connections.put_nowait(connection)
        await super().start()

    async def apply(self, records: Sequence[Any]) -> None:
        now = datetime.now(UTC)
        events = [decode(record.value, record.headers) for record in records]
        purchases = [event.payload for event in events]
        assert all(isinstance(bought, PurchaseCompleted) for bought in purchases)
        keys = {bought.customer_key() for bought in purchases}
        found = await find_in(self.customers, "_id", keys, projection=["emails", "given_name"])
        directory = {document["_id"]: document for document in found}
        sent = await asyncio.gather(
            *(self.send(bought, directory.get(bought.customer_key())) for bought in purchases)
        )
        markers = [{"_id": event.id, "processed_at": now} for event in events]
        outcomes = [{"_id": mail, "sent_at": now} for mail in sent if mail is not None]

        async def work(session: Session) -> None:
            await self.db["mail_markers"].insert_many(markers, session=session)
            if outcomes:
                await self.db["mail_sent"].insert_many(outcomes, session=session)

        await in_transaction(self.client, work)

    async def send(self, bought: Any, customer: dict[str, Any] | None) -> str | None:
        """The thank-you for ``bought``, sent; its delivery id (None: no address)."""
        if customer is None or not customer.get("emails"):
            return None
        mail = delivery_id(purchase_subject(bought.purchase_id), PURCHASE_THANK_YOU, Channel.EMAIL)
        address = customer["emails"][0]
        body = (
            f"Dear {customer.get('given_name') or 'customer'},\n\n"
            f"thank you for your purchase {bought.purchase_id}:"
            f" {bought.total_amount} {bought.currency}.\n"
        )
        message = MIMEText(body, "plain", "utf-8")
        message["From"] = SENDER
        message["To"] = address
        message["Subject"] = "Thank you for your purchase"
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = f"<{mail}@example.com>"
        message["X-Rapport-Delivery-Id"] = mail
        connection = await self.connections.get()
        try:
            await connection.sendmail(SENDER, [address], message.as_bytes())
        finally:
            self.connections.put_nowait(connection)
        return mail

    async def stop(self) -> None:
        await super().stop()
        while not self.connections.empty():
            connection = self.connections.get_nowait()
            try:
                await connection.quit()
            except aiosmtplib.SMTPException:
                connection.close()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--mongodb-uri", required=True)
    parser.add_argument("--topic", required=True, help="where the purchases are")
    parser.add_argument("--group", required=True, help="consumer group")
    parser.add_argument("--database", required=True, help="for the markers and sent records")
    parser.add_argument("--directory", required=True, help="database with the customers")
    parser.add_argument("--smtp-host", default="127.0.0.1")
    parser.add_argument("--smtp-port", type=int, required=True)
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> int:
    """Send until SIGTERM (0) or a failure (1, said on stderr)."""
    client = create_client(args.mongodb_uri, app_name="rapport-bench-mail-baseline")
    mailer = RawMailer(
        [server.strip() for server in args.bootstrap.split(",")],
        args.topic,
        args.group,
        client,
        client[args.database],
        client[args.directory],
        (args.smtp_host, args.smtp_port),
    )
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    try:
        await mailer.start()
        assert mailer.task is not None
        await asyncio.wait(
            [mailer.task, asyncio.create_task(stopping.wait())],
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        await mailer.stop()
        await client.close()
    if mailer.failure is not None:
        print(mailer.failure, file=sys.stderr, flush=True)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(asyncio.run(serve(parse_args(argv))))


if __name__ == "__main__":
    main()
