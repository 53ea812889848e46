"""Rendering pages: the templates, the signed-in person's context, flash messages, and the
redirect that ends every action."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from tidings.headers import nonce_of
from tidings.web.deps import Viewer

HERE = Path(__file__).parent
FLASH_COOKIE = "tidings_flash"
templates = Jinja2Templates(directory=str(HERE / "templates"))


def local(value: datetime | None, zone: str, fmt: str = "%a %d %b %Y, %H:%M") -> str:
    """An instant as the viewer reads it, in their timezone."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(ZoneInfo(zone)).strftime(fmt)


templates.env.filters["local"] = local


def render(
    request: Request,
    name: str,
    viewer: Viewer | None = None,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page, with the viewer (nav, role, CSRF token), the flash message left for it, and
    the response's nonce (`csp_nonce`), the only way a page's `<script>` may run."""
    flash = _read_flash(request)
    response = templates.TemplateResponse(
        request,
        name,
        {"viewer": viewer, "flash": flash, "csp_nonce": nonce_of(request), **context},
        status_code=status_code,
    )
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def sentence(message: str) -> str:
    """A message as the services word it (lower-case, for the API) as a page says it."""
    return message[:1].upper() + message[1:]


def redirect(url: str, message: str | None = None, *, kind: str = "success") -> Response:
    """The answer to an action: go to `url` and show `message` there once."""
    response = RedirectResponse(url, status_code=303)
    if message:
        payload = quote(json.dumps({"kind": kind, "message": message}))
        response.set_cookie(FLASH_COOKIE, payload, max_age=60, httponly=True, samesite="lax")
    return response


def _read_flash(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        value = json.loads(unquote(raw))
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("message"), str):
        return None
    kind = value.get("kind") if value.get("kind") in ("success", "error") else "success"
    return {"kind": str(kind), "message": value["message"][:500]}
