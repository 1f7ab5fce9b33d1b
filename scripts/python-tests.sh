#!/usr/bin/env bash
# The Python package's tests (python/tests, pytest), run by scripts/check.sh: a fresh virtual
# environment, maturin and the test dependencies from PyPI, the package built and installed
# into it (`maturin develop`: a debug build sharing the workspace's target directory, the
# crypto crates optimised as in every dev build), then pytest against the workspace's
# binaries (tangle-node dev, tangle-wallet, tangle-sim).
#
# `--after-workspace-tests`: the binaries were just built by `cargo test --workspace`.
# Environment: TANGLE_PY_VENV (where the venv goes, default target/python-venv; recreated on
# every run), CARGO_TARGET_DIR (as for cargo), PYTHON (the interpreter, default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
VENV="${TANGLE_PY_VENV:-$TARGET_DIR/python-venv}"
PYTHON="${PYTHON:-python3}"

echo "== python: binaries the tests drive"
if [ "${1:-}" = "--after-workspace-tests" ]; then
  # scripts/check.sh has just run `cargo test --workspace`, which built these binaries with
  # the workspace's test feature set; the same invocation with --no-run is a no-op, where a
  # `cargo build -p ...` (another feature set) would rebuild most of the workspace.
  cargo test --workspace --locked --no-run
else
  cargo build --locked -p node --bin tangle-node -p wallet --bin tangle-wallet \
      -p simulator --bin tangle-sim
fi

echo "== python: fresh venv in $VENV"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
# Pinned: the tests' tools, pandas (DataFrames) and dask.distributed (the sweep example).
"$VENV/bin/pip" install --quiet "maturin==1.16.0" "pytest==9.2.0" "pandas==3.1.1" \
    "dask[distributed]==2026.8.0"

echo "== python: build and install the package (maturin develop)"
(
  cd python
  VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" CARGO_TARGET_DIR="$TARGET_DIR" \
      "$VENV/bin/maturin" develop --locked --quiet
)

echo "== python: pytest"
# From python/ (its pyproject.toml has the pytest settings). `maturin develop` installs the
# package editable: python/tangle/ with the native module copied next to it (git-ignored).
cd python
CARGO_TARGET_DIR="$TARGET_DIR" "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests
