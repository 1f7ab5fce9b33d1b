#!/usr/bin/env bash
# The project's test command (README "run the tests"): format check, lints as errors, every
# test and doctest of the workspace. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
# Property tests: enough cases to find bugs, few enough to keep CI well under its budget.
export PROPTEST_CASES="${PROPTEST_CASES:-64}"
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The fuzz crate is its own workspace (cargo-fuzz, nightly to run); build it here on stable so
# the targets cannot rot. Shares the root target directory, so only its own units are new.
echo "== fuzz targets (fmt, clippy; stable build of every target)"
cargo fmt --manifest-path fuzz/Cargo.toml --all -- --check
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}" \
    cargo clippy --manifest-path fuzz/Cargo.toml --bins --locked -- -D warnings
echo "== cargo test (unit, integration, doctests)"
cargo test --workspace --locked
# The Python package (python/): a fresh venv, maturin and pytest from PyPI, the package built
# with maturin, its pytest suite (incl. the EV flow against a tangle-node dev).
bash scripts/python-tests.sh --after-workspace-tests
