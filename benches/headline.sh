#!/usr/bin/env bash
# The headline figures of docs/PERFORMANCE.md, repeated: two nodes of one build against a
# fresh database, the load tool's message and artifact runs, each REPEAT times, one JSON
# file per run in OUT. Compare two builds by running it once per build (same machine, one
# after the other, nothing else running).
#
#   benches/headline.sh <dir with bedda-collab and bedda-load> <out dir> [repeat=3]
#
# e.g. cargo build --release --bins && benches/headline.sh target/release /tmp/new 3
set -euo pipefail
BIN=$1; OUT=$2; REPEAT=${3:-3}
mkdir -p "$OUT"
DB=postgres://postgres@127.0.0.1:5432/bedda_headline
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS bedda_headline WITH (FORCE)" >/dev/null
"$BIN/bedda-collab" migrate --database-url $DB >/dev/null 2>&1 || true
"$BIN/bedda-collab" serve --bind 127.0.0.1:18081 --database-url $DB --ws-frames-per-second 1000 --ws-artifact-frames-per-second 1000 --log warn &
P1=$!
sleep 2
"$BIN/bedda-collab" serve --bind 127.0.0.1:18082 --database-url $DB --ws-frames-per-second 1000 --ws-artifact-frames-per-second 1000 --log warn &
P2=$!
trap 'kill $P1 $P2 2>/dev/null; wait $P1 $P2 2>/dev/null || true' EXIT
for _ in $(seq 1 30); do curl -sf http://127.0.0.1:18082/readyz >/dev/null && break; sleep 0.5; done
NODES=http://127.0.0.1:18081,http://127.0.0.1:18082
for i in $(seq 1 "$REPEAT"); do
  "$BIN/bedda-load" --nodes $NODES --clients 200 --session-size 10 --rate 400 --duration 15 \
    --server-pid $P1,$P2 --database-url $DB --json "$OUT/moderate-$i.json" >/dev/null
  "$BIN/bedda-load" --nodes $NODES --clients 1000 --session-size 50 --rate 1000 --duration 15 \
    --server-pid $P1,$P2 --database-url $DB --json "$OUT/wide-$i.json" >/dev/null
  "$BIN/bedda-load" --nodes $NODES --artifact --writers 4 --readers 16 --rate 200 --duration 15 \
    --server-pid $P1,$P2 --database-url $DB --json "$OUT/artifact200-$i.json" >/dev/null
  "$BIN/bedda-load" --nodes $NODES --artifact --writers 4 --readers 16 --rate 1000 --duration 15 \
    --server-pid $P1,$P2 --database-url $DB --json "$OUT/artifact1000-$i.json" >/dev/null
done
echo "results in $OUT"
