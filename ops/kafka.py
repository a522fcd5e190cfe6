"""What the operations commands ask the broker: partitions, end offsets, a group's offsets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment


async def partitions_of(bootstrap: list[str], topics: Sequence[str]) -> dict[str, list[int]]:
    """Each existing topic's partition numbers (a missing topic is left out)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="rapport-cli")
    await admin.start()
    try:
        # Only topics that exist: describing a missing one may auto-create it.
        existing = set(await admin.list_topics()) & set(topics)
        described: list[dict[str, Any]] = (
            await admin.describe_topics(sorted(existing)) if existing else []
        )
    finally:
        await admin.close()
    return {
        found["topic"]: sorted(p["partition"] for p in found["partitions"])
        for found in described
        if found.get("error_code", 0) == 0 and found["partitions"]
    }


async def group_lag(
    bootstrap: list[str], group: str, topics: Sequence[str]
) -> dict[str, int] | None:
    """Records of ``topics`` the consumer group has not committed yet, per topic (a
    partition with no committed offset counts from its beginning); None if the group has
    never committed anything."""
    lag, ever = await uncommitted(bootstrap, group, topics)
    return lag if ever else None


async def uncommitted(
    bootstrap: list[str], group: str, topics: Sequence[str]
) -> tuple[dict[str, int], bool]:
    """Records of ``topics`` the group has not committed, per topic (a partition with no
    committed offset counts from its beginning), and whether it ever committed any."""
    partitions = [
        TopicPartition(topic, number)
        for topic, numbers in (await partitions_of(bootstrap, topics)).items()
        for number in numbers
    ]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="rapport-cli")
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
    finally:
        await admin.close()
    known = {tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}
    consumer: Any = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id="rapport-cli")
    await consumer.start()
    try:
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    lag: dict[str, int] = dict.fromkeys(sorted({tp.topic for tp in partitions}), 0)
    for tp in partitions:
        lag[tp.topic] += max(0, ends[tp] - known.get(tp, starts[tp]))
    return lag, bool(known)


async def group_members(bootstrap: list[str], group: str) -> dict[str, set[tuple[str, int]]]:
    """The broker's view of a consumer group: each member (``client_id/member_id``) and
    the partitions it was assigned; empty when the group has no member."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="rapport-cli")
    await admin.start()
    try:
        responses = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    members: dict[str, set[tuple[str, int]]] = {}
    for response in responses:
        for _error, _group, _state, _type, _protocol, group_members_, *_ in response.groups:
            for member_id, client_id, _host, _metadata, assignment in group_members_:
                owned: set[tuple[str, int]] = set()
                if assignment:
                    decoded = ConsumerProtocolMemberAssignment.decode(assignment)
                    for topic, partitions in decoded.assignment:
                        owned.update((topic, partition) for partition in partitions)
                members[f"{client_id}/{member_id}"] = owned
    return members
