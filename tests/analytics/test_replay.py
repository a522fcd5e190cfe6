"""Replay: rebuilding every projection from the beginning of the topics, with a fresh
consumer group and a fresh database, reaches exactly the live run's figures."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from typing import Any

from services.analytics import queries
from services.analytics.handlers.recompute import recompute
from services.analytics.replay import differences, live_figures, replay
from services.analytics.settings import AnalyticsSettings
from shared.events.customers import CustomerErased, CustomerMerged
from shared.events.envelope import KafkaRecord
from shared.mongo import MongoClient
from shared.topics import PURCHASES
from tests.analytics.conftest import NOW, Api, ago, opened, purchase, refunded
from tests.analytics.test_insights import population
from tests.analytics.test_kpis import known_events


def normalised(figures: Any) -> Any:
    return json.loads(json.dumps(figures, default=str, sort_keys=True))


async def test_replay_into_a_fresh_database_equals_the_live_figures(
    api: Api, analytics_settings: AnalyticsSettings, mongo_client: MongoClient
) -> None:
    await api.feed(
        *known_events(),
        *population(),
        purchase("c-risk", "o1", ago(days=40)),
        purchase("c-risk", "o2", ago(days=30)),
        purchase("c-risk", "o3", ago(days=20)),
        opened("c-risk", "k9", ago(days=19)),
        refunded("c-ana", "k8", "p1", "5.00", ago(hours=1)),
        CustomerMerged(customer_id="c-a", source_customer_id="c-b", merged_at=ago(hours=1)),
        CustomerErased(customer_id="c-e", erased_at=ago(hours=1)),
    )
    broken = KafkaRecord(key=b"c-x", value=b"{not json", headers=[])
    await api.send_records([(api.topics(PURCHASES), broken)])
    await recompute(api.analytics, NOW)
    live = await queries.snapshot(api.analytics, NOW)
    live_api = {
        "segments": await api.get("/segments"),
        "churn": await api.get("/churn-risks"),
        "kpis": await api.get("/kpis", window="30d"),
    }

    database = f"{analytics_settings.mongodb_database}_replay_{uuid.uuid4().hex[:6]}"
    try:
        result = await replay(analytics_settings, database=database, now=NOW)
        assert result.outcomes["dead_lettered"] == 1  # counted, not dead-lettered again
        assert result.outcomes["processed"] == await api.applied()
        assert differences(normalised(live), normalised(result.figures)) == []
        assert normalised(live) == normalised(result.figures)
        # The figures are not trivially empty: the merge and the erasure are in them.
        assert live["customers"]["c-a"]["summary"]["purchases"] == 9  # 6 own + 3 of c-b
        assert "c-b" not in live["customers"]
        assert "c-e" not in live["customers"]
        assert live["kpis"]["24h"]["purchases"] == 4
        assert live["customers"]["c-risk"]["churn_level"] == "high"
        assert live["customers"]["c-ana"]["summary"]["refunds"] == {"EUR": "35.10"}
        # The replayed database answers the API exactly as the live one does.
        api.analytics.store = type(api.analytics.store)(mongo_client[database])
        replayed_api = {
            "segments": await api.get("/segments"),
            "churn": await api.get("/churn-risks"),
            "kpis": await api.get("/kpis", window="30d"),
        }
        for item in live_api["churn"]["items"] + replayed_api["churn"]["items"]:
            item.pop("changed_at")  # when a change was noticed, not what it is
        assert replayed_api == live_api
        assert normalised(await live_figures(analytics_settings, NOW)) == normalised(live)

        # `rapport replay` does the same and says so: exit 0 when equal, 1 when not.
        async def rapport_replay() -> subprocess.CompletedProcess[str]:
            return await asyncio.to_thread(
                subprocess.run,
                [
                    *(sys.executable, "-m", "ops.cli", "replay"),
                    *("--database", database, "--now", NOW.isoformat(), "--compare"),
                ],
                env={
                    **os.environ,
                    "RAPPORT_KAFKA_BOOTSTRAP": analytics_settings.kafka_bootstrap,
                    "RAPPORT_MONGODB_URI": analytics_settings.mongodb_uri,
                    "RAPPORT_TOPIC_PREFIX": analytics_settings.topic_prefix,
                    "RAPPORT_ANALYTICS_MONGODB_DATABASE": analytics_settings.mongodb_database,
                },
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )

        command = await rapport_replay()
        assert command.returncode == 0, command.stdout + command.stderr
        assert "the replayed figures equal the live figures" in command.stdout
        # Live loses a customer's figures (as a bug would): the replay no longer agrees.
        live_db = mongo_client[analytics_settings.mongodb_database]
        assert (await live_db["customers"].delete_one({"_id": "c-ana"})).deleted_count == 1
        command = await rapport_replay()
        assert command.returncode == 1, command.stdout + command.stderr
        assert "differences from the live figures" in command.stdout
        assert "c-ana" in command.stdout
    finally:
        await mongo_client.drop_database(database)
