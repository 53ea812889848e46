"""Meta's Graph API (Instagram, Facebook Pages, Threads): its error envelope, what each
documented code means to the engine, and the usage headers that say when to come back.

The envelope is `{"error": {"message", "type", "code", "error_subcode", "is_transient",
"error_user_title", "error_user_msg", "fbtrace_id"}}`, mostly with HTTP 400. Each error
becomes a `PublishFailure` with a stable `errorCode` (`IG_QUOTA_EXCEEDED`, ...), prefixed
by the platform, and a kind that decides the retry (see `publishing.states`).
"""

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import httpx

from tidings.platforms.base import (
    ChannelFacts,
    PlatformContext,
    Problem,
    Problems,
    Published,
    PublishFailure,
)
from tidings.platforms.store import Credentials
from tidings.publishing.states import ErrorKind
from tidings.timefmt import utcnow

T = TypeVar("T")
# Throttling codes (rate limiting doc); 4 with subcode 2207051 is a spam verdict instead.
THROTTLED = frozenset({4, 17, 32, 341, 613, 80001, 80002})
#: When a throttled answer says nothing about when to come back.
DEFAULT_BACKOFF = timedelta(seconds=60)


@dataclass(frozen=True)
class GraphError:
    status: int
    code: int | None
    subcode: int | None
    message: str
    is_transient: bool | None = None
    fbtrace_id: str | None = None


def parse_error(response: httpx.Response) -> GraphError:
    """The error of a failed Graph response, whatever its body holds."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        text = response.text[:200] or response.reason_phrase
        return GraphError(response.status_code, None, None, f"HTTP {response.status_code}: {text}")
    return GraphError(
        status=response.status_code,
        code=_int(error.get("code")),
        subcode=_int(error.get("error_subcode")),
        message=str(error.get("error_user_msg") or error.get("message") or "unknown error"),
        is_transient=error.get("is_transient")
        if isinstance(error.get("is_transient"), bool)
        else None,
        fbtrace_id=error.get("fbtrace_id") if isinstance(error.get("fbtrace_id"), str) else None,
    )


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# (code, subcode) -> (kind, errorCode suffix); subcode None matches any subcode of the code.
_BY_CODE: dict[tuple[int, int | None], tuple[ErrorKind, str]] = {
    (9, 2207042): (ErrorKind.RATE_LIMITED, "QUOTA_EXCEEDED"),
    (4, 2207051): (ErrorKind.PERMANENT, "SPAM_SUSPECTED"),
    (25, 2207050): (ErrorKind.PERMANENT, "ACCOUNT_RESTRICTED"),
    (-1, 2207001): (ErrorKind.TRANSIENT, "SERVER_ERROR"),
    (-1, 2207032): (ErrorKind.TRANSIENT, "CREATE_MEDIA_FAILED"),
    (-1, 2207053): (ErrorKind.TRANSIENT, "UPLOAD_FAILED"),
    (-2, 2207003): (ErrorKind.TRANSIENT, "MEDIA_DOWNLOAD_TIMEOUT"),
    (-2, 2207020): (ErrorKind.TRANSIENT, "MEDIA_EXPIRED"),
    (24, 2207008): (ErrorKind.TRANSIENT, "CONTAINER_NOT_FOUND"),
    (24, 2207006): (ErrorKind.TRANSIENT, "MEDIA_NOT_FOUND"),
    (9007, 2207027): (ErrorKind.TRANSIENT, "MEDIA_NOT_READY"),
    (100, 2207023): (ErrorKind.PERMANENT, "UNKNOWN_MEDIA_TYPE"),
    (100, 2207028): (ErrorKind.PERMANENT, "CAROUSEL_SIZE"),
    (100, 2207035): (ErrorKind.PERMANENT, "PRODUCT_TAGS"),
    (100, 2207036): (ErrorKind.PERMANENT, "PRODUCT_TAGS"),
    (100, 2207037): (ErrorKind.PERMANENT, "PRODUCT_TAGS"),
    (100, 2207038): (ErrorKind.PERMANENT, "PRODUCT_TAGS"),
    (100, 2207039): (ErrorKind.PERMANENT, "PRODUCT_TAGS"),
    (100, 2207040): (ErrorKind.PERMANENT, "TOO_MANY_MENTIONS"),
    (352, None): (ErrorKind.PERMANENT, "UNSUPPORTED_VIDEO"),
    (9004, None): (ErrorKind.TRANSIENT, "MEDIA_FETCH_FAILED"),
    (36000, None): (ErrorKind.PERMANENT, "IMAGE_TOO_LARGE"),
    (36001, None): (ErrorKind.PERMANENT, "IMAGE_FORMAT"),
    (36003, None): (ErrorKind.PERMANENT, "ASPECT_RATIO"),
    (36004, None): (ErrorKind.PERMANENT, "CAPTION_TOO_LONG"),
    (190, 463): (ErrorKind.AUTH, "TOKEN_EXPIRED"),
    (190, None): (ErrorKind.AUTH, "TOKEN_INVALID"),
    (102, None): (ErrorKind.AUTH, "SESSION_INVALID"),
    (10, None): (ErrorKind.PERMANENT, "PERMISSION_MISSING"),
    (368, None): (ErrorKind.RATE_LIMITED, "POLICY_BLOCKED"),
    (506, None): (ErrorKind.PERMANENT, "DUPLICATE_POST"),
    (100, None): (ErrorKind.PERMANENT, "INVALID_PARAMETER"),
    (1, None): (ErrorKind.TRANSIENT, "UNKNOWN_ERROR"),
    (2, None): (ErrorKind.TRANSIENT, "SERVICE_UNAVAILABLE"),
    # Facebook Pages and its Video API.
    (6000, None): (ErrorKind.TRANSIENT, "VIDEO_UPLOAD_FAILED"),
    (6001, None): (ErrorKind.TRANSIENT, "VIDEO_UPLOAD_FAILED"),
    (389, None): (ErrorKind.TRANSIENT, "MEDIA_FETCH_FAILED"),
    (382, None): (ErrorKind.PERMANENT, "VIDEO_TOO_SMALL"),
    (1609005, None): (ErrorKind.PERMANENT, "LINK_SCRAPE_FAILED"),
}
# Subcodes seen with several codes (observed by client libraries rather than documented).
_BY_SUBCODE: dict[int, tuple[ErrorKind, str]] = {
    1390008: (ErrorKind.RATE_LIMITED, "POSTING_TOO_FAST"),
    1366046: (ErrorKind.PERMANENT, "PHOTO_FORMAT"),
    1366051: (ErrorKind.PERMANENT, "PHOTOS_ALREADY_POSTED"),
    1346003: (ErrorKind.PERMANENT, "CONTENT_FLAGGED"),
    1404102: (ErrorKind.PERMANENT, "CONTENT_FLAGGED"),
    1404078: (ErrorKind.PERMANENT, "PUBLISHING_AUTHORIZATION_REQUIRED"),
    1363047: (ErrorKind.TRANSIENT, "TEMPORARILY_UNAVAILABLE"),
    1609010: (ErrorKind.TRANSIENT, "TEMPORARILY_UNAVAILABLE"),
}


def classify(
    prefix: str,
    error: GraphError,
    now: datetime,
    *,
    headers: httpx.Headers | None = None,
    request_id: str | None = None,
    sent_publish: bool = False,
) -> PublishFailure:
    """`error` as a classified failure. `sent_publish`: the answer is to the irreversible
    call, so a server error or an unparseable answer leaves the outcome unknown."""
    kind, suffix = _kind(error)
    retry_at = None
    if kind is ErrorKind.RATE_LIMITED:
        retry_at = now + (regain_access(headers) or DEFAULT_BACKOFF)
    detail = f" (code {error.code}" if error.code is not None else ""
    if detail and error.subcode is not None:
        detail += f", subcode {error.subcode}"
    detail += ")" if detail else ""
    unknown = sent_publish and (error.status >= 500 or error.code is None)
    return PublishFailure(
        kind,
        f"{prefix}_{suffix}",
        f"{error.message}{detail}",
        retry_at=retry_at,
        request_id=request_id or error.fbtrace_id,
        outcome_unknown=unknown,
    )


def _kind(error: GraphError) -> tuple[ErrorKind, str]:
    code = error.code
    if code is None:
        if error.status == 429:
            return ErrorKind.RATE_LIMITED, "THROTTLED"
        if error.status >= 500:
            return ErrorKind.TRANSIENT, "SERVER_ERROR"
        return ErrorKind.PERMANENT, f"HTTP_{error.status}"
    if (code, error.subcode) not in _BY_CODE and error.subcode in _BY_SUBCODE:
        return _BY_SUBCODE[error.subcode]
    for key in ((code, error.subcode), (code, None)):
        if key in _BY_CODE:
            return _BY_CODE[key]
    if code in THROTTLED:
        return ErrorKind.RATE_LIMITED, "THROTTLED"
    if 200 <= code <= 299:
        return ErrorKind.PERMANENT, "PERMISSION_MISSING"
    if error.is_transient or error.status >= 500:
        return ErrorKind.TRANSIENT, f"ERROR_{code}"
    return ErrorKind.PERMANENT, f"ERROR_{code}"


def regain_access(headers: httpx.Headers | None) -> timedelta | None:
    """The longest `estimated_time_to_regain_access` (minutes) in the Business Use Case
    usage header, or None when the header says nothing."""
    if headers is None:
        return None
    raw = headers.get("x-business-use-case-usage")
    if not raw:
        return None
    try:
        usage = json.loads(raw)
    except json.JSONDecodeError:
        return None
    minutes = [
        entry.get("estimated_time_to_regain_access")
        for entries in (usage.values() if isinstance(usage, dict) else [])
        if isinstance(entries, list)
        for entry in entries
        if isinstance(entry, dict)
    ]
    values = [m for m in minutes if isinstance(m, int | float) and m > 0]
    return timedelta(minutes=max(values)) if values else None


def parse_time(value: Any) -> datetime | None:
    """A Graph timestamp (`2026-11-29T06:00:00+0000`)."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("+0000", "+00:00"))
    except ValueError:
        return None


async def poll(
    ctx: PlatformContext, check: Callable[[], Awaitable[T | None]], failure: PublishFailure
) -> T:
    """Call `check` until it returns something, the interval doubling from the endpoints'
    `poll_every` up to 30 s; `failure` is raised once `poll_for` seconds would pass."""
    loop = asyncio.get_running_loop()
    endpoints = ctx.endpoints
    deadline, delay = loop.time() + endpoints.poll_for, endpoints.poll_every
    while True:
        found = await check()
        if found is not None:
            return found
        if loop.time() + delay > deadline:
            raise failure
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)


def still_processing(prefix: str, ctx: PlatformContext, *, unknown: bool = False) -> PublishFailure:
    """What a poll that ran out of time raises (`unknown`: after the publishing call)."""
    return PublishFailure(
        ErrorKind.TRANSIENT,
        f"{prefix}_STILL_PROCESSING",
        f"the media was still processing after {ctx.endpoints.poll_for:.0f} s",
        outcome_unknown=unknown,
    )


class GraphSession:
    """One account's calls to a Graph API host (`base` includes the version), each
    classified on failure with errorCodes under `prefix`."""

    def __init__(self, ctx: PlatformContext, prefix: str, creds: Credentials, base: str):
        self.ctx, self.prefix, self.creds = ctx, prefix, creds
        self.base = base.rstrip("/")

    async def call(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        publishing: bool = False,
        url: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One request to `base/path` (or `url`); raises a classified `PublishFailure`.
        `publishing` marks the irreversible call, whose lost answer leaves the outcome
        unknown."""
        prefix = self.prefix
        sent = {"Authorization": f"Bearer {self.creds.access_token}"} | (headers or {})
        try:
            response = await self.ctx.http.request(
                method, url or f"{self.base}/{path}", params=params, headers=sent
            )
        except httpx.HTTPError as exc:
            raise PublishFailure(
                ErrorKind.TRANSIENT,
                f"{prefix}_NETWORK_ERROR",
                f"{type(exc).__name__} calling {path}: {exc}".rstrip(": "),
                outcome_unknown=publishing,
            ) from exc
        request_id = response.headers.get("x-fb-trace-id")
        if response.is_error:
            raise classify(
                prefix,
                parse_error(response),
                utcnow(),
                headers=response.headers,
                request_id=request_id,
                sent_publish=publishing,
            )
        try:
            body = response.json()
        except json.JSONDecodeError as exc:
            raise PublishFailure(
                ErrorKind.TRANSIENT,
                f"{prefix}_BAD_RESPONSE",
                f"{path} answered with something other than JSON",
                request_id=request_id,
                outcome_unknown=publishing,
            ) from exc
        if not publishing:
            back_off_if_used_up(prefix, response.headers)
        if not isinstance(body, dict):
            raise PublishFailure(ErrorKind.TRANSIENT, f"{prefix}_BAD_RESPONSE", f"{path}: {body!r}")
        body.setdefault("_request_id", request_id)
        return body

    async def published(
        self,
        object_id: str,
        request_id: str | None,
        *,
        link: str = "permalink",
        time: str = "timestamp",
    ) -> Published:
        """What went out, with its public link and time read back (or now, if reading fails:
        it is live, and its link can be read later)."""
        try:
            body = await self.call("GET", object_id, {"fields": f"{link},{time}"})
        except PublishFailure:
            body = {}
        return Published(
            external_post_id=object_id,
            external_url=body.get(link),
            published_at=parse_time(body.get(time)) or utcnow(),
            request_id=request_id,
        )


def back_off_if_used_up(prefix: str, headers: httpx.Headers) -> None:
    """The usage headers say a limit is reached: stop before the platform refuses."""
    for name in ("x-business-use-case-usage", "x-app-usage"):
        raw = headers.get(name)
        if not raw:
            continue
        try:
            usage = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if not isinstance(usage, dict):
            continue
        entries = (
            [usage]
            if name == "x-app-usage"
            else [e for v in usage.values() if isinstance(v, list) for e in v]
        )
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            used = max(
                (
                    value
                    for key, value in entry.items()
                    if key in ("call_count", "total_cputime", "total_time")
                    and isinstance(value, int | float)
                ),
                default=0,
            )
            if used >= 100:
                regain = regain_access(headers) or DEFAULT_BACKOFF
                raise PublishFailure(
                    ErrorKind.RATE_LIMITED,
                    f"{prefix}_THROTTLED",
                    f"the app's Graph API usage is at {used}% ({name})",
                    retry_at=utcnow() + regain,
                )


async def live_problems(
    platform: str, channel: ChannelFacts, ask: Callable[[], Awaitable[object]]
) -> list[Problem]:
    """What a live call (`ask`) says about a channel: nothing, or why it cannot publish now
    (`<platform>.quota_used`, `.token`, `.permission`, `.unreachable`)."""
    problems = Problems(platform, channel)
    try:
        await ask()
    except PublishFailure as failure:
        if failure.kind is ErrorKind.RATE_LIMITED:
            rule = "quota_used" if failure.code.endswith("QUOTA_EXCEEDED") else "throttled"
        elif failure.kind is ErrorKind.AUTH:
            rule = "token"
        elif failure.code.endswith("PERMISSION_MISSING"):
            rule = "permission"
        else:
            rule = "unreachable"
        problems.add(rule, f"{failure.message} ({failure.code})")
    return problems
