"""HTTP routes of /api-keys: owners and admins, signed in, list, create and revoke the
workspace's keys. A key cannot manage keys (403). The secret is shown once, on creation."""

from fastapi import APIRouter, status

from tidings.auth import service
from tidings.auth.deps import CurrentPrincipal
from tidings.auth.models import ApiKey
from tidings.auth.schemas import ApiKeyCreate, ApiKeyIssued, ApiKeyList, ApiKeyOut
from tidings.auth.scopes import DEFAULT_SCOPES, ordered
from tidings.db.session import SessionDep, StateDep
from tidings.timefmt import utcnow

router = APIRouter(prefix="/api-keys", tags=["auth"])


def _out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        createdAt=key.created_at,
        revokedAt=key.revoked_at,
        signing=key.signing,
        scopes=ordered(service.key_scopes(key)),
    )


@router.get("", response_model=ApiKeyList)
async def list_keys(principal: CurrentPrincipal, session: SessionDep) -> ApiKeyList:
    """The workspace's keys, newest first, revoked ones included; never their secrets."""
    return ApiKeyList(data=[_out(k) for k in await service.list_api_keys(session, principal)])


@router.post("", response_model=ApiKeyIssued, status_code=status.HTTP_201_CREATED)
async def create_key(
    body: ApiKeyCreate, principal: CurrentPrincipal, session: SessionDep, state: StateDep
) -> ApiKeyIssued:
    """A new key: its `secret` and Bearer `token` are in this answer and never again."""
    issued = await service.issue_api_key(
        session,
        principal,
        state.box,
        body.name,
        utcnow(),
        signing=body.signing,
        scopes=DEFAULT_SCOPES if body.scopes is None else body.scopes,
    )
    return ApiKeyIssued(
        id=issued.key.id,
        name=issued.key.name,
        createdAt=issued.key.created_at,
        signing=issued.key.signing,
        scopes=ordered(service.key_scopes(issued.key)),
        secret=issued.secret,
        token=issued.token,
    )


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_key(key_id: str, principal: CurrentPrincipal, session: SessionDep) -> None:
    """Revoke a key: it is refused from now on (revoking twice changes nothing)."""
    await service.revoke_workspace_key(session, principal, key_id, utcnow())
