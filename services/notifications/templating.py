"""Message templates: Jinja2 in a sandbox, per trigger, channel and locale.

Templates come from two places. The shipped ones are files in ``shipped/`` (one TOML file
per trigger and locale, a table per channel); an edited one saved through the API lives in
MongoDB (``templates``) and wins over the shipped one of the same trigger, channel and
locale until it is deleted again.

Rendering walks a locale fallback chain built from the BCP 47 tag (``sr-Latn-RS`` →
``sr-Latn`` → ``sr`` → the default ``en``), so a customer always gets the closest
language there is. A webhook uses its own template, else the in-app one, else the
e-mail's subject and text. An e-mail whose template has no HTML part gets one made from
the text; an HTML part that is not a whole document is put inside the shipped layout,
which carries ``lang`` and ``dir`` (``rtl`` for Persian, Arabic, Hebrew, Urdu...).

Templates run in Jinja's immutable sandbox with ``StrictUndefined``; HTML is autoescaped.
Saving checks that a template compiles, uses only its trigger's fields (see
``catalog.py``) and renders with the trigger's sample data; anything else is a 422.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any, TypeVar

from jinja2 import StrictUndefined, Template, TemplateError, meta, pass_context
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup, escape

from services.notifications import catalog, formatting
from services.notifications.domain import (
    Channel,
    RenderedMessage,
    TextDirection,
)
from services.notifications.template_domain import (
    CHANNEL_PARTS,
    DEFAULT_LOCALE,
    MAX_TEXT,
    Part,
    Source,
    StoredTemplate,
    TemplateBody,
    TemplateRenderError,
    direction_of,
    fallback_chain,
    normalize_locale,
)
from services.notifications.template_store import ShippedTemplates, TemplateStore
from shared.errors import InvalidInput, NotFound

T = TypeVar("T")

COMPILED_CACHE_SIZE = 512
RENDER_BUDGET_SECONDS = 2.0
# How long a render may hold the event loop before it is moved to a thread.
INLINE_RENDER_SECONDS = 0.05
# How long the custom templates read for a message serve the next messages of the same
# trigger: a dispatcher sending a batch reads them once, not once per message. A template
# saved or reverted through this process counts at once; through another, within this.
CUSTOM_TEMPLATES_TTL_SECONDS = 1.0
MAX_RENDERED = 1_000_000  # characters of one rendered message (subject, text and HTML)
MAX_SMS = 480  # three concatenated GSM-7 segments

CHANNEL_CHAIN: dict[Channel, tuple[Channel, ...]] = {
    Channel.EMAIL: (Channel.EMAIL,),
    Channel.SMS: (Channel.SMS,),
    Channel.IN_APP: (Channel.IN_APP,),
    Channel.WEBHOOK: (Channel.WEBHOOK, Channel.IN_APP, Channel.EMAIL),
}


def _locale_of(context: Context) -> str:
    return str(context.get("locale") or DEFAULT_LOCALE)


def _zone_of(context: Context) -> str | None:
    zone = context.get("time_zone")
    return str(zone) if zone else None


@pass_context
def _date_filter(context: Context, value: object) -> str:
    return formatting.format_date(value, _locale_of(context), _zone_of(context))


@pass_context
def _datetime_filter(context: Context, value: object) -> str:
    return formatting.format_datetime(value, _locale_of(context), _zone_of(context))


@pass_context
def _money_filter(context: Context, value: object, currency: object = None) -> str:
    return formatting.format_money(value, currency, _locale_of(context))


@pass_context
def _number_filter(context: Context, value: object, places: int | None = None) -> str:
    return formatting.format_number(value, _locale_of(context), places)


class _OverBudget(Exception):
    pass


def _within_budget(work: Callable[[], T], seconds: float = RENDER_BUDGET_SECONDS) -> T:
    """Run ``work`` in this thread, stopping it once it has run for ``seconds``: by a
    CPU-time alarm in the main thread (free), else by a trace function (which makes a
    render about four times slower, so only a render moved to a thread pays it)."""
    if _ALARM.usable():
        return _ALARM.run(work, seconds)
    return _traced(work, seconds)


def _traced(work: Callable[[], T], seconds: float) -> T:
    deadline = time.monotonic() + seconds
    steps = 0

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal steps
        steps += 1
        if steps % 1000 == 0 and time.monotonic() > deadline:
            raise _OverBudget
        return tracer

    sys.settrace(tracer)
    try:
        return work()
    finally:
        sys.settrace(None)


class _CpuAlarm:
    """A render budget kept by a one-shot ``ITIMER_VIRTUAL`` (the process's CPU time):
    its ``SIGVTALRM`` handler raises ``_OverBudget`` in the main thread if the render it
    was set for still runs. Used only in the main thread (where Python runs signal
    handlers), one render at a time, and only while nothing else in the process uses that
    signal or timer. The handler raises at most once per render and leaves no render
    running when it does, so a late signal (the render had just finished) costs a render
    again, never a stray exception later."""

    def __init__(self) -> None:
        self._running = False
        self._installed = False

    def usable(self) -> bool:
        if self._running or threading.current_thread() is not threading.main_thread():
            return False
        if not self._installed:
            if not hasattr(signal, "setitimer"):
                return False
            if signal.getsignal(signal.SIGVTALRM) not in (signal.SIG_DFL, None):
                return False  # the process uses it for something else
            signal.signal(signal.SIGVTALRM, self._ring)
            self._installed = True
        return signal.getsignal(signal.SIGVTALRM) == self._ring

    def _ring(self, signum: int, frame: FrameType | None) -> None:
        if self._running:
            self._running = False
            raise _OverBudget

    def run(self, work: Callable[[], T], seconds: float) -> T:
        previous = signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
        if previous != (0.0, 0.0):  # someone else's timer: put it back, trace instead
            signal.setitimer(signal.ITIMER_VIRTUAL, *previous)
            return _traced(work, seconds)
        self._running = True
        try:
            return work()
        finally:
            self._running = False
            signal.setitimer(signal.ITIMER_VIRTUAL, 0)


_ALARM = _CpuAlarm()


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, also refusing to build huge strings or numbers."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > 100:
            raise SecurityError("exponents above 100 are not allowed in templates")
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if (
                    isinstance(sequence, str | list | tuple)
                    and isinstance(times, int)
                    and len(sequence) * times > MAX_TEXT * 10
                ):
                    raise SecurityError("the template builds a value too large to send")
        return super().call_binop(context, operator, left, right)


def _environment(*, html: bool) -> ImmutableSandboxedEnvironment:
    environment = _Sandbox(
        autoescape=html,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    environment.filters.update(
        date=_date_filter, datetime=_datetime_filter, money=_money_filter, number=_number_filter
    )
    return environment


_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
# A link ends before trailing punctuation: "...: https://x.example/a." links to /a.
_URL = re.compile(r"https?://[^\s<>\"']*[^\s<>\"'.,;:!?)\]»“”]")


def html_from_text(text: str) -> Markup:
    """Paragraphs for blank-line-separated blocks, line breaks kept, links clickable."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = []
        for line in block.splitlines():
            escaped = str(escape(line))
            lines.append(_URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped))
        paragraphs.append("<p>" + "<br>\n".join(lines) + "</p>")
    return Markup("\n".join(paragraphs))  # noqa: S704 - every piece was escaped above


@dataclass(frozen=True)
class _Chosen:
    channel: Channel
    locale: str
    source: Source
    body: TemplateBody


@dataclass(frozen=True)
class _Custom:
    """Custom templates being read or read at ``read_at`` (monotonic seconds)."""

    reading: asyncio.Future[dict[tuple[Channel, str], StoredTemplate]]
    read_at: float


class JinjaTemplateRenderer:
    """The domain's ``TemplateRenderer``, plus what the templates API needs: listing,
    saving with validation, reverting to the shipped template, and previews."""

    def __init__(
        self,
        store: TemplateStore,
        *,
        shipped: ShippedTemplates | None = None,
        company: str = "Rapport",
        default_locale: str = DEFAULT_LOCALE,
    ) -> None:
        self.store = store
        self.shipped = shipped or ShippedTemplates()
        self.company = company
        self.default_locale = normalize_locale(default_locale)
        self._text = _environment(html=False)
        self._html = _environment(html=True)
        self._layout = self._html.from_string(self.shipped.layout)
        self._compiled: dict[tuple[bool, str], Template] = {}
        self._custom: dict[tuple[str, tuple[Channel, ...], tuple[str, ...]], _Custom] = {}
        self.render_budget = RENDER_BUDGET_SECONDS
        self.custom_ttl = CUSTOM_TEMPLATES_TTL_SECONDS

    async def ensure_indexes(self) -> None:
        await self.store.ensure_indexes()

    def fallback_chain(self, locale: str) -> list[str]:
        return fallback_chain(locale, self.default_locale)

    # The domain port -------------------------------------------------------------------

    async def render(
        self, trigger: str, channel: Channel, locale: str, context: Mapping[str, Any]
    ) -> RenderedMessage:
        spec = catalog.trigger(trigger)
        chosen = await self._choose(trigger, channel, self.fallback_chain(locale))
        try:
            return await self._render_bounded(spec, channel, chosen, context)
        except _OverBudget:
            raise TemplateRenderError(
                f"{spec.name}/{chosen.channel.value}/{chosen.locale}: rendering took more than"
                f" {self.render_budget:g} s"
            ) from None

    # Management ------------------------------------------------------------------------

    async def all_templates(self) -> list[StoredTemplate]:
        """Every template there is, a custom one in place of the shipped one it overrides."""
        entries = {
            (trigger, channel, locale): StoredTemplate(
                trigger, channel, locale, Source.SHIPPED, body
            )
            for (trigger, channel, locale), body in self.shipped.templates.items()
        }
        for template in await self.store.all():
            entries[(template.trigger, template.channel, template.locale)] = template
        return sorted(entries.values(), key=lambda t: (t.trigger, t.channel.value, t.locale))

    async def get(self, trigger: str, channel: Channel, locale: str) -> StoredTemplate:
        """The template of exactly this locale (no fallback); 404 when there is none."""
        catalog.trigger(trigger)
        tag = normalize_locale(locale)
        custom = (await self.store.find(trigger, [channel], [tag])).get((channel, tag))
        if custom is not None:
            return custom
        shipped = self.shipped.get(trigger, channel, tag)
        if shipped is None:
            raise NotFound(
                f"no {channel.value} template for {trigger} in {tag}; messages in {tag} use"
                f" the fallback chain {' → '.join(self.fallback_chain(tag))}"
            )
        return StoredTemplate(trigger, channel, tag, Source.SHIPPED, shipped)

    async def save(
        self, trigger: str, channel: Channel, locale: str, body: TemplateBody, *, by: str
    ) -> StoredTemplate:
        """Validate and store a custom template; 422 naming what is wrong."""
        spec = catalog.trigger(trigger)
        tag = normalize_locale(locale)
        await self.validate(spec, channel, tag, body)
        template = StoredTemplate(trigger, channel, tag, Source.CUSTOM, body, datetime.now(UTC), by)
        await self.store.save(template)
        self._custom.clear()
        return template

    async def revert(self, trigger: str, channel: Channel, locale: str) -> None:
        """Delete the custom template; the shipped one (if any) is used again."""
        catalog.trigger(trigger)
        tag = normalize_locale(locale)
        deleted = await self.store.delete(trigger, channel, tag)
        self._custom.clear()
        if not deleted:
            raise NotFound(f"there is no custom {channel.value} template for {trigger} in {tag}")

    async def preview(
        self, trigger: str, channel: Channel, locale: str, draft: TemplateBody | None = None
    ) -> tuple[Source, RenderedMessage]:
        """Render with the trigger's sample data: the draft if given (validated as at
        save), else the template in use for this locale after the fallback chain."""
        spec = catalog.trigger(trigger)
        tag = normalize_locale(locale)
        sample = {**spec.sample, "locale": tag}
        if draft is not None:
            return Source.DRAFT, await self.validate(spec, channel, tag, draft)
        chosen = await self._choose(trigger, channel, self.fallback_chain(tag))
        return chosen.source, self._render(spec, channel, chosen, sample)

    async def validate(
        self, spec: catalog.Trigger, channel: Channel, locale: str, body: TemplateBody
    ) -> RenderedMessage:
        """Check a template as it would be saved; its rendering of the sample data."""
        required, optional = CHANNEL_PARTS[channel]
        parts = body.parts()
        missing = sorted(required - set(parts))
        extra = sorted(set(parts) - required - optional)
        if missing:
            raise InvalidInput(f"a {channel.value} template needs {', '.join(missing)}")
        if extra:
            raise InvalidInput(f"a {channel.value} template has no {', '.join(extra)}")
        allowed = spec.all_fields | set(self._text.globals)
        for part, source in parts.items():
            environment = self._html if part is Part.HTML else self._text
            try:
                tree = environment.parse(source)
            except TemplateError as error:
                line = getattr(error, "lineno", None)
                where = f" (line {line})" if line else ""
                raise InvalidInput(
                    f"the {part.value} does not compile{where}: {error}", part=part.value
                ) from None
            unknown = sorted(meta.find_undeclared_variables(tree) - allowed)
            if unknown:
                raise InvalidInput(
                    f"the {part.value} uses {', '.join(unknown)}, which {spec.name} does not"
                    f" have; its fields are {', '.join(sorted(spec.all_fields))}",
                    part=part.value,
                    unknown_fields=unknown,
                )
        sample = {**spec.sample, "locale": locale}
        chosen = _Chosen(channel, locale, Source.DRAFT, body)
        try:
            rendered = await self._render_bounded(spec, channel, chosen, sample)
        except TemplateRenderError as error:
            raise InvalidInput(f"the template fails with the sample data: {error.reason}") from None
        except _OverBudget:
            raise InvalidInput(
                f"the template takes more than {self.render_budget:g} s to render the sample"
                " data; simplify its loops"
            ) from None
        if channel is Channel.SMS and len(rendered.text) > MAX_SMS:
            raise InvalidInput(
                f"with the sample data the SMS is {len(rendered.text)} characters; keep it under"
                f" {MAX_SMS} (longer texts are split into many paid messages)"
            )
        return rendered

    # Internals -------------------------------------------------------------------------

    async def _choose(self, trigger: str, channel: Channel, chain: list[str]) -> _Chosen:
        channels = CHANNEL_CHAIN[channel]
        custom = await self._custom_templates(trigger, tuple(channels), tuple(chain))
        for locale in chain:
            for candidate in channels:
                stored = custom.get((candidate, locale))
                if stored is not None:
                    return _Chosen(candidate, locale, Source.CUSTOM, stored.body)
                shipped = self.shipped.get(trigger, candidate, locale)
                if shipped is not None:
                    return _Chosen(candidate, locale, Source.SHIPPED, shipped)
        raise NotFound(f"no {channel.value} template for {trigger} in any of {', '.join(chain)}")

    async def _custom_templates(
        self, trigger: str, channels: tuple[Channel, ...], chain: tuple[str, ...]
    ) -> Mapping[tuple[Channel, str], StoredTemplate]:
        """The custom templates of these keys, read at most once per ``custom_ttl``: the
        messages rendered meanwhile (also those asking while it is being read) share it."""
        key = (trigger, channels, chain)
        now = time.monotonic()
        cached = self._custom.get(key)
        if cached is None or now - cached.read_at >= self.custom_ttl:
            if len(self._custom) > 1000:
                self._custom.clear()
            reading = asyncio.ensure_future(self.store.find(trigger, channels, chain))
            cached = self._custom[key] = _Custom(reading, now)
        try:
            return await asyncio.shield(cached.reading)
        except Exception:
            if self._custom.get(key) is cached:
                del self._custom[key]  # the next message reads again
            raise

    async def _render_bounded(
        self,
        spec: catalog.Trigger,
        channel: Channel,
        chosen: _Chosen,
        values: Mapping[str, Any],
    ) -> RenderedMessage:
        """Render within ``render_budget`` without stalling the event loop; raises
        ``_OverBudget`` when it takes longer. A message renders in well under a
        millisecond, so it is first rendered here, for at most ``INLINE_RENDER_SECONDS``;
        one that takes longer (data can be larger than the sample it was checked with) is
        rendered again in a thread, where the loop goes on beside it. (A thread for every
        message cost the dispatcher an eighth of its throughput.)"""

        def render() -> RenderedMessage:
            return self._render(spec, channel, chosen, values)

        try:
            return _within_budget(render, min(INLINE_RENDER_SECONDS, self.render_budget))
        except _OverBudget:
            if self.render_budget <= INLINE_RENDER_SECONDS:
                raise
        return await asyncio.to_thread(_within_budget, render, self.render_budget)

    def _render(
        self,
        spec: catalog.Trigger,
        channel: Channel,
        chosen: _Chosen,
        values: Mapping[str, Any],
    ) -> RenderedMessage:
        context = spec.context(values)
        context["company"] = context.get("company") or self.company
        context["locale"] = chosen.locale
        context["time_zone"] = context.get("time_zone") or "UTC"
        direction = direction_of(chosen.locale)
        body = chosen.body
        try:
            subject = (
                self._compile(body.subject, html=False).render(context) if body.subject else ""
            )
            text = self._compile(body.text, html=False).render(context)
            text = _BLANK_LINES.sub("\n\n", text).strip()  # optional blocks leave gaps
            html = None
            if channel is Channel.EMAIL:
                html = self._html_part(body.html, text, subject, direction, context)
        except TemplateError as error:
            raise TemplateRenderError(
                f"{spec.name}/{chosen.channel.value}/{chosen.locale}: {error}"
            ) from None
        except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as error:
            raise TemplateRenderError(
                f"{spec.name}/{chosen.channel.value}/{chosen.locale}:"
                f" {type(error).__name__}: {error}"
            ) from None
        size = len(subject) + len(text) + len(html or "")
        if size > MAX_RENDERED:
            raise TemplateRenderError(
                f"{spec.name}/{chosen.channel.value}/{chosen.locale}: the message is too large"
                f" to send ({size} characters; at most {MAX_RENDERED})"
            )
        return RenderedMessage(
            locale=chosen.locale,
            subject=" ".join(subject.split()),  # one line: it becomes a header
            text=text,
            html=html,
            direction=direction,
        )

    def _compile(self, source: str, *, html: bool) -> Template:
        key = (html, source)
        compiled = self._compiled.get(key)
        if compiled is None:
            if len(self._compiled) >= COMPILED_CACHE_SIZE:
                self._compiled.clear()
            environment = self._html if html else self._text
            compiled = self._compiled[key] = environment.from_string(source)
        return compiled

    def _html_part(
        self,
        source: str | None,
        text: str,
        subject: str,
        direction: TextDirection,
        context: Mapping[str, Any],
    ) -> str:
        if source is None:
            content = html_from_text(text)
        else:
            rendered = self._compile(source, html=True).render(context)
            if re.match(r"\s*(<!doctype|<html)", rendered, re.IGNORECASE):
                return rendered
            content = Markup(rendered)  # noqa: S704 - autoescaped template output
        return self._layout.render(
            lang=context["locale"],
            dir=direction.value,
            subject=" ".join(subject.split()),
            company=context["company"],
            body=content,
        )
