"""Meta's Graph API (Instagram, Facebook Pages, Threads): its error envelope, what each
documented code means to the engine, and the usage headers that say when to come back.

The envelope is `{"error": {"message", "type", "code", "error_subcode", "is_transient",
"error_user_title", "error_user_msg", "fbtrace_id"}}`, mostly with HTTP 400. Each error
becomes a `PublishFailure` with a stable `errorCode` (`IG_QUOTA_EXCEEDED`, ...), prefixed
by the platform, and a kind that decides the retry (see `publishing.states`).
"""

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from tidings.platforms.base import PublishFailure
from tidings.publishing.states import ErrorKind

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
