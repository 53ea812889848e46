"""The sandbox: a fake social network inside Tidings, for demos and tests."""

from tidings.platforms.base import (
    ChannelFacts,
    MediaType,
    PostContent,
    PostType,
    Problem,
    TargetContent,
)

CAPTION_LIMIT = 2_200
CAROUSEL_MIN, CAROUSEL_MAX = 2, 10
ALL_MEDIA_TYPES = frozenset(MediaType)


def allowed_media_types(channel: ChannelFacts) -> frozenset[MediaType]:
    """The channel option `allowed_media_types` (comma separated) narrows what it takes."""
    raw = channel.options.get("allowed_media_types")
    if not raw:
        return ALL_MEDIA_TYPES
    names = {part.strip().upper() for part in str(raw).split(",")}
    return frozenset(m for m in MediaType if m.value in names)


class SandboxPlatform:
    name = "sandbox"

    def validate(
        self, post: PostContent, target: TargetContent, channel: ChannelFacts
    ) -> list[Problem]:
        problems: list[Problem] = []

        def problem(rule: str, message: str) -> None:
            problems.append(Problem(channel.id, rule, f"channel {channel.id}: {message}"))

        caption = target.caption or ""
        if len(caption) > CAPTION_LIMIT:
            problem(
                "sandbox.caption_too_long",
                f"caption is {len(caption)} characters; sandbox allows at most {CAPTION_LIMIT}",
            )
        media_type = post.effective_media_type
        if media_type is not None:
            allowed = allowed_media_types(channel)
            if media_type not in allowed:
                names = ", ".join(m.value for m in MediaType if m in allowed) or "none"
                problem(
                    "sandbox.media_type_unsupported",
                    f"media type {media_type.value} is not supported here (supported: {names})",
                )
            count = len(post.media)
            if media_type is MediaType.CAROUSEL and not CAROUSEL_MIN <= count <= CAROUSEL_MAX:
                problem(
                    "sandbox.carousel_size",
                    f"a carousel needs {CAROUSEL_MIN} to {CAROUSEL_MAX} media items, got {count}",
                )
            if media_type is not MediaType.CAROUSEL and count > 1:
                problem(
                    "sandbox.single_media",
                    f"media type {media_type.value} takes one media item, got {count}",
                )
            if post.type is PostType.REEL and media_type is not MediaType.VIDEO:
                problem("sandbox.reel_needs_video", "a REEL needs mediaType VIDEO")
            if post.type is PostType.CAROUSEL and media_type is not MediaType.CAROUSEL:
                problem("sandbox.carousel_type", "a CAROUSEL post needs mediaType CAROUSEL")
        return problems
