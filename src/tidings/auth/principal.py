"""Who is making a request, once authenticated."""

from dataclasses import dataclass
from enum import StrEnum

from tidings.auth.scopes import Scope
from tidings.scheduled_posts.lifecycle import Actor


class AuthMethod(StrEnum):
    SIGNATURE = "signature"
    BEARER = "bearer"
    SESSION = "session"


@dataclass(frozen=True)
class Principal:
    workspace_id: str
    actor: Actor
    method: AuthMethod
    user_id: str | None = None
    api_key_id: str | None = None
    #: A key's scopes; None for a person, whose role alone decides.
    scopes: frozenset[Scope] | None = None

    @property
    def actor_id(self) -> str:
        """The id recorded as `createdBy`, `approvedBy`…: a user id or an API key id."""
        identity = self.user_id or self.api_key_id
        assert identity is not None
        return identity

    def lacks(self, scope: Scope | None) -> bool:
        """Whether this is a key without `scope` (people and scope-free routes never lack)."""
        return scope is not None and self.scopes is not None and scope not in self.scopes

    @property
    def actor_type(self) -> str:
        return "user" if self.user_id else "api_key"
