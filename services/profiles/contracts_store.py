"""MongoDB adapter of contracts: one document per contract in ``contracts``."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING

from services.profiles.contracts_domain import Contract
from shared.mongo import Database, Session

_DATES = ("start_date", "renews_at", "expires_at")


class ContractStore:
    def __init__(self, db: Database) -> None:
        self.contracts = db["contracts"]

    async def ensure_indexes(self) -> None:
        await self.contracts.create_index([("customer_id", ASCENDING), ("created_at", ASCENDING)])

    async def get(self, contract_id: str, session: Session | None = None) -> Contract | None:
        document = await self.contracts.find_one({"_id": contract_id}, session=session)
        return None if document is None else _contract(document)

    async def of_customer(self, customer_id: str, session: Session | None = None) -> list[Contract]:
        cursor = self.contracts.find({"customer_id": customer_id}, session=session).sort(
            [("created_at", ASCENDING), ("_id", ASCENDING)]
        )
        return [_contract(document) async for document in cursor]

    async def insert(self, contract: Contract, session: Session) -> None:
        await self.contracts.insert_one(_document(contract), session=session)

    async def replace(self, before: Contract, after: Contract, session: Session) -> bool:
        result = await self.contracts.replace_one(
            {"_id": before.contract_id, "version": before.version},
            _document(after),
            session=session,
        )
        return result.matched_count == 1


def _document(contract: Contract) -> dict[str, Any]:
    document = contract.model_dump(mode="python", exclude={"contract_id"})
    for name in _DATES:  # BSON has no date-only type
        if document[name] is not None:
            document[name] = document[name].isoformat()
    document["_id"] = contract.contract_id
    return document


def _contract(document: dict[str, Any]) -> Contract:
    return Contract.model_validate({**document, "contract_id": document["_id"]})
