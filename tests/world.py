"""A ready-made workspace for API tests: people of every role, a key, a channel, clients."""

import functools
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import inspect, select

from tidings.auth import service as auth_service
from tidings.auth.models import User
from tidings.auth.passwords import hash_password_blocking
from tidings.auth.scopes import Scope
from tidings.channels import service as channel_service
from tidings.db.engine import Database
from tidings.ids import new_id
from tidings.publishing.models import Task
from tidings.scheduled_posts.models import PostEvent, ScheduledPost, Target
from tidings.state import AppState
from tidings.workspaces import service as workspace_service
from tidings.workspaces.models import Membership, Role

PASSWORD = "correct horse battery"


@functools.cache
def _password_hash() -> str:
    return hash_password_blocking(PASSWORD)


ROLES = [r.value for r in Role]


def future(hours: float = 24) -> str:
    """An ISO-8601 instant `hours` from now."""
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


def _x_date(when: datetime | str | None) -> str:
    if when is None:
        when = datetime.now(UTC)
    return when if isinstance(when, str) else when.isoformat()


def signature_headers(
    key_id: str,
    secret: str,
    method: str,
    target: str,
    body: bytes = b"",
    *,
    when: datetime | str | None = None,
) -> dict[str, str]:
    """Headers of a request signed by a request-signing key: x-signature over
    `METHOD\\n<path[?query]>\\n<x-date>\\n<hex sha256 of body>` (x-date = `when`, default
    now). `target` is the path and query exactly as the client sends them."""
    x_date = _x_date(when)
    canonical = "\n".join([method, target, x_date, hashlib.sha256(body).hexdigest()])
    sig = hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()
    return {"x-api-key": key_id, "x-date": x_date, "x-signature": sig}


def date_signature_headers(
    key_id: str, secret: str, when: datetime | str | None = None
) -> dict[str, str]:
    """Headers of a request signed by a date-signing key: x-signature over the x-date alone."""
    x_date = _x_date(when)
    sig = hmac.new(secret.encode(), x_date.encode(), hashlib.sha256).hexdigest()
    return {"x-api-key": key_id, "x-date": x_date, "x-signature": sig}


def signed_json(
    key_id: str, secret: str, method: str, target: str, payload: Any = None
) -> dict[str, Any]:
    """httpx keyword arguments of a signed request with a JSON body (the exact bytes signed)."""
    body = b"" if payload is None else json.dumps(payload).encode()
    headers = signature_headers(key_id, secret, method, target, body)
    if payload is not None:
        headers["content-type"] = "application/json"
    return {"headers": headers, "content": body}


def _row(obj: Any) -> dict[str, Any]:
    return {attr.key: getattr(obj, attr.key) for attr in inspect(type(obj)).column_attrs}


@dataclass
class World:
    app: FastAPI
    workspace_id: str
    key_id: str
    key_secret: str
    key_token: str
    channel_id: str
    user_ids: dict[str, str]
    emails: dict[str, str]
    _clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def state(self) -> AppState:
        state: AppState = self.app.state.tidings
        return state

    @property
    def db(self) -> Database:
        return self.state.db

    def _client(self, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        c = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://tidings.test",
            headers=headers or {},
        )
        self._clients.append(c)
        return c

    def api(self) -> httpx.AsyncClient:
        """A client authenticated with the workspace's API key (Bearer)."""
        return self._client({"Authorization": f"Bearer {self.key_token}"})

    def bearer(self, token: str) -> httpx.AsyncClient:
        """A client authenticated with another key's Bearer token."""
        return self._client({"Authorization": f"Bearer {token}"})

    def anonymous(self) -> httpx.AsyncClient:
        return self._client()

    async def person(self, role: str) -> httpx.AsyncClient:
        """A client signed in as the member with `role`, sending its CSRF token on writes."""
        c = self._client()
        r = await c.post("/auth/login", json={"email": self.emails[role], "password": PASSWORD})
        assert r.status_code == 200, r.text
        c.headers["X-CSRF-Token"] = r.json()["csrfToken"]
        return c

    async def add_channel(self, name: str = "Another", **options: Any) -> str:
        async with self.db.transaction() as session:
            channel = await channel_service.add_channel(
                session,
                workspace_id=self.workspace_id,
                platform="sandbox",
                name=name,
                options=options,
                now=datetime.now(UTC),
            )
            return channel.id

    async def snapshot(self, post_id: str) -> dict[str, Any]:
        """Everything a refused request must leave as it was: post, targets, tasks, events."""
        async with self.db.transaction() as session:
            rows: dict[str, Any] = {}
            for name, model, key, order in [
                ("post", ScheduledPost, ScheduledPost.id, ScheduledPost.id),
                ("targets", Target, Target.post_id, Target.position),
                ("tasks", Task, Task.post_id, Task.id),
                ("events", PostEvent, PostEvent.post_id, PostEvent.id),
            ]:
                found = await session.execute(select(model).where(key == post_id).order_by(order))
                rows[name] = [_row(obj) for obj in found.scalars()]
            return rows

    def post_body(self, **overrides: Any) -> dict[str, Any]:
        """A body that passes full publish validation on the world's channel."""
        body: dict[str, Any] = {
            "type": "POST",
            "media": "https://cdn.example.com/a.jpg",
            "mediaType": "IMAGE",
            "scheduledFor": future(),
            "channels": {self.channel_id: {"caption": "Hello from Tidings"}},
        }
        body.update(overrides)
        return body

    async def approved_for(self, due: datetime) -> str:
        """A post the key submits for approval and the reviewer approves for `due`: its id."""
        r = await self.api().post(
            "/scheduled-posts", json=self.post_body(status="WAITING_FOR_APPROVAL")
        )
        assert r.status_code == 201, r.text
        post_id: str = r.json()["id"]
        reviewer = await self.person("reviewer")
        r = await reviewer.post(
            f"/scheduled-posts/{post_id}/approve", json={"scheduledFor": due.isoformat()}
        )
        assert r.status_code == 200, r.text
        return post_id

    @classmethod
    @asynccontextmanager
    async def build(cls, app: FastAPI, name: str = "Acme") -> AsyncIterator["World"]:
        state: AppState = app.state.tidings
        now = datetime.now(UTC)
        async with state.db.transaction() as session:
            ws = await workspace_service.create_workspace(session, name, now)
            user_ids, emails = {}, {}
            for role in Role:
                # Rows written directly with one argon2 hash made once per run: hashing five
                # passwords per test would dominate the suite. add_member has its own tests.
                user = User(
                    id=new_id("usr"),
                    email=f"{role.value}@{ws.id.lower()}.example.com",
                    password_hash=_password_hash(),
                    created_at=now,
                    updated_at=now,
                )
                session.add(user)
                await session.flush()
                session.add(
                    Membership(workspace_id=ws.id, user_id=user.id, role=role, created_at=now)
                )
                user_ids[role.value], emails[role.value] = user.id, user.email
            # Every scope: the world's key may do whatever a key may (scopes have own tests).
            issued = await auth_service.create_api_key(
                session, state.box, ws.id, "tests", now, scopes=set(Scope)
            )
            channel = await channel_service.add_channel(
                session, workspace_id=ws.id, platform="sandbox", name="Demo", options={}, now=now
            )
            world = cls(
                app=app,
                workspace_id=ws.id,
                key_id=issued.key.id,
                key_secret=issued.secret,
                key_token=issued.token,
                channel_id=channel.id,
                user_ids=user_ids,
                emails=emails,
            )
        try:
            yield world
        finally:
            for c in world._clients:
                await c.aclose()
