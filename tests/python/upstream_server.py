#!/usr/bin/env python3
"""Upstream MCP server fixture built on the official Python SDK (PyPI `mcp` 2.3.0, pinned with
uvicorn, starlette and the rest in requirements.txt; in mcp 2.x FastMCP is
`mcp.server.mcpserver.MCPServer`): one of the upstream MCP servers put behind
mcp-gatekeeper-proxy in proxy/tests, and the Python twin of tests/node/upstream_server.mjs.
Streamable HTTP, served by uvicorn on 127.0.0.1. It does no authorization itself: it records
every request that reaches it (method, path, headers, Authorization included, even the ones its
Host check refuses) so a test can check what the proxy forwarded.

    target/python-venv/bin/python tests/python/upstream_server.py [--port N] [--path /mcp]
        [--stateless] [--json] [--allowed-host HOST:PORT|HOST:*|HOST]... [--no-host-check]

  --port N           default 0 (ephemeral); the ready line says which
  --path P           the MCP endpoint, default /mcp
  --stateless        stateless_http=True: no Mcp-Session-Id, every POST is served on its own;
                     DELETE answers 405, GET an SSE stream that carries nothing but pings
  --json             json_response=True: a POST is answered with one application/json body, sent
                     when the tool is done, instead of an SSE stream (notifications are dropped)
  --allowed-host H   TransportSecuritySettings(allowed_hosts=[...], allowed_origins=http://H)
                     (repeatable, replaces the default). Matched against the whole Host header,
                     port included: "name:8000", or "name:*" for any port, which does not match a
                     Host without a port (list "name" too). Default: the SDK's own for a 127.0.0.1
                     bind: Host 127.0.0.1:*, localhost:* or [::1]:* (else 421 "Invalid Host
                     header"), and Origin, when sent, http://127.0.0.1:*, http://localhost:* or
                     http://[::1]:* (else 403 "Invalid Origin header")
  --no-host-check    enable_dns_rebinding_protection=False: neither Host nor Origin is checked

Tools (the same as upstream_server.mjs):
  whoami                        {authorization, bearer_claims (JWT payload, decoded, NOT
                                verified), session_id} of the HTTP request that carried the call
  echo {text}                   text
  write {text}                  {written: text}; does nothing else. For a gateway configured to
                                require scope mcp:write for it (mcp_client.mjs --flow step_up)
  slow_stream {duration_ms=1000, interval_ms=50}
                                one notification per interval while it runs: notifications/progress
                                when the call carried _meta.progressToken, else
                                notifications/message (logging); each says the elapsed ms.
                                Returns {sent, elapsed_ms, progress}
  seen_headers {last=20}        the last requests recorded, newest last: {requests: [{t, method,
                                path, headers (lower-case, duplicates joined), raw_headers}]}
HTTP test hooks (not MCP, not recorded): GET /_test/seen returns {requests: [...]} (all records,
at most 500), POST /_test/reset clears them and returns {"ok":true}.

Ready line on stdout (one JSON line): {"url":"http://127.0.0.1:PORT/mcp","port":PORT,
  "stateless":false,"json":false,"host_check":["127.0.0.1:*","localhost:*","[::1]:*"] (or the
  --allowed-host values, or "off"),"sdk":"mcp@2.3.0","pid":...}
Each request is also logged to stderr as one JSON line ({"py_server":true,"request":{method,path,
authorization,session}}), and so is {"slow_stream_done":...}. Ends on SIGTERM/SIGINT (about 1 s:
uvicorn's graceful shutdown timeout), or when stdin (a pipe) closes, like tests/oidc/provider.mjs,
so a test that dies never leaves it behind.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import stat
import sys
import threading
import time
from importlib.metadata import version
from typing import Any

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--path", default="/mcp")
parser.add_argument("--stateless", action="store_true")
parser.add_argument("--json", action="store_true")
parser.add_argument("--allowed-host", action="append")
parser.add_argument("--no-host-check", action="store_true")
args = parser.parse_args()

HOST = "127.0.0.1"
MAX_SEEN = 500
seen: list[dict[str, Any]] = []


def log(obj: dict[str, Any]) -> None:
    sys.stderr.write(json.dumps({"py_server": True, **obj}) + "\n")
    sys.stderr.flush()


def bearer_claims(authorization: str | None) -> Any:
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    parts = authorization[7:].strip().split(".")
    if len(parts) != 3:
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except Exception:
        return None


mcp = MCPServer("py-upstream", version=version("mcp"))


@mcp.tool()
async def whoami(ctx: Context) -> dict[str, Any]:
    """The Authorization header this upstream received with the call."""
    headers = ctx.headers or {}
    authorization = headers.get("authorization")
    return {
        "authorization": authorization,
        "bearer_claims": bearer_claims(authorization),
        "session_id": headers.get("mcp-session-id"),
    }


@mcp.tool()
async def echo(text: str) -> str:
    """Returns its text."""
    return text


@mcp.tool()
async def write(text: str) -> dict[str, Any]:
    """Pretends to write its text (a tool a gateway can put behind scope mcp:write)."""
    return {"written": text}


@mcp.tool()
async def slow_stream(ctx: Context, duration_ms: int = 1000, interval_ms: int = 50) -> dict[str, Any]:
    """Sends a notification every interval_ms for duration_ms, then answers."""
    interval_ms = max(5, interval_ms)
    # request_context.meta is a TypedDict (mcp_types.RequestParamsMeta): key progress_token
    token = (ctx.request_context.meta or {}).get("progress_token")
    start = time.monotonic()
    total = max(1, duration_ms // interval_ms)
    sent = 0
    while (time.monotonic() - start) * 1000 < duration_ms:
        await anyio.sleep(interval_ms / 1000)
        sent += 1
        elapsed = round((time.monotonic() - start) * 1000)
        if token is not None:
            await ctx.report_progress(sent, total, f"t={elapsed}")
        else:
            await ctx.log("info", {"n": sent, "elapsed_ms": elapsed}, logger_name="slow_stream")
    result = {"sent": sent, "elapsed_ms": round((time.monotonic() - start) * 1000), "progress": token is not None}
    log({"slow_stream_done": result})
    return result


@mcp.tool()
async def seen_headers(last: int = 20) -> dict[str, Any]:
    """The last requests this upstream received (method, path, headers)."""
    return {"requests": seen[-last:]}


if args.no_host_check:
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
elif args.allowed_host:
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=args.allowed_host,
        allowed_origins=[f"http://{h}" for h in args.allowed_host],
    )
else:
    security = None  # the SDK's default for a 127.0.0.1 bind (see the docstring)

inner = mcp.streamable_http_app(
    streamable_http_path=args.path,
    json_response=args.json,
    stateless_http=args.stateless,
    transport_security=security,
    host=HOST,
)


async def app(scope, receive, send):  # ASGI: records every HTTP request, serves the test hooks
    if scope["type"] == "http":
        hook = (scope["method"], scope["path"])
        if hook in (("GET", "/_test/seen"), ("POST", "/_test/reset")):
            if hook[1] == "/_test/reset":
                seen.clear()
            body = json.dumps({"requests": seen} if hook[1] == "/_test/seen" else {"ok": True}).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        raw = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        headers: dict[str, str] = {}
        for k, v in raw:
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
        path = scope["path"] + (("?" + scope["query_string"].decode()) if scope["query_string"] else "")
        seen.append({"t": int(time.time() * 1000), "method": scope["method"], "path": path,
                     "headers": headers, "raw_headers": [x for kv in raw for x in kv]})
        del seen[:-MAX_SEEN]
        log({"request": {"method": scope["method"], "path": path, "authorization": headers.get("authorization"),
                         "session": headers.get("mcp-session-id")}})
    await inner(scope, receive, send)


async def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, args.port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # we handle SIGTERM/SIGINT below

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))

    # Exit when stdin is a pipe/socket and it closes (the parent died), as provider.mjs does.
    try:
        mode = os.fstat(0).st_mode
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            def watch() -> None:
                # os.read, not sys.stdin: a thread blocked in the buffered reader holds its lock,
                # and the interpreter then aborts at exit (SIGABRT) after SIGTERM.
                while os.read(0, 65536):
                    pass
                server.should_exit = True
                time.sleep(3)
                os._exit(0)
            threading.Thread(target=watch, daemon=True).start()
    except OSError:
        pass

    async def announce() -> None:
        while not server.started:
            await asyncio.sleep(0.02)
        print(json.dumps({"url": f"http://{HOST}:{port}{args.path}", "port": port, "stateless": args.stateless,
                          "json": args.json,
                          "host_check": "off" if args.no_host_check else (args.allowed_host or ["127.0.0.1:*", "localhost:*", "[::1]:*"]),
                          "sdk": f"mcp@{version('mcp')}", "pid": os.getpid()}), flush=True)

    asyncio.create_task(announce())
    await server.serve(sockets=[sock])


if __name__ == "__main__":
    asyncio.run(main())
