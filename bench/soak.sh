#!/usr/bin/env bash
# Soak test of `lifeboat run` (not run in CI). Two parts:
#   1. busy: SOAK_SOURCES (200) `files` sources on an every-minute schedule, for
#      SOAK_MINUTES (10); reports runs scheduled vs done, overlaps (must be 0), failures,
#      RSS at start and end, CPU.
#   2. idle: IDLE_SOURCES (10000) schedules none of which is due (their runs are seeded in
#      the catalog); reports the daemon's CPU over IDLE_SECONDS (60): target <= 1% of a core.
# Usage: LIFEBOAT_BIN=target/release/lifeboat bench/soak.sh [busy|idle|all]
# Needs: sqlite3. Results are printed; copy them into bench/RESULTS.md.
set -euo pipefail

BIN=${LIFEBOAT_BIN:-target/release/lifeboat}
BIN=$(realpath "$BIN")
PART=${1:-all}
SOAK_SOURCES=${SOAK_SOURCES:-200}
SOAK_MINUTES=${SOAK_MINUTES:-10}
# files: every source archives a small directory. real: sources cycle through a throwaway
# PostgreSQL, Redis and etcd server (and a directory), as in production.
SOAK_KINDS=${SOAK_KINDS:-files}
REPO=$(cd "$(dirname "$0")/.." && pwd)
IDLE_SOURCES=${IDLE_SOURCES:-10000}
IDLE_SECONDS=${IDLE_SECONDS:-60}
TICK=$(getconf CLK_TCK)

work=$(mktemp -d /tmp/lifeboat-soak.XXXXXX)
servers_stop() { :; }
trap 'servers_stop; rm -rf "$work"' EXIT
cd "$work"

if [ "$SOAK_KINDS" = real ]; then
  eval "$(bash "$REPO/scripts/setup.sh")"
  # shellcheck source=../scripts/lib/pg.sh
  . "$REPO/scripts/lib/pg.sh"
  pg_start soak
  pg_sql "$PG_PORT_soak" postgres "CREATE DATABASE soak" >/dev/null
  pg_sql "$PG_PORT_soak" soak "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g" >/dev/null
  RPORT=$(free_port)
  redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$work" --save '' --appendonly no \
    --repl-diskless-sync-delay 0 --daemonize yes --pidfile "$work/redis.pid" --logfile "$work/redis.log"
  sleep 1
  for i in $(seq 1 2000); do echo "SET key:$i value-$i-$RANDOM"; done | redis-cli -p "$RPORT" >/dev/null
  EPORT=$(free_port); PPORT=$(free_port)
  etcd --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$EPORT" \
    --advertise-client-urls "http://127.0.0.1:$EPORT" --listen-peer-urls "http://127.0.0.1:$PPORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
    --initial-cluster "default=http://127.0.0.1:$PPORT" > "$work/etcd.log" 2>&1 &
  ETCD_PID=$!
  sleep 2
  for i in $(seq 1 500); do ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$EPORT" put "/soak/$i" "v$i" >/dev/null; done
  servers_stop() {
    pg_stop_all
    local rpid
    rpid=$(cat "$work/redis.pid" 2>/dev/null || true)
    [ -z "$rpid" ] || kill "$rpid" 2>/dev/null || true
    kill "$ETCD_PID" 2>/dev/null || true
    wait "$ETCD_PID" 2>/dev/null || true
    # The directory is removed next: let redis-server finish exiting first.
    for _ in $(seq 1 50); do
      [ -n "$rpid" ] && kill -0 "$rpid" 2>/dev/null || break
      sleep 0.1
    done
  }
fi
recipient=$("$BIN" keys generate --output age.key 2>/dev/null)
mkdir -p data && head -c 65536 /dev/urandom > data/blob && echo hello > data/hello.txt

write_config() { # n schedule
  {
    echo 'catalog: "sqlite://./catalog.db"'
    echo 'stores: { local: { url: "file://./store" } }'
    echo "encryption: { recipients: [\"$recipient\"] }"
    echo 'daemon: { max_concurrent_jobs: 4, shutdown_grace: 60s }'
    echo 'sources:'
    for i in $(seq 1 "$1"); do
      kind="files, path: ./data"
      if [ "$SOAK_KINDS" = real ]; then
        case $((i % 4)) in
          0) kind="postgres, url: \"postgres://postgres@127.0.0.1:$PG_PORT_soak/soak\"" ;;
          1) kind="redis, url: \"redis://127.0.0.1:$RPORT\"" ;;
          2) kind="etcd, endpoints: [\"http://127.0.0.1:$EPORT\"]" ;;
        esac
      fi
      echo "  - { name: s$i, kind: $kind, store: local, schedule: \"$2\" }"
    done
  } > lifeboat.yaml
}

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

busy() {
  rm -rf catalog.db* store
  write_config "$SOAK_SOURCES" "0 * * * * *"
  "$BIN" run 2> busy.log &
  pid=$!
  sleep 5
  rss0=$(rss_kib $pid); t0=$(cpu_ticks $pid); start=$(date +%s)
  series="$rss0"
  for _ in $(seq 1 "$SOAK_MINUTES"); do
    sleep 60
    series="$series $(rss_kib $pid)"
  done
  rss1=$(rss_kib $pid); t1=$(cpu_ticks $pid); end=$(date +%s)
  kill -TERM $pid; wait $pid || true
  minutes=$(( (end - start) / 60 ))
  q() { sqlite3 catalog.db "$1"; }
  done_runs=$(q "SELECT count(*) FROM runs WHERE job='backup' AND status='complete'")
  failed=$(q "SELECT count(*) FROM runs WHERE job='backup' AND status='failed'")
  overlaps=$(q "SELECT count(*) FROM runs a JOIN runs b ON a.source=b.source AND a.id<b.id AND a.job='backup' AND b.job='backup' AND a.started_at < COALESCE(b.finished_at,'9') AND b.started_at < COALESCE(a.finished_at,'9')")
  late=$(q "SELECT count(*) FROM runs WHERE job='backup' AND CAST(strftime('%S', started_at) AS INT) >= 30")
  # Scheduled: one catch-up run per source at start, then one per source per minute.
  scheduled=$(( SOAK_SOURCES * (1 + (end - start + 5) / 60) ))
  echo "busy: sources=$SOAK_SOURCES minutes=$minutes scheduled~=$scheduled done=$done_runs failed=$failed overlaps=$overlaps started_30s_late=$late"
  echo "busy: by kind and status: $(q "SELECT group_concat(kind || ' ' || status || '=' || n, ', ') FROM (SELECT kind, status, count(*) n FROM snapshots GROUP BY kind, status)")"
  echo "busy: rss_per_minute_KiB=[$series]"
  echo "busy: rss_start=${rss0}KiB rss_end=${rss1}KiB cpu=$(( (t1 - t0) * 100 / TICK / (end - start) ))% of one core (avg over the run)"
}

idle() {
  rm -rf catalog.db* store
  write_config "$IDLE_SOURCES" "0 0 1 1 *"
  "$BIN" runs list > /dev/null 2>&1   # creates the catalog schema
  now=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
  {
    echo "BEGIN;"
    for i in $(seq 1 "$IDLE_SOURCES"); do
      echo "INSERT INTO runs (id, job, source, status, started_at, finished_at, heartbeat_at, host, pid) VALUES ('seed-$i', 'backup', 's$i', 'complete', '$now', '$now', '$now', 'seed', 0);"
    done
    echo "COMMIT;"
  } | sqlite3 catalog.db
  "$BIN" run 2> idle.log &
  pid=$!
  sleep 10
  rss0=$(rss_kib $pid); t0=$(cpu_ticks $pid)
  sleep "$IDLE_SECONDS"
  rss1=$(rss_kib $pid); t1=$(cpu_ticks $pid)
  kill -TERM $pid; wait $pid || true
  started=$(grep -c '"backup started"' idle.log || true)
  pct=$(awk -v d=$((t1 - t0)) -v tick="$TICK" -v s="$IDLE_SECONDS" 'BEGIN { printf "%.2f", d * 100 / tick / s }')
  echo "idle: schedules=$IDLE_SOURCES seconds=$IDLE_SECONDS cpu=${pct}% of one core (target <= 1%) jobs_started=$started rss_start=${rss0}KiB rss_end=${rss1}KiB"
}

case $PART in
  busy) busy ;;
  idle) idle ;;
  all) idle; busy ;;
  *) echo "usage: $0 [busy|idle|all]" >&2; exit 2 ;;
esac
