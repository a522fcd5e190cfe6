"""Bad input never gets a 500: schemathesis fuzzes every analytics endpoint (see tests.fuzzing)."""

from __future__ import annotations

from pathlib import Path

from shared.mongo import Database
from shared.topics import TopicNames
from tests.fuzzing import assert_no_server_errors


def test_no_request_makes_the_analytics_service_fail(
    kafka_bootstrap: str, mongodb_uri: str, topics: TopicNames, db: Database, tmp_path: Path
) -> None:
    assert_no_server_errors(
        "analytics",
        kafka_bootstrap=kafka_bootstrap,
        mongodb_uri=mongodb_uri,
        topic_prefix=topics.prefix,
        database=db.name,
        workdir=tmp_path,
        max_examples=10,
    )
