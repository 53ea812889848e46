"""Meta's container publishing, shared by Instagram and Threads.

Publishing is three steps: create a media container (for a carousel, one per item and then
the parent), wait for it to be `FINISHED`, then publish it, the one irreversible call. The
container id is persisted on the target before that call, so an attempt whose answer is
lost is reconciled from the container's status (`PUBLISHED`: it went out; `FINISHED`:
publish the same container again) instead of posting twice. The account's publishing quota
is read before creating and before publishing; a target over it is deferred, not failed.
"""

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from tidings.platforms import graph
from tidings.platforms.base import (
    ChannelFacts,
    LookupUnavailable,
    PlatformContext,
    Problem,
    Published,
    PublishFailure,
    PublishRequest,
)
from tidings.platforms.store import (
    Credentials,
    credentials,
    load_state,
    save_credentials,
    save_state,
)
from tidings.publishing.states import ErrorKind
from tidings.timefmt import utcnow

#: A quota-bound target is tried again this much later (the window is a rolling 24 h, and
#: the platform does not say when its oldest post leaves it).
QUOTA_RETRY = timedelta(hours=1)


@dataclass(frozen=True)
class Dialect:
    """What differs between the platforms that publish through containers."""

    prefix: str  # of every errorCode: IG, THREADS
    name: str  # for people
    create: str  # POST /{account}/<create>
    publish: str  # POST /{account}/<publish>?creation_id=
    quota: str  # GET /{account}/<quota>?fields=config,quota_usage
    status_field: str  # of a container: status_code (Instagram), status (Threads)
    error_field: str  # why a container is in ERROR
    text_field: str  # caption (Instagram), text (Threads)
    refresh_grant: str  # ig_refresh_token, th_refresh_token


class GraphClient(graph.GraphSession):
    """One account's calls to a container platform."""

    def __init__(self, ctx: PlatformContext, dialect: Dialect, creds: Credentials, base: str):
        super().__init__(ctx, dialect.prefix, creds, base)
        self.dialect = dialect

    async def create(self, params: dict[str, Any]) -> str:
        body = await self.call("POST", f"{self.creds.account_id}/{self.dialect.create}", params)
        return str(body["id"])

    async def container_status(self, container: str) -> str:
        fields = f"{self.dialect.status_field},{self.dialect.error_field}"
        body = await self.call("GET", container, {"fields": fields})
        return str(body.get(self.dialect.status_field) or "")

    async def wait_until_finished(self, container: str) -> None:
        """Poll the container, the interval doubling up to 30 s, until it is `FINISHED`."""
        dialect = self.dialect
        fields = f"{dialect.status_field},{dialect.error_field}"

        async def finished() -> bool | None:
            body = await self.call("GET", container, {"fields": fields})
            status = body.get(dialect.status_field)
            if status == "ERROR":
                raise PublishFailure(
                    ErrorKind.PERMANENT,
                    f"{dialect.prefix}_CONTAINER_ERROR",
                    f"{dialect.name} could not process the media: "
                    f"{body.get(dialect.error_field) or 'error'}",
                )
            if status == "EXPIRED":
                raise PublishFailure(
                    ErrorKind.TRANSIENT,
                    f"{dialect.prefix}_CONTAINER_EXPIRED",
                    "the container expired before it was published",
                )
            return True if status in ("FINISHED", "PUBLISHED") else None

        await graph.poll(self.ctx, finished, graph.still_processing(dialect.prefix, self.ctx))

    async def check_quota(self, usage_key: str = "quota_usage", config_key: str = "config") -> None:
        """Defer (RATE_LIMITED) rather than publish over the rolling 24-hour quota."""
        body = await self.call(
            "GET",
            f"{self.creds.account_id}/{self.dialect.quota}",
            {"fields": f"{config_key},{usage_key}"},
        )
        data = body.get("data") or [{}]
        usage = data[0].get(usage_key)
        total = (data[0].get(config_key) or {}).get("quota_total")
        if isinstance(usage, int) and isinstance(total, int) and usage >= total:
            raise PublishFailure(
                ErrorKind.RATE_LIMITED,
                f"{self.dialect.prefix}_QUOTA_EXCEEDED",
                f"the account has published {usage} of its {total} posts in 24 hours",
                retry_at=utcnow() + QUOTA_RETRY,
            )

    async def publish(self, container: str) -> tuple[str, str | None]:
        body = await self.call(
            "POST",
            f"{self.creds.account_id}/{self.dialect.publish}",
            {"creation_id": container},
            publishing=True,
        )
        return str(body["id"]), body.get("_request_id")

    async def recent_media(self) -> list[dict[str, Any]]:
        body = await self.call(
            "GET",
            f"{self.creds.account_id}/{self.dialect.create}",
            {"fields": f"id,{self.dialect.text_field},timestamp,permalink", "limit": "25"},
        )
        data = body.get("data")
        return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []


class ContainerPlatform:
    """Publishing, reconciling and the persisted container, for one `Dialect`; a subclass
    says how a target becomes containers (`create`) and which host serves an account."""

    name: str
    dialect: Dialect
    needs_media = True

    def base_url(self, ctx: PlatformContext, creds: Credentials) -> str:
        """Where the account's API is, with its version (`https://graph.x.com/v25.0`)."""
        raise NotImplementedError

    async def create(self, api: GraphClient, request: PublishRequest) -> str:
        """Create the target's container (and its children); returns the container's id."""
        raise NotImplementedError

    async def live_problems(self, ctx: PlatformContext, channel: ChannelFacts) -> list[Problem]:
        """What the platform says now: the token works, and the quota has room."""

        async def ask() -> None:
            await (await self.client(ctx, channel.id)).check_quota()

        return await graph.live_problems(self.name, channel, ask)

    def host(self, ctx: PlatformContext, creds: Credentials) -> str:
        """The API's host, without a version (the token endpoints have none)."""
        raise NotImplementedError

    def refreshes(self, creds: Credentials) -> bool:
        """Whether this account's token is renewed by the platform's refresh grant."""
        return True

    async def refresh(self, ctx: PlatformContext, channel_id: str) -> Credentials:
        """Renew the channel's long-lived token (a new 60-day token), and store it."""
        creds = await credentials(ctx, channel_id)
        session = graph.GraphSession(ctx, self.dialect.prefix, creds, self.host(ctx, creds))
        params = {"grant_type": self.dialect.refresh_grant, "access_token": creds.access_token}
        body = await session.call("GET", "refresh_access_token", params)
        token, expires_in = body.get("access_token"), body.get("expires_in")
        if not isinstance(token, str) or not token:
            raise PublishFailure(
                ErrorKind.TRANSIENT, f"{self.dialect.prefix}_BAD_RESPONSE", "no access_token"
            )
        expires_at = (
            utcnow() + timedelta(seconds=expires_in) if isinstance(expires_in, int) else None
        )
        renewed = replace(creds, access_token=token, expires_at=expires_at)
        await save_credentials(ctx, channel_id, renewed)
        return renewed

    async def client(self, ctx: PlatformContext, channel_id: str) -> GraphClient:
        creds = await credentials(ctx, channel_id)
        return GraphClient(ctx, self.dialect, creds, self.base_url(ctx, creds))

    async def publish(self, ctx: PlatformContext, request: PublishRequest) -> Published:
        api = await self.client(ctx, request.channel.id)
        post_id, channel_id = request.post_id, request.channel.id
        state = await load_state(ctx, post_id, channel_id)
        container = state.get("container_id")
        if container:
            status = await api.container_status(container)
            if status == "PUBLISHED":
                found = await self._find_published(api, request, state)
                if found is not None:
                    return found
            if status not in ("FINISHED", "IN_PROGRESS", "PUBLISHED"):
                container = None  # EXPIRED or ERROR: a new one
        if not container:
            await api.check_quota()
            container = await self.create(api, request)
            # Before anything irreversible: the container is how this attempt is found again.
            state = {"container_id": container, "created_at": utcnow().isoformat()}
            await save_state(ctx, post_id, channel_id, state)
        try:
            await api.wait_until_finished(container)
        except PublishFailure as failure:
            if failure.code.endswith("_CONTAINER_EXPIRED"):
                await save_state(ctx, post_id, channel_id, None)
            raise
        await api.check_quota()
        media_id, request_id = await api.publish(container)
        return await api.published(media_id, request_id)

    async def lookup(self, ctx: PlatformContext, request: PublishRequest) -> Published | None:
        """From the persisted container: `PUBLISHED` is found among the account's media;
        anything else did not go out (publishing again reuses a `FINISHED` container)."""
        state = await load_state(ctx, request.post_id, request.channel.id)
        container = state.get("container_id")
        if not container:
            return None  # nothing was created, so nothing can have been published
        api = await self.client(ctx, request.channel.id)
        if await api.container_status(container) != "PUBLISHED":
            return None
        found = await self._find_published(api, request, state)
        if found is None:
            raise LookupUnavailable(
                f"container {container} is published, but its media is not among the account's"
            )
        return found

    async def _find_published(
        self, api: GraphClient, request: PublishRequest, state: dict[str, Any]
    ) -> Published | None:
        since = datetime.fromisoformat(state["created_at"]) if state.get("created_at") else None
        for media in await api.recent_media():
            when = graph.parse_time(media.get("timestamp"))
            if since is not None and when is not None and when < since - timedelta(minutes=1):
                continue
            if (media.get(self.dialect.text_field) or "") == (request.target.caption or ""):
                return await api.published(str(media["id"]), None)
        return None
