"""The customer portal's web app, served at ``/portal/`` by profiles, the identity owner.

The page is static (ES modules and CSS, no build step, nothing from a CDN) and holds no
data: it signs the customer in through ``/api/v1/portal`` (same origin) and calls every
service's API with the customer token it got. Where complaints and notifications are, as
the browser reaches them, it reads from ``/portal/config.json``; those services let the
portal's origin in through CORS (``RAPPORT_PORTAL_ORIGINS``, :mod:`shared.http`).

Every other path under ``/portal/`` answers the page itself, whose router shows the view
the path names: ``/portal/sign-in#token=…`` (the e-mailed link), ``/portal/support/{id}``,
``/portal/complaints/{id}/feedback`` (notifications' links), and so on. None of it is in
the OpenAPI document: it is a page, not the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from services.profiles.ledger import Addon
from services.profiles.settings import ProfilesSettings

PORTAL = Path(__file__).parent / "portal"
BASE = "/portal/"
# The languages the portal speaks (a dictionary each in portal/i18n/); fa right to left.
LOCALES = ("en", "hr", "cs", "sl", "fa")


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class PortalSite:
    """What the page is told, and the headers it is served with."""

    complaints_url: str
    notifications_url: str
    sign_in_link_minutes: int
    addons: tuple[Addon, ...] = ()

    @classmethod
    def of(cls, settings: ProfilesSettings) -> PortalSite:
        return cls(
            complaints_url=settings.portal_complaints_url.rstrip("/"),
            notifications_url=settings.portal_notifications_url.rstrip("/"),
            sign_in_link_minutes=max(settings.sign_in_link_ttl_seconds // 60, 1),
            addons=tuple(settings.portal_addons),
        )

    def config(self) -> dict[str, Any]:
        return {
            "base": BASE,
            # "" is this origin: profiles serves the page.
            "apis": {
                "profiles": "",
                "complaints": self.complaints_url,
                "notifications": self.notifications_url,
            },
            "locales": list(LOCALES),
            "sign_in_link_minutes": self.sign_in_link_minutes,
            # What the orders page offers (POST /customers/{id}/orders charges these prices).
            "addons": [addon.model_dump(mode="json") for addon in self.addons],
        }

    def page_headers(self) -> dict[str, str]:
        """The page runs only its own scripts and talks only to the services' APIs."""
        apis = sorted({origin_of(self.complaints_url), origin_of(self.notifications_url)})
        return {
            "Content-Security-Policy": (
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                f"connect-src 'self' {' '.join(apis)}; base-uri 'none'; form-action 'none'; "
                "frame-ancestors 'none'"
            ),
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        }


def get_site(request: Request) -> PortalSite:
    site: PortalSite = request.app.state.portal
    return site


router = APIRouter(include_in_schema=False)
router.mount("/portal/static", StaticFiles(directory=PORTAL), name="portal-static")


@router.get("/portal")
async def without_slash() -> RedirectResponse:
    return RedirectResponse(BASE, status_code=308)


@router.get("/portal/config.json")
async def config(request: Request) -> JSONResponse:
    """Where the page finds the services' APIs (no token: the page needs it to sign in)."""
    return JSONResponse(get_site(request).config(), headers={"Cache-Control": "no-cache"})


@router.get("/portal/{path:path}")
async def page(request: Request, path: str) -> FileResponse:
    """The page, whatever view the path names; it holds no data, so it needs no token."""
    return FileResponse(PORTAL / "index.html", headers=get_site(request).page_headers())
