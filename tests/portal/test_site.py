"""Where the portal is served and what it is made of: one page at /portal/ (any path under
it, so links from e-mails open the right view), a small config naming the other services'
public URLs, a strict content security policy, its own scripts and a dictionary per
language, nothing in the OpenAPI document."""

from __future__ import annotations

import json
import re

from services.profiles.portal_api import LOCALES, PORTAL
from tests.portal.conftest import PortalStack

PLURAL = re.compile(r"_(zero|one|two|few|many|other)$")


async def test_every_path_under_portal_is_the_page_with_a_strict_policy(
    stack: PortalStack,
) -> None:
    http = stack.profiles.http
    for path in (
        "/portal/",
        "/portal/sign-in",
        "/portal/support/k-1",
        "/portal/complaints/k-1/feedback",
    ):
        page = await http.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html")
        assert page.content == (PORTAL / "index.html").read_bytes()  # no data in it
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert set(directives["connect-src"].split()) == {
        "'self'",
        stack.urls["complaints"],
        stack.urls["notifications"],
    }
    assert page.headers["referrer-policy"] == "no-referrer"
    assert (await http.get("/portal")).headers["location"] == "/portal/"

    config = (await http.get("/portal/config.json")).json()
    assert config["apis"] == {
        "profiles": "",
        "complaints": stack.urls["complaints"],
        "notifications": stack.urls["notifications"],
    }
    assert config["locales"] == ["en", "hr", "cs", "sl", "fa"]
    assert config["sign_in_link_minutes"] == 15

    script = await http.get("/portal/static/js/main.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert (await http.get("/portal/static/js/missing.js")).status_code == 404

    paths = (await http.get("/openapi.json")).json()["paths"]
    assert not [path for path in paths if path.startswith("/portal")]


def test_every_language_has_every_string_with_the_same_placeholders() -> None:
    def load(locale: str) -> dict[str, str]:
        loaded: dict[str, str] = json.loads((PORTAL / "i18n" / f"{locale}.json").read_text())
        return loaded

    english = load("en")
    plurals = {PLURAL.sub("", key) for key in english if PLURAL.search(key)}
    for locale in LOCALES:
        strings = load(locale)
        plain = {key for key in strings if PLURAL.sub("", key) not in plurals}
        assert plain == {key for key in english if PLURAL.sub("", key) not in plurals}, locale
        for base in plurals:
            assert f"{base}_other" in strings, (locale, base)
        for key, text in strings.items():
            reference = english.get(key) or english[f"{PLURAL.sub('', key)}_other"]
            assert set(re.findall(r"\{\w+\}", text)) == set(re.findall(r"\{\w+\}", reference)), (
                locale,
                key,
            )


def test_the_page_loads_nothing_from_elsewhere() -> None:
    for asset in PORTAL.rglob("*"):
        if asset.suffix in {".html", ".js", ".css"}:
            text = asset.read_text()
            assert not re.search(r"(src|href)=[\"']https?://", text), asset
            assert not re.search(r"import[^;]*from\s+[\"']https?://", text), asset
            assert "@import url(http" not in text, asset
