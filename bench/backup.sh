#!/usr/bin/env bash
# bench/backup.sh: lifeboat backup/restore against the raw shell pipeline, side by side.
#
#   (a) lifeboat backup SOURCE                          (local file:// store)
#   (b) pg_dump -Fc -Z0 | zstd -LEVEL -T0 | age -r KEY > file   (same zstd level)
#   (c) restore of each into a fresh, empty database (pg_restore --single-transaction)
#
# It starts a throwaway PostgreSQL 15 cluster under /tmp, fills it with ≈1 GB that compresses
# like real data (pgbench tables plus a `docs` table of random md5 text), runs each side
# BENCH_ROUNDS times in alternating order (lifeboat, raw, raw, lifeboat, ...), and prints
# wall times, peak RSS (GNU /usr/bin/time -v), CPU, sizes and the lifeboat/raw ratios.
#
# Usage: bench/backup.sh [--out FILE] [--keep]
#   --out FILE   also write the summary (markdown) to FILE
#   --keep       keep the work directory (dumps, logs, /usr/bin/time outputs) for inspection
#
# Environment:
#   LIFEBOAT_BIN        lifeboat binary (default: target/release/lifeboat, built if missing)
#   PG_BIN              PostgreSQL bin dir (default /usr/lib/postgresql/15/bin)
#   BENCH_SCALE         pgbench scale factor (default 30, ≈450 MB)
#   BENCH_DB_MB         total database size to reach with the docs table (default 1024)
#   BENCH_ROUNDS        runs of each side (default 2)
#   BENCH_ZSTD_LEVEL    zstd level on both sides (default 3)
#   BENCH_ZSTD_THREADS  zstd workers on both sides, 0 = all cores (default 0)
#   BENCH_SKIP_RESTORE  1 = measure backups only
#   BENCH_NICE          run the PostgreSQL server and every measured command under
#                       `nice -n BENCH_NICE` (e.g. -10 as root, to shield both sides equally
#                       from other work on the machine); default: no nice
#   TMPDIR              where the work directory goes (default /tmp)
#
# Run as root: PostgreSQL itself runs as the `postgres` user (runuser); the client tools and
# lifeboat run as the caller and connect over TCP to 127.0.0.1 with trust authentication.
# Nothing is written into the repository unless --out points there.

set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init "$@"
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
BENCH_SCALE=${BENCH_SCALE:-30}
BENCH_DB_MB=${BENCH_DB_MB:-1024}
BENCH_ROUNDS=${BENCH_ROUNDS:-2}
LEVEL=${BENCH_ZSTD_LEVEL:-3}
THREADS=${BENCH_ZSTD_THREADS:-0}
SKIP_RESTORE=${BENCH_SKIP_RESTORE:-0}

# ---------------------------------------------------------------------------- prerequisites
bench_need_time
bench_need age zstd jq
bench_need_pg initdb pg_ctl pg_dump pg_restore pgbench psql createdb dropdb

bench_lifeboat_bin

if [[ $(id -u) -eq 0 ]]; then
  id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user to run the server"
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi

# ---------------------------------------------------------------------------- work dir, cleanup
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lifeboat-bench.XXXXXX")
chmod 755 "$WORK"
PGDATA_DIR="$WORK/pg/data"
PG_STARTED=0

cleanup() {
  local rc=$?
  set +e
  if [[ $PG_STARTED -eq 1 ]]; then
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -w stop >/dev/null 2>&1
  fi
  if [[ $KEEP -eq 1 ]]; then
    echo "backup.sh: work directory kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$WORK/pg" "$WORK/lb" "$WORK/raw" "$WORK/res"
[[ $(id -u) -eq 0 ]] && chown postgres: "$WORK/pg"

free_port() {
  local p
  for p in $(seq 55432 55631); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  die "no free TCP port in 55432-55631"
}
PORT=$(free_port)

export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
unset PGPASSWORD PGDATABASE PGSERVICE
url() { echo "postgres://postgres@127.0.0.1:$PORT/$1"; }
sql() { psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }

# ---------------------------------------------------------------------------- PostgreSQL
say "initdb + start PostgreSQL on 127.0.0.1:$PORT ($WORK/pg)"
as_pg "$PG_BIN/initdb" -D "$PGDATA_DIR" --auth=trust -U postgres -E UTF8 --no-locale \
  >"$WORK/pg/initdb.log" 2>&1 || { cat "$WORK/pg/initdb.log" >&2; die "initdb failed"; }
# Durability off inside the throwaway cluster: the benchmark measures the dump/restore
# pipelines, not the disk's fsync; the settings are the same for both sides.
cat >>"$PGDATA_DIR/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$WORK/pg'
shared_buffers = 256MB
maintenance_work_mem = 256MB
max_wal_size = 8GB
checkpoint_timeout = 30min
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
EOF
# Under BENCH_NICE the postmaster and its backends inherit the niceness.
"${NICE[@]}" "$BASH" -c "$(declare -f as_pg); as_pg \"\$@\"" _ \
  "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$WORK/pg/server.log" -w -t 60 start >/dev/null \
  || { tail -20 "$WORK/pg/server.log" >&2; die "PostgreSQL did not start"; }
PG_STARTED=1

# ---------------------------------------------------------------------------- dataset
say "creating the dataset: pgbench -i -s $BENCH_SCALE + docs table up to ≈$BENCH_DB_MB MB"
createdb bench
pgbench -i -q -s "$BENCH_SCALE" bench >"$WORK/pg/pgbench.log" 2>&1 \
  || { tail -20 "$WORK/pg/pgbench.log" >&2; die "pgbench -i failed"; }
sql bench "CREATE TABLE docs (id bigint PRIMARY KEY, a text, b text, c text, t timestamptz)"
insert_docs() { # first last
  sql bench "INSERT INTO docs SELECT g, md5(random()::text), md5(random()::text),
               md5(random()::text) || md5(random()::text), now() - g * interval '1 second'
             FROM generate_series($1, $2) g"
}
sample=200000
insert_docs 1 "$sample"
sql bench "VACUUM ANALYZE docs"
db_bytes=$(sql bench "SELECT pg_database_size('bench')")
docs_bytes=$(sql bench "SELECT pg_total_relation_size('docs')")
target=$((BENCH_DB_MB * 1024 * 1024))
rows=$sample
if ((db_bytes < target)); then
  rows=$((sample + (target - db_bytes) * sample / docs_bytes))
  next=$((sample + 1))
  while ((next <= rows)); do
    last=$((next + 999999))
    ((last > rows)) && last=$rows
    insert_docs "$next" "$last"
    next=$((last + 1))
  done
fi
sql bench "VACUUM ANALYZE" >/dev/null
sql bench "CHECKPOINT"
DB_BYTES=$(sql bench "SELECT pg_database_size('bench')")
DB_TABLES=$(sql bench "SELECT string_agg(relname || ' ' || pg_size_pretty(pg_total_relation_size(oid)), ', ' ORDER BY pg_total_relation_size(oid) DESC)
                       FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace")
CHECK_SQL="SELECT (SELECT count(*) FROM pgbench_accounts) || '/' || (SELECT sum(abalance) FROM pgbench_accounts)
           || '/' || (SELECT count(*) FROM docs) || '/' || (SELECT md5(string_agg(c, '' ORDER BY id)) FROM docs WHERE id % 1000 = 0)"
SRC_CHECK=$(sql bench "$CHECK_SQL")
say "database: $((DB_BYTES / 1024 / 1024)) MB ($DB_TABLES); docs rows: $rows"

# ---------------------------------------------------------------------------- lifeboat setup
cd "$WORK/lb"
RECIPIENT=$("$LIFEBOAT_BIN" keys generate --output ./age.key 2>"$WORK/lb/keys.log" | grep -o 'age1[0-9a-z]*' | head -1) \
  || { cat "$WORK/lb/keys.log" >&2; die "lifeboat keys generate failed"; }
[[ -n $RECIPIENT ]] || die "lifeboat keys generate printed no age1... recipient"
cat >lifeboat.yaml <<EOF
catalog: sqlite://./lifeboat-data/catalog.db
stores:
  local: { url: "file://./lifeboat-data/store" }
encryption:
  recipients: ["$RECIPIENT"]
  identity_file: ./age.key
compression: { level: $LEVEL, threads: $THREADS }
sources:
  - name: bench
    kind: postgres
    url: "$(url bench)"
    store: local
    bin_dir: "$PG_BIN"
EOF
LB=("$LIFEBOAT_BIN" -c ./lifeboat.yaml --log-format json)
"${LB[@]}" config check >"$WORK/lb/config-check.log" 2>&1 \
  || { cat "$WORK/lb/config-check.log" >&2; die "lifeboat config check failed"; }
if ((THREADS == 0)); then ZT=0; else ZT=$THREADS; fi

# ---------------------------------------------------------------------------- measuring
# measure NAME CMD...: runs CMD under /usr/bin/time -v; output in $WORK/res/NAME.{time,log}.
# For lifeboat, also samples the lifeboat process's own VmHWM (the -v figure is the max over
# lifeboat and its children, pg_dump/pg_restore included).
quiesce() { sync; sql postgres "CHECKPOINT"; sync; uptime | sed 's/.*load average: //' >"$WORK/res/$1.load"; }

hwm_sampler() { # TIME_PID OUT: last VmHWM seen of TIME_PID's child
  local tpid=$1 out=$2 pid="" hwm=0 v
  while kill -0 "$tpid" 2>/dev/null; do
    if [[ -z $pid ]]; then
      pid=$(cut -d' ' -f1 "/proc/$tpid/task/$tpid/children" 2>/dev/null || true)
    fi
    if [[ -n $pid ]]; then
      v=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
      [[ -n $v ]] && hwm=$v
    fi
    sleep 0.05
  done
  echo "$hwm" >"$out"
}

measure() {
  local name=$1
  shift
  quiesce "$name"
  say "run: $name"
  "${NICE[@]}" "$TIME" -v -o "$WORK/res/$name.time" "$@" >"$WORK/res/$name.log" 2>&1 &
  local tpid=$!
  hwm_sampler "$tpid" "$WORK/res/$name.selfrss" &
  local spid=$!
  local rc=0
  wait "$tpid" || rc=$?
  wait "$spid" || true
  if ((rc != 0)); then
    tail -20 "$WORK/res/$name.log" >&2
    die "$name failed (exit $rc); log: $WORK/res/$name.log (use --keep to keep it)"
  fi
}

# Fields of a /usr/bin/time -v report.
t_wall() { # seconds
  awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.2f", s}' "$1"
}
t_rss() { awk -F': ' '/Maximum resident set size/ {print $2}' "$1"; } # KiB
t_cpu() { awk -F': ' '/Percent of CPU/ {print $2}' "$1"; }
t_cpusec() { awk -F': ' '/User time/ {u = $2} /System time/ {s = $2} END {printf "%.1f", u + s}' "$1"; }

lb_backup() { # round
  local name="lb-backup-$1" before id
  before=$("${LB[@]}" snapshots list --output json 2>/dev/null | jq -r '.[].id')
  measure "$name" "${LB[@]}" backup bench
  id=$("${LB[@]}" snapshots list --output json 2>/dev/null \
    | jq -r --arg before "$before" '[.[] | select(.status == "complete") | .id] - ($before | split("\n")) | .[0] // empty')
  [[ -n $id ]] || die "$name: no new complete snapshot in 'lifeboat snapshots list'"
  echo "$id" >"$WORK/res/$name.id"
  "${LB[@]}" snapshots list --output json 2>/dev/null \
    | jq -r --arg id "$id" '.[] | select(.id == $id) | "\(.raw_bytes) \(.stored_bytes)"' >"$WORK/res/$name.bytes"
}

raw_backup() { # round
  local name="raw-backup-$1" f="$WORK/raw/dump-$1.zst.age" r="$WORK/res/raw-backup-$1"
  # Each stage under its own /usr/bin/time for per-process RSS; the outer -v covers the whole.
  # shellcheck disable=SC2016 # expanded by the inner bash, from its arguments
  measure "$name" bash -c 'set -o pipefail
    /usr/bin/time -f %M -o "$1.pg_dump.rss" pg_dump -Fc -Z0 -d "$2" \
    | /usr/bin/time -f %M -o "$1.zstd.rss" zstd -q -"$3" -T"$4" \
    | /usr/bin/time -f %M -o "$1.age.rss" age -r "$5" >"$6"' \
    _ "$r" "$(url bench)" "$LEVEL" "$ZT" "$RECIPIENT" "$f"
  # What fsync of the file costs on top (lifeboat's file store fsyncs; `> file` does not).
  local t0 t1
  t0=$EPOCHREALTIME
  sync -- "$f"
  t1=$EPOCHREALTIME
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f\n", b - a}' >"$r.fsync"
}

verify_restore() { # db name
  local got
  got=$(sql "$1" "$CHECK_SQL")
  [[ $got == "$SRC_CHECK" ]] || die "$2: restored data differs from the source ($got vs $SRC_CHECK)"
}

lb_restore() { # round
  local name="lb-restore-$1" db="r_lb_$1"
  createdb "$db"
  measure "$name" "${LB[@]}" restore "$(cat "$WORK/res/lb-backup-$1.id")" --target "$(url "$db")" --bin-dir "$PG_BIN"
  verify_restore "$db" "$name"
  dropdb "$db"
}

raw_restore() { # round
  local name="raw-restore-$1" db="r_raw_$1" r="$WORK/res/raw-restore-$1"
  createdb "$db"
  # shellcheck disable=SC2016 # expanded by the inner bash, from its arguments
  measure "$name" bash -c 'set -o pipefail
    /usr/bin/time -f %M -o "$1.age.rss" age -d -i ./age.key "$2" \
    | /usr/bin/time -f %M -o "$1.zstd.rss" zstd -q -d \
    | /usr/bin/time -f %M -o "$1.pg_restore.rss" pg_restore --single-transaction --exit-on-error --no-password -d "$3"' \
    _ "$r" "$WORK/raw/dump-$1.zst.age" "$(url "$db")"
  verify_restore "$db" "$name"
  dropdb "$db"
}

# ---------------------------------------------------------------------------- runs
LOAD_START=$(uptime)
for ((i = 1; i <= BENCH_ROUNDS; i++)); do
  if ((i % 2 == 1)); then
    lb_backup "$i"
    raw_backup "$i"
    if [[ $SKIP_RESTORE != 1 ]]; then lb_restore "$i"; raw_restore "$i"; fi
  else
    raw_backup "$i"
    lb_backup "$i"
    if [[ $SKIP_RESTORE != 1 ]]; then raw_restore "$i"; lb_restore "$i"; fi
  fi
done
LOAD_END=$(uptime)

# ---------------------------------------------------------------------------- summary
median() { sort -g | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
col() { # kind field-fn
  local i
  for ((i = 1; i <= BENCH_ROUNDS; i++)); do "$2" "$WORK/res/$1-$i.time"; echo; done | median
}
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
maxof() { sort -g | tail -1; }

RES=$WORK/res
{
  echo "## lifeboat backup benchmark"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "- machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(free -m | awk '/^Mem:/ {print $2}') MiB RAM, $(uname -sr)"
  echo "- lifeboat: $LIFEBOAT_BIN ($("$LIFEBOAT_BIN" --version 2>/dev/null || echo '?'); repo at $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?'))"
  echo "- tools: $(pg_dump --version), zstd $(zstd -V | grep -o 'v[0-9.]*'), age $(age --version)"
  echo "- dataset: pgbench -s $BENCH_SCALE + docs ($rows rows of md5 text); pg_database_size $((DB_BYTES / 1024 / 1024)) MiB ($DB_TABLES)"
  echo "- zstd level $LEVEL, threads $THREADS (0 = all cores) on both sides; $BENCH_ROUNDS rounds, order alternating; nice: ${BENCH_NICE:-none}"
  echo "- load at start: ${LOAD_START##*load average: }; at end: ${LOAD_END##*load average: }"
  echo
  echo "| run | wall s | CPU % | CPU s | peak RSS MiB (time -v, whole tree max) | lifeboat own VmHWM MiB | load before |"
  echo "|---|---:|---:|---:|---:|---:|---|"
  kinds=(backup)
  [[ $SKIP_RESTORE != 1 ]] && kinds+=(restore)
  for k in "${kinds[@]}"; do
    for ((i = 1; i <= BENCH_ROUNDS; i++)); do
      for side in lb raw; do
        n="$side-$k-$i"
        own="-"
        [[ $side == lb ]] && own=$(mib "$(cat "$RES/$n.selfrss")")
        echo "| $n | $(t_wall "$RES/$n.time") | $(t_cpu "$RES/$n.time") | $(t_cpusec "$RES/$n.time") | $(mib "$(t_rss "$RES/$n.time")") | $own | $(cat "$RES/$n.load") |"
      done
    done
  done
  echo
  echo "Raw pipeline per-process peak RSS (MiB, max over rounds):"
  for st in pg_dump zstd age; do
    echo "- backup $st: $(mib "$(cat "$RES"/raw-backup-*."$st".rss | maxof)")"
  done
  if [[ $SKIP_RESTORE != 1 ]]; then
    for st in age zstd pg_restore; do
      echo "- restore $st: $(mib "$(cat "$RES"/raw-restore-*."$st".rss | maxof)")"
    done
  fi
  echo
  read -r lb_raw lb_stored <"$RES/lb-backup-1.bytes"
  raw_size=$(stat -c %s "$WORK/raw/dump-1.zst.age")
  echo "Sizes (round 1): dump $lb_raw bytes; lifeboat stored $lb_stored bytes; raw file $raw_size bytes (lifeboat/raw $(ratio "$lb_stored" "$raw_size")); compression $(ratio "$lb_raw" "$lb_stored"):1"
  echo "fsync of the raw file after the pipeline (not in its time; lifeboat's store fsyncs): $(cat "$RES"/raw-backup-*.fsync | paste -sd' ') s"
  echo
  lbb=$(col lb-backup t_wall)
  rwb=$(col raw-backup t_wall)
  lb_own=$(for ((i = 1; i <= BENCH_ROUNDS; i++)); do cat "$RES/lb-backup-$i.selfrss"; done | maxof)
  lb_tree=$(for ((i = 1; i <= BENCH_ROUNDS; i++)); do t_rss "$RES/lb-backup-$i.time"; done | maxof)
  echo "| summary (median wall) | lifeboat s | raw s | lifeboat/raw | target |"
  echo "|---|---:|---:|---:|---|"
  echo "| backup | $lbb | $rwb | $(ratio "$lbb" "$rwb") | ≤ 1.10 |"
  if [[ $SKIP_RESTORE != 1 ]]; then
    lbr=$(col lb-restore t_wall)
    rwr=$(col raw-restore t_wall)
    echo "| restore | $lbr | $rwr | $(ratio "$lbr" "$rwr") | ≤ 1.10 |"
  fi
  echo
  echo "lifeboat backup peak RSS: $(mib "$lb_own") MiB (lifeboat process, VmHWM); $(mib "$lb_tree") MiB (time -v: max of lifeboat and pg_dump) — target ≤ 64 MiB"
} | tee "$RES/summary.md"

if [[ -n $OUT ]]; then
  cp "$RES/summary.md" "$OUT"
  say "summary written to $OUT"
fi
