"""Bad input never gets a 500: schemathesis fuzzes every endpoint of each service (see
tests.fuzzing) against the real broker and store."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.mongo import Database
from shared.topics import TopicNames
from tests.fuzzing import assert_no_server_errors


@pytest.mark.parametrize(
    ("service", "max_examples"),
    [("profiles", 15), ("complaints", 10), ("notifications", 10), ("analytics", 10)],
)
def test_no_request_makes_the_service_fail(
    service: str,
    max_examples: int,
    kafka_bootstrap: str,
    mongodb_uri: str,
    topics: TopicNames,
    db: Database,
    tmp_path: Path,
) -> None:
    assert_no_server_errors(
        service,
        kafka_bootstrap=kafka_bootstrap,
        mongodb_uri=mongodb_uri,
        topic_prefix=topics.prefix,
        database=db.name,
        workdir=tmp_path,
        max_examples=max_examples,
    )
