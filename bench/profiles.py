"""Profiles read path: ``GET /api/v1/customers/{id}`` against a bare FastAPI endpoint.

Both servers run as their own processes on the same store and answer the same requests
from the same load generator (``--concurrency`` requests in flight). The profiles
service does everything a real request needs (bearer token, validation, ETag, problem
handling, metrics, trace context); the bare app only reads the document. Prints
requests per second, latency percentiles and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from bench._common import (
    connection_parser,
    create_customers,
    database_name,
    delete_topics,
    positive,
    redact,
    servers,
)
from devstack.ports import free_port
from shared.topics import TopicNames, ensure_topics

ADMIN_TOKEN = "bench-admin-token"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = connection_parser(__doc__ or "")
    parser.add_argument("--customers", type=positive, default=200, help="profiles to read")
    parser.add_argument("--requests", type=positive, default=3000, help="GETs per server")
    parser.add_argument("--concurrency", type=positive, default=16)
    return parser.parse_args(argv)


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)


async def wait_ready(url: str, process: subprocess.Popen[bytes], within: float = 90) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{url} exited with {process.returncode}")
            try:
                if (await client.get(url, timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)
    raise RuntimeError(f"{url} not ready after {within} s")


async def load(
    base: str, paths: list[str], total: int, concurrency: int, headers: dict[str, str]
) -> tuple[float, list[float]]:
    """Requests per second and the latency of each request."""
    latencies: list[float] = []
    queue: asyncio.Queue[str] = asyncio.Queue()
    for index in range(total):
        queue.put_nowait(paths[index % len(paths)])
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                path = queue.get_nowait()
                started = time.perf_counter()
                response = await client.get(path)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise RuntimeError(f"GET {path}: {response.status_code} {response.text}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return total / elapsed, latencies


def describe(label: str, rate: float, latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
    return f"{label:<44} {rate:>8,.0f} req/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms"


async def run(args: argparse.Namespace) -> None:
    names = TopicNames(args.prefix)
    database = database_name(args.prefix, "profiles")
    await ensure_topics(servers(args.bootstrap), names)
    profiles_port, bare_port = free_port(), free_port()
    env = {
        **os.environ,
        "RAPPORT_KAFKA_BOOTSTRAP": args.bootstrap,
        "RAPPORT_MONGODB_URI": args.mongodb_uri,
        "RAPPORT_TOPIC_PREFIX": args.prefix,
        "RAPPORT_PROFILES_MONGODB_DATABASE": database,
        "RAPPORT_PROFILES_HTTP_PORT": str(profiles_port),
        "RAPPORT_ADMIN_TOKEN": ADMIN_TOKEN,
        "RAPPORT_LOG_LEVEL": "WARNING",
    }
    processes = [
        start([sys.executable, "-m", "services.profiles"], env),
        start(
            [sys.executable, "-m", "bench.bare_customer_app", "--port", str(bare_port),
             "--mongodb-uri", args.mongodb_uri, "--database", database],
            env,
        ),
    ]  # fmt: skip
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    profiles_url, bare_url = f"http://127.0.0.1:{profiles_port}", f"http://127.0.0.1:{bare_port}"
    try:
        await wait_ready(f"{profiles_url}/readyz", processes[0])
        ids = await create_customers(
            profiles_url, ADMIN_TOKEN, args.customers,
            name="Bench", email="bench{n}@example.com", locales=("hr",), tags=("bench",),
        )  # fmt: skip
        await wait_ready(f"{bare_url}/customers/{ids[0]}", processes[1])
        print(f"store {redact(args.mongodb_uri)}, {len(ids)} profiles, "
              f"{args.requests} GETs per server, {args.concurrency} in flight")  # fmt: skip
        bare_rate, bare_latencies = await load(
            bare_url, [f"/customers/{i}" for i in ids], args.requests, args.concurrency, {}
        )
        rapport_rate, rapport_latencies = await load(
            profiles_url,
            [f"/api/v1/customers/{i}" for i in ids],
            args.requests,
            args.concurrency,
            headers,
        )
        print(describe("bare FastAPI + AsyncMongoClient find_one", bare_rate, bare_latencies))
        print(describe("Rapport GET /api/v1/customers/{id}", rapport_rate, rapport_latencies))
        value = rapport_rate / bare_rate
        print(f"ratio rapport/bare: {value:.3g}" + (f"  (1/{1 / value:.1f})" if value < 1 else ""))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(args.mongodb_uri)
        await client.drop_database(database)
        await client.close()
        if not args.keep_topics:
            await delete_topics(
                servers(args.bootstrap), list(names.all()), [f"{args.prefix}rapport-profiles"]
            )


def main(argv: Sequence[str] | None = None) -> None:
    asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    main()
