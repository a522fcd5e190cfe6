"""``python -m bench`` (``make bench``): every benchmark on one broker and one store.

With ``RAPPORT_KAFKA_BOOTSTRAP`` and ``RAPPORT_MONGODB_URI`` set it measures against those
servers; otherwise it starts a genuine Kafka broker and a SecantusDB on free ports for the
run (as the test suite does: the Python server, or the Rust one with
``RAPPORT_DEV_STORE=rust``) and stops them afterwards. ``python -m bench NAME [ARGS]``
runs one benchmark (produce, consume, profiles, ledger, notifications, analytics,
pipeline, store) with its own arguments.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench import analytics, consume, ledger, notifications, pipeline, produce, profiles, store
from devstack.kafka import KafkaBroker
from devstack.mongo import IN_MEMORY, SecantusServer
from devstack.ports import free_port, free_ports
from shared.mongo import set_in_chunk
from shared.settings import PlatformSettings


def main() -> None:
    benchmarks = {
        "produce": ("raw aiokafka against Rapport's producer and outbox", produce.main),
        "consume": ("raw aiokafka against Rapport's consumer path", consume.main),
        "profiles": ("bare FastAPI against GET /api/v1/customers/{id}", profiles.main),
        "ledger": ("raw consumption against the profiles ledger projection", ledger.main),
        "notifications": ("publish -> SMTP receipt latency at a fixed rate", notifications.main),
        "analytics": ("raw consumption against the analytics worker and replay", analytics.main),
        "pipeline": ("a foreign producer's purchases through the four services", pipeline.main),
        "store": ("what the baseline's and a thank-you's writes cost the store", store.main),
    }
    chosen, extra = list(benchmarks), []
    if len(sys.argv) > 1:
        if sys.argv[1] not in benchmarks:
            sys.exit(f"usage: python -m bench [{'|'.join(benchmarks)} [ARGS...]]")
        chosen, extra = [sys.argv[1]], sys.argv[2:]
    # A SIGTERM (a timeout, a CI runner) unwinds like Ctrl-C: the servers started here stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with ExitStack() as stack:
        bootstrap = os.environ.get("RAPPORT_KAFKA_BOOTSTRAP")
        mongodb_uri = os.environ.get("RAPPORT_MONGODB_URI")
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rapport-bench-")))
        if not bootstrap:
            broker = stack.enter_context(KafkaBroker(workdir / "kafka", *free_ports(2)))
            bootstrap = broker.bootstrap
        if not mongodb_uri:
            server = stack.enter_context(
                SecantusServer(free_port(), IN_MEMORY, log_file=workdir / "secantusd.log")
            )
            mongodb_uri = server.uri
            os.environ.setdefault("RAPPORT_MONGODB_IN_CHUNK", str(server.in_chunk))
            print(f"store: {server.name} (RAPPORT_DEV_STORE chooses python or rust)", flush=True)
        set_in_chunk(PlatformSettings().mongodb_in_chunk)  # (for what this process reads)
        connection = ["--bootstrap", bootstrap, "--mongodb-uri", mongodb_uri]
        own = not os.environ.get("RAPPORT_KAFKA_BOOTSTRAP") and not os.environ.get(
            "RAPPORT_MONGODB_URI"
        )
        for name in chosen:
            title, run = benchmarks[name]
            print(f"\n== {name}: {title}", flush=True)
            throwaway = ["--keep-data"] if own and name == "pipeline" else []
            run([*connection, *throwaway, *extra])


if __name__ == "__main__":
    main()
