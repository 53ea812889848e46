"""How each platform's OAuth consent turns into accounts that can become channels.

A `Flow` says where the consent page is, which scopes it asks for, whether it takes PKCE,
and how the code the browser brings back becomes accounts (exchange, long-lived upgrade,
reading who consented). `connect` runs the rest, the same for every platform: the state,
the choice among several accounts, and creating or reconnecting the channels.

- Instagram (Instagram Login): code -> 1-hour token -> 60-day token (`ig_exchange_token`)
  -> `/me`: one account, renewed with `ig_refresh_token`.
- Threads: code -> 1-hour token -> 60-day token (`th_exchange_token`) -> `/me`: one account,
  renewed with `th_refresh_token`.
- TikTok (with PKCE): code + verifier -> a token pair (`/v2/oauth/token/`) for the
  creator's `open_id` -> `/v2/user/info/`: one account, renewed with its refresh token,
  which TikTok rotates.
- Facebook Login: code -> short-lived user token -> long-lived user token
  (`fb_exchange_token`) -> the person's Pages (`/me/accounts`, every page of it), each with
  its Page token, which does not expire when taken with a long-lived user token; a Page's
  linked Instagram business account is an account too (`instagram` with `login: facebook`,
  published with the Page's token through graph.facebook.com). The long-lived user token
  itself is not kept.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from tidings.config import Settings
from tidings.errors import BadRequest
from tidings.platforms.base import Endpoints
from tidings.platforms.store import Credentials

#: Pages listed per request, and requests at most (a person with more Pages than that is
#: asked to share fewer in the consent dialog).
LISTING_SIZE, MAX_LISTINGS = 100, 10


@dataclass(frozen=True)
class Account:
    """An account one consent gave access to: what its channel would publish to."""

    platform: str  # the channel's platform (a Facebook consent also yields Instagram ones)
    name: str
    credentials: Credentials


@dataclass(frozen=True)
class Exchange:
    """What the callback hands a flow: the code, the app, and how to reach the platform."""

    http: httpx.AsyncClient
    settings: Settings
    client_id: str
    client_secret: str = field(repr=False)
    code: str = field(repr=False)
    redirect_uri: str
    code_verifier: str | None = field(repr=False)
    now: datetime


@dataclass(frozen=True)
class Flow:
    consent_url: Callable[[Settings], str]
    scopes: tuple[str, ...]
    accounts: Callable[[Exchange], Awaitable[list[Account]]]
    #: A flow with PKCE keeps a code verifier with the state and sends its S256 challenge.
    pkce: bool = False
    #: The consent page's name for the app's id (TikTok calls it `client_key`).
    client_id_param: str = "client_id"


# --- Instagram (Instagram Login) --------------------------------------------------------


async def _instagram(x: Exchange) -> list[Account]:
    short = await _code_exchange(x, x.settings.instagram_token_url)
    if isinstance(short.get("data"), list) and short["data"]:
        short = short["data"][0]  # the newer shape wraps it in a list
    host = x.settings.instagram_api_url.rstrip("/")
    long = await _long_lived(x, host, "ig_exchange_token", short)
    return [
        await _me(
            x,
            "instagram",
            long,
            f"{host}/{x.settings.graph_api_version}/me",
            "user_id,username",
            fallback_id=short.get("user_id"),
        )
    ]


# --- Threads ------------------------------------------------------------------------------


async def _threads(x: Exchange) -> list[Account]:
    host = x.settings.threads_api_url.rstrip("/")
    short = await _code_exchange(x, f"{host}/oauth/access_token")
    long = await _long_lived(x, host, "th_exchange_token", short)
    return [
        await _me(
            x,
            "threads",
            long,
            f"{host}/{Endpoints.threads_version}/me",
            "id,username",
            fallback_id=short.get("user_id"),
        )
    ]


async def _code_exchange(x: Exchange, url: str) -> dict[str, Any]:
    """Instagram's and Threads' code exchange: a short-lived token (about an hour)."""
    form = {
        "client_id": x.client_id,
        "client_secret": x.client_secret,
        "grant_type": "authorization_code",
        "redirect_uri": x.redirect_uri,
        "code": x.code,
    }
    return await _json(x.http.post(url, data=form), "exchanging the code")


async def _long_lived(x: Exchange, host: str, grant: str, short: dict[str, Any]) -> dict[str, Any]:
    """A short-lived token traded for the 60-day one (`ig_exchange_token`,
    `th_exchange_token`)."""
    params = {
        "grant_type": grant,
        "client_secret": x.client_secret,
        "access_token": str(short.get("access_token", "")),
    }
    return await _json(
        x.http.get(f"{host}/access_token", params=params), "getting the long-lived token"
    )


async def _me(
    x: Exchange,
    platform: str,
    long: dict[str, Any],
    url: str,
    fields: str,
    fallback_id: object,
) -> Account:
    """The one account a long-lived token (`long`, with its `expires_in`) belongs to."""
    token = str(long.get("access_token") or "")
    if not token:
        raise BadRequest(f"{platform} answered without a long-lived token")
    me = await _json(
        x.http.get(url, params={"fields": fields}, headers={"Authorization": f"Bearer {token}"}),
        "reading the account",
    )
    account = str(me.get("user_id") or me.get("id") or fallback_id or "")
    if not account:
        raise BadRequest(f"{platform} did not say which account consented")
    expires_in = long.get("expires_in")
    expires_at = x.now + timedelta(seconds=expires_in) if isinstance(expires_in, int) else None
    username = me.get("username")
    name = f"@{username}" if username else f"{platform.capitalize()} {account}"
    creds = Credentials(account_id=account, access_token=token, expires_at=expires_at)
    return Account(platform, name, creds)


# --- Facebook Login (Pages, and Instagram business accounts linked to them) --------------


async def _facebook(x: Exchange) -> list[Account]:
    base = f"{x.settings.facebook_api_url.rstrip('/')}/{x.settings.graph_api_version}"
    app = {"client_id": x.client_id, "client_secret": x.client_secret}
    short = await _json(
        x.http.get(
            f"{base}/oauth/access_token",
            params=app | {"redirect_uri": x.redirect_uri, "code": x.code},
        ),
        "exchanging the code",
    )
    long = await _json(
        x.http.get(
            f"{base}/oauth/access_token",
            params=app
            | {
                "grant_type": "fb_exchange_token",
                "fb_exchange_token": str(short.get("access_token", "")),
            },
        ),
        "getting the long-lived token",
    )
    user_token = str(long.get("access_token") or "")
    if not user_token:
        raise BadRequest("Facebook answered without a long-lived token")
    accounts: list[Account] = []
    after: str | None = None
    for _ in range(MAX_LISTINGS):
        params = {
            "fields": "id,name,access_token,instagram_business_account{id,username}",
            "limit": str(LISTING_SIZE),
        }
        if after:
            params["after"] = after
        body = await _json(
            x.http.get(
                f"{base}/me/accounts",
                params=params,
                headers={"Authorization": f"Bearer {user_token}"},
            ),
            "listing the Pages",
        )
        for page in body.get("data") or []:
            accounts.extend(_page_accounts(page))
        paging = body.get("paging") or {}
        after = (paging.get("cursors") or {}).get("after")
        # Followed by cursor on the same host (never by the `next` URL it sends).
        if not paging.get("next") or not after:
            return accounts
    raise BadRequest(
        f"more than {LISTING_SIZE * MAX_LISTINGS} Pages were shared: share fewer at a time"
    )


def _page_accounts(page: Any) -> list[Account]:
    """A Page (with its token) and the Instagram business account linked to it, if any."""
    if not isinstance(page, dict) or not page.get("id") or not page.get("access_token"):
        return []  # no token: the person cannot publish on it
    page_id, token = str(page["id"]), str(page["access_token"])
    found = [
        Account(
            "facebook",
            str(page.get("name") or f"Page {page_id}"),
            Credentials(account_id=page_id, access_token=token),
        )
    ]
    linked = page.get("instagram_business_account")
    if isinstance(linked, dict) and linked.get("id"):
        username = linked.get("username")
        found.append(
            Account(
                "instagram",
                f"@{username}" if username else f"Instagram {linked['id']}",
                Credentials(
                    account_id=str(linked["id"]),
                    access_token=token,
                    extra={"login": "facebook", "page_id": page_id},
                ),
            )
        )
    return found


# --- TikTok -----------------------------------------------------------------------------


async def _tiktok(x: Exchange) -> list[Account]:
    """TikTok (Login Kit, PKCE): the code and its verifier give a token pair with its own
    lifetimes (hours for the access token, months for the refresh token, which TikTok
    rotates), for the creator `open_id`; their username is read from `/v2/user/info/`."""
    host = x.settings.tiktok_api_url.rstrip("/")
    pair = await _json(
        x.http.post(
            f"{host}/v2/oauth/token/",
            data={
                "client_key": x.client_id,
                "client_secret": x.client_secret,
                "code": x.code,
                "grant_type": "authorization_code",
                "redirect_uri": x.redirect_uri,
                "code_verifier": x.code_verifier or "",
            },
        ),
        "exchanging the code",
    )
    token, open_id = pair.get("access_token"), pair.get("open_id")
    if not isinstance(token, str) or not token or not open_id:
        raise BadRequest(f"tiktok refused while exchanging the code ({_reason(pair)})")
    info = await _json(
        x.http.get(
            f"{host}/v2/user/info/",
            params={"fields": "open_id,username,display_name"},
            headers={"Authorization": f"Bearer {token}"},
        ),
        "reading the account",
    )
    user = (info.get("data") or {}).get("user") or {}
    username = user.get("username")

    def after(seconds: object) -> datetime | None:
        return x.now + timedelta(seconds=seconds) if isinstance(seconds, int) else None

    refresh = pair.get("refresh_token")
    creds = Credentials(
        account_id=str(open_id),
        access_token=token,
        refresh_token=refresh if isinstance(refresh, str) else None,
        expires_at=after(pair.get("expires_in")),
        refresh_expires_at=after(pair.get("refresh_expires_in")),
        extra={"scope": str(pair.get("scope") or "")}
        | ({"username": str(username)} if username else {}),
    )
    name = f"@{username}" if username else str(user.get("display_name") or f"TikTok {open_id}")
    return [Account("tiktok", name, creds)]


FLOWS: dict[str, Flow] = {
    "instagram": Flow(
        consent_url=lambda s: s.instagram_oauth_url,
        # Publishing, and comments (first comments).
        scopes=(
            "instagram_business_basic",
            "instagram_business_content_publish",
            "instagram_business_manage_comments",
        ),
        accounts=_instagram,
    ),
    "threads": Flow(
        consent_url=lambda s: s.threads_oauth_url,
        # Publishing, and replies (first comments).
        scopes=("threads_basic", "threads_content_publish", "threads_manage_replies"),
        accounts=_threads,
    ),
    "facebook": Flow(
        consent_url=lambda s: s.resolved_facebook_oauth_url,
        scopes=(
            # Pages: listing them, posting (videos and reels too), first comments.
            "pages_show_list",
            "pages_read_engagement",
            "pages_manage_posts",
            "pages_manage_engagement",
            "publish_video",
            # Instagram business accounts linked to them (Instagram with Facebook Login).
            "instagram_basic",
            "instagram_content_publish",
            "instagram_manage_comments",
            "business_management",
        ),
        accounts=_facebook,
    ),
    "tiktok": Flow(
        consent_url=lambda s: s.tiktok_oauth_url,
        # Who consented, posting directly, and sending to the inbox (auto_publish: false).
        scopes=("user.info.basic", "video.publish", "video.upload"),
        accounts=_tiktok,
        pkce=True,
        client_id_param="client_key",
    ),
}


async def _json(request: Awaitable[httpx.Response], what: str) -> dict[str, Any]:
    """The platform's JSON answer; a 400 naming what was refused, and why, otherwise."""
    try:
        response = await request
    except httpx.HTTPError as exc:
        raise BadRequest(f"the platform could not be reached while {what}: {exc}") from exc
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_error or not isinstance(body, dict):
        raise BadRequest(
            f"the platform refused while {what} ({response.status_code}: {_reason(body)})"
        )
    return body


def _reason(body: object) -> str | None:
    """The message of an error body: Instagram's `error_message`, or Graph's envelope."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error)
    found = body.get("error_message") or body.get("error_description") or error
    return str(found) if found else None
