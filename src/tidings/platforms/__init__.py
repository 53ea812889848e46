"""Platform connectors, one module each, behind the `Platform` protocol."""

from tidings.platforms.base import Platform
from tidings.platforms.instagram import InstagramPlatform
from tidings.platforms.sandbox import SandboxPlatform

PLATFORMS: dict[str, Platform] = {p.name: p for p in (SandboxPlatform(), InstagramPlatform())}


def get_platform(name: str) -> Platform | None:
    return PLATFORMS.get(name)
