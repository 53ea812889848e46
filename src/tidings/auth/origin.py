"""Where a sign-in comes from: the client's address (what the throttle counts against) and
whether a page of another site posted it (login CSRF: signing the victim's browser into
the attacker's account)."""

from urllib.parse import urlsplit

from starlette.requests import Request

from tidings.errors import Forbidden

_DEFAULT_PORTS = {"http": 80, "https": 443}


def client_address(request: Request) -> str:
    """The address the request came from: the peer's, or, behind a trusted reverse proxy,
    the one it forwarded (uvicorn's ProxyHeadersMiddleware, see `TIDINGS_TRUSTED_PROXIES`)."""
    return request.client.host if request.client is not None else "unknown"


def origin_of(url: str) -> str:
    """`scheme://host[:port]` as a browser writes it in `Origin` (no default port)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    return f"{scheme}://{host}"


def refuse_cross_site(request: Request, public_url: str) -> None:
    """Refuse (403) a sign-in that another site's page sent: `Sec-Fetch-Site: cross-site`,
    or an `Origin` that is neither this request's own nor `TIDINGS_PUBLIC_URL`'s.

    Clients that send neither header (scripts, curl) are not browsers acting for someone
    else, and pass.
    """
    if request.headers.get("sec-fetch-site", "").strip().lower() == "cross-site":
        raise Forbidden("sign-in refused: it was sent from another site")
    origin = request.headers.get("origin")
    if origin is None:
        return
    own = {origin_of(str(request.base_url)), origin_of(public_url)}
    if origin.strip().lower() == "null" or origin_of(origin) not in own:
        raise Forbidden("sign-in refused: it was sent from another site")
