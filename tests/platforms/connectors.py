"""What the connector tests share: an account channel, a connector context pointed at an
emulator, and publishing a post through the engine."""

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from tests.emulators.instagram import InstagramEmulator
from tests.emulators.server import EmulatorServer
from tests.publishing.test_engine import FAST, document
from tests.world import World
from tidings.channels import service as channel_service
from tidings.platforms.base import (
    ChannelFacts,
    Endpoints,
    MediaItem,
    MediaType,
    Platform,
    PlatformContext,
    PostContent,
    PostType,
    TargetContent,
)
from tidings.platforms.store import Credentials
from tidings.publishing.worker import Worker

E = TypeVar("E", bound=InstagramEmulator)


@contextmanager
def served(emulator: E, account: str, token: str) -> Iterator[E]:
    """The emulator, knowing one account and its token, served on a free port."""
    emulator.account(account, token)
    with EmulatorServer(emulator.app) as server:
        emulator.url = server.url
        yield emulator


@asynccontextmanager
async def context_for(world: World, **urls: str) -> AsyncIterator[PlatformContext]:
    """A context whose platforms (`instagram=url`, ...) are emulators: short timeouts, fast
    polling."""
    endpoints = Endpoints(http_timeout=1.0, poll_every=0.01, poll_for=2.0, **urls)
    ctx = PlatformContext(
        world.db, endpoints=endpoints, box=world.state.box, fetch=world.state.settings.fetch_policy
    )
    try:
        yield ctx
    finally:
        await ctx.aclose()


async def account_channel(
    world: World, platform: str, account: str, token: str, **extra: Any
) -> str:
    async with world.db.transaction() as session:
        channel = await channel_service.add_channel(
            session,
            workspace_id=world.workspace_id,
            platform=platform,
            name=f"Brand on {platform}",
            options={},
            now=datetime.now(UTC),
            credentials=Credentials(account_id=account, access_token=token, extra=extra),
            box=world.state.box,
        )
        return channel.id


async def publish(
    world: World, context: PlatformContext, channel: str, body: dict[str, Any], **post: Any
) -> dict[str, Any]:
    """Create, submit and publish-now a post for the channel; run the engine until idle."""
    r = await world.api().post(
        "/scheduled-posts",
        json=world.post_body(status="WAITING_FOR_APPROVAL", channels={channel: body}, **post),
    )
    assert r.status_code == 201, r.text
    post_id = r.json()["id"]
    reviewer = await world.person("reviewer")
    r = await reviewer.post(f"/scheduled-posts/{post_id}/publish")
    assert r.status_code == 200, r.text
    worker = Worker(world.db, config=FAST, name="w-connector", context=context)
    await worker.run_until_idle(within=20)
    return await document(world, post_id)


def rules_of(
    platform: Platform,
    caption: str,
    media: list[str],
    *,
    type: PostType = PostType.POST,
    media_type: MediaType | None = None,
    options: dict[str, Any] | None = None,
) -> list[str]:
    """The rules `platform` finds broken by a post of `media` with `caption`."""
    post = PostContent(type, [MediaItem(url) for url in media], media_type, scheduled_for=None)
    target = TargetContent("ch_test", caption, None, options=options or {})
    channel = ChannelFacts("ch_test", platform.name, "Test", "ACTIVE")
    return [p.rule for p in platform.validate(post, target, channel)]
