#!/usr/bin/env bash
# Runs each cargo-fuzz target under fuzz/ for a bounded time and prints how many
# inputs each tried. On demand, not in CI.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 60)
#
# Needs cargo-fuzz (installed here with `cargo install cargo-fuzz` when missing) and
# builds with the stable toolchain through RUSTC_BOOTSTRAP=1 (libFuzzer and the
# sanitizer flags are nightly features). The corpora stay in fuzz/corpus/, findings in
# fuzz/artifacts/ (both ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
export RUSTC_BOOTSTRAP=1

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

# Seeds: a well-formed input for each target, so the fuzzer starts from the shapes
# that reach deep.
seed() { mkdir -p "fuzz/corpus/$1"; printf '%s' "$2" >"fuzz/corpus/$1/seed-$3"; }
now=$(date +%s)
seed token 'eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJodHRwczovL2htYWMuZXhhbXBsZS5jb20ifQ.c2ln' 1
seed signed_claims "{\"iss\":\"https://hmac.example.com\",\"aud\":\"https://mcp.example.com/mcp\",\"exp\":$((now + 3600)),\"scope\":\"mcp:read\",\"sub\":\"u\"}" 1
seed jwks '{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},{"kty":"RSA","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB","kid":"r"}]}' 1
seed discovery '{"issuer":"https://idp.example.com","jwks_uri":"https://idp.example.com/jwks","introspection_endpoint":"https://idp.example.com/introspect"}' 1
seed mcp_body '{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///public/../secret/k"}}' 1
seed introspection "{\"active\":true,\"iss\":\"https://idp.example.com\",\"sub\":\"u\",\"exp\":$((now + 3600)),\"scope\":\"mcp:read\"}" 1

summary=""
for target in token signed_claims jwks discovery introspection mcp_body; do
    echo "== $target (${seconds}s)"
    log="fuzz/$target.log"
    cargo fuzz run --fuzz-dir fuzz "$target" -- -max_total_time="$seconds" -max_len=8192 \
        >"$log" 2>&1 || { tail -40 "$log"; echo "fuzz target $target failed"; exit 1; }
    runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | tail -1 | grep -Eo '[0-9]+' || echo "?")
    cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+' || echo "?")
    summary+="$target: $runs executions in ${seconds}s, coverage $cov edges"$'\n'
done
echo
printf '%s' "$summary"
