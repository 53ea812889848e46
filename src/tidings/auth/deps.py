"""The `CurrentPrincipal` dependency: every route's authentication, three ways."""

import hmac
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from tidings.auth import service
from tidings.auth.principal import AuthMethod, Principal
from tidings.db.session import SessionDep, StateDep
from tidings.errors import Forbidden, Unauthorized
from tidings.timefmt import utcnow

SESSION_COOKIE = "tidings_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_signed_key = APIKeyHeader(
    name="x-api-key",
    auto_error=False,
    scheme_name="SignedRequest",
    description="Key id; also send x-date (ISO-8601) and x-signature "
    "(lowercase hex HMAC-SHA256 of the exact x-date, keyed by the key's secret).",
)
_bearer = HTTPBearer(
    auto_error=False, scheme_name="Bearer", description="The key's token: `<key id>.<secret>`."
)
_cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    scheme_name="Session",
    description="Set by POST /auth/login; writes must also send X-CSRF-Token.",
)


async def current_principal(
    request: Request,
    session: SessionDep,
    state: StateDep,
    x_api_key: Annotated[str | None, Security(_signed_key)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    cookie: Annotated[str | None, Security(_cookie)],
) -> Principal:
    """Authenticate by signed headers, then Bearer token, then session cookie (with CSRF)."""
    now = utcnow()
    settings = state.settings
    if x_api_key is not None:
        return await service.authenticate_signature(
            session,
            state.box,
            key_id=x_api_key,
            x_date=request.headers.get("x-date"),
            signature=request.headers.get("x-signature"),
            now=now,
            max_future=timedelta(seconds=settings.signature_max_future_seconds),
            max_age=timedelta(seconds=settings.signature_max_age_seconds),
        )
    if bearer is not None:
        return await service.authenticate_bearer(session, state.box, bearer.credentials)
    if cookie is not None:
        active = await service.authenticate_session(session, cookie, now)
        if active is None:
            raise Unauthorized("session expired or signed out; sign in again")
        if request.method not in _SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), active.record.csrf_token.encode()):
                raise Forbidden(f"missing or invalid {CSRF_HEADER} header")
        request.state.user_session = active.record
        return active.principal
    raise Unauthorized(
        "authentication required: sign requests with x-api-key, x-date and x-signature, "
        "send Authorization: Bearer <token>, or sign in"
    )


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def principal_apart(
    request: Request,
    state: StateDep,
    x_api_key: Annotated[str | None, Security(_signed_key)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    cookie: Annotated[str | None, Security(_cookie)],
) -> Principal:
    """The caller, authenticated as `CurrentPrincipal` does but in a short transaction of
    its own, closed before the route runs: for routes that wait on the network, which must
    not hold a database connection (or SQLite's write lock) meanwhile."""
    async with state.db.transaction(write=False) as session:
        return await current_principal(request, session, state, x_api_key, bearer, cookie)


#: `CurrentPrincipal` for a route that opens its own short transactions (and takes no
#: `SessionDep`).
PrincipalApart = Annotated[Principal, Depends(principal_apart)]


def require_session(principal: Principal) -> None:
    if principal.method is not AuthMethod.SESSION:
        raise Unauthorized("this endpoint needs a signed-in session")
