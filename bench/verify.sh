#!/usr/bin/env bash
# bench/verify.sh: `lifeboat verify` against the same work done by hand.
#
#   (a) lifeboat verify SNAPSHOT --sandbox local
#       (initdb + start a scratch server, restore, count every table, compare, tear down)
#   (b) by hand: initdb + start a fresh server, createdb,
#       age -d | zstd -d | pg_restore --single-transaction, SELECT count(*) of every user
#       table, stop the server and remove it
#
# Same throwaway PostgreSQL and ≈1 GB dataset as bench/backup.sh (pgbench tables plus a
# `docs` table of md5 text). One lifeboat backup and one raw `pg_dump | zstd | age` file are
# made first (not measured); then each side runs BENCH_ROUNDS times, alternating order.
# Prints wall times and the lifeboat/raw ratio (target ≤ 1.15).
#
# Usage: bench/verify.sh [--out FILE] [--keep]
# Environment: LIFEBOAT_BIN, PG_BIN, BENCH_SCALE, BENCH_DB_MB, BENCH_ROUNDS, BENCH_ZSTD_LEVEL,
# BENCH_NICE, TMPDIR: as in bench/backup.sh.

set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init "$@"
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
BENCH_SCALE=${BENCH_SCALE:-30}
BENCH_DB_MB=${BENCH_DB_MB:-1024}
BENCH_ROUNDS=${BENCH_ROUNDS:-3}
LEVEL=${BENCH_ZSTD_LEVEL:-3}

bench_need age zstd jq
bench_need_pg initdb pg_ctl pg_dump pg_restore pgbench psql createdb

bench_lifeboat_bin

if [[ $(id -u) -eq 0 ]]; then
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/lifeboat-bench-verify.XXXXXX")
chmod 755 "$WORK"
STARTED=()

cleanup() {
  local rc=$? d
  set +e
  for d in "${STARTED[@]}"; do
    as_pg "$PG_BIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1
  done
  if [[ $KEEP -eq 1 ]]; then echo "verify.sh: work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# pg_start DIR PORT: initdb + start a cluster in DIR (same settings as lifeboat's sandbox).
pg_start() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  [[ $(id -u) -eq 0 ]] && chown postgres: "$dir"
  as_pg "$PG_BIN/initdb" -D "$dir/data" --auth=trust -U postgres -E UTF8 --no-locale --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  STARTED+=("$dir/data")
  as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 120 \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='$dir' -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null
}

sql() { psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d "$2" -c "$3"; }

# ---------------------------------------------------------------------------- source + dataset
PORT=$(free_port)
say "source PostgreSQL on 127.0.0.1:$PORT"
pg_start "$WORK/src" "$PORT" || die "source PostgreSQL did not start"
createdb -h 127.0.0.1 -p "$PORT" -U postgres bench
say "dataset: pgbench -i -s $BENCH_SCALE + docs up to ≈$BENCH_DB_MB MB"
pgbench -i -q -s "$BENCH_SCALE" -h 127.0.0.1 -p "$PORT" -U postgres bench >"$WORK/pgbench.log" 2>&1 \
  || { tail -20 "$WORK/pgbench.log" >&2; die "pgbench -i failed"; }
sql "$PORT" bench "CREATE TABLE docs (id bigint PRIMARY KEY, a text, b text, c text, t timestamptz)"
insert_docs() {
  sql "$PORT" bench "INSERT INTO docs SELECT g, md5(random()::text), md5(random()::text),
     md5(random()::text) || md5(random()::text), now() - g * interval '1 second' FROM generate_series($1, $2) g"
}
insert_docs 1 200000
db_bytes=$(sql "$PORT" bench "SELECT pg_database_size('bench')")
docs_bytes=$(sql "$PORT" bench "SELECT pg_total_relation_size('docs')")
target=$((BENCH_DB_MB * 1024 * 1024))
rows=200000
if ((db_bytes < target)); then
  rows=$((200000 + (target - db_bytes) * 200000 / docs_bytes))
  next=200001
  while ((next <= rows)); do
    last=$((next + 999999)); ((last > rows)) && last=$rows
    insert_docs "$next" "$last"
    next=$((last + 1))
  done
fi
sql "$PORT" bench "VACUUM ANALYZE" >/dev/null
DB_MB=$(( $(sql "$PORT" bench "SELECT pg_database_size('bench')") / 1024 / 1024 ))
say "database: $DB_MB MiB"

# ---------------------------------------------------------------------------- one backup each
mkdir -p "$WORK/lb" "$WORK/raw" "$WORK/res" "$WORK/sandboxes"
chmod 755 "$WORK/sandboxes"
cd "$WORK/lb"
RECIPIENT=$("$LIFEBOAT_BIN" keys generate --output ./age.key 2>/dev/null | grep -o 'age1[0-9a-z]*' | head -1)
cat >lifeboat.yaml <<EOF
catalog: sqlite://./catalog.db
stores:
  local: { url: "file://./store" }
encryption:
  recipients: ["$RECIPIENT"]
  identity_file: ./age.key
compression: { level: $LEVEL }
sandbox:
  postgres_bin_dir: "$PG_BIN"
sources:
  - name: bench
    kind: postgres
    url: "postgres://postgres@127.0.0.1:$PORT/bench"
    store: local
    bin_dir: "$PG_BIN"
EOF
LB=("$LIFEBOAT_BIN" -c ./lifeboat.yaml --log-format json)
say "lifeboat backup (not measured)"
"${LB[@]}" backup bench >"$WORK/res/backup.log" 2>&1 || { tail "$WORK/res/backup.log" >&2; die "backup failed"; }
ID=$("${LB[@]}" snapshots list --output json 2>/dev/null | jq -r '.[-1].id')
say "raw pg_dump | zstd | age (not measured)"
pg_dump -Fc -Z0 -h 127.0.0.1 -p "$PORT" -U postgres -d bench | zstd -q -"$LEVEL" -T0 | age -r "$RECIPIENT" >"$WORK/raw/dump.zst.age"

# ---------------------------------------------------------------------------- runs
TABLES=$(sql "$PORT" bench "SELECT string_agg(format('%I.%I', schemaname, tablename), ' ') FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")

wall() { # NAME CMD...: wall seconds of CMD into $WORK/res/NAME.wall
  local name=$1 t0 t1
  shift
  sync
  t0=$EPOCHREALTIME
  "${NICE[@]}" "$@" >"$WORK/res/$name.log" 2>&1 || { tail -20 "$WORK/res/$name.log" >&2; die "$name failed"; }
  t1=$EPOCHREALTIME
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f\n", b - a}' >"$WORK/res/$name.wall"
  say "$name: $(cat "$WORK/res/$name.wall") s"
}

# A command, not a function: `nice` (BENCH_NICE) runs programs only.
LB_VERIFY=(env TMPDIR="$WORK/sandboxes" "${LB[@]}" verify "$ID" --output json)

raw_verify() { # the same work by hand
  local dir port t
  dir=$(mktemp -d "$WORK/sandboxes/raw.XXXXXX")
  chmod 755 "$dir"
  port=$(free_port)
  pg_start "$dir" "$port"
  createdb -h 127.0.0.1 -p "$port" -U postgres verify
  age -d -i ./age.key "$WORK/raw/dump.zst.age" | zstd -q -d \
    | pg_restore --single-transaction --exit-on-error --no-owner --no-privileges -h 127.0.0.1 -p "$port" -U postgres -d verify
  for t in $TABLES; do
    sql "$port" verify "SELECT count(*) FROM $t" >/dev/null
  done
  as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null
  rm -rf "$dir"
}
export -f raw_verify pg_start sql as_pg free_port
export WORK PG_BIN TABLES

for ((i = 1; i <= BENCH_ROUNDS; i++)); do
  if ((i % 2 == 1)); then
    wall "lb-$i" "${LB_VERIFY[@]}"
    wall "raw-$i" bash -c 'set -euo pipefail; STARTED=(); raw_verify'
  else
    wall "raw-$i" bash -c 'set -euo pipefail; STARTED=(); raw_verify'
    wall "lb-$i" "${LB_VERIFY[@]}"
  fi
done

median() { sort -g | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
LB_MED=$(cat "$WORK"/res/lb-*.wall | median)
RAW_MED=$(cat "$WORK"/res/raw-*.wall | median)
RATIO=$(awk -v a="$LB_MED" -v b="$RAW_MED" 'BEGIN {printf "%.3f", a / b}')
RESTORE_MS=$(jq -r '.restore_ms' "$WORK/res/lb-1.log" 2>/dev/null | tail -1)
{
  echo "## lifeboat verify benchmark"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores; load at end: $(uptime | sed 's/.*load average: //')"
  echo "- lifeboat: $("$LIFEBOAT_BIN" --version) (repo at $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?'))"
  echo "- dataset: pgbench -s $BENCH_SCALE + docs ($rows rows); $DB_MB MiB; $BENCH_ROUNDS rounds, alternating"
  echo
  echo "| round | lifeboat verify s | by hand s |"
  echo "|---|---:|---:|"
  for ((i = 1; i <= BENCH_ROUNDS; i++)); do
    echo "| $i | $(cat "$WORK/res/lb-$i.wall") | $(cat "$WORK/res/raw-$i.wall") |"
  done
  echo
  echo "Median: lifeboat $LB_MED s, by hand $RAW_MED s, **ratio $RATIO** (target ≤ 1.15). Restore duration recorded by lifeboat (round 1): ${RESTORE_MS} ms."
} | tee "${OUT:-/dev/null}"
