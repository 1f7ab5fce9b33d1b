#!/usr/bin/env bash
# API conformance, checked by outside tools against a real `tangle-node dev`:
#   - schemathesis (PyPI, pinned) runs every check of its against /api/v1/openapi.json;
#   - promtool (Debian package `prometheus`) checks /metrics after some load;
#   - the OpenMetrics form of /metrics ends with exactly one `# EOF`.
# Fails on any failure. The node runs in a temp dir on a port the kernel picks.
#
# Environment: API_CONFORMANCE_EXAMPLES (examples per operation, default 100),
# SCHEMATHESIS_VENV (where schemathesis is installed if missing),
# CARGO_TARGET_DIR (as for cargo).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
EXAMPLES="${API_CONFORMANCE_EXAMPLES:-100}"
VENV="${SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tangle-schemathesis-$SCHEMATHESIS_VERSION}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"

command -v promtool >/dev/null || {
  echo "promtool missing (apt-get install prometheus)" >&2
  exit 2
}
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "== installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi

echo "== building tangle-node"
cargo build --locked -p node --bin tangle-node
node_bin="$TARGET_DIR/debug/tangle-node"

work="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -INT "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== starting tangle-node dev in $work"
token="conformance-$$-$RANDOM"
"$node_bin" dev --data-dir "$work/node" --api-addr 127.0.0.1:0 --mqtt-addr 127.0.0.1:0 \
  --milestone-interval-ms 200 \
  --admin-token "$token" >"$work/node.log" 2>&1 &
pid=$!
# The node prints the address it bound (port 0 picks a free one).
addr=""
for _ in $(seq 600); do
  addr="$(sed -n 's|^  API *: http://\([^/]*\)/.*|\1|p' "$work/node.log")"
  [ -n "$addr" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/node.log" >&2; echo "the node exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$addr" ] || { cat "$work/node.log" >&2; echo "the node did not start" >&2; exit 1; }
base="http://$addr"
echo "   API at $base"

echo "== load: faucet payments until a milestone confirms one"
faucet="$(sed -n 's|^  faucet address : ||p' "$work/node.log")"
for i in $(seq 20); do
  curl -sf -X POST "$base/api/v1/faucet" -H 'content-type: application/json' \
    -d "{\"address\":\"$faucet\",\"amount\":$i}" >/dev/null
done
for _ in $(seq 600); do
  applied="$(curl -sf "$base/metrics" | sed -n 's/^tangle_payloads_applied_total //p')"
  [ "${applied:-0}" -gt 0 ] && break
  sleep 0.1
done

echo "== promtool check metrics"
curl -sf "$base/metrics" >"$work/metrics.txt"
promtool check metrics <"$work/metrics.txt"
curl -sfD "$work/om.headers" -H 'Accept: application/openmetrics-text; version=1.0.0' \
  "$base/metrics" >"$work/metrics.om"
grep -qi '^content-type: application/openmetrics-text' "$work/om.headers"
[ "$(grep -c '^# EOF$' "$work/metrics.om")" = 1 ] && [ "$(tail -n 1 "$work/metrics.om")" = "# EOF" ] || {
  echo "OpenMetrics exposition must end with exactly one # EOF" >&2
  exit 1
}
echo "   $(grep -c '^# TYPE' "$work/metrics.txt") metric families, no problems"

echo "== schemathesis $SCHEMATHESIS_VERSION: all checks, $EXAMPLES examples per operation"
# The event streams never end, so they are left out here (node/tests/api_http.rs covers them).
# Run from the temp dir: schemathesis keeps a `.schemathesis` cache in its working directory.
# /accounts/{address}/proof is left out: the document's did:key pattern cannot say which
# 44-character base58 strings decode to an Ed25519 key, and schemathesis counts the 400 for
# one that does not as a schema-valid request rejected (seventh session; the route is
# covered by node/tests/node_e2e.rs and wallet/tests/cli.rs). To do: a did:key format
# schemathesis can generate only valid values for.
# /admin/committee is left out too: a generated update that happens to be valid would
# rotate this node's committee away from its own key (and stop its milestones), and one
# breaking a rotation rule (threshold above the set's size) is a schema-valid request
# rightly refused; node/tests/rotation_node.rs covers the route.
repo="$(pwd)"
if ! (cd "$work" && "$VENV/bin/schemathesis" --config-file "$repo/scripts/schemathesis.toml" \
  run "$base/api/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --max-examples "$EXAMPLES" \
  --exclude-path /api/v1/events \
  --exclude-path /api/v1/events/sampled \
  --exclude-path '/api/v1/accounts/{address}/proof' \
  --exclude-path /api/v1/admin/committee \
  --request-timeout 30 \
  --seed 1 \
  --no-color) \
  2>&1 | tee "$work/schemathesis.txt"; then
  echo "schemathesis found failures" >&2
  exit 1
fi

echo "== the node is still healthy"
curl -sf "$base/health" >/dev/null
echo "API conformance passed"
