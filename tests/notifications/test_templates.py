# ruff: noqa: RUF001 - Persian digits and the multiplication sign are what is tested
"""Templates: shipped in five languages, a locale fallback chain, custom templates that
override the shipped ones, validation at save, and a sandbox."""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
import time
from datetime import date
from typing import Any

import pytest

from services.notifications import catalog, templating
from services.notifications import rules as r
from services.notifications.domain import Channel, PermanentDeliveryError, TextDirection
from services.notifications.formatting import (
    format_date,
    format_datetime,
    format_money,
    gregorian_to_jalali,
)
from services.notifications.template_domain import (
    Source,
    StoredTemplate,
    TemplateBody,
    fallback_chain,
    normalize_locale,
)
from services.notifications.template_store import ShippedTemplates, TemplateStore
from services.notifications.templating import JinjaTemplateRenderer, html_from_text
from shared.errors import InvalidInput, NotFound
from shared.mongo import Database

SHIPPED = ShippedTemplates()
CUSTOMER_TRIGGERS = [name for name, spec in catalog.TRIGGERS.items() if not spec.internal]
LOCALES = ["en", "hr", "cs", "sl", "fa"]


@pytest.fixture
async def renderer(db: Database) -> JinjaTemplateRenderer:
    return JinjaTemplateRenderer(TemplateStore(db), shipped=SHIPPED)


def sample(trigger: str, **changes: object) -> dict[str, object]:
    return {**catalog.TRIGGERS[trigger].sample, **changes}


@pytest.mark.parametrize(
    ("locale", "chain"),
    [
        ("fa-IR", ["fa-IR", "fa", "en"]),
        ("sr-Latn-RS", ["sr-Latn-RS", "sr-Latn", "sr", "en"]),
        ("sr-latn-rs", ["sr-Latn-RS", "sr-Latn", "sr", "en"]),
        ("hr", ["hr", "en"]),
        ("en-GB", ["en-GB", "en"]),
        ("not a locale", ["en"]),
        ("", ["en"]),
    ],
)
def test_the_fallback_chain_goes_from_specific_to_general(locale: str, chain: list[str]) -> None:
    assert fallback_chain(locale) == chain


@pytest.mark.parametrize("bad", ["xx", "en_", "zz-Latn", "hr--HR", "und", "a" * 90, "fa IR"])
def test_an_unknown_locale_is_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        normalize_locale(bad)


def test_every_customer_trigger_ships_email_and_in_app_in_five_languages() -> None:
    for trigger in CUSTOMER_TRIGGERS:
        allowed = r.definition(trigger).allowed_channels  # a sign-in link: e-mail only
        for locale in LOCALES:
            for channel in (Channel.EMAIL, Channel.IN_APP):
                if channel in allowed:
                    assert SHIPPED.get(trigger, channel, locale), (trigger, channel, locale)
    for trigger in ("sla_escalation", "churn_alert_owner"):
        assert SHIPPED.get(trigger, Channel.EMAIL, "en")


@pytest.mark.parametrize("key", sorted(SHIPPED.templates), ids=lambda k: "/".join(map(str, k)))
async def test_every_shipped_template_is_valid_and_renders_its_sample(
    renderer: JinjaTemplateRenderer, key: tuple[str, Channel, str]
) -> None:
    trigger, channel, locale = key
    spec = catalog.TRIGGERS[trigger]
    await renderer.validate(spec, channel, locale, SHIPPED.templates[key])
    message = await renderer.render(trigger, channel, locale, spec.sample)
    assert message.locale == locale
    assert message.text
    assert "None" not in message.text
    if channel is not Channel.SMS:
        assert message.subject
    if channel is Channel.EMAIL:
        assert message.html
        assert message.html.startswith("<!DOCTYPE html>")
    if channel is Channel.EMAIL and not spec.internal:
        assert "Ivana Šimić" in message.text


async def test_a_purchase_thank_you_names_the_customer_and_the_items_in_their_language(
    renderer: JinjaTemplateRenderer,
) -> None:
    message = await renderer.render(
        "purchase_thank_you", Channel.EMAIL, "hr-HR", sample("purchase_thank_you")
    )
    assert message.locale == "hr"
    assert message.subject == "Hvala na narudžbi P-2026-00042"
    assert message.text.startswith("Dobar dan, Ivana Šimić,")
    assert "1 × Trekking tent, 2 people (189,90\u00a0€ po komadu)" in message.text
    assert "Ukupno: 238,90\u00a0€" in message.text
    assert message.html is not None
    assert '<html lang="hr" dir="ltr">' in message.html
    assert "Head lamp 300 lm" in message.html


async def test_persian_is_right_to_left_with_persian_digits_and_the_solar_calendar(
    renderer: JinjaTemplateRenderer,
) -> None:
    message = await renderer.render(
        "renewal_reminder", Channel.EMAIL, "fa-IR", sample("renewal_reminder")
    )
    assert message.locale == "fa"
    assert message.direction is TextDirection.RTL
    assert message.html is not None
    assert '<html lang="fa" dir="rtl">' in message.html
    assert "direction:rtl" in message.html
    assert "۹ آذر ۱۴۰۵" in message.text  # 2026-11-30
    assert "۷ روز" in message.text


async def test_a_language_without_templates_falls_back_to_english(
    renderer: JinjaTemplateRenderer,
) -> None:
    message = await renderer.render(
        "birthday_greeting", Channel.EMAIL, "de-AT", sample("birthday_greeting")
    )
    assert message.locale == "en"
    assert message.subject == "Happy birthday, Ivana Šimić!"


async def test_a_missing_optional_field_reads_as_absent_not_an_error(
    renderer: JinjaTemplateRenderer,
) -> None:
    message = await renderer.render(
        "complaint_acknowledgement",
        Channel.EMAIL,
        "en",
        {"customer_id": "c-1", "complaint_id": "CMP-1", "subject": "Broken zipper"},
    )
    assert message.text.startswith("Hello,")
    assert "get back to you by" not in message.text


async def test_a_webhook_without_its_own_template_uses_the_in_app_one(
    renderer: JinjaTemplateRenderer,
) -> None:
    message = await renderer.render(
        "purchase_thank_you", Channel.WEBHOOK, "sl", sample("purchase_thank_you")
    )
    assert message.subject == "Hvala za naročilo P-2026-00042"
    assert message.html is None


async def test_an_unknown_trigger_or_channel_without_templates_is_not_found(
    renderer: JinjaTemplateRenderer,
) -> None:
    with pytest.raises(NotFound):
        await renderer.render("no_such_trigger", Channel.EMAIL, "en", {})
    with pytest.raises(NotFound):
        await renderer.render("retention_offer", Channel.SMS, "en", sample("retention_offer"))


async def test_html_is_escaped_and_text_is_not(renderer: JinjaTemplateRenderer) -> None:
    message = await renderer.render(
        "purchase_thank_you",
        Channel.EMAIL,
        "en",
        sample("purchase_thank_you", customer_name="<b>Ana & Ivo</b>"),
    )
    assert message.html is not None
    assert "&lt;b&gt;Ana &amp; Ivo&lt;/b&gt;" in message.html
    assert "<b>Ana" not in message.html
    assert message.text.startswith("Dear <b>Ana & Ivo</b>,")


async def test_a_custom_template_overrides_the_shipped_one_until_deleted(
    renderer: JinjaTemplateRenderer,
) -> None:
    body = TemplateBody(subject="Hvala, {{ customer_name }}!", text="Narudžba {{ purchase_id }}.")
    await renderer.save("purchase_thank_you", Channel.EMAIL, "hr", body, by="alice")
    custom = await renderer.render(
        "purchase_thank_you", Channel.EMAIL, "hr-HR", sample("purchase_thank_you")
    )
    assert custom.subject == "Hvala, Ivana Šimić!"
    assert custom.text == "Narudžba P-2026-00042."
    assert custom.html is not None
    assert "<p>Narudžba P-2026-00042.</p>" in custom.html

    await renderer.revert("purchase_thank_you", Channel.EMAIL, "hr")
    shipped = await renderer.render(
        "purchase_thank_you", Channel.EMAIL, "hr", sample("purchase_thank_you")
    )
    assert shipped.subject == "Hvala na narudžbi P-2026-00042"


async def test_a_custom_template_for_a_new_language_is_used_by_its_regional_variants(
    renderer: JinjaTemplateRenderer,
) -> None:
    body = TemplateBody(subject="Hvala, {{ customer_name }}", text="Hvala na kupovini!")
    await renderer.save("purchase_thank_you", Channel.IN_APP, "sr-Latn", body, by="alice")
    message = await renderer.render(
        "purchase_thank_you", Channel.IN_APP, "sr-Latn-RS", sample("purchase_thank_you")
    )
    assert message.locale == "sr-Latn"
    assert message.text == "Hvala na kupovini!"


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (TemplateBody(subject="Hi", text="{% if %}"), "does not compile"),
        (TemplateBody(subject="Hi", text="{{ customer_name "), "does not compile"),
        (TemplateBody(subject="Hi {{ nmae }}", text="x"), "nmae"),
        (TemplateBody(subject="Hi", text="{{ ''.__class__.__mro__ }}"), "sample data"),
        (TemplateBody(subject="Hi", text="{{ items|sum }}"), "sample data"),
        (TemplateBody(text="no subject"), "needs subject"),
        (TemplateBody(subject="Hi", text="{{ 'x' * 10000000 }}"), "too large"),
        (TemplateBody(subject="Hi", text="{{ 9 ** 999999 }}"), "exponents"),
        (
            TemplateBody(
                subject="Hi", text="{% for i in range(2000) %}{{ 'x' * 1000 }}{% endfor %}"
            ),
            "too large to send",
        ),
        (
            TemplateBody(
                subject="Hi",
                text="{% for a in range(99999) %}{% for b in range(99999) %}.{% endfor %}"
                "{% endfor %}",
            ),
            "takes more than",
        ),
    ],
)
async def test_a_template_that_does_not_compile_or_uses_unknown_fields_is_refused(
    renderer: JinjaTemplateRenderer, body: TemplateBody, complaint: str
) -> None:
    with pytest.raises(InvalidInput, match=complaint):
        await renderer.save("purchase_thank_you", Channel.EMAIL, "en", body, by="alice")
    assert (await renderer.store.all()) == []


async def test_an_sms_that_would_be_split_into_many_messages_is_refused(
    renderer: JinjaTemplateRenderer,
) -> None:
    body = TemplateBody(text="{{ product }} " + "x" * 500)
    with pytest.raises(InvalidInput, match="keep it under 480"):
        await renderer.save("renewal_reminder", Channel.SMS, "en", body, by="a")


async def test_an_sms_template_is_text_only(renderer: JinjaTemplateRenderer) -> None:
    with pytest.raises(InvalidInput, match="has no subject"):
        await renderer.save(
            "renewal_reminder", Channel.SMS, "en", TemplateBody(subject="x", text="y"), by="a"
        )


async def test_a_template_that_fails_on_real_data_is_a_permanent_delivery_error(
    renderer: JinjaTemplateRenderer,
) -> None:
    body = TemplateBody(subject="Order", text="First: {{ items[0].name }}")
    await renderer.save("purchase_thank_you", Channel.IN_APP, "en", body, by="alice")
    with pytest.raises(PermanentDeliveryError):
        await renderer.render(
            "purchase_thank_you",
            Channel.IN_APP,
            "en",
            sample("purchase_thank_you", items=[]),
        )


async def test_a_message_that_renders_quickly_is_rendered_without_a_thread(
    renderer: JinjaTemplateRenderer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a render that outlasts INLINE_RENDER_SECONDS goes to a thread: handing every
    message to one cost the dispatcher an eighth of its throughput."""
    handed: list[object] = []
    to_thread = asyncio.to_thread

    async def counted(function: Any, /, *args: Any) -> Any:
        handed.append(function)
        return await to_thread(function, *args)

    monkeypatch.setattr(asyncio, "to_thread", counted)
    rendered = await renderer.render(
        "purchase_thank_you", Channel.EMAIL, "hr", sample("purchase_thank_you")
    )
    assert rendered.subject
    assert handed == []


async def test_a_template_that_runs_too_long_on_real_data_is_stopped_without_blocking(
    renderer: JinjaTemplateRenderer,
) -> None:
    # Stored as it was before the sample-data check (or fine for the sample's two items):
    # for each real item it loops a long time.
    body = TemplateBody(
        subject="Order",
        text="{% for item in items %}{% for i in range(99999) %}{% for j in range(99999) %}"
        "{% endfor %}{% endfor %}{% endfor %}done",
    )
    await renderer.store.save(
        StoredTemplate("purchase_thank_you", Channel.IN_APP, "en", Source.CUSTOM, body)
    )
    renderer.render_budget = 1.0
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    ticking = asyncio.create_task(ticker())
    try:
        with pytest.raises(PermanentDeliveryError, match=r"took more than 1 s"):
            await renderer.render(
                "purchase_thank_you", Channel.IN_APP, "en", sample("purchase_thank_you")
            )
    finally:
        ticking.cancel()
    # The event loop went on while the template ran: it was held for the inline try only
    # (INLINE_RENDER_SECONDS), not for the second of the whole budget.
    assert len(ticks) > 10
    assert max(later - earlier for earlier, later in itertools.pairwise(ticks)) < 0.5


async def test_a_render_on_the_event_loop_is_not_traced(
    renderer: JinjaTemplateRenderer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inline budget is a CPU-time alarm, not a trace function: tracing made every
    render about four times slower (and switched off a coverage tool or debugger)."""
    traced: list[object] = []
    settrace = sys.settrace

    def recorded(function: Any) -> None:
        traced.append(function)
        settrace(function)

    monkeypatch.setattr(sys, "settrace", recorded)
    rendered = await renderer.render(
        "purchase_thank_you", Channel.EMAIL, "en", sample("purchase_thank_you")
    )
    assert rendered.subject
    assert traced == []


def test_the_render_budget_holds_when_the_process_uses_the_cpu_alarm_itself() -> None:
    """Someone else's SIGVTALRM handler or timer is left alone: the budget is then kept by
    tracing, and a runaway is still stopped."""

    def runaway() -> None:
        while True:
            pass

    theirs: list[int] = []
    previous = signal.signal(signal.SIGVTALRM, lambda signum, frame: theirs.append(signum))
    try:
        alarm = templating._CpuAlarm()
        assert not alarm.usable()
        started = time.monotonic()
        with pytest.raises(templating._OverBudget):
            templating._traced(runaway, 0.05)
        assert time.monotonic() - started < 1
        signal.signal(signal.SIGVTALRM, signal.SIG_DFL)
        alarm = templating._CpuAlarm()
        assert alarm.usable()
        signal.setitimer(signal.ITIMER_VIRTUAL, 30)  # a timer of someone else's
        with pytest.raises(templating._OverBudget):
            alarm.run(runaway, 0.05)
        assert 0 < signal.getitimer(signal.ITIMER_VIRTUAL)[0] <= 30
        assert alarm.run(lambda: 42, 0.05) == 42  # (the timer in place: traced again)
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)
    assert theirs == []


def test_a_runaway_render_on_the_main_thread_is_stopped_by_the_alarm() -> None:
    def runaway() -> None:
        while True:
            pass

    started = time.monotonic()
    with pytest.raises(templating._OverBudget):
        templating._within_budget(runaway, 0.05)
    assert time.monotonic() - started < 1
    assert templating._within_budget(lambda: 42, 0.05) == 42
    assert signal.getitimer(signal.ITIMER_VIRTUAL) == (0.0, 0.0)


def test_dates_and_money_are_written_the_way_each_language_writes_them() -> None:
    assert gregorian_to_jalali(date(2024, 3, 20)) == (1403, 1, 1)
    assert gregorian_to_jalali(date(2025, 3, 20)) == (1403, 12, 30)
    assert format_date("2026-11-30", "en") == "30 November 2026"
    assert format_date("2026-11-30", "hr") == "30. studenoga 2026."
    assert format_date("2026-11-30", "cs") == "30. listopadu 2026"
    assert format_date("2026-11-30", "sl") == "30. novembra 2026"
    assert format_datetime("2026-11-23T13:00:00Z", "hr", "Europe/Zagreb") == (
        "23. studenoga 2026. u 14:00"
    )
    assert format_datetime("2026-11-23T13:00:00Z", "en", "UTC") == "23 November 2026, 13:00 UTC"
    assert format_money("1238.9", "EUR", "en") == "€1,238.90"
    assert format_money("1238.9", "EUR", "sl") == "1.238,90\u00a0€"
    assert format_money("1238.9", "CZK", "cs") == "1\u00a0238,90\u00a0Kč"
    assert format_money("1238.9", "EUR", "fa") == "۱٬۲۳۸٫۹۰ یورو"


def test_html_made_from_text_keeps_paragraphs_and_links_without_trailing_punctuation() -> None:
    html = str(html_from_text("Hello <you>,\n\nRate us: https://portal.example/f?a=1&b=2.\nBye"))
    assert html == (
        "<p>Hello &lt;you&gt;,</p>\n"
        '<p>Rate us: <a href="https://portal.example/f?a=1&amp;b=2">'
        "https://portal.example/f?a=1&amp;b=2</a>.<br>\nBye</p>"
    )
