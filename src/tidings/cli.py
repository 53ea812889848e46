"""The `tidings` command: serve, migrate, and manage workspaces, people, keys and channels."""

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.auth import service as auth_service
from tidings.auth.scopes import DEFAULT_SCOPES, Scope, parse_scopes, parse_signing
from tidings.channels import service as channel_service
from tidings.config import Settings
from tidings.crypto import SecretBox
from tidings.db import migrate as migrations
from tidings.db.engine import Database
from tidings.errors import Conflict, TidingsError
from tidings.platforms.store import Credentials
from tidings.timefmt import format_instant, utcnow
from tidings.workspaces import passwords
from tidings.workspaces import service as workspace_service
from tidings.workspaces.models import Role

app = typer.Typer(
    help="Tidings: compose once, approve, publish at an exact instant.", no_args_is_help=True
)
workspaces_app = typer.Typer(help="Create workspaces.", no_args_is_help=True)
users_app = typer.Typer(
    help="Add people to workspaces and set their passwords.", no_args_is_help=True
)
keys_app = typer.Typer(help="Issue and revoke API keys.", no_args_is_help=True)
channels_app = typer.Typer(help="Add channels to publish to.", no_args_is_help=True)
apps_app = typer.Typer(
    help="Set a workspace's own app (OAuth client) on a platform.", no_args_is_help=True
)
app.add_typer(workspaces_app, name="workspaces")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(channels_app, name="channels")
app.add_typer(apps_app, name="apps")
secrets_app = typer.Typer(
    help="Rotate the secret key that seals secrets at rest.", no_args_is_help=True
)
app.add_typer(secrets_app, name="secrets")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
WorkspaceOpt = Annotated[str, typer.Option("--workspace", help="Workspace id (ws_…).")]
T = TypeVar("T")


def _settings() -> Settings:
    try:
        settings = Settings()
    except ValueError as exc:
        _fail(f"invalid configuration: {_first_error(exc)}", as_json=False)
    settings.secure_data_dir()
    return settings


def _first_error(exc: ValueError) -> str:
    """A settings error on one line: pydantic's first message, without its own framing."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError) and exc.errors():
        error = exc.errors()[0]
        message = str(error["msg"]).removeprefix("Value error, ")
        where = ".".join(str(part) for part in error["loc"])
        return f"TIDINGS_{where.upper()}: {message}" if where else message
    return str(exc).splitlines()[0]


def _fail(message: str, *, as_json: bool) -> NoReturn:
    if as_json:
        typer.echo(json.dumps({"message": message}), err=True)
    else:
        typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _run(work: Callable[[AsyncSession, Settings], Awaitable[T]], *, as_json: bool) -> T:
    """Run one unit of work in one transaction against the configured database."""
    settings = _settings()

    async def in_transaction(db: Database) -> T:
        async with db.transaction() as session:
            return await work(session, settings)

    return _with_database(settings, in_transaction, as_json=as_json)


def _emit(result: dict[str, Any], as_json: bool, human: str) -> None:
    typer.echo(json.dumps(result, indent=2) if as_json else human)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Migrate the database, then run the API and a publishing worker in this process."""
    import uvicorn

    from tidings.app import create_app

    settings = _settings()
    migrations.upgrade(settings.resolved_database_url)
    settings.resolved_secret_key  # noqa: B018 - create the key file before serving
    _tune_gc()
    typer.echo(f"Tidings on http://{host}:{port} (database: {_redacted(settings)})", err=True)
    api = create_app(settings)
    # Forwarded headers are believed only from TIDINGS_TRUSTED_PROXIES (in the app), not
    # from uvicorn's default of 127.0.0.1.
    if settings.metrics_bind is None:
        uvicorn.run(api, host=host, port=port, log_level="info", proxy_headers=False)
        return
    from tidings.scrape import MetricsSource, scrape_app, side_server

    def source() -> MetricsSource | None:
        state = getattr(api.state, "tidings", None)  # set once the app's lifespan has begun
        if state is None:
            return None
        age = timedelta(seconds=settings.health_max_heartbeat_age_seconds)
        return MetricsSource(state.db, state.metrics, age)

    side = side_server(settings.metrics_bind, scrape_app(source))
    typer.echo(f"metrics on http://{settings.metrics_bind}/metrics", err=True)

    async def main() -> None:
        beside = asyncio.create_task(side.serve())
        try:
            await uvicorn.Server(
                uvicorn.Config(api, host=host, port=port, proxy_headers=False)
            ).serve()
        finally:
            side.should_exit = True
            await beside

    asyncio.run(main())


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=10_000,
            help="Tasks this process runs at once [default: TIDINGS_WORKER_CONCURRENCY].",
        ),
    ] = None,
) -> None:
    """Run a publishing worker on its own (as many as you like, sharing one PostgreSQL)."""
    import signal

    from tidings.publishing.metrics import EngineMetrics
    from tidings.publishing.worker import Worker, engine_config, platform_context

    settings = _settings()
    migrations.upgrade(settings.resolved_database_url)
    _tune_gc()

    async def main() -> None:
        db = Database.connect(
            settings.resolved_database_url,
            sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        context = platform_context(settings, db)
        metrics = EngineMetrics()
        runner = Worker(
            db,
            config=engine_config(settings),
            concurrency=concurrency or settings.worker_concurrency,
            metrics=metrics,
            context=context,
        )
        typer.echo(f"worker {runner.name} started (concurrency {runner.concurrency})", err=True)
        side = None
        if settings.metrics_bind is not None:
            from tidings.scrape import MetricsSource, scrape_app, side_server

            age = timedelta(seconds=settings.health_max_heartbeat_age_seconds)
            numbers = MetricsSource(db, metrics, age)
            side = side_server(settings.metrics_bind, scrape_app(lambda: numbers))
            beside = asyncio.create_task(side.serve())
            typer.echo(f"metrics on http://{settings.metrics_bind}/metrics", err=True)
        try:
            await runner.run(stop)
        finally:
            if side is not None:
                side.should_exit = True
                await beside
            await context.aclose()
            await db.dispose()
        typer.echo(f"worker {runner.name} stopped", err=True)

    asyncio.run(main())


def _tune_gc() -> None:
    """Collect garbage less often than CPython's default (every 700 allocations).

    A burst of thousands of due posts allocates hundreds of thousands of short-lived objects;
    with the default threshold the collector ran so often that it took about a third of the
    time a publish call costs. Objects made during start-up are frozen out of collections.
    """
    import gc

    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def _redacted(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.resolved_database_url).render_as_string(hide_password=True)


@app.command()
def migrate(as_json: JsonFlag = False) -> None:
    """Apply every pending migration to TIDINGS_DATABASE_URL."""
    settings = _settings()
    try:
        migrations.upgrade(settings.resolved_database_url)
    except Exception as exc:
        _fail(f"migration failed: {exc}", as_json=as_json)
    _emit({"database": _redacted(settings), "migrated": True}, as_json, "database is up to date")


@workspaces_app.command("create")
def workspaces_create(
    name: Annotated[str, typer.Argument(help="The workspace's name.")],
    timezone: Annotated[str, typer.Option(help="IANA time zone for display.")] = "UTC",
    as_json: JsonFlag = False,
) -> None:
    """Create a workspace."""

    async def work(session: AsyncSession, _: Settings) -> dict[str, Any]:
        ws = await workspace_service.create_workspace(session, name, utcnow(), timezone)
        return {"id": ws.id, "name": ws.name, "timezone": ws.timezone}

    result = _run(work, as_json=as_json)
    _emit(result, as_json, f"created workspace {result['id']} ({result['name']})")


PasswordOpt = Annotated[
    str | None,
    typer.Option(
        "--password",
        help="Avoid: it shows in the process list and shell history. Leave it out to be "
        "asked (hidden), or pipe the password on standard input.",
    ),
]


def _read_password(given: str | None) -> str:
    """The password from the terminal (hidden, asked twice) or the first line of standard
    input; `--password` still works, with a warning."""
    if given is not None:
        typer.echo(
            "warning: --password shows in the process list and the shell's history; "
            "leave it out to be asked for it, or pipe it on standard input",
            err=True,
        )
        return given
    if sys.stdin.isatty():
        password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        return password
    return sys.stdin.readline().rstrip("\r\n")


@users_app.command("create")
def users_create(
    workspace: WorkspaceOpt,
    email: Annotated[str, typer.Option(help="Sign-in email.")],
    role: Annotated[Role, typer.Option(help="Role in the workspace.")],
    password: PasswordOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a person to a workspace with a role. The password (at least 8 characters) is
    asked for, or read from standard input; an existing account must give its own."""
    secret = _read_password(password)

    async def work(session: AsyncSession, _: Settings) -> dict[str, Any]:
        user, membership = await workspace_service.add_member(
            session, workspace_id=workspace, email=email, password=secret, role=role, now=utcnow()
        )
        return {
            "id": user.id,
            "email": user.email,
            "workspace": membership.workspace_id,
            "role": membership.role.value,
        }

    result = _run(work, as_json=as_json)
    _emit(result, as_json, f"created user {result['id']} ({result['email']}, {result['role']})")


@users_app.command("set-password")
def users_set_password(
    email: Annotated[str, typer.Option(help="The account's sign-in email.")],
    as_json: JsonFlag = False,
) -> None:
    """Set a person's password, asked for (hidden) or read from standard input; every
    sign-in of theirs ends."""
    secret = _read_password(None)

    async def work(session: AsyncSession, _: Settings) -> dict[str, Any]:
        user = await passwords.set_password(session, email, secret, utcnow())
        return {"id": user.id, "email": user.email, "passwordSet": True}

    result = _run(work, as_json=as_json)
    _emit(result, as_json, f"password set for {result['email']}; their sign-ins ended")


@keys_app.command("create")
def keys_create(
    workspace: WorkspaceOpt,
    name: Annotated[str, typer.Option(help="A label for the key.")] = "default",
    signing: Annotated[
        str,
        typer.Option(
            help="What x-signature covers: request (method, path, query, x-date, body) or "
            "date (the x-date alone, each signature accepted once)."
        ),
    ] = "request",
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            help="A scope the key gets (repeat for more): "
            + ", ".join(s.value for s in Scope)
            + ". Default: posts and channels, read and write.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Issue an API key; its secret and token are shown only now."""

    async def work(session: AsyncSession, settings: Settings) -> dict[str, Any]:
        box = SecretBox(settings.resolved_secret_key)
        issued = await auth_service.create_api_key(
            session,
            box,
            workspace,
            name,
            utcnow(),
            signing=parse_signing(signing),
            scopes=parse_scopes(scope) if scope else DEFAULT_SCOPES,
        )
        return {
            "id": issued.key.id,
            "name": issued.key.name,
            "workspace": issued.key.workspace_id,
            "signing": issued.key.signing.value,
            "scopes": issued.key.scopes,
            "secret": issued.secret,
            "token": issued.token,
        }

    result = _run(work, as_json=as_json)
    _emit(
        result,
        as_json,
        f"API key {result['id']}\n  secret: {result['secret']}\n  token:  {result['token']}\n"
        f"  signs:  the {result['signing']}\n  scopes: {' '.join(result['scopes'])}\n"
        "The secret is shown only now: keep it somewhere safe.",
    )


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (key_…).")],
    as_json: JsonFlag = False,
) -> None:
    """Revoke an API key: requests signed with it are refused from now on."""

    async def work(session: AsyncSession, _: Settings) -> dict[str, Any]:
        key = await auth_service.revoke_api_key(session, key_id, utcnow())
        assert key.revoked_at is not None
        return {"id": key.id, "revokedAt": format_instant(key.revoked_at)}

    result = _run(work, as_json=as_json)
    _emit(result, as_json, f"revoked {result['id']}")


def _parse_options(pairs: list[str], as_json: bool) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            _fail(f"--option expects key=value, got {pair!r}", as_json=as_json)
        options[key.strip()] = value
    return options


@channels_app.command("add")
def channels_add(
    workspace: WorkspaceOpt,
    platform: Annotated[str, typer.Option(help="Platform, e.g. sandbox.")],
    name: Annotated[str, typer.Option(help="The channel's display name.")],
    option: Annotated[
        list[str] | None, typer.Option("--option", help="Platform option key=value (repeatable).")
    ] = None,
    account_id: Annotated[
        str | None, typer.Option(help="The platform's id of the account (real platforms).")
    ] = None,
    access_token: Annotated[
        str | None, typer.Option(help="A token obtained elsewhere (stored encrypted).")
    ] = None,
    refresh_token: Annotated[str | None, typer.Option(help="Its refresh token, if any.")] = None,
    login: Annotated[
        str | None,
        typer.Option(help="Instagram: 'facebook' for a token from Facebook Login."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a channel to a workspace (for a real platform, with a token obtained elsewhere)."""
    options = _parse_options(option or [], as_json)
    creds = None
    if account_id is not None or access_token is not None:
        if not account_id or not access_token:
            _fail("--account-id and --access-token go together", as_json=as_json)
        creds = Credentials(
            account_id=account_id,
            access_token=access_token,
            refresh_token=refresh_token,
            extra={"login": login} if login else {},
        )

    async def work(session: AsyncSession, settings: Settings) -> dict[str, Any]:
        channel = await channel_service.add_channel(
            session,
            workspace_id=workspace,
            platform=platform,
            name=name,
            options=options,
            now=utcnow(),
            credentials=creds,
            box=SecretBox(settings.resolved_secret_key),
            max_channels=settings.max_channels_per_workspace,
        )
        return {
            "id": channel.id,
            "workspace": channel.workspace_id,
            "platform": channel.platform,
            "name": channel.name,
            "status": channel.status.value,
            "options": channel.options,
        }

    result = _run(work, as_json=as_json)
    _emit(result, as_json, f"added channel {result['id']} ({result['platform']}: {result['name']})")


@apps_app.command("set")
def apps_set(
    workspace: WorkspaceOpt,
    platform: Annotated[str, typer.Option(help="instagram, facebook or threads.")],
    client_id: Annotated[str, typer.Option(help="The app's client id (app id, client key).")],
    client_secret: Annotated[str, typer.Option(help="The app's secret (stored encrypted).")],
    as_json: JsonFlag = False,
) -> None:
    """Set (or replace) the workspace's app on a platform, used to connect its accounts."""

    async def work(session: AsyncSession, settings: Settings) -> dict[str, Any]:
        app = await channel_service.set_app(
            session,
            workspace,
            platform,
            client_id=client_id,
            client_secret=client_secret,
            box=SecretBox(settings.resolved_secret_key),
            now=utcnow(),
        )
        return {"workspace": app.workspace_id, "platform": app.platform, "clientId": app.client_id}

    result = _run(work, as_json=as_json)
    _emit(result, as_json, f"set the {result['platform']} app of {result['workspace']}")


BatchOpt = Annotated[int, typer.Option(min=1, max=10_000, help="Rows re-sealed per transaction.")]


async def _drop_old_keys(
    settings: Settings, keys: list[str], db: Database, batch_size: int
) -> dict[str, Any]:
    """Keep only the newest key, once nothing needs an older one (checked first)."""
    from tidings.rotation import survey, write_key_ring

    found = (await survey(db, SecretBox(",".join(keys)), batch_size=batch_size)).total()
    if found.older:
        raise Conflict(
            f"{found.older} secrets are still sealed under an older key: run "
            "`tidings secrets rotate` first (with every process restarted on the new key)"
        )
    if settings.secret_key is None:
        write_key_ring(settings.secret_key_file, keys[:1])
        return {"dropped": len(keys) - 1, "keys": 1}
    # The ring is the operator's environment variable: they drop the keys from it.
    return {"dropped": 0, "keys": len(keys), "keepOnly": "the first key of TIDINGS_SECRET_KEY"}


def _with_database(
    settings: Settings, work: Callable[[Database], Awaitable[T]], *, as_json: bool
) -> T:
    """Run `work` on the migrated database (its own transactions), errors as one line."""
    url = settings.resolved_database_url
    migrations.upgrade(url)

    async def main() -> T:
        db = Database.connect(url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms)
        try:
            return await work(db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(main())
    except TidingsError as exc:
        _fail(exc.message, as_json=as_json)


@secrets_app.command("rotate")
def secrets_rotate(
    drop_old: Annotated[
        bool, typer.Option("--drop-old", help="Then drop the older keys from the key file.")
    ] = False,
    batch_size: BatchOpt = 500,
    as_json: JsonFlag = False,
) -> None:
    """Seal every secret again under the newest key: a new one added to the data directory's
    key file, or the first of TIDINGS_SECRET_KEY. Older keys keep opening until dropped."""
    import secrets as random

    from tidings.config import split_keys
    from tidings.rotation import reseal_all, write_key_ring

    settings = _settings()
    keys = split_keys(settings.resolved_secret_key)
    if settings.secret_key is None:
        keys = [random.token_urlsafe(48), *keys]
        write_key_ring(settings.secret_key_file, keys)

    async def work(db: Database) -> dict[str, Any]:
        report = await reseal_all(db, SecretBox(",".join(keys)), batch_size=batch_size)
        result: dict[str, Any] = {"newKey": settings.secret_key is None, **report.as_dict()}
        if drop_old:
            result["drop"] = await _drop_old_keys(settings, keys, db, batch_size)
        return result

    result = _with_database(settings, work, as_json=as_json)
    total = result["total"]
    human = (
        f"re-sealed {total['resealed']} secrets under the newest key ({total['current']} were "
        f"already, {total['changed']} changed meanwhile, {total['unreadable']} open under no key)"
    )
    if drop_old:
        human += f"; dropped {result['drop']['dropped']} older keys"
    _emit(result, as_json, human)


@secrets_app.command("drop-old")
def secrets_drop_old(batch_size: BatchOpt = 500, as_json: JsonFlag = False) -> None:
    """Drop every key but the newest from the data directory's key file, once no secret is
    sealed under an older one (with TIDINGS_SECRET_KEY, say whether its first key suffices)."""
    from tidings.config import split_keys

    settings = _settings()
    keys = split_keys(settings.resolved_secret_key)

    async def work(db: Database) -> dict[str, Any]:
        return await _drop_old_keys(settings, keys, db, batch_size)

    result = _with_database(settings, work, as_json=as_json)
    if "keepOnly" in result:
        human = "every secret opens with the first key: TIDINGS_SECRET_KEY can hold it alone"
    else:
        human = f"dropped {result['dropped']} older keys"
    _emit(result, as_json, human)


def main() -> None:
    app(prog_name="tidings")


if __name__ == "__main__":
    main()
