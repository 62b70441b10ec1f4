#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
# Installs what it needs, then: format check, clippy with warnings as errors, every
# test (unit, whole-stack, the example as a process, doc tests) with the default
# AWS-LC backend and again with the RustCrypto backend, and the docs with warnings
# as errors. Tests talk only to servers they start on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain components"
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    rustup component add rustfmt clippy
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, all features, -D warnings)"
cargo clippy --all-targets --all-features -- -D warnings

step "cargo test (default features: aws-lc-rs backend)"
cargo test --features kubernetes

step "cargo test (rust-crypto backend)"
cargo test --no-default-features --features rust-crypto,axum --lib --tests

step "cargo doc (-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features

echo
echo "all checks passed"
