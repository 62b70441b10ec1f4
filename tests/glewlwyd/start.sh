#!/usr/bin/env bash
# Start a throwaway glewlwyd (Debian package) OAuth2/OIDC server on 127.0.0.1
# and configure it, entirely through its REST API, to issue RFC 9068 `at+jwt`
# access tokens (RS256, key generated here) with the client_credentials grant.
#
# Usage: start.sh [--detach | --install-only]
#
# Default (foreground) mode: when the server is ready, one JSON line is printed
# on stdout, e.g.
#   {"issuer": "...", "token_endpoint": "...", "jwks_uri": "...",
#    "discovery": "...", "pid": N, "dir": "...", ...}
# then the script stays in the foreground until its stdin reaches EOF (or it
# gets SIGTERM/SIGINT/SIGHUP); it then kills glewlwyd and removes the temp dir.
# glewlwyd also gets SIGKILL from the kernel if this script dies (pdeathsig),
# so no daemon is left behind even if the script is SIGKILLed.
#
# --install-only: install glewlwyd if it is missing (apt-get), then exit.
#
# --detach: print the JSON line and exit 0, leaving glewlwyd running in its own
# session; the caller must `kill PID` and `rm -rf DIR` itself.
#
# Environment (all optional):
#   GLEWLWYD_PORT           port to use (default: a free port picked at random)
#   GLEWLWYD_RESOURCES      space-separated RFC 8707 resource URLs the client may
#                           ask for (default: http://127.0.0.1:9/mcp)
#   GLEWLWYD_CLIENT_ID      default mcp-client
#   GLEWLWYD_CLIENT_SECRET  default mcp-secret
#   GLEWLWYD_TOKEN_TTL      access token lifetime in seconds (default 3600)
#   GLEWLWYD_MAX_SECONDS    foreground mode: stop by itself after this many
#                           seconds (default 3600, 0 = never)
#   GLEWLWYD_NO_INSTALL=1   never run apt-get; fail if something is missing
set -euo pipefail

PLUGIN_NAME=oidc
CLIENT_ID=${GLEWLWYD_CLIENT_ID:-mcp-client}
CLIENT_SECRET=${GLEWLWYD_CLIENT_SECRET:-mcp-secret}
RESOURCES=${GLEWLWYD_RESOURCES:-http://127.0.0.1:9/mcp}
TOKEN_TTL=${GLEWLWYD_TOKEN_TTL:-3600}
MAX_SECONDS=${GLEWLWYD_MAX_SECONDS:-3600}
SCOPES=("mcp:read" "mcp:write")
# The admin account comes from the package's shipped schema (admin/password).
ADMIN_USER=admin
ADMIN_PASSWORD=password

DETACH=0
case "${1:-}" in
  "") ;;
  --detach) DETACH=1 ;;
  --install-only) INSTALL_ONLY=1 ;;
  -h|--help) sed -n '2,30p' "$0" >&2; exit 0 ;;
  *) echo "usage: $0 [--detach | --install-only]" >&2; exit 2 ;;
esac

log() { echo "glewlwyd/start.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- install ---
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else return 1; fi
}

apt_install() {
  # Keep package maintainer scripts from starting a system glewlwyd service:
  # use a temporary policy-rc.d (exit 101 = "action forbidden") if none exists.
  local made_policy=0 rc=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    if as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'; then
      made_policy=1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Answer the package's debconf question with "No configuration": otherwise
  # its postinst sets up a system database through dbconfig (which fails with
  # dbconfig-no-thanks, and pulls in a MariaDB client without it).
  if command -v debconf-set-selections >/dev/null 2>&1; then
    echo "glewlwyd glewlwyd/config_type select No configuration" \
      | as_root debconf-set-selections || true
  fi
  if ! as_root timeout 900 apt-get install -y --no-install-recommends "$@" >&2; then
    log "apt-get install failed; running apt-get update and retrying"
    as_root timeout 600 apt-get update >&2 || true
    as_root timeout 300 dpkg --configure -a >&2 || true
    as_root timeout 900 apt-get install -y --no-install-recommends "$@" >&2 || rc=$?
  fi
  if [ "$made_policy" = 1 ]; then as_root rm -f /usr/sbin/policy-rc.d || true; fi
  return "$rc"
}

find_schema() {
  local f
  for f in /usr/share/doc/glewlwyd/database/init.sqlite3.sql.gz \
           /usr/share/doc/glewlwyd/database/init.sqlite3.sql \
           /usr/share/dbconfig-common/data/glewlwyd/install/sqlite3; do
    if [ -r "$f" ]; then echo "$f"; return 0; fi
  done
  return 1
}

ensure_installed() {
  local pkgs=()
  command -v glewlwyd >/dev/null 2>&1 || pkgs+=(glewlwyd dbconfig-no-thanks)
  command -v sqlite3  >/dev/null 2>&1 || pkgs+=(sqlite3)
  command -v curl     >/dev/null 2>&1 || pkgs+=(curl)
  command -v openssl  >/dev/null 2>&1 || pkgs+=(openssl)
  command -v python3  >/dev/null 2>&1 || pkgs+=(python3)
  command -v setpriv  >/dev/null 2>&1 || pkgs+=(util-linux)
  if [ "${#pkgs[@]}" -gt 0 ]; then
    if [ "${GLEWLWYD_NO_INSTALL:-0}" = 1 ]; then
      die "missing ${pkgs[*]} and GLEWLWYD_NO_INSTALL=1"
    fi
    if [ "$(id -u)" -ne 0 ] && ! sudo -n true >/dev/null 2>&1; then
      die "missing ${pkgs[*]}; installing needs root or passwordless sudo: run 'apt-get install -y glewlwyd dbconfig-no-thanks sqlite3' as root"
    fi
    log "installing ${pkgs[*]} with apt-get (one-time)"
    local t0=$SECONDS
    apt_install "${pkgs[@]}" \
      || die "could not install ${pkgs[*]} with apt-get (need root or passwordless sudo and Debian's archive)"
    log "install took $((SECONDS - t0)) s"
  fi
  local c
  for c in glewlwyd sqlite3 curl openssl python3 setpriv; do
    command -v "$c" >/dev/null 2>&1 || die "'$c' is still missing after installation"
  done
  [ -r /usr/lib/glewlwyd/plugin/libprotocol_oidc.so ] || die "glewlwyd OIDC plugin not found in /usr/lib/glewlwyd/plugin"
  find_schema >/dev/null || die "glewlwyd's sqlite3 schema not found (package installed with path excludes?)"
}

ensure_installed
if [[ "${INSTALL_ONLY:-0}" == 1 ]]; then
  log "installed: $(glewlwyd --version 2>/dev/null | head -n1 || true)"
  exit 0
fi
GLEWLWYD_VERSION=$(glewlwyd --version 2>/dev/null | head -n1 || true)

# ------------------------------------------------------------- temp dir -----
DIR=$(mktemp -d "${TMPDIR:-/tmp}/glewlwyd.XXXXXX")
GPID=""
KEEP=0

stop_glewlwyd() {
  [ -n "$GPID" ] || return 0
  if kill -0 "$GPID" 2>/dev/null; then
    kill -TERM "$GPID" 2>/dev/null || true
    local i
    for i in $(seq 1 50); do            # up to 5 s for a clean exit
      kill -0 "$GPID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$GPID" 2>/dev/null || true
  fi
  wait "$GPID" 2>/dev/null || true
  GPID=""
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP PIPE
  if [ "$KEEP" != 1 ]; then
    stop_glewlwyd
    rm -rf "$DIR"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

dump_log() {
  if [ -s "$DIR/glewlwyd.log" ]; then
    log "last lines of glewlwyd's log:"
    tail -n 25 "$DIR/glewlwyd.log" >&2 || true
  fi
}

# --------------------------------------------------------- key, database ----
openssl genrsa -out "$DIR/jwt-key.pem" 2048 2>/dev/null || die "openssl genrsa failed"
openssl rsa -in "$DIR/jwt-key.pem" -pubout -out "$DIR/jwt-pub.pem" 2>/dev/null || die "openssl rsa -pubout failed"

SCHEMA=$(find_schema)
case "$SCHEMA" in
  *.gz) gzip -dc "$SCHEMA" | sqlite3 "$DIR/glewlwyd.db" ;;
  *)    sqlite3 "$DIR/glewlwyd.db" < "$SCHEMA" ;;
esac || die "initialising sqlite database from $SCHEMA failed"
mkdir -p "$DIR/static"

free_port() {
  python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

write_config() { # port
  cat > "$DIR/glewlwyd.conf" <<EOF
port=$1
bind_address="127.0.0.1"
external_url="http://127.0.0.1:$1"
login_url="login.html"
api_prefix="api"
static_files_path="$DIR/static/"
allow_origin="*"
log_mode="console"
log_level="INFO"
cookie_domain=""
cookie_secure=0
session_expiration=3600
session_key="GLEWLWYD2_SESSION_ID"
admin_session_authentication="cookie"
profile_session_authentication="cookie"
login_api_enabled=true
admin_scope="g_admin"
profile_scope="g_profile"
user_module_path="/usr/lib/glewlwyd/user"
client_module_path="/usr/lib/glewlwyd/client"
user_auth_scheme_module_path="/usr/lib/glewlwyd/scheme"
plugin_module_path="/usr/lib/glewlwyd/plugin"
hash_algorithm="SHA512"
database =
{
  type = "sqlite3"
  path = "$DIR/glewlwyd.db"
};
EOF
}

# ---------------------------------------------------------------- start -----
start_glewlwyd() {
  if [ "$DETACH" = 1 ]; then
    setsid glewlwyd -c "$DIR/glewlwyd.conf" </dev/null >"$DIR/glewlwyd.log" 2>&1 &
  else
    # pdeathsig: the kernel kills glewlwyd if this script dies for any reason.
    setpriv --pdeathsig KILL glewlwyd -c "$DIR/glewlwyd.conf" </dev/null >"$DIR/glewlwyd.log" 2>&1 &
  fi
  GPID=$!
}

wait_ready() { # port; 0 = answering, 1 = process died, 2 = timeout
  local deadline=$((SECONDS + 20)) code
  while [ "$SECONDS" -lt "$deadline" ]; do
    kill -0 "$GPID" 2>/dev/null || return 1
    code=$(curl -s -o /dev/null -m 2 --connect-timeout 1 -w '%{http_code}' "http://127.0.0.1:$1/config" || true)
    [ "$code" = 200 ] && return 0
    sleep 0.2
  done
  return 2
}

T_START=$SECONDS
PORT=""
for attempt in 1 2 3; do
  PORT=${GLEWLWYD_PORT:-$(free_port)}
  write_config "$PORT"
  start_glewlwyd
  rc=0; wait_ready "$PORT" || rc=$?
  [ "$rc" = 0 ] && break
  dump_log
  stop_glewlwyd
  [ "$rc" = 2 ] && die "glewlwyd did not answer on 127.0.0.1:$PORT within 20 s"
  [ -n "${GLEWLWYD_PORT:-}" ] && die "glewlwyd exited at start-up (port $PORT)"
  log "glewlwyd exited at start-up (attempt $attempt, port $PORT); retrying with another port"
  PORT=""
done
[ -n "$PORT" ] || die "glewlwyd could not be started"

BASE="http://127.0.0.1:$PORT"
API="$BASE/api"
ISSUER="$API/$PLUGIN_NAME"

# ---------------------------------------------------- REST configuration ----
COOKIES="$DIR/cookies.txt"
api() { # METHOD PATH [DATA (string or @file)] -> body on stdout; dies unless 200
  local method=$1 path=$2 data=${3:-} out code
  local args=(-sS -m 15 --connect-timeout 3 -b "$COOKIES" -c "$COOKIES" -X "$method"
              -w '\n%{http_code}')
  if [ -n "$data" ]; then args+=(-H 'Content-Type: application/json' --data-binary "$data"); fi
  out=$(curl "${args[@]}" "$API$path") || { dump_log; die "$method $API$path: curl failed"; }
  code=${out##*$'\n'}
  out=${out%$'\n'*}
  if [ "$code" != 200 ]; then dump_log; die "$method $API$path -> HTTP $code: $out"; fi
  printf '%s' "$out"
}

# JSON documents are built by python3 (the PEM keys need JSON escaping).
export DIR ISSUER CLIENT_ID CLIENT_SECRET RESOURCES TOKEN_TTL PLUGIN_NAME ADMIN_USER ADMIN_PASSWORD
export SCOPES_STR="${SCOPES[*]}"
python3 - <<'PY' || die "building JSON documents failed"
import json, os
e = os.environ
d = e["DIR"]
scopes = e["SCOPES_STR"].split()
resources = e["RESOURCES"].split()
def w(name, obj):
    with open(os.path.join(d, name), "w") as f:
        json.dump(obj, f)
w("login.json", {"username": e["ADMIN_USER"], "password": e["ADMIN_PASSWORD"]})
for s in scopes:
    w("scope-%s.json" % s.replace(":", "_"), {
        "name": s, "display_name": s, "description": "MCP scope " + s,
        "password_required": False, "password_max_age": 0, "scheme": {}})
w("plugin.json", {
    "module": "oidc", "name": e["PLUGIN_NAME"], "display_name": "OIDC (test)", "enabled": True,
    "parameters": {
        "iss": e["ISSUER"],
        # RS256 with the key generated by start.sh
        "jwt-type": "rsa", "jwt-key-size": "256",
        "key": open(os.path.join(d, "jwt-key.pem")).read(),
        "cert": open(os.path.join(d, "jwt-pub.pem")).read(),
        "jwks-show": True,
        "access-token-duration": int(e["TOKEN_TTL"]),
        "refresh-token-duration": 1209600, "code-duration": 600,
        "refresh-token-rolling": False,
        # client_credentials does not use the openid scope
        "allow-non-oidc": True,
        "auth-type-client-enabled": True,
        "auth-type-code-enabled": False, "auth-type-token-enabled": False,
        "auth-type-id-token-enabled": False, "auth-type-none-enabled": False,
        "auth-type-password-enabled": False, "auth-type-device-enabled": False,
        "auth-type-refresh-enabled": False,
        # RFC 8707: a `resource` listed in the client's `resource` property
        # becomes the token's `aud`; others get invalid_target.
        "resource-allowed": True,
        "resource-scope": {},
        "resource-client-property": "resource",
        "resource-scope-and-client-property": False,
        "introspection-revocation-allowed": False,
    }})
w("client.json", {
    "client_id": e["CLIENT_ID"], "name": e["CLIENT_ID"], "description": "MCP test client",
    "enabled": True, "confidential": True, "password": e["CLIENT_SECRET"],
    "authorization_type": ["client_credentials"],
    "scope": scopes, "redirect_uri": [],
    "token_endpoint_auth_method": ["client_secret_basic", "client_secret_post"],
    "resource": resources})
PY

api POST /auth/ "@$DIR/login.json" >/dev/null
for s in "${SCOPES[@]}"; do
  api POST /scope/ "@$DIR/scope-${s//:/_}.json" >/dev/null
done
api POST /mod/plugin/ "@$DIR/plugin.json" >/dev/null
api POST /client/ "@$DIR/client.json" >/dev/null
rm -f "$DIR/login.json" "$COOKIES"

# ------------------------------------------------------------ self-check ----
# Discovery must name our issuer, the JWKS must hold a key, and a real
# client_credentials token must carry the same `iss` and a kid from the JWKS.
DISCOVERY="$ISSUER/.well-known/openid-configuration"
curl -sS -m 10 --connect-timeout 3 -f -o "$DIR/discovery.json" "$DISCOVERY" \
  || { dump_log; die "fetching $DISCOVERY failed"; }
JWKS_URI=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["jwks_uri"])' "$DIR/discovery.json")
curl -sS -m 10 --connect-timeout 3 -f -o "$DIR/jwks.json" "$JWKS_URI" \
  || { dump_log; die "fetching $JWKS_URI failed"; }
curl -sS -m 10 --connect-timeout 3 -o "$DIR/selfcheck-token.json" \
  -u "$CLIENT_ID:$CLIENT_SECRET" --data-urlencode grant_type=client_credentials \
  --data-urlencode "scope=${SCOPES[0]}" "$ISSUER/token" \
  || { dump_log; die "self-check token request failed"; }

INFO=$(python3 - "$DIR" "$ISSUER" "$GPID" "$PORT" "$GLEWLWYD_VERSION" <<'PY'
import base64, json, os, sys
d, issuer, pid, port, version = sys.argv[1:6]
def load(n):
    with open(os.path.join(d, n)) as f:
        return json.load(f)
disc, jwks, tok = load("discovery.json"), load("jwks.json"), load("selfcheck-token.json")
def b64(s):
    return json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
if "access_token" not in tok:
    sys.exit("self-check token request: %s" % json.dumps(tok))
hdr, payload = (b64(p) for p in tok["access_token"].split(".")[:2])
problems = []
if disc.get("issuer") != issuer:
    problems.append("discovery issuer %r != %r" % (disc.get("issuer"), issuer))
if payload.get("iss") != disc.get("issuer"):
    problems.append("token iss %r != discovery issuer %r" % (payload.get("iss"), disc.get("issuer")))
if hdr.get("typ") != "at+jwt" or hdr.get("alg") != "RS256":
    problems.append("unexpected token header %r" % hdr)
if hdr.get("kid") not in [k.get("kid") for k in jwks.get("keys", [])]:
    problems.append("token kid %r not in JWKS" % hdr.get("kid"))
if problems:
    sys.exit("; ".join(problems))
print(json.dumps({
    "issuer": disc["issuer"],
    "token_endpoint": disc["token_endpoint"],
    "jwks_uri": disc["jwks_uri"],
    "discovery": issuer + "/.well-known/openid-configuration",
    "pid": int(pid),
    "dir": d,
    "port": int(port),
    "client_id": os.environ["CLIENT_ID"],
    "client_secret": os.environ["CLIENT_SECRET"],
    "scopes": os.environ["SCOPES_STR"].split(),
    "resources": os.environ["RESOURCES"].split(),
    "kid": hdr["kid"],
    "version": version,
}))
PY
) || { dump_log; die "self-check failed"; }
rm -f "$DIR/selfcheck-token.json"
log "ready in $((SECONDS - T_START)) s: $ISSUER (pid $GPID, $GLEWLWYD_VERSION)"

printf '%s\n' "$INFO"

if [ "$DETACH" = 1 ]; then
  KEEP=1
  exit 0
fi

# ------------------------------------------------- foreground until EOF -----
# Stop when stdin is closed, when glewlwyd dies, or after MAX_SECONDS.
while :; do
  if ! kill -0 "$GPID" 2>/dev/null; then
    dump_log
    die "glewlwyd (pid $GPID) exited unexpectedly"
  fi
  if [ "$MAX_SECONDS" != 0 ] && [ "$((SECONDS - T_START))" -ge "$MAX_SECONDS" ]; then
    log "GLEWLWYD_MAX_SECONDS=$MAX_SECONDS reached, stopping"
    break
  fi
  read -r -t 1 _ && continue
  rc=$?
  [ "$rc" -gt 128 ] && continue     # timeout: poll again
  break                              # EOF (or read error): stop
done
log "stopping glewlwyd (pid $GPID)"
exit 0
