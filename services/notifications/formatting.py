"""Dates, times, money and numbers written as each language writes them.

Templates use these as filters (``{{ due_date|date }}``, ``{{ opened_at|datetime }}``,
``{{ total_amount|money(currency) }}``, ``{{ days_left|number }}``); the renderer passes
the template's locale and the recipient's time zone. Persian gets Persian digits and the
Solar Hijri calendar, the one its readers live by. Languages without rules of their own
are written the English way. Values may be Python objects or their JSON form (ISO 8601
strings, decimal strings); ``None`` gives an empty string.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PERSIAN_DIGITS = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")


@dataclass(frozen=True)
class _Style:
    months: list[str]
    date: str  # {day} {month} {year}
    datetime: str  # {date} {time}
    time: str  # {hour} {minute}
    decimal: str
    group: str
    money: str  # {amount} {symbol}


_STYLES: dict[str, _Style] = {
    "en": _Style(
        months=[
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ],
        date="{day} {month} {year}",
        datetime="{date}, {time}",
        time="{hour}:{minute}",
        decimal=".",
        group=",",
        money="{symbol}{amount}",
    ),
    "hr": _Style(
        months=[
            "siječnja",
            "veljače",
            "ožujka",
            "travnja",
            "svibnja",
            "lipnja",
            "srpnja",
            "kolovoza",
            "rujna",
            "listopada",
            "studenoga",
            "prosinca",
        ],
        date="{day}. {month} {year}.",
        datetime="{date} u {time}",
        time="{hour}:{minute}",
        decimal=",",
        group=".",
        money="{amount}\u00a0{symbol}",
    ),
    "cs": _Style(
        months=[
            "ledna",
            "února",
            "března",
            "dubna",
            "května",
            "června",
            "července",
            "srpna",
            "září",
            "října",
            "listopadu",
            "prosince",
        ],
        date="{day}. {month} {year}",
        datetime="{date}, {time}",
        time="{hour}:{minute}",
        decimal=",",
        group="\u00a0",
        money="{amount}\u00a0{symbol}",
    ),
    "sl": _Style(
        months=[
            "januarja",
            "februarja",
            "marca",
            "aprila",
            "maja",
            "junija",
            "julija",
            "avgusta",
            "septembra",
            "oktobra",
            "novembra",
            "decembra",
        ],
        date="{day}. {month} {year}",
        datetime="{date} ob {time}",
        time="{hour}.{minute}",
        decimal=",",
        group=".",
        money="{amount}\u00a0{symbol}",
    ),
    "fa": _Style(
        months=[
            "فروردین",
            "اردیبهشت",
            "خرداد",
            "تیر",
            "مرداد",
            "شهریور",
            "مهر",
            "آبان",
            "آذر",
            "دی",
            "بهمن",
            "اسفند",
        ],
        date="{day} {month} {year}",
        datetime="{date}، ساعت {time}",
        time="{hour}:{minute}",
        decimal="٫",  # noqa: RUF001 - the Persian decimal separator
        group="٬",
        money="{amount} {symbol}",
    ),
}

# Per language; "any" for the other languages; else the ISO code.
_SYMBOLS: dict[str, dict[str, str]] = {
    "EUR": {"en": "€", "any": "€", "fa": "یورو"},
    "USD": {"en": "$", "fa": "دلار"},
    "GBP": {"en": "£", "any": "£", "fa": "پوند"},
    "CZK": {"cs": "Kč", "fa": "کرون چک"},
    "IRR": {"fa": "ریال"},
}
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "GMT", "Etc/GMT", "Universal", "Zulu", "Etc/Zulu"})
_NO_MINOR_UNITS = frozenset({"JPY", "KRW", "IRR", "ISK", "CLP", "VND"})


def style_of(locale: str) -> _Style:
    return _STYLES.get(locale.split("-", maxsplit=1)[0].lower(), _STYLES["en"])


def _language(locale: str) -> str:
    language = locale.split("-", maxsplit=1)[0].lower()
    return language if language in _STYLES else "en"


def _is_utc(name: str | None) -> bool:
    found = zone(name)
    return found is UTC or getattr(found, "key", "") in _UTC_NAMES


def zone(name: str | None) -> tzinfo:
    """The IANA zone, or UTC when there is none or it is unknown."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def gregorian_to_jalali(day: date) -> tuple[int, int, int]:
    """The Solar Hijri (Jalali) year, month and day of a Gregorian date (arithmetic
    algorithm of jdf.scr.ir, exact for 1178-1633 SH)."""
    month_starts = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)
    year = day.year + 1 if day.month > 2 else day.year
    days = (
        355666
        + 365 * day.year
        + (year + 3) // 4
        - (year + 99) // 100
        + (year + 399) // 400
        + day.day
        + month_starts[day.month - 1]
    )
    jalali_year = -1595 + 33 * (days // 12053)
    days %= 12053
    jalali_year += 4 * (days // 1461)
    days %= 1461
    if days > 365:
        jalali_year += (days - 1) // 365
        days = (days - 1) % 365
    if days < 186:
        return jalali_year, 1 + days // 31, 1 + days % 31
    return jalali_year, 7 + (days - 186) // 30, 1 + (days - 186) % 30


def _as_datetime(value: object) -> datetime | date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime | date):
        return value
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            return datetime.fromisoformat(text) if "T" in text else date.fromisoformat(text)
        except ValueError:
            return None
    return None


def _local(moment: datetime, time_zone: str | None) -> datetime:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(zone(time_zone))


def format_date(value: object, locale: str, time_zone: str | None = None) -> str:
    """A calendar date; a time is first moved to the recipient's zone."""
    parsed = _as_datetime(value)
    if parsed is None:
        return "" if value is None else str(value)
    day = _local(parsed, time_zone).date() if isinstance(parsed, datetime) else parsed
    style = style_of(locale)
    if _language(locale) == "fa":
        year, month, day_of_month = gregorian_to_jalali(day)
        text = style.date.format(day=day_of_month, month=style.months[month - 1], year=year)
        return text.translate(PERSIAN_DIGITS)
    return style.date.format(day=day.day, month=style.months[day.month - 1], year=day.year)


def format_datetime(value: object, locale: str, time_zone: str | None = None) -> str:
    """Date and time of day in the recipient's zone (UTC is said out loud)."""
    parsed = _as_datetime(value)
    if not isinstance(parsed, datetime):
        return format_date(value, locale, time_zone)
    local = _local(parsed, time_zone)
    style = style_of(locale)
    clock = style.time.format(hour=f"{local.hour:02d}", minute=f"{local.minute:02d}")
    if _language(locale) == "fa":
        clock = clock.translate(PERSIAN_DIGITS)
    text = style.datetime.format(date=format_date(local, locale, time_zone), time=clock)
    if _is_utc(time_zone):
        text += " UTC"
    return text


def _decimal(value: object) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def format_number(value: object, locale: str, places: int | None = None) -> str:
    """Grouped thousands and the language's decimal sign (and digits, for Persian)."""
    number = _decimal(value)
    if number is None:
        return "" if value is None else str(value)
    style = style_of(locale)
    if places is not None:
        number = number.quantize(Decimal(1).scaleb(-places))
    sign = "-" if number < 0 else ""
    whole, _, fraction = f"{abs(number):f}".partition(".")
    groups: list[str] = []
    while len(whole) > 3:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    groups.insert(0, whole)
    text = sign + style.group.join(groups) + (style.decimal + fraction if fraction else "")
    return text.translate(PERSIAN_DIGITS) if _language(locale) == "fa" else text


def format_money(value: object, currency: object, locale: str) -> str:
    """An amount with its currency, e.g. ``€238.90``, ``238,90 €``, ``۲۳۸٫۹۰ یورو``."""  # noqa: RUF002
    if _decimal(value) is None:
        return "" if value is None else str(value)
    code = str(currency or "").upper()
    places = 0 if code in _NO_MINOR_UNITS else 2
    amount = format_number(value, locale, places)
    if not code:
        return amount
    language = _language(locale)
    symbols = _SYMBOLS.get(code, {})
    symbol = symbols.get(language) or symbols.get("any")
    if symbol is None:
        symbol = f"{code}\u00a0" if language == "en" else code
    return style_of(locale).money.format(amount=amount, symbol=symbol).strip()
