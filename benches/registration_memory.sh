#!/usr/bin/env bash
# Memory of a registration burst (docs/PERFORMANCE.md, "Registration memory"): one node of a
# build on a fresh database, default Argon2 memory (19456 KiB) unless ARGS says otherwise;
# 2 warm-up registrations, then BURST concurrent registrations, each from its own loopback
# address (so the per-address limit is not what stops them). Prints one line per run:
# baseline, peak (VmHWM) and after-burst (VmRSS, 1 s later) in MiB, the wall time of the
# burst and the statuses.
# Each run starts a fresh process.
#
#   benches/registration_memory.sh <path to bedda-collab> [repeat=3] [burst=64]
#
# e.g. cargo build --release && benches/registration_memory.sh target/release/bedda-collab
set -euo pipefail
BIN=$1; REPEAT=${2:-3}; BURST=${3:-64}
PORT=18091
DB=postgres://postgres@127.0.0.1:5432/bedda_regmem
mib() { awk -v f="$1:" '$1 == f { printf "%d", $2 / 1024 }' "/proc/$2/status"; }
for run in $(seq 1 "$REPEAT"); do
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS bedda_regmem WITH (FORCE)" >/dev/null
  # shellcheck disable=SC2086
  "$BIN" serve --bind 127.0.0.1:$PORT --database-url $DB --log error ${ARGS:-} >/dev/null &
  PID=$!
  trap 'kill $PID 2>/dev/null || true' EXIT
  for _ in $(seq 1 60); do curl -sf http://127.0.0.1:$PORT/readyz >/dev/null && break; sleep 0.5; done
  register() { # <local address> <name>
    curl -s -o /dev/null -w '%{http_code}\n' --interface "$1" -H 'content-type: application/json' \
      -d "{\"email\":\"$2-$run@example.com\",\"password\":\"correct horse battery\",\"display_name\":\"$2\"}" \
      http://127.0.0.1:$PORT/api/auth/register
  }
  register 127.0.0.2 warm1 >/dev/null; register 127.0.0.3 warm2 >/dev/null
  BASE=$(mib VmRSS $PID)
  T0=$(date +%s%N)
  STATUSES=$(for i in $(seq 1 "$BURST"); do register "127.0.$((2 + i / 200)).$((10 + i % 200))" "b$i" & done; wait)
  MS=$((($(date +%s%N) - T0) / 1000000))
  PEAK=$(mib VmHWM $PID)
  sleep 1
  AFTER=$(mib VmRSS $PID)
  echo "run $run: baseline ${BASE} MiB, peak ${PEAK} MiB (+$((PEAK - BASE))), after ${AFTER} MiB (+$((AFTER - BASE))); burst ${MS} ms; statuses: $(echo "$STATUSES" | sort | uniq -c | xargs)"
  kill $PID; wait $PID 2>/dev/null || true
done
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS bedda_regmem WITH (FORCE)" >/dev/null
