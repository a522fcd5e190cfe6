"""The contract's topics, their partition counts, and an idempotent creator.

``rapport topics create`` (``ops.cli``) creates every topic of the contract (and its
``.dlq``) under the configured prefix with :func:`ensure_topics`; topics that already
exist are left alone, so it is safe to run on every start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

log = logging.getLogger(__name__)

CUSTOMERS = "crm.customers"
PURCHASES = "crm.purchases"
COMPLAINTS = "crm.complaints"
NOTIFICATIONS = "crm.notifications"
INSIGHTS = "crm.insights"
DLQ_SUFFIX = ".dlq"

# Partitions bound consumer parallelism per service; keys are customer ids, so a
# customer's events stay ordered in one partition whatever the count.
CONTRACT_PARTITIONS: dict[str, int] = {
    CUSTOMERS: 6,
    PURCHASES: 6,
    COMPLAINTS: 6,
    NOTIFICATIONS: 6,
    INSIGHTS: 6,
}
DLQ_PARTITIONS = 3


@dataclass(frozen=True)
class TopicNames:
    """Resolves contract topic names under a deployment's prefix (e.g. ``staging.``)."""

    prefix: str = ""

    def __call__(self, contract_topic: str) -> str:
        return f"{self.prefix}{contract_topic}"

    def dlq(self, topic: str) -> str:
        """The dead-letter topic of an already prefixed topic."""
        return f"{topic}{DLQ_SUFFIX}"

    def all(self) -> dict[str, int]:
        """Every topic of the contract, with its dead-letter topic, and partition counts."""
        topics: dict[str, int] = {}
        for contract_topic, partitions in CONTRACT_PARTITIONS.items():
            name = self(contract_topic)
            topics[name] = partitions
            topics[self.dlq(name)] = DLQ_PARTITIONS
        return topics


async def ensure_topics(
    bootstrap_servers: list[str], names: TopicNames, replication_factor: int = 1
) -> list[str]:
    """Create the contract's topics that do not exist yet; returns the ones created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="rapport-topics")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = names.all()
        missing = [
            NewTopic(name, partitions, replication_factor)
            for name, partitions in wanted.items()
            if name not in existing
        ]
        if not missing:
            return []
        response = await admin.create_topics(missing, timeout_ms=30_000)
        created: list[str] = []
        for name, error_code, *_ in response.topic_errors:
            error = for_code(error_code)
            if error_code == 0:
                created.append(name)
            elif error is not TopicAlreadyExistsError:  # a concurrent creator won: fine
                raise error(f"cannot create topic {name}")
        return created
    finally:
        await admin.close()
