#!/usr/bin/env python3
"""An MCP client built on the official Python SDK (PyPI `mcp`, pinned in requirements.txt)
that drives the OAuth flows against a server protected by mcp-gatekeeper, e.g.
examples/mcp_server with --issuer pointing at tests/oidc/provider.mjs. The Python
counterpart of tests/node/mcp_client.mjs.

    python mcp_client.py --server http://127.0.0.1:PORT/mcp \\
        --flow client_credentials|authorization_code|step_up|dcr_step_up \\
        [--timeout SECONDS] [--protocol 2025-11-25|2026-07-28] [--no-discover]
        [--issuer URL] [--recheck-read]

Nothing about the authorization server is given by hand: the SDK's OAuthClientProvider (an
httpx2.Auth, mcp/client/auth/oauth2.py) finds it from the server's 401 (or 403)
WWW-Authenticate challenge, the RFC 9728 protected resource metadata it points at
(authorization_servers, resource, scopes_supported), and the authorization server's RFC 8414
metadata; it registers (RFC 7591), authorizes, swaps the code for a token and retries the
request, all inside the one HTTP request that was refused.

Protocol versions ("wires"), chosen with the SDK's `Client(mode=...)` (mcp/client/client.py,
`Client.mode` and `__aenter__`):
  --protocol 2025-11-25  mode="legacy": the initialize handshake (InitializeRequest at
                         LATEST_HANDSHAKE_VERSION = 2025-11-25, then notifications/initialized;
                         a GET stream only when the server gives a session id, which the
                         example's stateless rmcp does not), MCP-Protocol-Version on later requests.
  --protocol 2026-07-28  mode="auto": a `server/discover` probe at LATEST_MODERN_VERSION
                         (2026-07-28, mcp/client/_probe.py) whose DiscoverResult is adopted: no
                         initialize, no session; every request carries the version in `_meta` and
                         the MCP-Protocol-Version / Mcp-Method / Mcp-Name headers. "auto" falls
                         back to initialize when the probe fails; this script then fails the run
                         (the negotiated version must be the one asked for). The SDK's other way,
                         mode="2026-07-28", adopts the version without any probe (a synthesized
                         DiscoverResult); --no-discover selects that.

Flows (the first token's scope is always the one the 401 names):
  client_credentials  confidential client cc-client/cc-secret through the SDK's
                      ClientCredentialsOAuthProvider (mcp/client/auth/extensions/
                      client_credentials.py); lists tools and calls whoami.
  authorization_code  the SDK's OAuthClientProvider with dynamic client registration and PKCE;
                      its redirect_handler follows the authorization URL headlessly (httpx2,
                      cookies, no automatic redirects) to the redirect_uri and its
                      callback_handler hands the code back; lists tools, calls whoami.
  step_up             as authorization_code, then write: the server answers 403
                      insufficient_scope scope="mcp:write" and the SDK steps up by itself
                      (oauth2.py: a 403 with error="insufficient_scope" runs the flow again with
                      the union of the scopes, SEP-2350) and retries. Fails if write needed no
                      step-up. --recheck-read calls whoami once more afterwards.
  dcr_step_up         as step_up, but about the registration: the SDK registers its client
                      (DCR) with exactly the scope it is about to ask for, the first
                      challenge's plus offline_access (SEP-2207: the AS offers offline_access and
                      the client's grant_types have refresh_token; auth/utils.py
                      get_client_metadata_scopes), and steps up later with that registration,
                      never registering again. "scopes_beyond_registration" shows what each
                      authorization request asked beyond the registration: an authorization
                      server that holds a client to its registered scope answers that with
                      error=invalid_scope, which ends the run (recorded, nothing retried).
                      tests/oidc/provider.mjs drops the registered scope, so there it passes.
                      A step-up is not required: with --challenge-all-scopes the first token
                      already has mcp:write.

Every HTTP exchange goes through one recording httpx2 transport, used by the client handed to
the SDK's transport (and so by the OAuth provider, an httpx2.Auth of that client) and by the
headless redirects. Hosts are shown as SERVER (the --server origin) or IDP (an origin listed in
the metadata's authorization_servers); query strings are dropped.

Prints one JSON line on stdout:
  {"flow":…,"protocol":…,"ok":true|false,"results":{…},"exchanges":[["POST","SERVER/mcp",401],…],
   "mcp":[[JSON-RPC method, MCP-Protocol-Version header, Mcp-Method header, status],… one per
          POST SERVER/mcp],
   "challenges":[[status, WWW-Authenticate],…],"granted_scopes":[…],"authorization_scopes":[…],
   "registered_scopes":[…],"sdk_warnings":[…],"error":…}
and exits non-zero on failure, with the reason on stderr. A global timeout (default 30 s)
fails the run.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import traceback
import warnings
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import anyio
import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from mcp_types import Implementation

FLOWS = ["client_credentials", "authorization_code", "step_up", "dcr_step_up"]
PROTOCOLS = ["2025-11-25", "2026-07-28"]
REDIRECT_URL = "http://127.0.0.1/callback"  # never contacted: the code is read from Location
MAX_REDIRECTS = 10


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="MCP Python SDK client for mcp-gatekeeper's OAuth tests")
    parser.add_argument("--server", required=True, help="the MCP endpoint, e.g. http://127.0.0.1:PORT/mcp")
    parser.add_argument("--flow", required=True, choices=FLOWS)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds for the whole run (default 30)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="2025-11-25")
    parser.add_argument(
        "--no-discover",
        action="store_true",
        help="with --protocol 2026-07-28: mode='2026-07-28' (adopt without a server/discover probe)",
    )
    parser.add_argument(
        "--issuer",
        help="client_credentials: the issuer cc-client belongs to (ClientCredentialsOAuthProvider(issuer=…)); "
        "without it the SDK warns that omitting it is deprecated",
    )
    parser.add_argument("--recheck-read", action="store_true", help="step-up flows: call whoami again after write")
    args = parser.parse_args()
    if args.timeout <= 0:
        parser.error("--timeout must be a positive number of seconds")
    if args.no_discover and args.protocol != "2026-07-28":
        parser.error("--no-discover goes with --protocol 2026-07-28")
    return args


ARGS = parse_args()
SERVER = urlsplit(ARGS.server)
SERVER_ORIGIN = f"{SERVER.scheme}://{SERVER.netloc}"

# ---------------------------------------------------------------------------------------------
# What the report records.

exchanges: list[list[Any]] = []
mcp_posts: list[list[Any]] = []
challenges: list[list[Any]] = []
idp_origins: set[str] = set()
granted_scopes: list[str | None] = []
authorization_scopes: list[str | None] = []
registered_scopes: list[str | None] = []
registration_responses: list[Any] = []
token_errors: list[Any] = []
sdk_warnings: list[str] = []
session_ids: set[str] = set()


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def label(url: str) -> str:
    origin = origin_of(url)
    if origin == SERVER_ORIGIN:
        host = "SERVER"
    elif origin in idp_origins:
        host = "IDP"
    else:
        host = origin  # an origin nobody told us about: shown as is, so it stands out
    return host + (urlsplit(url).path or "/")


def jwt_claims(token: str) -> dict[str, Any] | None:
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
        return claims if isinstance(claims, dict) else None
    except (IndexError, ValueError):
        return None


def scope_of(token_response: dict[str, Any]) -> str | None:
    """The scope of a token response; from the JWT's claims when the response leaves it out."""
    if isinstance(token_response.get("scope"), str):
        return token_response["scope"]
    claims = jwt_claims(str(token_response.get("access_token", "")))
    if claims and isinstance(claims.get("scope"), str):
        return claims["scope"]
    return None


def describe(err: BaseException) -> str:
    """An exception as one line, the leaves of exception groups included."""
    if isinstance(err, BaseExceptionGroup):
        return "; ".join(describe(e) for e in err.exceptions)
    text = f"{type(err).__name__}: {err}"
    cause = err.__cause__ or err.__context__
    if cause is not None and not isinstance(err, anyio.get_cancelled_exc_class()):
        text += f" (from {type(cause).__name__}: {cause})"
    return text


# ---------------------------------------------------------------------------------------------
# Recording of HTTP exchanges: a transport under every httpx2 client this script makes.


def is_registration(path: str) -> bool:
    """The fixture's registration endpoint (/reg), or the SDK's fallback (/register)."""
    return path.endswith("/reg") or path.endswith("/register")


class RecordingTransport(httpx2.AsyncBaseTransport):
    """Records each request sent (method, place, status) in the order the answers arrive.

    Reads the bodies of the small JSON documents that say something about the flow: protected
    resource metadata (which origins are the authorization servers), registration and token
    responses (scopes). The MCP requests' JSON-RPC method and MCP-Protocol-Version header are
    recorded in "mcp", the server's challenges in "challenges".
    """

    def __init__(self) -> None:
        self._inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = str(request.url)
        method = request.method
        rpc = self._rpc_method(request) if origin_of(url) == SERVER_ORIGIN and method == "POST" else None
        if method == "POST" and is_registration(request.url.path):
            self._note_registration_request(request)
        try:
            response = await self._inner.handle_async_request(request)
        except Exception as err:
            exchanges.append([method, label(url), f"error: {describe(err)}"])
            if rpc is not None:
                mcp_posts.append(
                    [
                        rpc,
                        request.headers.get("mcp-protocol-version"),
                        request.headers.get("mcp-method"),
                        f"error: {describe(err)}",
                    ]
                )
            raise
        status = response.status_code
        if rpc is not None:
            mcp_posts.append(
                [rpc, request.headers.get("mcp-protocol-version"), request.headers.get("mcp-method"), status]
            )
            if response.headers.get("mcp-session-id"):
                session_ids.add(response.headers["mcp-session-id"])
        if origin_of(url) == SERVER_ORIGIN and status in (401, 403):
            challenges.append([status, response.headers.get("www-authenticate")])
        path = request.url.path
        wanted = (
            path.startswith("/.well-known/oauth-protected-resource")
            or (method == "POST" and origin_of(url) != SERVER_ORIGIN and (path.endswith("/token") or is_registration(path)))
        )
        if wanted:
            body = await response.aread()
            await response.aclose()
            self._note_document(path, method, status, body)
            response = httpx2.Response(
                status_code=status,
                headers=response.headers,
                content=body,
                request=request,
                extensions=response.extensions,
            )
        # Recorded after the metadata document is read, so the IDP is named from the start.
        exchanges.append([method, label(url), status])
        return response

    @staticmethod
    def _rpc_method(request: httpx2.Request) -> str | None:
        try:
            message = json.loads(request.content or b"null")
        except (ValueError, httpx2.RequestNotRead):
            return None
        if isinstance(message, dict):
            if "method" in message:
                return message["method"]
            return "response" if "result" in message or "error" in message else None
        return "batch" if isinstance(message, list) else None

    @staticmethod
    def _note_registration_request(request: httpx2.Request) -> None:
        try:
            registration = json.loads(request.content)
        except (ValueError, httpx2.RequestNotRead):
            return
        if isinstance(registration, dict):
            registered_scopes.append(registration.get("scope"))

    @staticmethod
    def _note_document(path: str, method: str, status: int, body: bytes) -> None:
        try:
            document = json.loads(body)
        except ValueError:
            return
        if not isinstance(document, dict):
            return
        if path.startswith("/.well-known/oauth-protected-resource") and status == 200:
            for issuer in document.get("authorization_servers") or []:
                idp_origins.add(origin_of(str(issuer)))
        elif is_registration(path):
            registration_responses.append(
                {k: document.get(k) for k in ("scope", "grant_types", "token_endpoint_auth_method", "error", "error_description") if k in document}
            )
        elif path.endswith("/token"):
            if status == 200:
                granted_scopes.append(scope_of(document))
            else:
                token_errors.append([status, document.get("error"), document.get("error_description")])

    async def aclose(self) -> None:
        # Shared by every client of this script: closed once, at the end (close_for_good).
        pass

    async def close_for_good(self) -> None:
        await self._inner.aclose()


TRANSPORT = RecordingTransport()


def http_client(**kwargs: Any) -> httpx2.AsyncClient:
    """An httpx2 client on the recording transport, with the SDK's MCP timeouts."""
    return httpx2.AsyncClient(
        transport=TRANSPORT,
        timeout=httpx2.Timeout(30.0, read=300.0),
        **kwargs,
    )


# ---------------------------------------------------------------------------------------------
# Token storage and the headless browser.


class MemoryStorage:
    """The SDK's TokenStorage protocol (mcp/client/auth/oauth2.py), in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class AuthorizationError(Exception):
    """The authorization server sent the user agent back to redirect_uri with ?error=…"""

    def __init__(self, code: str, description: str | None) -> None:
        super().__init__(f"authorization answered error={code}{': ' + description if description else ''}")
        self.code = code


class HeadlessBrowser:
    """The redirect_handler and callback_handler of the SDK's OAuthClientProvider.

    redirect_handler follows the authorization URL like a browser: GET with cookies (the httpx2
    client's jar), no automatic redirects, until the Location is the redirect_uri; it keeps the
    code, state and iss for callback_handler, which hands them to the SDK (which checks state
    and, RFC 9207, iss itself).
    """

    def __init__(self) -> None:
        self._client = http_client()
        self._result: AuthorizationCodeResult | None = None
        self.authorizations = 0

    async def redirect_handler(self, authorization_url: str) -> None:
        self.authorizations += 1
        query = parse_qs(urlsplit(authorization_url).query)
        authorization_scopes.append(query.get("scope", [None])[0])
        url = authorization_url
        target = urlsplit(REDIRECT_URL)
        for _ in range(MAX_REDIRECTS):
            response = await self._client.get(url, follow_redirects=False)
            location = response.headers.get("location")
            if not (300 <= response.status_code <= 399) or not location:
                body = " ".join(response.text.split())[:300]
                raise RuntimeError(f"authorization stopped at {label(url)} with HTTP {response.status_code}: {body}")
            following = urljoin(url, location)
            parts = urlsplit(following)
            if (parts.scheme, parts.netloc, parts.path) == (target.scheme, target.netloc, target.path):
                params = parse_qs(parts.query)
                if "error" in params:
                    raise AuthorizationError(params["error"][0], params.get("error_description", [None])[0])
                if "code" not in params:
                    raise RuntimeError("authorization response has no code")
                self._result = AuthorizationCodeResult(
                    code=params["code"][0],
                    state=params.get("state", [None])[0],
                    iss=params.get("iss", [None])[0],
                )
                return
            url = following
        raise RuntimeError(f"authorization did not reach the redirect_uri within {MAX_REDIRECTS} redirects")

    async def callback_handler(self) -> AuthorizationCodeResult:
        result, self._result = self._result, None
        if result is None:
            raise RuntimeError("no authorization code: the redirect handler did not reach the redirect_uri")
        return result

    async def aclose(self) -> None:
        await self._client.aclose()


# ---------------------------------------------------------------------------------------------
# The flows.


def token_scope(provider: OAuthClientProvider) -> dict[str, Any] | None:
    """The SDK's current token: the scope it holds for it, and the scope claim of the JWT."""
    tokens = provider.context.current_tokens
    if tokens is None:
        return None
    claims = jwt_claims(tokens.access_token) or {}
    return {"sdk_scope": tokens.scope, "jwt_scope": claims.get("scope"), "refresh_token": tokens.refresh_token is not None}


def tool_value(result: Any) -> Any:
    if getattr(result, "is_error", False):
        text = " ".join(getattr(item, "text", "") for item in result.content)
        raise RuntimeError(f"tool answered isError: {text}")
    if result.structured_content is not None:
        return result.structured_content
    text = "".join(getattr(item, "text", "") for item in result.content if getattr(item, "type", None) == "text")
    try:
        return json.loads(text)
    except ValueError:
        return text


async def run(results: dict[str, Any], browser: HeadlessBrowser) -> None:
    storage = MemoryStorage()
    if ARGS.flow == "client_credentials":
        # The authorization server is still found from the challenge and the metadata; `issuer`
        # (--issuer) only pins which one may receive the secret: the SDK then refuses metadata
        # of any other issuer. Without it the SDK warns (MCPDeprecationWarning, recorded in
        # sdk_warnings) and uses whatever server discovery yields.
        provider: OAuthClientProvider = ClientCredentialsOAuthProvider(
            server_url=ARGS.server,
            storage=storage,
            client_id="cc-client",
            client_secret="cc-secret",
            scope="mcp:read",
            issuer=ARGS.issuer,
        )
    else:
        provider = OAuthClientProvider(
            server_url=ARGS.server,
            client_metadata=OAuthClientMetadata(
                client_name="mcp-gatekeeper python test client",
                redirect_uris=[REDIRECT_URL],
                # grant_types and application_type are the SDK's defaults
                # (authorization_code + refresh_token; native).
                response_types=["code"],
                token_endpoint_auth_method="none",
            ),
            storage=storage,
            redirect_handler=browser.redirect_handler,
            callback_handler=browser.callback_handler,
        )

    if ARGS.protocol == "2025-11-25":
        mode = "legacy"
    elif ARGS.no_discover:
        mode = "2026-07-28"
    else:
        mode = "auto"

    async with http_client(auth=provider) as http:
        transport = streamable_http_client(ARGS.server, http_client=http)
        client = Client(
            transport,
            mode=mode,
            client_info=Implementation(name="mcp-gatekeeper-python-test", version="1.0.0"),
        )
        async with client:
            session = client.session
            results["mode"] = mode
            results["protocol_version"] = client.protocol_version
            results["negotiation"] = (
                "initialize"
                if session.initialize_result is not None
                else ("server/discover" if session.discover_result is not None and mode == "auto" else "adopted without probe")
            )
            if session.discover_result is not None and mode == "auto":
                results["discover"] = {
                    "supported_versions": session.discover_result.supported_versions,
                    "server_info": client.server_info.model_dump(mode="json") if client.server_info else None,
                }
            if client.protocol_version != ARGS.protocol:
                raise RuntimeError(
                    f"asked for protocol {ARGS.protocol} (mode={mode!r}), negotiated {client.protocol_version} "
                    f"by {results['negotiation']}"
                )
            results["token_after_connect"] = token_scope(provider)
            listed = await client.list_tools()
            results["tools"] = [tool.name for tool in listed.tools]
            results["whoami"] = tool_value(await client.call_tool("whoami", {}))
            results["session_id_issued"] = bool(session_ids)
            if ARGS.flow in ("step_up", "dcr_step_up"):
                results["token_before_write"] = token_scope(provider)
                before = browser.authorizations
                stamp = datetime.now(timezone.utc).isoformat()
                try:
                    results["write"] = tool_value(await client.call_tool("write", {"text": f"step-up from python at {stamp}"}))
                finally:
                    results["step_up_authorization_requests"] = browser.authorizations - before
                    results["token_after_write"] = token_scope(provider)
                if ARGS.flow == "step_up" and results["step_up_authorization_requests"] < 1:
                    raise RuntimeError("write succeeded without a step-up: the first token already had mcp:write")
                if ARGS.recheck_read:
                    before = browser.authorizations
                    results["whoami_after_write"] = tool_value(await client.call_tool("whoami", {}))
                    results["recheck_authorization_requests"] = browser.authorizations - before


def report(ok: bool, results: dict[str, Any], error: str | None = None) -> None:
    line: dict[str, Any] = {
        "flow": ARGS.flow,
        "protocol": ARGS.protocol,
        "ok": ok,
        "results": results,
        "exchanges": exchanges,
        "mcp": mcp_posts,
        "challenges": challenges,
        "granted_scopes": granted_scopes,
    }
    if authorization_scopes:
        line["authorization_scopes"] = authorization_scopes
    if registered_scopes:
        line["registered_scopes"] = registered_scopes
        line["registration_responses"] = registration_responses
        # Per authorization request, the scopes it asked for beyond what the client registered
        # with (the last registration before it): what an authorization server that holds a
        # client to its registered scope refuses with invalid_scope.
        registered = set((registered_scopes[-1] or "").split())
        line["scopes_beyond_registration"] = [
            sorted(set((asked or "").split()) - registered) for asked in authorization_scopes
        ]
    if token_errors:
        line["token_errors"] = token_errors
    if sdk_warnings:
        line["sdk_warnings"] = sdk_warnings
    if error is not None:
        line["error"] = error
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def record_warning(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    sdk_warnings.append(f"{category.__name__}: {message}")
    print(f"mcp_client.py: warning: {category.__name__}: {message} ({filename}:{lineno})", file=sys.stderr)


async def main() -> int:
    warnings.simplefilter("always")
    warnings.showwarning = record_warning
    results: dict[str, Any] = {}
    browser = HeadlessBrowser()
    try:
        with anyio.fail_after(ARGS.timeout):
            await run(results, browser)
    except TimeoutError:
        print(f"mcp_client.py: {ARGS.flow}: timed out after {ARGS.timeout} s", file=sys.stderr)
        report(False, results, f"timeout after {ARGS.timeout} s")
        return 1
    except BaseException as err:  # exception groups from the SDK's task groups included
        if isinstance(err, (KeyboardInterrupt, SystemExit)):
            raise
        print(f"mcp_client.py: {ARGS.flow} failed:", file=sys.stderr)
        traceback.print_exception(err, file=sys.stderr)
        report(False, results, describe(err))
        return 1
    finally:
        await browser.aclose()
        await TRANSPORT.close_for_good()
    report(True, results)
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
