#!/bin/bash
# SIGKILL a pruning dev node under faucet load, restart, check acked payloads and health.
# Usage: cargo build --release -p node --bin tangle-node && bash scripts/prune-kill-campaign.sh [CYCLES]
# Exit status 1 if an acknowledged payment is missing from the final balance.
set -u
BIN=${TANGLE_NODE:-target/release/tangle-node}
DIR=${TMPDIR:-/tmp}/prune-kill-campaign; rm -rf $DIR; mkdir -p $DIR
acked=$DIR/acked; : > $acked
lost=0
for cycle in $(seq 1 ${1:-6}); do
  $BIN dev --data-dir $DIR/node --api-addr 127.0.0.1:0 --no-mqtt --keep-milestones 3 --milestone-interval-ms 200 > $DIR/out.$cycle 2>&1 &
  pid=$!
  for i in $(seq 1 100); do url=$(grep -o "http://[0-9.:]*" $DIR/out.$cycle | head -1); [ -n "$url" ] && break; sleep 0.1; done
  # check every payload acked before is still known (confirmed or pruned 410), and health
  for i in $(seq 1 50); do curl -s -o /dev/null -w "%{http_code}" $url/health | grep -q 200 && break; sleep 0.1; done
  while read id; do
    code=$(curl -s -o /dev/null -w "%{http_code}" $url/api/v1/payloads/$id)
    if [ "$code" != "200" ] && [ "$code" != "410" ] && [ "$code" != "404" ]; then echo "cycle $cycle: payload $id -> $code"; lost=$((lost+1)); fi
  done < $acked
  # load for a random time, then SIGKILL
  end=$((SECONDS + 2 + RANDOM % 3))
  while [ $SECONDS -lt $end ]; do
    r=$(curl -s -X POST $url/api/v1/faucet -H 'content-type: application/json' -d '{"address":"did:key:z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2","amount":1}')
    id=$(echo "$r" | grep -o '"payload_id":"[0-9a-f]*"' | cut -d'"' -f4); [ -n "$id" ] && echo $id >> $acked
  done
  info=$(curl -s $url/api/v1/info)
  echo "cycle $cycle: acked $(wc -l < $acked) $(echo $info | grep -o '"confirmed_milestone":[0-9]*') $(echo $info | grep -o '"oldest_milestone":[0-9]*') ms1=$(curl -s -o /dev/null -w '%{http_code}' $url/api/v1/milestones/1)"
  kill -9 $pid; wait $pid 2>/dev/null
done
# final: restart, balance equals acked count
$BIN dev --data-dir $DIR/node --api-addr 127.0.0.1:0 --no-mqtt --keep-milestones 3 --milestone-interval-ms 200 > $DIR/out.final 2>&1 &
pid=$!
for i in $(seq 1 100); do url=$(grep -o "http://[0-9.:]*" $DIR/out.final | head -1); [ -n "$url" ] && break; sleep 0.1; done
sleep 2
curl -s $url/api/v1/accounts/did:key:z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2 > $DIR/final.account
echo "final: health $(curl -s -o /dev/null -w '%{http_code}' $url/health) $(cat $DIR/final.account) acked $(wc -l < $acked) unknown $lost"
grep -iE "panic|error" $DIR/out.* | head -5
kill $pid; wait $pid 2>/dev/null
balance=$(grep -o '"balance":[0-9]*' $DIR/final.account | cut -d: -f2)
# Every acknowledged faucet payment of 1 is in the balance exactly once.
[ "$balance" = "$(wc -l < $acked)" ] && [ "$lost" = 0 ] || { echo "FAILED: balance $balance"; exit 1; }
echo "ok"
