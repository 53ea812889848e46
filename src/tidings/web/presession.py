"""The CSRF token of the sign-in and first-run forms, before there is a session to keep one.

A signed double-submit cookie: rendering the form sets a random nonce in a cookie and puts
HMAC(secret key, nonce) in the form; a post is accepted only when its form token is the
HMAC of its cookie. Another site can make a browser post the form, but it cannot read the
cookie, and without the server's secret it cannot make the token for a cookie it planted
(from a sibling subdomain, say). The cookie is `SameSite=Strict`, so a post from another
site does not even carry it.
"""

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from fastapi import Request, Response

COOKIE = "tidings_signin"
FIELD = "csrf_token"
_LABEL = b"tidings sign-in form:"
_NONCE = re.compile(r"[A-Za-z0-9_-]{32,64}")


@dataclass(frozen=True)
class FormToken:
    """The browser's nonce (its cookie) and the token the form carries for it."""

    nonce: str
    token: str


def _token_for(secret: str, nonce: str) -> str:
    return hmac.new(secret.encode(), _LABEL + nonce.encode(), hashlib.sha256).hexdigest()


def form_token(request: Request, secret: str) -> FormToken:
    """The token for a form being rendered: for the browser's nonce if it has one (so two
    tabs both work), else for a new one."""
    nonce = request.cookies.get(COOKIE, "")
    if not _NONCE.fullmatch(nonce):
        nonce = secrets.token_urlsafe(32)
    return FormToken(nonce, _token_for(secret, nonce))


def keep(response: Response, form: FormToken, *, secure: bool) -> Response:
    """Set the nonce cookie the form's token is for (it lasts as long as the browser)."""
    response.set_cookie(
        COOKIE, form.nonce, httponly=True, samesite="strict", secure=secure, path="/"
    )
    return response


def is_valid(request: Request, secret: str, sent: str) -> bool:
    """Whether a posted form's token is the one made for this browser's nonce."""
    nonce = request.cookies.get(COOKIE, "")
    if not _NONCE.fullmatch(nonce):
        return False
    return hmac.compare_digest(_token_for(secret, nonce).encode(), sent.encode())
