#!/usr/bin/env bash
# End-to-end check of start.sh / token.sh: starts glewlwyd in the foreground
# mode (stdin pipe), checks discovery, JWKS and the decoded tokens (without
# and with an RFC 8707 resource), then closes start.sh's stdin and checks that
# glewlwyd is gone and the temp dir removed. Prints what it saw on stderr and
# a closing line "N passed, N failed" on stdout.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RESOURCE=${GLEWLWYD_RESOURCES:-http://127.0.0.1:9/mcp}
RESOURCE=${RESOURCE%% *}

pass=0 fail=0
ok()  { pass=$((pass + 1)); echo "ok   - $*" >&2; }
bad() { fail=$((fail + 1)); echo "FAIL - $*" >&2; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

t0=$SECONDS
coproc GW { exec "$HERE/start.sh"; }
SPID=$GW_PID
GW_IN=${GW[1]}
GW_OUT=${GW[0]}
stop_start_sh() {
  # Closing stdin is the normal way to stop start.sh.
  if [ -n "${GW_IN:-}" ]; then exec {GW_IN}>&-; GW_IN=""; fi
  local i
  for i in $(seq 1 150); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$SPID" 2>/dev/null; then
    bad "start.sh did not exit within 15 s of stdin EOF; sending TERM"
    kill -TERM "$SPID" 2>/dev/null || true
  fi
  wait "$SPID" 2>/dev/null || true
}
trap stop_start_sh EXIT

line=""
if ! read -r -t 900 line <&"$GW_OUT"; then
  bad "start.sh printed no JSON line within 900 s"
  echo "$pass passed, $fail failed"
  exit 1
fi
echo "start.sh ready after $((SECONDS - t0)) s" >&2
echo "JSON line: $line" >&2

field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$line" "$1"; }
ISSUER=$(field issuer); TOKEN_EP=$(field token_endpoint); JWKS=$(field jwks_uri)
DISC=$(field discovery); GPID=$(field pid); DIR=$(field dir)

disc=$(curl -sS -m 10 -f "$DISC")
jwks=$(curl -sS -m 10 -f "$JWKS")
tok1=$("$HERE/token.sh" "$TOKEN_EP" mcp:read)
tok2=$("$HERE/token.sh" "$TOKEN_EP" mcp:read "$RESOURCE")
tok3=$("$HERE/token.sh" "$TOKEN_EP" "mcp:read mcp:write")
tok4=$("$HERE/token.sh" "$TOKEN_EP" mcp:read "http://127.0.0.1:1/not-allowed" || true)

report=$(python3 - "$ISSUER" "$JWKS" "$RESOURCE" "$disc" "$jwks" "$tok1" "$tok2" "$tok3" "$tok4" <<'PY'
import base64, json, sys, time
issuer, jwks_uri, resource = sys.argv[1:4]
disc, jwks, t1, t2, t3, t4 = (json.loads(a) for a in sys.argv[4:10])
def dec(tok):
    h, p = tok["access_token"].split(".")[:2]
    f = lambda s: json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
    return f(h), f(p)
kids = [k.get("kid") for k in jwks["keys"]]
out = []
def check(name, cond):
    out.append(("ok" if cond else "FAIL", name))
check("discovery issuer == start.sh issuer", disc["issuer"] == issuer)
check("discovery jwks_uri == start.sh jwks_uri", disc["jwks_uri"] == jwks_uri)
now = time.time()
for label, tok, aud in (("no resource", t1, "mcp:read"), ("resource", t2, resource),
                        ("two scopes", t3, "mcp:read mcp:write")):
    h, p = dec(tok)
    print("# %s: response=%s" % (label, json.dumps({k: v for k, v in tok.items() if k != "access_token"})), file=sys.stderr)
    print("# %s: header=%s" % (label, json.dumps(h)), file=sys.stderr)
    print("# %s: payload=%s" % (label, json.dumps(p)), file=sys.stderr)
    check(label + ": typ at+jwt", h.get("typ") == "at+jwt")
    check(label + ": alg RS256", h.get("alg") == "RS256")
    check(label + ": kid in JWKS", h.get("kid") in kids)
    check(label + ": iss == issuer", p.get("iss") == issuer)
    check(label + ": aud == %r" % aud, p.get("aud") == aud)
    check(label + ": nbf <= now < exp", p.get("nbf", 1e18) <= now + 5 and now < p.get("exp", 0))
    check(label + ": client_id/sub mcp-client", p.get("client_id") == "mcp-client" and p.get("sub") == "mcp-client")
print("# unlisted resource: %s" % json.dumps(t4), file=sys.stderr)
check("unlisted resource -> invalid_target", t4.get("error") == "invalid_target")
for status, name in out:
    print(status, name)
PY
)
while read -r status name; do
  if [ "$status" = ok ]; then ok "$name"; else bad "$name"; fi
done <<<"$report"

check "glewlwyd pid $GPID alive while start.sh runs" kill -0 "$GPID"
t1=$SECONDS
stop_start_sh
trap - EXIT
echo "stop took $((SECONDS - t1)) s" >&2
sleep 0.2
pid_gone() { ! kill -0 "$GPID" 2>/dev/null; }
check "glewlwyd pid $GPID gone after stdin EOF" pid_gone
no_process_left() { ! pgrep -f "glewlwyd -c $DIR" >/dev/null; }
check "no glewlwyd process left for $DIR" no_process_left
check "temp dir $DIR removed" test ! -e "$DIR"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
