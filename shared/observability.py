"""Structured JSON logs, W3C trace context and Prometheus metrics.

Trace context comes in on HTTP (``traceparent`` header) or on an event (the CloudEvents
distributed-tracing extension), becomes the current OpenTelemetry span, is stamped on
every log line, and is written into the extensions of every event published meanwhile.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.environment_variables import OTEL_TRACES_SAMPLER
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import Counter, Gauge, Histogram
from pythonjsonlogger.json import JsonFormatter

_propagator = TraceContextTextMapPropagator()
_TRACE_KEYS = ("traceparent", "tracestate")
# One tracer for the process: a proxy until ``configure_tracing`` sets the provider, then
# the provider's (asking the provider for a tracer per span costs a tracer per span).
_tracer = trace.get_tracer("rapport")

HTTP_REQUESTS = Counter(
    "rapport_http_requests_total", "HTTP requests served", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "rapport_http_request_duration_seconds", "HTTP request latency", ["service", "route"]
)
EVENTS_CONSUMED = Counter(
    "rapport_events_consumed_total",
    "Events taken from Kafka, by outcome",
    ["service", "topic", "type", "outcome"],
)
BATCH_SIZE = Histogram(
    "rapport_consumer_batch_size",
    "Records a consumer applied in one unit of work",
    ["service"],
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000),
)
EVENTS_PUBLISHED = Counter(
    "rapport_events_published_total", "Events published from the outbox", ["service", "topic"]
)
BATCH_SECONDS = Histogram(
    "rapport_consumer_batch_seconds",
    "Time a consumer took to apply one decoded batch, up to the commit of its unit of work",
    ["service"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TRANSACTION_RETRIES = Counter(
    "rapport_transaction_retries_total",
    "Units of work run again after a transient transaction error (a write conflict with a"
    " concurrent transaction, a primary stepping down)",
)
OUTBOX_PENDING = Gauge(
    "rapport_outbox_pending", "Outbox events stored but not yet published", ["service"]
)


def configure_logging(level: str, service: str) -> None:
    """JSON lines on stdout with the service name and the current trace and span ids."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"service": service},
        )
    )
    handler.addFilter(TraceContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if root.level > logging.DEBUG:
        # aiokafka narrates every group join at INFO; keep its warnings only.
        logging.getLogger("aiokafka").setLevel(logging.WARNING)


def configure_tracing(service: str) -> None:
    """Give the process a real tracer so spans get ids (no exporter: ids for correlation)."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider(sampler=default_sampler()))


def default_sampler() -> Sampler | None:
    """Nothing records Rapport's spans, so a trace it starts is not sampled (W3C flags 00;
    its ids still go into logs and events), and one sampled upstream stays sampled, as
    OpenTelemetry's ParentBased sampler does. A span that records nothing costs half (a
    consumed event's span: 4.6 µs instead of 10). ``OTEL_TRACES_SAMPLER``, when set,
    chooses instead (None: the SDK reads it)."""
    if os.environ.get(OTEL_TRACES_SAMPLER):
        return None
    return ParentBased(ALWAYS_OFF)


class TraceContextFilter(logging.Filter):
    """Stamps the current trace and span ids on a log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)  # uvicorn's ANSI duplicate of the message
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            record.trace_id = format(span_context.trace_id, "032x")
            record.span_id = format(span_context.span_id, "016x")
        return True


@contextmanager
def span_from(carrier: Mapping[str, str], name: str) -> Iterator[trace.Span]:
    """Continue the trace named in ``carrier`` (HTTP headers or event extensions)."""
    parent = _propagator.extract(
        carrier={key: carrier[key] for key in _TRACE_KEYS if key in carrier}
    )
    # (a span started in the extracted context and made current with one attach: what
    # ``start_as_current_span`` under an attached parent does with two context switches
    # and two more context managers, a third of the cost of a consumed event's span)
    span = _tracer.start_span(name, context=parent)
    token = otel_context.attach(trace.set_span_in_context(span, parent))
    try:
        yield span
    except BaseException as error:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        raise
    finally:
        span.end()
        otel_context.detach(token)


def current_trace_context() -> dict[str, str]:
    """``traceparent``/``tracestate`` of the current span, for an outgoing event."""
    return trace_context_of(current_span_context())


def current_span_context() -> SpanContext:
    """The current span's ids, to keep (cheaply) and turn into a carrier later with
    :func:`trace_context_of`."""
    return trace.get_current_span().get_span_context()


def trace_context_of(span_context: SpanContext) -> dict[str, str]:
    """``traceparent``/``tracestate`` of a span kept earlier (none for an invalid one)."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, trace.set_span_in_context(NonRecordingSpan(span_context)))
    return carrier
