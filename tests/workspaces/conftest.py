"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it receives, and an app that
sends its mail there. Mail goes out in a background task of the response, which the
in-process client waits for: a message is in the inbox when the answer arrives."""

import email
import email.policy
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI
from pydantic import SecretStr

from tests.emulators.server import free_port
from tests.world import World
from tidings.app import create_app
from tidings.config import Settings


@dataclass
class Received:
    """One delivery: who the envelope was for, and the message."""

    sender: str
    recipients: list[str]
    message: EmailMessage


@dataclass
class Inbox:
    handler: "_Keep"
    url: str

    @property
    def received(self) -> list[Received]:
        return list(self.handler.received)


@dataclass
class _Keep:
    received: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), message))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[Inbox]:
    """An SMTP server on a free port of 127.0.0.1, for the test's duration."""
    handler = _Keep()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        url = f"smtp://127.0.0.1:{port}?from=Tidings%20%3Cnoreply@tidings.test%3E&timeout=5"
        yield Inbox(handler, url)
    finally:
        controller.stop()


@asynccontextmanager
async def app_mailing_to(settings: Settings, smtp_url: str) -> AsyncIterator[FastAPI]:
    """The app of `settings`, sending mail to `smtp_url`, reached at tidings.example.org."""
    mailing = Settings(
        **{
            **settings.model_dump(exclude={"secret_key", "smtp_url"}),
            "secret_key": settings.secret_key,
            "smtp_url": SecretStr(smtp_url),
            "public_url": "https://tidings.example.org",
        }
    )
    application = create_app(mailing)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def mail_app(settings: Settings, smtp: Inbox) -> AsyncIterator[FastAPI]:
    """The app of `settings`, sending mail to `smtp`."""
    async with app_mailing_to(settings, smtp.url) as application:
        yield application


@pytest.fixture
async def mail_world(mail_app: FastAPI) -> AsyncIterator[World]:
    async with World.build(mail_app) as w:
        yield w


def body_of(message: EmailMessage) -> str:
    part: Any = message.get_body(("plain",))
    assert part is not None
    text: str = part.get_content()
    return text
