"""Request and response bodies of /channels."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from tidings.platforms import PLATFORMS
from tidings.scheduled_posts.schemas import MAX_OPTIONS_BYTES, ValidationProblem
from tidings.schemas import RequestModel, bounded_json

OptionKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
OptionValue = str | int | float | bool
ChannelOptions = Annotated[
    dict[OptionKey, OptionValue], Field(max_length=50), bounded_json(MAX_OPTIONS_BYTES, 1)
]
ChannelName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
# Channels of real platforms hold an account's tokens: they are made by connecting the
# account (or with `tidings channels add --access-token`), not by this endpoint.
PlatformName = Literal["sandbox"]
assert set(PlatformName.__args__) <= set(PLATFORMS)  # type: ignore[attr-defined]


class ChannelCreate(RequestModel):
    platform: PlatformName
    name: ChannelName
    options: ChannelOptions = Field(default_factory=dict)


class ChannelUpdate(RequestModel):
    name: ChannelName | None = None
    options: ChannelOptions | None = Field(default=None, description="Replaces all options.")
    status: Literal["ACTIVE", "DISABLED"] | None = None


class ChannelOut(BaseModel):
    id: str
    platform: str
    name: str
    status: str
    options: dict[str, OptionValue]
    createdAt: datetime
    updatedAt: datetime


class ChannelList(BaseModel):
    data: list[ChannelOut]
    nextCursor: str | None = None


class ChannelCheck(BaseModel):
    """What the platform said: `ok` when nothing stands in the way of publishing."""

    ok: bool
    status: str
    problems: list[ValidationProblem]


class PlatformAppSet(RequestModel):
    clientId: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    clientSecret: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class PlatformAppOut(BaseModel):
    """A workspace's app on a platform; its secret is never returned."""

    platform: str
    clientId: str
    createdAt: datetime
    updatedAt: datetime


class PlatformAppList(BaseModel):
    data: list[PlatformAppOut]


class OfferedAccount(BaseModel):
    """An account a consent gave access to. `channelId` names the workspace's channel for
    it, if there is one (choosing it reconnects that channel)."""

    platform: str
    accountId: str
    name: str
    channelId: str | None


class AccountChoice(BaseModel):
    """The consent covers several accounts: choose which become channels with
    `POST /channels/connect/{platform}/choose`, within ten minutes, from this sign-in."""

    connectionId: str
    platform: str
    expiresAt: datetime
    accounts: list[OfferedAccount]


class ChosenAccount(RequestModel):
    platform: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    accountId: Annotated[str, StringConstraints(min_length=1, max_length=100)]


class AccountChoiceMade(RequestModel):
    connectionId: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    accounts: Annotated[list[ChosenAccount], Field(min_length=1, max_length=1000)]
