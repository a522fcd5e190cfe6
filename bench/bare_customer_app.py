"""The baseline of ``bench.profiles``: the least a service can do to answer a GET.

A bare FastAPI app with one AsyncMongoClient ``find_one``: no auth, no validation, no
middleware. ``python -m bench.bare_customer_app --port P --mongodb-uri U --database D``.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException
from pymongo import AsyncMongoClient


def create_app(mongodb_uri: str, database: str) -> FastAPI:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await client.close()

    app = FastAPI(lifespan=lifespan)
    customers = client[database]["customers"]

    @app.get("/customers/{customer_id}")
    async def read(customer_id: str) -> dict[str, Any]:
        document = await customers.find_one({"_id": customer_id}, {"match_keys": 0})
        if document is None:
            raise HTTPException(404)
        document["id"] = document.pop("_id")
        return document

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mongodb-uri", required=True)
    parser.add_argument("--database", required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.mongodb_uri, args.database),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
