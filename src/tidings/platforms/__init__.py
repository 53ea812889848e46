"""Platform connectors, one module each, behind the `Platform` protocol."""

from tidings.platforms.base import Platform
from tidings.platforms.facebook import FacebookPlatform
from tidings.platforms.instagram import InstagramPlatform
from tidings.platforms.sandbox import SandboxPlatform
from tidings.platforms.threads import ThreadsPlatform
from tidings.platforms.tiktok import TikTokPlatform

PLATFORMS: dict[str, Platform] = {
    p.name: p
    for p in (
        SandboxPlatform(),
        InstagramPlatform(),
        ThreadsPlatform(),
        FacebookPlatform(),
        TikTokPlatform(),
    )
}


def get_platform(name: str) -> Platform | None:
    return PLATFORMS.get(name)
