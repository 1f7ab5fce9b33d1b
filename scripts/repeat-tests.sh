#!/usr/bin/env bash
# Runs every test binary of the workspace N times in a row (default 20) and reports, per
# binary, how many runs passed; exits 1 if any run failed. A flaky test shows up here.
#
#   bash scripts/repeat-tests.sh [N]
#
# The binaries are built once (`cargo test --workspace --no-run`), then run directly, each
# from its crate's directory as `cargo test` would. Output of a failed run is kept in
# target/repeat-tests/<binary>-<run>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-20}"
export PROPTEST_CASES="${PROPTEST_CASES:-64}"
out=target/repeat-tests
mkdir -p "$out"
list="$out/binaries.tsv"
cargo test --workspace --locked --no-run --message-format=json 2>/dev/null |
  python3 -c '
import json, os, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        crate_dir = os.path.dirname(m["manifest_path"])
        name = m["target"]["name"] + ("" if m["target"]["kind"] != ["lib"] else "-lib")
        print("\t".join([name, crate_dir, m["executable"]]))
' | sort -u >"$list"
failed=0
printf '%-28s %7s %9s\n' binary passed seconds
while IFS=$'\t' read -r name dir exe; do
  ok=0
  start=$(date +%s)
  for i in $(seq "$runs"); do
    if (cd "$dir" && "$exe" -q >"$OLDPWD/$out/$name-$i.log" 2>&1); then
      ok=$((ok + 1))
      rm -f "$out/$name-$i.log"
    else
      failed=1
    fi
  done
  printf '%-28s %4d/%-3d %8d\n' "$name" "$ok" "$runs" "$(($(date +%s) - start))"
done <"$list"
if [ "$failed" -ne 0 ]; then
  echo "some runs failed: logs in $out/"
  exit 1
fi
echo "every test binary passed $runs runs in a row"
