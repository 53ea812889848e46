"""The `CurrentPrincipal` dependency: every route's authentication, three ways."""

import hmac
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.auth import service
from tidings.auth.models import UsedSignature
from tidings.auth.principal import AuthMethod, Principal
from tidings.auth.scopes import UnknownRoute, scope_for
from tidings.db.session import SessionDep, StateDep, holds_write_lock, if_rolled_back
from tidings.errors import Forbidden, Unauthorized
from tidings.state import AppState
from tidings.timefmt import utcnow

SESSION_COOKIE = "tidings_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_signed_key = APIKeyHeader(
    name="x-api-key",
    auto_error=False,
    scheme_name="SignedRequest",
    description="Key id; also send x-date (ISO-8601) and x-signature: the lowercase hex "
    "HMAC-SHA256, keyed by the key's secret, of METHOD \\n path[?query] \\n x-date \\n "
    "hex SHA-256 of the body (a date-signing key: of the exact x-date, each pair once).",
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
    """Authenticate by signed headers, then Bearer token, then session cookie (with CSRF);
    then refuse a key whose scopes do not cover the route."""
    principal = await _authenticate(request, session, state, x_api_key, bearer, cookie)
    _authorize_route(request, principal)
    return principal


async def _authenticate(
    request: Request,
    session: AsyncSession,
    state: AppState,
    x_api_key: str | None,
    bearer: HTTPAuthorizationCredentials | None,
    cookie: str | None,
) -> Principal:
    now = utcnow()
    settings = state.settings
    if x_api_key is not None:
        signed = await signed_request(request)
        # The key is read in a short transaction of its own, before the request's takes a
        # connection: spending a date signature in yet another one then never waits for a
        # second connection while holding a first (which, with many such requests at
        # once, would exhaust the pool).
        async with state.db.transaction(write=False) as lookup:
            check = await service.authenticate_signature(
                lookup,
                state.box,
                key_id=x_api_key,
                x_date=request.headers.get("x-date"),
                signature=request.headers.get("x-signature"),
                request=signed,
                now=now,
                max_future=timedelta(seconds=settings.signature_max_future_seconds),
                max_age=timedelta(seconds=settings.signature_max_age_seconds),
            )
        if check.to_spend is not None:
            await _spend(session, state, check.to_spend)
        return check.principal
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


async def signed_request(request: Request) -> service.SignedRequest:
    """The request as a request-signing key signs it: the path as it reached the server,
    before percent-decoding (ASGI's `raw_path`; some clients put the query in it too), the
    raw query string and the raw body (FastAPI has read and kept it already for JSON
    routes, so reading it here costs nothing and leaves the route's parsing as it was; a
    form route's body is streamed, not kept, so it cannot be signed)."""
    raw_path: bytes | None = request.scope.get("raw_path")
    path = raw_path.decode("latin-1").partition("?")[0] if raw_path else request.url.path
    query = bytes(request.scope.get("query_string", b"")).decode("latin-1")
    try:
        body = await request.body()
    except RuntimeError:
        # A form route (none in the API) has FastAPI stream its body without keeping it.
        raise Unauthorized(
            "this route's body cannot be checked against a signature; use a Bearer token"
        ) from None
    return service.SignedRequest(request.method, path, query, body)


async def _spend(session: AsyncSession, state: AppState, used: UsedSignature) -> None:
    """Accept a date-signing key's signature once, whatever becomes of the request."""
    now = utcnow()
    if holds_write_lock(session):
        # No other transaction could write before this one ends: spend in it, and again on
        # its own if it is rolled back, so that a failed request leaves the pair spent.
        fresh = await service.spend_signature(session, used, now)
        if fresh:

            async def again(retry: AsyncSession) -> None:
                await service.spend_signature(retry, used, now)

            if_rolled_back(session, again)
    else:
        # In a short transaction of its own, committed before the request goes on: the
        # request's may be a SQLite reader (whose snapshot could not safely become a
        # writer), or a long one on PostgreSQL (holding the row would hold up a replay's
        # refusal, and every pruning, until it ended).
        async with state.db.transaction() as own:
            fresh = await service.spend_signature(own, used, now)
    if not fresh:
        raise Unauthorized(
            "signature replayed: this key signs the x-date alone, so each (x-date, "
            "x-signature) pair is accepted once; sign every request with a new x-date"
        )


def _authorize_route(request: Request, principal: Principal) -> None:
    """A key may use a route only with the scope `auth.scopes.ROUTE_SCOPES` gives it."""
    if principal.scopes is None:
        return
    route_path = str(getattr(request.scope.get("route"), "path", ""))
    try:
        scope = scope_for(request.method, route_path)
    except UnknownRoute:
        raise Forbidden(f"API keys cannot use {request.method} {route_path}") from None
    if principal.lacks(scope):
        assert scope is not None
        raise Forbidden(
            f"this API key lacks the {scope.value} scope needed for {request.method} "
            f"{route_path}; an owner or admin can create a key with it"
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
