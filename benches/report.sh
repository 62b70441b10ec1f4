#!/usr/bin/env bash
# Runs the benchmarks side by side in one go and prints the medians and ratios the
# README's Performance section quotes. Not part of CI (CI only compiles them).
#
#   benches/report.sh [--quick]
#
# 1. benches/stack.rs (criterion): mcp-gatekeeper's whole stack on first sight and on a
#    repeated token, plain jsonwebtoken::decode, and the peer crates, per algorithm;
#    then a table of medians with the ratios against raw jsonwebtoken and each peer.
# 2. benches/load.rs: loopback load on axum (plain, behind the stack, behind raw
#    per-request verification, and the stack with extra connections sending the valid
#    token or random kids), rounds taken in turn, medians and ratios; and the memory
#    after a million distinct tokens.
# 3. benches/proxy.rs: mcp-gatekeeper-proxy in front of a minimal upstream, against
#    the upstream called directly (saturation and 2,000 req/s), and 1,000 SSE streams.
# 4. benches/observed.rs: what metrics and the audit trail add to a cached token's
#    request, in alternating rounds.
#
# --quick: shorter measurements (for trying the script, not for quoting).
# Needs python3 to read criterion's estimates.
set -euo pipefail
cd "$(dirname "$0")/.."

warm=2 measure=5 seconds=5 rounds=5
if [ "${1:-}" = "--quick" ]; then
    warm=1 measure=2 seconds=2 rounds=2
fi

echo "== machine: $(nproc) cores, $(uname -sr); $(rustc --version)"
echo "== cargo bench --bench stack (criterion, warm-up ${warm}s, ${measure}s per case)"
rm -rf target/criterion
log=target/bench-stack.log
cargo bench -q -p mcp-gatekeeper-benches --bench stack -- \
    --warm-up-time "$warm" --measurement-time "$measure" >"$log" 2>&1 \
    || { cat "$log"; exit 1; }

python3 - <<'PY'
import json, pathlib
root = pathlib.Path("target/criterion")
median = {}
for bench in root.glob("**/new/benchmark.json"):
    meta = json.loads(bench.read_text())
    estimates = json.loads((bench.parent / "estimates.json").read_text())
    median[meta["full_id"]] = estimates["median"]["point_estimate"] / 1000.0  # µs
algs = ["RS256", "ES256", "EdDSA", "HS256"]
rows = [
    ("stack/first_sight", "mcp-gatekeeper, first sight"),
    ("stack/repeat", "mcp-gatekeeper, repeated token"),
    ("raw/jsonwebtoken", "jsonwebtoken::decode"),
    ("peer/jwt-authorizer/first_sight", "jwt-authorizer, first sight"),
    ("peer/jwt-authorizer/repeat", "jwt-authorizer, repeated token"),
    ("peer/tower-oauth2-resource-server/first_sight", "tower-oauth2-resource-server, first sight"),
    ("peer/tower-oauth2-resource-server/repeat", "tower-oauth2-resource-server, repeated token"),
]
def cell(group, alg):
    value = median.get(f"{group}/{alg}")
    return "n/a" if value is None else (f"{value:.2f} µs" if value < 10 else f"{value:.1f} µs")
print("\nMedian time per request (criterion), same run:\n")
print("| case | " + " | ".join(algs) + " |")
print("|---|" + "---|" * len(algs))
for group, name in rows:
    print(f"| {name} | " + " | ".join(cell(group, a) for a in algs) + " |")
def ratio(top, bottom, alg):
    a, b = median.get(f"{top}/{alg}"), median.get(f"{bottom}/{alg}")
    return "n/a" if a is None or b is None else f"{a / b:.2f}"
print("\nRatios (lower is faster for mcp-gatekeeper):\n")
print("| ratio | " + " | ".join(algs) + " |")
print("|---|" + "---|" * len(algs))
for label, top, bottom in [
    ("first sight / jsonwebtoken::decode", "stack/first_sight", "raw/jsonwebtoken"),
    ("repeat / jsonwebtoken::decode", "stack/repeat", "raw/jsonwebtoken"),
    ("first sight / jwt-authorizer", "stack/first_sight", "peer/jwt-authorizer/first_sight"),
    ("repeat / jwt-authorizer", "stack/repeat", "peer/jwt-authorizer/repeat"),
    ("first sight / tower-oauth2-resource-server", "stack/first_sight", "peer/tower-oauth2-resource-server/first_sight"),
    ("repeat / tower-oauth2-resource-server", "stack/repeat", "peer/tower-oauth2-resource-server/repeat"),
]:
    print(f"| {label} | " + " | ".join(ratio(top, bottom, a) for a in algs) + " |")
PY

echo
echo "== cargo bench --bench load (${seconds}s per case, ${rounds} rounds in turn)"
cargo bench -q -p mcp-gatekeeper-benches --bench load -- \
    --seconds "$seconds" --rounds "$rounds" hello stack raw busy flood memory

echo
echo "== cargo bench --bench proxy (mcp-gatekeeper-proxy: ${seconds}s per case, ${rounds} rounds in turn)"
# Saturation (closed loop), then a moderate load (open loop, 2,000 req/s), then the
# memory of 1,000 open SSE streams through the proxy.
cargo bench -q -p mcp-gatekeeper-benches --bench proxy -- \
    --seconds "$seconds" --rounds "$rounds" direct proxy
cargo bench -q -p mcp-gatekeeper-benches --bench proxy -- \
    --seconds "$seconds" --rounds "$rounds" --rate 2000 direct proxy
cargo bench -q -p mcp-gatekeeper-benches --bench proxy -- sse

echo "== cargo bench --bench observed (metrics and the audit trail, alternating rounds)"
cargo bench -q -p mcp-gatekeeper-benches --bench observed
