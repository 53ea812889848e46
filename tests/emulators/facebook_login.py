"""Facebook Login as documented: `FacebookLoginEmulator` is the Pages emulator with it
(`login`), so that the Page tokens it hands out publish on the same server.

- The dialog, `GET /{v}/dialog/oauth` (www.facebook.com in life): the person set in
  `consenting` approves at once, and the browser is sent back to `redirect_uri` with a
  `code` and the `state` (or `error=access_denied` when nobody is consenting).
- `GET|POST /{v}/oauth/access_token` with `client_id`, `client_secret`, `redirect_uri` and
  `code`: a short-lived user token (the code is used once, and only with the redirect URI
  it was issued for); with `grant_type=fb_exchange_token` and `fb_exchange_token`: a
  long-lived user token (about 60 days).
- `GET /{v}/me/accounts?fields=id,name,access_token,instagram_business_account{id,username}`
  with a user token: the Pages the person granted, `limit` at a time with Graph cursors
  (`paging.cursors.after`, and `paging.next` while more remain), each with a Page token
  that publishes on it (and the linked Instagram business account, when asked for).

A wrong client secret, an unknown, used or mismatched code, and a bad token are refused
with the Graph error envelope (code 1, 100 with subcodes 36007/36008/36009, 190).
"""

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from tests.emulators.facebook import FacebookEmulator
from tests.emulators.graph import Fault, GraphEmulator, GraphFailure

SHORT_LIVED, LONG_LIVED = 5_400, 5_183_944


@dataclass
class Page:
    id: str
    name: str
    instagram: tuple[str, str] | None = None  # linked business account: id, username


class FacebookLogin:
    def __init__(self, graph: GraphEmulator) -> None:
        self.graph = graph
        self.apps: dict[str, str] = {}  # client id -> secret
        self.pages: dict[str, Page] = {}
        self.granted: dict[str, list[str]] = {}  # user -> the Pages they shared
        self.consenting: tuple[str, list[str]] | None = None  # who approves in the dialog
        self.asked_scopes: list[str] = []
        self.user_tokens: dict[str, tuple[str, str, bool]] = {}  # token -> client, user, long
        self._codes: dict[str, tuple[str, str, str]] = {}  # code -> client, redirect, user
        self._used: set[str] = set()

    # --- what tests set up ------------------------------------------------------------------

    def register_app(self, client_id: str, secret: str) -> None:
        self.apps[client_id] = secret

    def add_page(self, page_id: str, name: str, instagram: tuple[str, str] | None = None) -> None:
        self.pages[page_id] = Page(page_id, name, instagram)

    def consent(self, client_id: str, redirect_uri: str, user_id: str, pages: list[str]) -> str:
        """The person approved, sharing `pages`: the code the browser brings back."""
        code = f"fbcode-{self.graph._new_id()}"
        self._codes[code] = (client_id, redirect_uri, user_id)
        self.granted[user_id] = list(pages)
        return code

    # --- the API ----------------------------------------------------------------------------

    def _app(self, params: dict[str, str]) -> str:
        client = params.get("client_id", "")
        if client not in self.apps or self.apps[client] != params.get("client_secret"):
            raise GraphFailure(Fault(400, 1, None, "Error validating client secret."))
        return client

    def exchange(self, params: dict[str, str]) -> dict[str, Any]:
        client = self._app(params)
        if params.get("grant_type") == "fb_exchange_token":
            held = self.user_tokens.get(params.get("fb_exchange_token", ""))
            if held is None or held[0] != client:
                raise GraphFailure(Fault(400, 190, None, "Invalid OAuth access token."))
            return self._issue(client, held[1], long=True)
        code = params.get("code", "")
        if code in self._used:
            raise GraphFailure(Fault(400, 100, 36009, "This authorization code has been used."))
        issued = self._codes.get(code)
        if issued is None or issued[0] != client:
            raise GraphFailure(Fault(400, 100, 36007, "Invalid verification code format."))
        if issued[1] != params.get("redirect_uri"):
            raise GraphFailure(
                Fault(
                    400,
                    100,
                    36008,
                    "Error validating verification code. Please make sure your redirect_uri "
                    "is identical to the one you used in the OAuth dialog request",
                )
            )
        del self._codes[code]
        self._used.add(code)
        return self._issue(client, issued[2], long=False)

    def _issue(self, client: str, user: str, *, long: bool) -> dict[str, Any]:
        token = f"EAA{'L' if long else 'S'}-{self.graph._new_id()}"
        self.user_tokens[token] = (client, user, long)
        expires_in = LONG_LIVED if long else SHORT_LIVED
        return {"access_token": token, "token_type": "bearer", "expires_in": expires_in}

    def accounts(self, request: Request, params: dict[str, str]) -> dict[str, Any]:
        header = request.headers.get("authorization", "")
        held = self.user_tokens.get(params.get("access_token") or header.partition(" ")[2])
        if held is None:
            raise GraphFailure(Fault(400, 190, 467, "Invalid OAuth access token."))
        self.graph._take_fault("accounts")
        shared = [self.pages[p] for p in self.granted.get(held[1], []) if p in self.pages]
        limit = int(params.get("limit", "25"))
        start = int(params["after"][1:]) if params.get("after", "").startswith("p") else 0
        with_instagram = "instagram_business_account" in params.get("fields", "")
        data = []
        for page in shared[start : start + limit]:
            token = f"EAAP-{page.id}-{self.graph._new_id()}"
            self.graph.tokens[token] = page.id  # a Page token publishes on its Page
            entry: dict[str, Any] = {"id": page.id, "name": page.name, "access_token": token}
            if with_instagram and page.instagram is not None:
                ig_id, username = page.instagram
                entry["instagram_business_account"] = {"id": ig_id, "username": username}
            data.append(entry)
        end = start + len(data)
        paging: dict[str, Any] = {"cursors": {"before": f"p{start}", "after": f"p{end}"}}
        if end < len(shared):
            query = dict(params) | {"after": f"p{end}", "limit": str(limit)}
            paging["next"] = f"{self.graph.url}{request.url.path}?{urlencode(query)}"
        return {"data": data, "paging": paging}

    def routes(self, app: FastAPI) -> None:
        login, graph = self, self.graph

        @app.get("/{version}/dialog/oauth")
        async def dialog(version: str, request: Request) -> Response:
            """The consent dialog: the person in `consenting` approves at once."""
            params = dict(request.query_params)
            if params.get("client_id") not in login.apps:
                failure = Fault(400, 101, None, "Error validating application. Invalid App ID.")
                return graph.refuse(GraphFailure(failure), None)
            login.asked_scopes = params.get("scope", "").split(",")
            back: dict[str, str] = {"state": params.get("state", "")}
            with graph._lock:
                if login.consenting is None:
                    back |= {"error": "access_denied", "error_reason": "user_denied"}
                else:
                    user, pages = login.consenting
                    back["code"] = login.consent(
                        params["client_id"], params.get("redirect_uri", ""), user, pages
                    )
            return RedirectResponse(f"{params.get('redirect_uri', '')}?{urlencode(back)}", 302)

        @app.api_route("/{version}/oauth/access_token", methods=["GET", "POST"])
        async def access_token(version: str, request: Request) -> JSONResponse:
            params = await graph.params_of(request)
            try:
                with graph._lock:
                    body = login.exchange(params)
            except GraphFailure as failure:
                return graph.refuse(failure, None)
            return graph.answer(body, None)

        @app.get("/{version}/me/accounts")
        async def me_accounts(version: str, request: Request) -> JSONResponse:
            params = await graph.params_of(request)
            try:
                with graph._lock:
                    body = login.accounts(request, params)
            except GraphFailure as failure:
                return graph.refuse(failure, None)
            return graph.answer(body, None)


class FacebookLoginEmulator(FacebookEmulator):
    """The Pages emulator, with Facebook Login (`login`) on the same server."""

    def __init__(self, **options: Any) -> None:
        self.login = FacebookLogin(self)
        super().__init__(**options)

    def _build(self) -> FastAPI:
        app = super()._build()
        self.login.routes(app)
        return app
