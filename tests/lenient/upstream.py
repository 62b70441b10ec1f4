#!/usr/bin/env python3
"""A small MCP-like JSON-RPC server that reads messages the way Go's encoding/json
does (CVE-2026-27896 in the Go MCP SDK): member names match case-insensitively with
Unicode simple folding (so "Name", "NAME" and "nAme" are "name", "paramſ" is "params",
"\u212aey" is "key"), and the last member that matches wins; it decodes bodies by
the charset their Content-Type declares. It resolves resource URIs as a lenient
file server would (percent-decoding, backslashes, path cleaning).

It stands behind mcp-gatekeeper in tests/lenient.rs, which checks that this server
never runs a tool, nor reads a resource, the caller lacks the scope for.

Listens on 127.0.0.1 only, on an ephemeral port it prints as "port: N". Ends when
its standard input closes.

  POST /mcp   one JSON-RPC message. Tools: whoami, notes (mcp:read), write (mcp:write).
              Header x-answer: sse   answers as one SSE event;
              Header x-answer: gzip  answers gzip-compressed whatever was asked.
  GET  /mcp   with Last-Event-ID: replays a stream holding a tools/list answer.
  GET  /ran   what was done so far: {"tools": [...], "resources": [...]}.
"""

import gzip
import json
import posixpath
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOOLS = [
    {"name": "whoami", "inputSchema": {"type": "object"}},
    {"name": "notes", "inputSchema": {"type": "object"}},
    {"name": "write", "inputSchema": {"type": "object"}},
]

RAN = {"tools": [], "resources": []}
LOCK = threading.Lock()


def fold(name):
    """Go's strings.EqualFold, for what maps onto ASCII: simple case folding."""
    out = []
    for c in name:
        if c == "\u017f":
            out.append("s")
        elif c == "\u212a":
            out.append("k")
        else:
            lower = c.lower()
            out.append(lower if len(lower) == 1 else c)
    return "".join(out)


class GoObject(list):
    """A JSON object as (name, value) pairs in document order."""

    def get(self, field, default=None):
        found = default
        for name, value in self:
            if fold(name) == fold(field):
                found = value  # the last match wins
        return found


def parse(body):
    return json.loads(body, object_pairs_hook=GoObject)


def file_path(uri):
    """Where a lenient file server goes for a file: URI."""
    uri = urllib.parse.unquote(uri.replace("\\", "/")).strip()
    if uri.lower().startswith("file:"):
        rest = uri[5:]
        if rest.startswith("//"):
            rest = rest[2:]
            host, _, path = rest.partition("/")
            rest = "/" + path
        return posixpath.normpath("/" + rest.lstrip("/"))
    return uri


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body, content_type="application/json", encode=False):
        data = body.encode()
        if encode:
            data = gzip.compress(data)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if encode:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def answer(self, message, mode):
        text = json.dumps(message)
        if mode == "sse":
            self.send(200, "event: message\ndata: " + text + "\n\n", "text/event-stream")
        else:
            self.send(200, text, encode=(mode == "gzip"))

    def do_GET(self):
        if self.path == "/ran":
            with LOCK:
                self.send(200, json.dumps(RAN))
            return
        if self.headers.get("Last-Event-ID"):
            listed = {"jsonrpc": "2.0", "id": 1, "result": {"tools": TOOLS}}
            stream = "id: 2\ndata: " + json.dumps(listed) + "\n\n"
            self.send(200, stream, "text/event-stream")
            return
        self.send(405, "{}")

    def do_PUT(self):
        self.do_POST()

    def do_PATCH(self):
        self.do_POST()

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        # Decoded by the declared charset, as the TypeScript SDK's Node transport
        # (raw-body with the Content-Type charset) and aiohttp do.
        charset = "utf-8"
        for param in (self.headers.get("Content-Type") or "").split(";")[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset":
                charset = value.strip().strip('"')
        try:
            message = parse(raw.decode(charset))
        except (ValueError, LookupError):
            self.send(400, json.dumps({"jsonrpc": "2.0", "id": None,
                                       "error": {"code": -32700, "message": "parse error"}}))
            return
        mode = self.headers.get("x-answer", "json")
        method = message.get("method")
        params = message.get("params") or GoObject()
        ident = message.get("id")
        if method == "tools/list":
            self.answer({"jsonrpc": "2.0", "id": ident, "result": {"tools": TOOLS}}, mode)
        elif method == "tools/call":
            name = params.get("name")
            with LOCK:
                RAN["tools"].append(name)
            text = {"content": [{"type": "text", "text": "ran " + str(name)}]}
            self.answer({"jsonrpc": "2.0", "id": ident, "result": text}, mode)
        elif method == "resources/read":
            path = file_path(params.get("uri") or "")
            with LOCK:
                RAN["resources"].append(path)
            contents = {"contents": [{"uri": params.get("uri"), "text": "read " + path}]}
            self.answer({"jsonrpc": "2.0", "id": ident, "result": contents}, mode)
        else:
            self.answer({"jsonrpc": "2.0", "id": ident,
                         "error": {"code": -32601, "message": "unknown method"}}, mode)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print("port: %d" % server.server_address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()  # until the test closes it
    server.shutdown()


if __name__ == "__main__":
    main()
