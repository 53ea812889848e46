"""What every Graph API emulator shares (Instagram, Threads, Facebook Pages): tokens, the
error envelope, failure injection, and the usage header on every answer."""

import itertools
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


@dataclass
class Fault:
    status: int
    code: int | None
    subcode: int | None
    message: str
    headers: dict[str, str] = field(default_factory=dict)
    is_transient: bool | None = None


class GraphFailure(Exception):
    def __init__(self, fault: Fault) -> None:
        self.fault = fault


class GraphEmulator:
    """Tokens name accounts; each endpoint can be told to fail next (`fail`)."""

    def __init__(self) -> None:
        self.url = ""  # set once it is served
        self.usage_percent = 5
        self.regain_minutes = 0
        self.now = lambda: datetime.now(UTC)
        self._lock = threading.Lock()
        self._ids = itertools.count(17_900_000_000_000_001)
        self.tokens: dict[str, str] = {}
        self.expired_tokens: set[str] = set()
        self.faults: dict[str, list[Fault]] = {}
        self.calls: list[tuple[str, str]] = []
        self.app = self._build()

    def _build(self) -> FastAPI:
        raise NotImplementedError

    def account(self, user_id: str, token: str) -> None:
        self.tokens[token] = user_id

    def fail(
        self,
        endpoint: str,
        code: int | None,
        subcode: int | None = None,
        *,
        status: int = 400,
        message: str = "An error occurred",
        times: int = 1,
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next `times` calls of `endpoint` (named by each emulator) fail like this."""
        fault = Fault(status, code, subcode, message, headers or {})
        self.faults.setdefault(endpoint, []).extend([fault] * times)

    def count(self, endpoint: str) -> int:
        return sum(1 for _, name in self.calls if name == endpoint)

    def _new_id(self) -> str:
        return str(next(self._ids))

    def _take_fault(self, endpoint: str) -> None:
        self.calls.append(("call", endpoint))
        queue = self.faults.get(endpoint)
        if queue:
            raise GraphFailure(queue.pop(0))

    def _user_of(self, request: Request, params: dict[str, str]) -> str:
        header = request.headers.get("authorization", "")
        token = params.get("access_token") or header.partition(" ")[2]
        if token in self.expired_tokens:
            raise GraphFailure(
                Fault(400, 190, 463, "Error validating access token: Session has expired")
            )
        if token not in self.tokens:
            raise GraphFailure(Fault(400, 190, 467, "Invalid OAuth access token"))
        return self.tokens[token]

    def _usage(self, user: str | None) -> dict[str, str]:
        entry = {
            "type": "pages",
            "call_count": self.usage_percent,
            "total_cputime": 1,
            "total_time": 1,
            "estimated_time_to_regain_access": self.regain_minutes,
        }
        return {"x-business-use-case-usage": json.dumps({user or "0": [entry]})}

    def _window(self, times: list[datetime]) -> list[datetime]:
        since = self.now() - timedelta(hours=24)
        return [t for t in times if t > since]

    @staticmethod
    async def params_of(request: Request) -> dict[str, str]:
        """Graph takes parameters in the query string or a form body."""
        params = dict(request.query_params)
        if request.method == "POST":
            form = await request.form()
            params.update({k: str(v) for k, v in form.items()})
        return params

    def answer(self, body: dict[str, Any], user: str | None) -> JSONResponse:
        return JSONResponse(body, headers=self._usage(user))

    def refuse(self, failure: GraphFailure, user: str | None) -> JSONResponse:
        f = failure.fault
        error: dict[str, Any] = {
            "message": f.message,
            "type": "OAuthException",
            "fbtrace_id": "AbCdEfGh123",
        }
        if f.code is not None:
            error["code"] = f.code
        if f.subcode is not None:
            error["error_subcode"] = f.subcode
            error["error_user_msg"] = f.message
        if f.is_transient is not None:
            error["is_transient"] = f.is_transient
        headers = self._usage(user) | f.headers
        if f.code is None:
            return JSONResponse({"detail": f.message}, status_code=f.status, headers=headers)
        return JSONResponse({"error": error}, status_code=f.status, headers=headers)
