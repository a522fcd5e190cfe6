"""Events on ``crm.complaints`` from the customer community (support owns it): a customer
asked a question, answered one, or had an answer accepted.

Each is about the customer who wrote the post (the Kafka key and ``subject``); what staff
write announces nothing, since no customer is its author. The texts are the customer's
own words: declared personal, so an erasure blanks them in events not yet published.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from shared.events.base import PERSONAL, EventPayload, Identifier, LongText, ShortText, Timestamp
from shared.topics import COMPLAINTS


class AcceptedBy(StrEnum):
    ASKER = "asker"
    STAFF = "staff"


class CommunityEvent(EventPayload):
    topic = COMPLAINTS

    customer_id: Identifier = Field(description="the customer who wrote the post")
    question_id: Identifier


class QuestionAsked(CommunityEvent):
    """A customer asked the community a question."""

    event_type = "crm.community.question_asked"

    locale: ShortText
    title: Annotated[ShortText, PERSONAL]
    body: Annotated[LongText, PERSONAL]
    tags: Annotated[list[ShortText], PERSONAL] = Field(default_factory=list)
    product: Identifier | None = None
    category: ShortText | None = None
    asked_at: Timestamp


class AnswerPosted(CommunityEvent):
    """A customer answered a question in the community (``question_id``)."""

    event_type = "crm.community.answer_posted"

    answer_id: Identifier
    body: Annotated[LongText, PERSONAL]
    posted_at: Timestamp


class AnswerAccepted(CommunityEvent):
    """The asker (or staff) accepted a customer's answer as the one that helped."""

    event_type = "crm.community.answer_accepted"

    answer_id: Identifier
    accepted_by: AcceptedBy
    accepted_at: Timestamp
