"""Trace context: from an event into the handler's span and into every log line."""

from __future__ import annotations

import io
import json
import logging
import uuid

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased
from opentelemetry.trace import StatusCode
from pythonjsonlogger.json import JsonFormatter

from shared.consumer import EventConsumer, IncomingMessage, Outcome
from shared.events import Event, encode, new_event
from shared.events.customers import CustomerErased
from shared.kafka import AiokafkaPublisher
from shared.mongo import Database, MongoClient
from shared.observability import (
    TraceContextFilter,
    configure_tracing,
    current_trace_context,
    default_sampler,
    span_from,
)
from shared.outbox import Outbox
from shared.routing import Routes
from shared.topics import CUSTOMERS, TopicNames
from shared.unit_of_work import UnitOfWork


def test_log_lines_carry_the_current_trace_and_span() -> None:
    configure_tracing("tests")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("%(levelname)s %(message)s"))
    handler.addFilter(TraceContextFilter())
    logger = logging.getLogger("tests.trace")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    trace_id = uuid.uuid4().hex
    try:
        with span_from({"traceparent": f"00-{trace_id}-{'3' * 16}-01"}, "work"):
            logger.info("inside")
        logger.info("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["trace_id"] == trace_id
    assert len(inside["span_id"]) == 16
    assert "trace_id" not in outside


class _Spans(SpanProcessor):
    """Keeps the ended spans of one name (the process's provider is shared by the suite)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ended: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        if span.name == self.name:
            self.ended.append(span)


def test_a_span_continues_its_parent_ends_and_records_a_failure() -> None:
    configure_tracing("tests")
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    name = f"work-{uuid.uuid4().hex}"
    spans = _Spans(name)
    provider.add_span_processor(spans)
    trace_id = uuid.uuid4().hex
    parent = f"00-{trace_id}-{'5' * 16}-01"
    with span_from({"traceparent": parent}, name) as span:
        assert trace.get_current_span() is span
    with pytest.raises(KeyError), span_from({"traceparent": parent}, name):
        raise KeyError("sku-1")
    assert trace.get_current_span() is not span  # the context is restored
    ok, failed = spans.ended
    for ended in (ok, failed):
        assert format(ended.context.trace_id, "032x") == trace_id
        assert ended.parent is not None
        assert ended.parent.span_id == int("5" * 16, 16)
    assert ok.status.status_code is StatusCode.UNSET
    assert failed.status.status_code is StatusCode.ERROR
    assert [event.name for event in failed.events] == ["exception"]
    assert failed.events[0].attributes is not None
    assert failed.events[0].attributes["exception.type"] == "KeyError"


def test_a_trace_rapport_starts_is_not_sampled_and_one_sampled_upstream_stays_sampled() -> None:
    configure_tracing("tests")
    with span_from({}, "work"):
        root = current_trace_context()["traceparent"]
    with span_from({"traceparent": f"00-{uuid.uuid4().hex}-{'7' * 16}-01"}, "work"):
        continued = current_trace_context()["traceparent"]
    with span_from({"traceparent": f"00-{uuid.uuid4().hex}-{'8' * 16}-00"}, "work"):
        unsampled = current_trace_context()["traceparent"]
    # Every span has ids (for logs and events); only what upstream samples is sampled.
    assert root.split("-")[1] != "0" * 32
    sampled = [int(parent[-2:], 16) & 1 for parent in (root, continued, unsampled)]
    assert sampled == [0, 1, 0]


def test_otel_traces_sampler_chooses_the_sampler_when_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    assert isinstance(default_sampler(), ParentBased)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    assert default_sampler() is None  # the SDK reads the variable itself


async def test_a_consumed_event_continues_the_producers_trace(
    mongo_client: MongoClient, db: Database, topics: TopicNames, publisher: AiokafkaPublisher
) -> None:
    configure_tracing("tests")
    trace_id = uuid.uuid4().hex
    event = new_event(
        CustomerErased.model_validate({"customer_id": "c-3", "erased_at": "2026-11-22T12:00:00Z"}),
        source="/tests",
        extensions={"traceparent": f"00-{trace_id}-{'4' * 16}-01"},
    )
    seen: list[str] = []

    routes: Routes[None] = Routes()

    @routes.on(CustomerErased)
    async def erase(_: None, received: Event[CustomerErased], uow: UnitOfWork) -> None:
        seen.append(format(trace.get_current_span().get_span_context().trace_id, "032x"))

    consumer = EventConsumer(
        service="tests",
        client=mongo_client,
        db=db,
        publisher=publisher,
        routes=routes.bind(None),
        topics=topics,
        outbox=Outbox(db, topics),
    )
    record = encode(event)
    outcome = await consumer.handle(
        IncomingMessage(topics(CUSTOMERS), 0, 0, record.key, record.value, record.headers)
    )
    assert outcome is Outcome.PROCESSED
    assert seen == [trace_id]
