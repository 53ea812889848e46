"""Full publish validation: a pure function of a post, its channels and the clock.

It returns every problem at once; callers decide whether problems are a 400 (entering
WAITING_FOR_APPROVAL, approving) or a report (a dry run).
"""

from collections.abc import Mapping, Sequence
from datetime import datetime

from tidings.channels.models import ChannelStatus
from tidings.platforms import get_platform
from tidings.platforms.base import ChannelFacts, PostContent, Problem, TargetContent


def validate_for_publish(
    post: PostContent,
    targets: Sequence[TargetContent],
    channels: Mapping[str, ChannelFacts],
    now: datetime,
    *,
    require_future: bool = True,
) -> list[Problem]:
    """Every reason `post` cannot be published to `targets` at its `scheduled_for`.

    `channels` holds the workspace's channels by id; a target whose channel is absent
    does not exist in the workspace. `require_future` is off for "publish now".
    """
    problems: list[Problem] = []
    if require_future:
        if post.scheduled_for is None:
            problems.append(
                Problem(None, "scheduledFor.required", "scheduledFor is required to publish")
            )
        elif post.scheduled_for <= now:
            problems.append(
                Problem(
                    None,
                    "scheduledFor.future",
                    f"scheduledFor {post.scheduled_for.isoformat()} is not in the future",
                )
            )
    if not post.media and (not targets or any(_needs_media(t, channels) for t in targets)):
        problems.append(Problem(None, "media.required", "media is required to publish"))
    if not targets:
        problems.append(
            Problem(None, "channels.required", "at least one channel is required to publish")
        )
    for target in targets:
        problems.extend(_validate_target(post, target, channels.get(target.channel_id)))
    return problems


def _needs_media(target: TargetContent, channels: Mapping[str, ChannelFacts]) -> bool:
    channel = channels.get(target.channel_id)
    platform = get_platform(channel.platform) if channel is not None else None
    return platform is None or platform.needs_media


def _validate_target(
    post: PostContent, target: TargetContent, channel: ChannelFacts | None
) -> list[Problem]:
    cid = target.channel_id
    if channel is None:
        return [Problem(cid, "channel.exists", f"channel {cid}: does not exist in this workspace")]
    problems: list[Problem] = []
    if channel.status != ChannelStatus.ACTIVE:
        problems.append(
            Problem(
                cid,
                "channel.active",
                f"channel {cid} ({channel.name}): is {channel.status}, not ACTIVE",
            )
        )
    if not (target.caption or "").strip():
        problems.append(Problem(cid, "caption.required", f"channel {cid}: caption is empty"))
    platform = get_platform(channel.platform)
    if platform is None:
        problems.append(
            Problem(
                cid,
                "channel.platform",
                f"channel {cid}: platform {channel.platform} is not supported",
            )
        )
    else:
        problems.extend(platform.validate(post, target, channel))
    return problems


def summarize(problems: Sequence[Problem]) -> str:
    """One message naming every problem, for a `400 {"message"}`."""
    return "cannot publish: " + "; ".join(f"{p.message} [{p.rule}]" for p in problems)
