"""The API fuzzer: Schemathesis drives every operation of the live OpenAPI of a real server.

`tidings serve` runs on a free port (SQLite and PostgreSQL), and each operation is sent
generated requests that fit its schema and requests that do not, as an API key (Bearer) and
as a signed-in owner (session cookie + X-CSRF-Token). The run fails on any 5xx and on any
answer the schema does not describe: an undocumented status, a body that does not match its
response schema, or a content type the operation does not declare.

Each run draws a seed and prints it; `TIDINGS_FUZZ_SEED=<seed>` replays that run, and
`TIDINGS_FUZZ_EXAMPLES` sets the examples per operation and mode (default 25).
"""

import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.test_serve import cli_json, serve_env, tidings_serve
from tests.world import future

pytestmark = pytest.mark.slow

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = int(os.environ.get("TIDINGS_FUZZ_EXAMPLES", "25"))
REQUEST_TIMEOUT_SECONDS = 15
PASSWORD = "fuzzing password"

# Operations the fuzzer leaves alone, each with the reason it must. Everything else in the
# OpenAPI is fuzzed; add a line here (never a silent filter) when a new route cannot be.
EXCLUDED: dict[tuple[str, str], str] = {
    ("POST", "/auth/logout"): "ends the session the owner identity fuzzes with",
    ("POST", "/scheduled-posts/validate"): (
        "asks the servers of the generated media URLs on the network (HEAD/GET); "
        "the media checks have their own tests against local servers"
    ),
    ("GET", "/scheduled-posts/{post_id}/validation"): (
        "the same dry run of a stored post: it fetches the post's media URLs"
    ),
}

# Every platform (and its OAuth token exchange) points at a closed local port: no generated
# request can make the server talk to anything but this machine.
CLOSED = "http://127.0.0.1:9"
PLATFORM_URLS = {
    "TIDINGS_INSTAGRAM_API_URL": CLOSED,
    "TIDINGS_FACEBOOK_API_URL": CLOSED,
    "TIDINGS_THREADS_API_URL": CLOSED,
    "TIDINGS_TIKTOK_API_URL": CLOSED,
    "TIDINGS_INSTAGRAM_TOKEN_URL": f"{CLOSED}/oauth/access_token",
}


@dataclass
class Target:
    """A served workspace with real things in it, for the fuzzer to aim at."""

    base_url: str
    token: str
    owner_email: str
    # Values of path parameters that name existing things, by parameter name.
    known: dict[str, list[str]]


def _seed() -> int:
    raw = os.environ.get("TIDINGS_FUZZ_SEED")
    return int(raw) if raw else secrets.randbelow(2**32)


@pytest.fixture
def target(database_url: str, tmp_path: Path) -> Iterator[Target]:
    """`tidings serve` on a free port, with a workspace, an owner, keys, a channel and posts."""
    env = {**serve_env(database_url, tmp_path / "data"), **PLATFORM_URLS}
    with tidings_serve(env, tmp_path) as server:

        def cli(*args: str) -> dict[str, str]:
            return cli_json(env, tmp_path, *args)

        ws = cli("workspaces", "create", "Fuzzed")["id"]
        owner = "owner@fuzz.example.com"
        member = ["users", "create", "--workspace", ws, "--password", PASSWORD]
        cli(*member, "--email", owner, "--role", "owner")
        # A second member and a second key: the member and key routes get real ids to
        # change or delete without locking the fuzzer itself out.
        editor = cli(*member, "--email", "editor@fuzz.example.com", "--role", "editor")
        key = cli("keys", "create", "--workspace", ws, "--name", "fuzzer")
        spare = cli("keys", "create", "--workspace", ws, "--name", "spare")
        channel = cli(
            "channels", "add", "--workspace", ws, "--platform", "sandbox", "--name", "Fuzzed feed"
        )["id"]
        server.wait_until_healthy()
        posts = _seed_posts(server.base_url, key["token"], owner, channel)
        yield Target(
            base_url=server.base_url,
            token=key["token"],
            owner_email=owner,
            known={
                "post_id": posts,
                "channel_id": [channel],
                "user_id": [editor["id"]],
                "key_id": [spare["id"]],
                "platform": ["sandbox", "instagram", "facebook", "threads", "tiktok"],
            },
        )


def _seed_posts(base_url: str, token: str, owner: str, channel: str) -> list[str]:
    """A draft, a post waiting for approval and a scheduled one (ids, in that order)."""
    bearer = {"Authorization": f"Bearer {token}"}
    body = {
        "media": "https://cdn.example.com/a.jpg",
        "mediaType": "IMAGE",
        "scheduledFor": future(24 * 30),
        "channels": {channel: {"caption": "Fuzzed"}},
    }
    ids = []
    for status in ("DRAFT", "WAITING_FOR_APPROVAL", "WAITING_FOR_APPROVAL"):
        r = requests.post(
            f"{base_url}/scheduled-posts", json={**body, "status": status}, headers=bearer
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    person = _signed_in(base_url, owner)
    r = person.post(f"{base_url}/scheduled-posts/{ids[2]}/approve")
    assert r.status_code == 200, r.text
    return ids


def _signed_in(base_url: str, email: str) -> requests.Session:
    session = requests.Session()
    r = session.post(f"{base_url}/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    session.headers["X-CSRF-Token"] = r.json()["csrfToken"]
    return session


def _identity(target: Target, name: str) -> requests.Session:
    if name == "owner":
        return _signed_in(target.base_url, target.owner_email)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {target.token}"
    return session


def _strategy(operation: Any, mode: GenerationMode, known: dict[str, list[str]]) -> Any:
    """Generated cases, half of them (where the path names things) aimed at real ones."""
    generated = operation.as_strategy(generation_mode=mode)
    names = [p.name for p in operation.path_parameters]
    if not names or not all(n in known for n in names):
        return generated
    aimed = st.tuples(*(st.sampled_from(known[n]) for n in names)).flatmap(
        lambda values: operation.as_strategy(
            generation_mode=mode, path_parameters=dict(zip(names, values, strict=True))
        )
    )
    return st.one_of(generated, aimed)


def _fuzz(
    operation: Any,
    mode: GenerationMode,
    target: Target,
    session: requests.Session,
    seed: int,
) -> None:
    @hypothesis.seed(seed)
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        print_blob=False,
    )
    @hypothesis.given(case=_strategy(operation, mode, target.known))
    def run(case: Any) -> None:
        case.call_and_validate(
            base_url=target.base_url,
            session=session,
            checks=CHECKS,
            timeout=REQUEST_TIMEOUT_SECONDS,
        )

    run()


@pytest.mark.parametrize("identity", ["key", "owner"])
def test_the_api_answers_as_its_schema_says(target: Target, identity: str) -> None:
    seed = _seed()
    print(f"fuzz seed {seed}: replay with TIDINGS_FUZZ_SEED={seed}")
    config = schemathesis.Config.from_dict(
        # The fuzzer is authenticated by its session; generating credentials would only
        # test the 401 path, which has its own tests.
        {"generation": {"with-security-parameters": False}}
    )
    schema = schemathesis.openapi.from_url(f"{target.base_url}/openapi.json", config=config)
    session = _identity(target, identity)
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {(operation.method.upper(), operation.path) for operation in operations}
    assert set(EXCLUDED) <= labels, "an exclusion names an operation that is gone"
    # Deletions last, so that the other operations still meet the things they delete.
    operations.sort(key=lambda operation: operation.method.upper() == "DELETE")
    failures: list[str] = []
    fuzzed = 0
    for operation in operations:
        if (operation.method.upper(), operation.path) in EXCLUDED:
            continue
        fuzzed += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            started = time.monotonic()
            try:
                _fuzz(operation, mode, target, session, seed)
            except Unsatisfiable:
                # Nothing to get wrong: the operation takes no parameters and no body.
                assert mode is GenerationMode.NEGATIVE, operation.label
            except (Exception, FailureGroup) as exc:  # every operation's failures, at once
                failures.append(f"{operation.label} ({mode.value}):\n{exc}")
            print(f"{operation.label} ({mode.value}): {time.monotonic() - started:.1f} s")
    assert fuzzed >= 30, "the schema lost its operations"
    # The exclusions held: the identity the fuzzer used is still signed in.
    me = session.get(f"{target.base_url}/auth/me", timeout=REQUEST_TIMEOUT_SECONDS)
    assert me.status_code == 200, me.text
    assert not failures, f"seed {seed} (TIDINGS_FUZZ_SEED={seed}):\n\n" + "\n\n".join(failures)
