#!/usr/bin/env bash
# Replay memory (docs/PERFORMANCE.md, "Replay memory"): runs the replay tests of
# tests/sessions/replay.rs REPEAT times and prints the node's memory lines (VmRSS before,
# VmHWM after). The tests start the server binary cargo built (CARGO_BIN_EXE_bedda-collab);
# to measure another build of the server (e.g. the one before issue 11), pass it: it is put
# in that place for the runs and the built one is restored afterwards. The old build fails
# the tests' assertions; its memory lines are printed first all the same.
#
#   benches/replay-memory.sh [server binary] [repeat=3]
#
# e.g. git worktree add /tmp/old 54458e0 && (cd /tmp/old && cargo build --bin bedda-collab)
#      benches/replay-memory.sh /tmp/old/target/debug/bedda-collab 3
set -euo pipefail
TARGET=${CARGO_TARGET_DIR:-target}
TESTS=$(cargo test --test integration --no-run --message-format=json 2>/dev/null \
  | jq -r 'select(.executable != null and .target.name == "integration") | .executable')
cargo build --bin bedda-collab -q
BUILT=$TARGET/debug/bedda-collab
SERVER=${1:-$BUILT}; REPEAT=${2:-3}
if [ "$SERVER" != "$BUILT" ]; then
  cp "$BUILT" "$BUILT.replay-saved"
  trap 'mv -f "$BUILT.replay-saved" "$BUILT"' EXIT
  cp "$SERVER" "$BUILT"
fi
for i in $(seq 1 "$REPEAT"); do
  echo "run $i"
  RUST_BACKTRACE=0 "$TESTS" sessions::replay --nocapture --test-threads 1 2>&1 \
    | grep -E "replays?: |test result" || true
done
