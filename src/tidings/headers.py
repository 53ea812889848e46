"""Security headers on every response, and the per-response nonce that lets a page run its
own scripts and nothing else.

Pages get a Content-Security-Policy that allows scripts and styles only from this server or
carrying the response's nonce, so markup injected into a page cannot run. Every response
(pages, API answers, static files) refuses to be framed, to be sniffed into another type,
and sends its address only to this site. The API docs load Swagger UI and ReDoc from their
CDN, so they have a policy of their own, still with a nonce for their one inline script.
"""

import secrets
from collections.abc import Awaitable, Callable, Mapping

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Where the nonce of the response being built is kept (`request.state.csp_nonce`).
NONCE_STATE = "csp_nonce"
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
_DOCS_CDN = "https://cdn.jsdelivr.net"
_FAVICON = "https://fastapi.tiangolo.com"

#: On every response, whatever it is.
COMMON_HEADERS: Mapping[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def page_policy(nonce: str) -> str:
    """The pages' policy: this server's scripts and styles, or the nonce's; media from
    anywhere (the composer previews the URLs people paste), nothing framed or framing."""
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' 'nonce-{nonce}'",
            f"style-src 'self' 'nonce-{nonce}'",
            "img-src 'self' https: http: data:",
            "media-src 'self' https: http:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def docs_policy(nonce: str) -> str:
    """The API docs' policy: Swagger UI and ReDoc come from their CDN and style their own
    elements inline (style attributes cannot carry a nonce); their inline script has one."""
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'nonce-{nonce}' {_DOCS_CDN}",
            f"style-src 'self' 'unsafe-inline' {_DOCS_CDN} https://fonts.googleapis.com",
            "font-src https://fonts.gstatic.com",
            f"img-src 'self' data: {_FAVICON} {_DOCS_CDN}",
            "connect-src 'self'",
            "worker-src blob:",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


#: Anything that is not a page (JSON, static files) may load and frame nothing.
OTHER_POLICY = "default-src 'none'; frame-ancestors 'none'"


def policy_for(path: str, content_type: str, nonce: str) -> str:
    """The Content-Security-Policy of one response."""
    if path in DOCS_PATHS:
        return docs_policy(nonce)
    if content_type.startswith("text/html"):
        return page_policy(nonce)
    return OTHER_POLICY


class SecurityHeaders:
    """ASGI middleware: a fresh nonce per request, and the headers above on its response.

    Plain ASGI rather than `BaseHTTPMiddleware`, so streaming answers and the request's
    task are left as they are.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(18)
        scope.setdefault("state", {})[NONCE_STATE] = nonce
        path: str = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in COMMON_HEADERS.items():
                    headers.setdefault(name, value)
                headers.setdefault(
                    "Content-Security-Policy",
                    policy_for(path, headers.get("content-type", ""), nonce),
                )
            await send(message)

        await self.app(scope, receive, send_with_headers)


def nonce_of(request: Request) -> str:
    """The nonce of the response being built for `request` (empty outside the middleware)."""
    return str(getattr(request.state, NONCE_STATE, ""))


def _with_nonce(page: HTMLResponse, nonce: str) -> HTMLResponse:
    # FastAPI writes its docs pages' one inline script as a bare `<script>`; the nonce lets
    # exactly that one run under the docs' policy.
    body = bytes(page.body).decode().replace("<script>", f'<script nonce="{nonce}">')
    return HTMLResponse(body, status_code=page.status_code)


def install_docs(app: FastAPI, *, title: str) -> None:
    """Serve /docs and /redoc (built with `docs_url=None, redoc_url=None`) with the nonce."""
    openapi_url = app.openapi_url or "/openapi.json"
    pages: dict[str, Callable[[], HTMLResponse]] = {
        "/docs": lambda: get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - Swagger UI",
            oauth2_redirect_url="/docs/oauth2-redirect",
            # No badge fetched from validator.swagger.io: the policy loads nothing from there.
            swagger_ui_parameters={"validatorUrl": None},
        ),
        "/docs/oauth2-redirect": get_swagger_ui_oauth2_redirect_html,
        "/redoc": lambda: get_redoc_html(openapi_url=openapi_url, title=f"{title} - ReDoc"),
    }
    for path, build in pages.items():
        app.add_api_route(path, _docs_page(build), methods=["GET"], include_in_schema=False)


def _docs_page(build: Callable[[], HTMLResponse]) -> Callable[[Request], Awaitable[HTMLResponse]]:
    async def page(request: Request) -> HTMLResponse:
        return _with_nonce(build(), nonce_of(request))

    return page
