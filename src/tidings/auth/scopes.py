"""What an API key may do: its scopes, and the one table of which route needs which.

A key carries a set of scopes; a signed-in person carries none (their role decides, as
before). Every API route is in `ROUTE_SCOPES`: a key is refused (403, naming the scope) a
route whose scope it lacks, and a route missing from the table, so a new route is closed to
keys until someone decides its scope. `None` in the table means no scope: the route is open
to any key (`/auth/me`) or refused to every key by its own permission check (managing keys,
members and platform apps, connecting accounts: those are people's decisions), which then
says why.
"""

from collections.abc import Iterable, Mapping
from enum import StrEnum

from tidings.errors import BadRequest


class Scope(StrEnum):
    POSTS_READ = "posts:read"
    POSTS_WRITE = "posts:write"
    CHANNELS_READ = "channels:read"
    CHANNELS_WRITE = "channels:write"
    WORKSPACE_READ = "workspace:read"
    #: The instance's Prometheus metrics (`GET /metrics`); never a default.
    METRICS_READ = "metrics:read"


class Signing(StrEnum):
    """What a key's `x-signature` covers."""

    #: The canonical request: method, path and query, x-date and the body's hash.
    REQUEST = "request"
    #: The x-date alone (for Dynamo-compatible clients); each signature is accepted once.
    DATE = "date"


#: What a key gets unless it is created with other scopes (and what keys made before
#: scopes existed were given).
DEFAULT_SCOPES: frozenset[Scope] = frozenset(
    {Scope.POSTS_READ, Scope.POSTS_WRITE, Scope.CHANNELS_READ, Scope.CHANNELS_WRITE}
)

_POSTS = "/scheduled-posts"
_POST = "/scheduled-posts/{post_id}"

#: (method, route path) → the scope a key needs; None: no scope (see the module's docstring).
ROUTE_SCOPES: Mapping[tuple[str, str], Scope | None] = {
    ("GET", "/auth/me"): None,
    ("PATCH", "/auth/me"): None,  # a person's own settings: keys are refused (401)
    ("POST", "/auth/logout"): None,  # ends a session: keys are refused (401)
    ("POST", "/auth/password"): None,  # a person's own password: keys are refused (401)
    ("GET", _POSTS): Scope.POSTS_READ,
    ("POST", _POSTS): Scope.POSTS_WRITE,
    # A dry run stores nothing, but it fetches the media: it needs what creating a post does.
    ("POST", f"{_POSTS}/validate"): Scope.POSTS_WRITE,
    ("GET", _POST): Scope.POSTS_READ,
    ("PATCH", _POST): Scope.POSTS_WRITE,
    ("DELETE", _POST): Scope.POSTS_WRITE,
    ("POST", f"{_POST}/submit-for-approval"): Scope.POSTS_WRITE,
    ("POST", f"{_POST}/reject"): Scope.POSTS_WRITE,
    ("POST", f"{_POST}/approve"): None,  # a human decision: the lifecycle refuses keys
    ("POST", f"{_POST}/publish"): None,  # likewise
    ("POST", f"{_POST}/targets/{{channel_id}}/resolve"): None,  # likewise
    ("POST", f"{_POST}/revert"): Scope.POSTS_WRITE,
    ("POST", f"{_POST}/cancel"): Scope.POSTS_WRITE,
    ("GET", f"{_POST}/validation"): Scope.POSTS_WRITE,  # a dry run, as above
    ("GET", f"{_POST}/events"): Scope.POSTS_READ,
    ("GET", f"{_POST}/attempts"): Scope.POSTS_READ,
    ("GET", "/channels"): Scope.CHANNELS_READ,
    ("POST", "/channels"): Scope.CHANNELS_WRITE,
    ("GET", "/channels/{channel_id}"): Scope.CHANNELS_READ,
    ("PATCH", "/channels/{channel_id}"): Scope.CHANNELS_WRITE,
    ("POST", "/channels/{channel_id}/check"): Scope.CHANNELS_WRITE,  # may mark it NEEDS_RECONNECT
    ("GET", "/channels/connect/{platform}"): None,  # people only, in a browser
    ("GET", "/channels/connect/{platform}/callback"): None,
    ("POST", "/channels/connect/{platform}/choose"): None,
    ("GET", "/sandbox/channels/{channel_id}/posts"): Scope.CHANNELS_READ,
    ("GET", "/platform-apps"): Scope.CHANNELS_READ,  # client ids only, never the secrets
    ("PUT", "/platform-apps/{platform}"): None,  # signed-in owners and admins only
    ("DELETE", "/platform-apps/{platform}"): None,
    ("GET", "/api-keys"): None,  # keys never manage keys
    ("POST", "/api-keys"): None,
    ("DELETE", "/api-keys/{key_id}"): None,
    ("GET", "/members"): Scope.WORKSPACE_READ,
    ("GET", "/members/invitations"): None,  # keys never manage people
    ("POST", "/members/invitations"): None,
    ("DELETE", "/members/invitations/{invitation_id}"): None,
    ("POST", "/members/{user_id}/password-reset"): None,
    ("PATCH", "/members/{user_id}"): None,
    ("DELETE", "/members/{user_id}"): None,
    ("GET", "/workspace"): Scope.WORKSPACE_READ,
    ("PATCH", "/workspace"): None,  # keys never change the workspace
    ("GET", "/metrics"): Scope.METRICS_READ,
}


class UnknownRoute(Exception):
    """A route missing from `ROUTE_SCOPES`."""


def scope_for(method: str, route_path: str) -> Scope | None:
    """The scope a key needs for the route; `UnknownRoute` if nobody decided it yet."""
    try:
        return ROUTE_SCOPES[(method, route_path)]
    except KeyError:
        raise UnknownRoute(f"{method} {route_path}") from None


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    """Scopes named by a person (CLI, form); unknown names are a 400 listing the known ones."""
    scopes = set()
    for value in values:
        try:
            scopes.add(Scope(value.strip()))
        except ValueError:
            raise BadRequest(
                f"unknown scope {value!r}; one of: {', '.join(s.value for s in Scope)}"
            ) from None
    return frozenset(scopes)


def parse_signing(value: str) -> Signing:
    """A signing mode named by a person (CLI, form); anything else is a 400."""
    try:
        return Signing(value.strip().lower())
    except ValueError:
        raise BadRequest(
            f"unknown signing {value!r}; one of: {', '.join(s.value for s in Signing)}"
        ) from None


def ordered(scopes: Iterable[Scope]) -> list[Scope]:
    """Scopes in the enum's order (how they are stored and shown)."""
    chosen = set(scopes)
    return [s for s in Scope if s in chosen]
