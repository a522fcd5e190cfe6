"""HTTP API of merging two profiles of one person, and undoing it (staff and services).

After a merge the source's URLs redirect to the target (308); an undo gives the source
back its data and its own URLs.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from services.profiles import merging
from services.profiles.api import CustomerPublic, StaffOrService
from services.profiles.merging import Merger


def get_merger(request: Request) -> Merger:
    merger: Merger = request.app.state.merger
    return merger


MergerDep = Annotated[Merger, Depends(get_merger)]


class MergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source_id: str = Field(min_length=1, max_length=200, description="the profile to fold in")


class MergePublic(BaseModel):
    merge_id: str = Field(description="undo with POST /api/v1/merges/{merge_id}/undo")
    target: CustomerPublic
    source_id: str
    moved: dict[str, int] = Field(description="documents moved to the target, per kind")


class UnmergePublic(BaseModel):
    source: CustomerPublic
    target: CustomerPublic


router = APIRouter(prefix="/api/v1", tags=["customers"])


@router.post(
    "/customers/{customer_id}/merge",
    responses={409: {"description": "a profile changed meanwhile"}},
)
async def merge_customers(
    customer_id: str, body: MergeRequest, merger: MergerDep, _: StaffOrService
) -> MergePublic:
    """Fold ``source_id`` into this profile; the source's URLs then redirect here."""
    result = await merging.merge(merger, customer_id, body.source_id)
    return MergePublic(
        merge_id=result.merge_id,
        target=CustomerPublic.of(result.target),
        source_id=result.source.id,
        moved=result.moved,
    )


@router.post("/merges/{merge_id}/undo")
async def undo_merge(merge_id: str, merger: MergerDep, _: StaffOrService) -> UnmergePublic:
    """Give the merged profile back its data and its own URLs."""
    source, target = await merging.undo_merge(merger, merge_id)
    return UnmergePublic(source=CustomerPublic.of(source), target=CustomerPublic.of(target))
