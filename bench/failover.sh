#!/usr/bin/env bash
# bench/failover.sh: Patroni vs lifeboat failing over the same two-node PostgreSQL (a primary
# and a streaming standby on loopback), side by side in one run, with one writer inserting a
# row every 100 ms into whichever node takes it (each INSERT acknowledged = committed).
#
#   patroni/defaults  Debian `patroni`, etcd (v3) DCS, ttl 30 / loop_wait 10 / retry_timeout 10
#   patroni/tight     ttl 10 / loop_wait 2 / retry_timeout 3 (Debian's Patroni 3.0.2 takes any
#                     ttl; Patroni 4 refuses ttl below 20; loop_wait + 2 × retry_timeout must
#                     stay within ttl)
#   lifeboat          three `lifeboat run` daemons (sites primary, secondary and a witness
#                     vantage point without services), failover.mode automatic,
#                     probe_interval 1s, unhealthy_after 3, fence_after 5s (the default); DNS
#                     on BIND (RFC 2136 + TSIG), switched and verified by the failover
#
# Per round, on a fresh cluster: kill -9 of the primary (Patroni: its patroni and postmaster;
# lifeboat: its postmaster and its site's lifeboat daemon), then the time from the kill to
# the first acknowledged write on the new primary, and (lifeboat) to the new address answered
# by the nameserver; acknowledged rows missing on the new primary; and a planned switchover's
# write gap (the longest time between two acknowledged writes around it: Patroni `patronictl
# switchover`; lifeboat `failover execute --to` back to the old primary after `failover
# rejoin`, with the daemons stopped).
#
# Usage: bench/failover.sh [--out FILE] [--keep]
#   --out FILE   also write the summary (markdown) to FILE
#   --keep       keep the work directory (configs, logs, writer logs)
#
# Environment:
#   LIFEBOAT_BIN   lifeboat binary (default: target/release/lifeboat, built if missing; the
#                  time measured is waits and server time, a debug build is fine)
#   BENCH_ROUNDS   rounds per contender (default 3)
#   BENCH_ONLY     run only the contenders whose label contains this (e.g. lifeboat)
#   PG_BIN         PostgreSQL bin directory (default: the newest /usr/lib/postgresql/*/bin)
#   TMPDIR         where the work directory goes (default /tmp)

set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init "$@"
bench_need named dig etcd patroni patronictl curl runuser
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
bench_need_pg initdb pg_ctl pg_basebackup psql
bench_lifeboat_bin
ROUNDS=${BENCH_ROUNDS:-3}
PY=/usr/bin/python3 # Debian's, with psycopg2 (a dependency of the patroni package)
"$PY" -c 'import psycopg2' 2>/dev/null || die "python3-psycopg2 is missing (apt-get install -y patroni)"
[[ $(id -u) == 0 ]] || die "run as root (PostgreSQL and Patroni run as the postgres user)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/lifeboat-bench-failover.XXXXXX")
chmod 755 "$WORK"
PIDS=()
DATA_DIRS=()
cleanup() {
  local p d
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for d in "${DATA_DIRS[@]}"; do
    [[ -f $d/postmaster.pid ]] && kill -KILL "$(head -n 1 "$d/postmaster.pid")" 2>/dev/null || true
  done
  if [[ $KEEP == 1 ]]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

as_pg() { runuser -u postgres -- "$@"; }
now() { date +%s.%N; }
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
psql_at() { "$PG_BIN/psql" -X -At -h 127.0.0.1 -U postgres -p "$1" -d postgres -c "$2" 2>/dev/null; }
wait_for() { # WHAT SECONDS COMMAND...
  local what=$1 secs=$2 i; shift 2
  for i in $(seq 1 $((secs * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "timed out waiting for $what (logs in $WORK; --keep keeps them)"
}
kill_postmaster() { # DATA_DIR
  local pid
  pid=$(head -n 1 "$1/postmaster.pid")
  kill -KILL "$pid"
}

# The writer: a row every 100 ms into the first of the DSNs that takes it; logs
# `id sent acked dsn-index` per acknowledged INSERT.
cat > "$WORK/writer.py" <<'PY'
import sys, time, psycopg2
out = open(sys.argv[1], "a", buffering=1)
dsns = sys.argv[2:]
conns = [None] * len(dsns)
base = int(time.time() * 1000) * 10
n = 0
tick = time.time()
while True:
    n += 1
    sent = time.time()
    for k, dsn in enumerate(dsns):
        try:
            if conns[k] is None:
                conns[k] = psycopg2.connect(dsn, connect_timeout=1)
                conns[k].autocommit = True
            conns[k].cursor().execute("INSERT INTO acked (id) VALUES (%s)", (base + n,))
            out.write(f"{base + n} {sent:.3f} {time.time():.3f} {k}\n")
            break
        except Exception:
            try:
                conns[k].close()
            except Exception:
                pass
            conns[k] = None
    tick += 0.1
    time.sleep(max(0.0, tick - time.time()))
PY
dsn() { echo "host=127.0.0.1 port=$1 dbname=postgres user=postgres password=postgres"; }
start_writer() { # LOG DSN...
  local log=$1; shift
  "$PY" "$WORK/writer.py" "$log" "$@" & WRITER=$!; PIDS+=("$WRITER")
}
stop_writer() { kill "$WRITER" 2>/dev/null || true; wait "$WRITER" 2>/dev/null || true; }
# Seconds from T to the first ack after T by DSN index K.
first_ack_after() { # LOG T K
  awk -v t="$2" -v k="$3" '$4 == k && $3 > t { printf "%.2f\n", $3 - t; exit }' "$1"
}
# The longest gap between two acknowledged writes between FROM and TO.
max_gap() { # LOG FROM TO
  awk -v a="$2" -v b="$3" '$3 >= a && $3 <= b { if (p) { g = $3 - p; if (g > m) m = g } p = $3 } END { printf "%.2f\n", m }' "$1"
}
# Acknowledged ids missing on the server at PORT.
lost_rows() { # LOG PORT
  local have
  have=$(mktemp "$WORK/have.XXXXXX")
  psql_at "$2" "SELECT id FROM acked" | sort > "$have"
  awk '{print $1}' "$1" | sort | comm -23 - "$have" | wc -l
}
calc() { awk "BEGIN { printf \"%.3f\", $* }"; }
streaming() { [[ $(psql_at "$1" "SELECT status FROM pg_stat_wal_receiver") == streaming ]]; }
has_ack() { [[ -n $(first_ack_after "$@") ]]; }
dns_is() { [[ $(answer) == "$1" ]]; }
pg_writable() { [[ $(psql_at "$1" 'SHOW default_transaction_read_only') == off ]]; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2}'; }
maxof() { sort -n | tail -n 1; }

# ---------------------------------------------------------------- Patroni
patroni_round() { # LABEL ROUND TTL LOOP_WAIT RETRY_TIMEOUT
  local label=$1 r=$2 ttl=$3 lw=$4 rt=$5
  local d="$WORK/patroni-$ttl-$lw-$r" ec ep i
  mkdir -p "$d"; chown postgres "$d"
  ec=$(free_port); ep=$(free_port)
  etcd --name e --data-dir "$d/etcd" --listen-client-urls "http://127.0.0.1:$ec" \
    --advertise-client-urls "http://127.0.0.1:$ec" --listen-peer-urls "http://127.0.0.1:$ep" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ep" --initial-cluster "e=http://127.0.0.1:$ep" \
    >"$d/etcd.log" 2>&1 & PIDS+=($!)
  wait_for "etcd" 30 curl -sf "http://127.0.0.1:$ec/health"
  local P=() R=() NODE=()
  for i in 1 2; do
    P[i]=$(free_port); R[i]=$(free_port)
    DATA_DIRS+=("$d/node$i")
    cat > "$d/node$i.yml" <<YML
scope: bench
name: node$i
restapi: { listen: "127.0.0.1:${R[i]}", connect_address: "127.0.0.1:${R[i]}" }
etcd3: { hosts: "127.0.0.1:$ec" }
bootstrap:
  dcs:
    ttl: $ttl
    loop_wait: $lw
    retry_timeout: $rt
    maximum_lag_on_failover: 1048576
    postgresql: { use_pg_rewind: true, parameters: { wal_log_hints: "on", fsync: "off" } }
  initdb: [ { encoding: UTF8 } ]
  pg_hba: [ "local all all trust", "host all all 127.0.0.1/32 trust", "host replication all 127.0.0.1/32 trust" ]
postgresql:
  listen: "127.0.0.1:${P[i]}"
  connect_address: "127.0.0.1:${P[i]}"
  data_dir: "$d/node$i"
  bin_dir: "$PG_BIN"
  pgpass: "$d/pgpass$i"
  authentication:
    superuser: { username: postgres, password: postgres }
    replication: { username: postgres, password: postgres }
  parameters: { unix_socket_directories: "$d" }
YML
    # setpriv execs (runuser would fork): the PID is patroni's own, for the kill -9.
    setpriv --reuid=postgres --regid=postgres --init-groups -- patroni "$d/node$i.yml" >"$d/patroni$i.log" 2>&1 & NODE[i]=$!; PIDS+=("${NODE[i]}")
    if [[ $i == 1 ]]; then
      wait_for "patroni node1 as primary" 90 curl -sf "http://127.0.0.1:${R[1]}/primary"
      psql_at "${P[1]}" "CREATE TABLE acked (id bigint PRIMARY KEY, at timestamptz DEFAULT now())" >/dev/null
    fi
  done
  wait_for "patroni node2 as a replica" 120 curl -sf "http://127.0.0.1:${R[2]}/replica?lag=0"
  # Really streaming before the first write: Patroni's switchover checks the candidate's lag
  # as last written to the DCS (up to loop_wait old), not that it streams; without this wait
  # the defaults lost the writes made before node2 connected (see bench/RESULTS.md).
  wait_for "node2 streaming from node1" 120 streaming "${P[2]}"
  local log="$d/writer.log" t0 t1 tk
  start_writer "$log" "$(dsn "${P[1]}")" "$(dsn "${P[2]}")"
  sleep 3
  # Planned switchover node1 → node2.
  t0=$(now)
  as_pg patronictl -c "$d/node1.yml" switchover bench --leader node1 --candidate node2 --force >"$d/switchover.log" 2>&1 \
    || die "patronictl switchover failed ($d/switchover.log)"
  wait_for "node2 primary after the switchover" 60 curl -sf "http://127.0.0.1:${R[2]}/primary"
  t1=$(now)
  sleep 3
  SW_GAP=$(max_gap "$log" "$(calc "$t0 - 1")" "$(calc "$t1 + 3")")
  wait_for "node1 back as a replica" 120 curl -sf "http://127.0.0.1:${R[1]}/replica"
  # Streaming again before the kill (Patroni rejoins it within loop_wait): rows it never
  # received would count as lost, which is the bench's timing, not Patroni's.
  wait_for "node1 streaming from node2" 120 streaming "${P[1]}"
  sleep 2
  # Unplanned: kill -9 of node2 (its patroni and its postmaster).
  tk=$(now)
  kill -KILL "${NODE[2]}"; kill_postmaster "$d/node2"
  wait_for "node1 promoted" 180 curl -sf "http://127.0.0.1:${R[1]}/primary"
  wait_for "a write on node1" 30 has_ack "$log" "$tk" 0
  sleep 2
  stop_writer
  FIRST_WRITE=$(first_ack_after "$log" "$tk" 0)
  LOST=$(lost_rows "$log" "${P[1]}")
  DNS_AGREED="-"
  kill -KILL "${NODE[1]}" 2>/dev/null || true; kill_postmaster "$d/node1" 2>/dev/null || true
  kill "${PIDS[@]}" 2>/dev/null || true
}

# ---------------------------------------------------------------- lifeboat
SECRET=$("$PY" -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())')
export TSIG_SECRET=$SECRET LIFEBOAT_PEER_TOKEN="bench-$RANDOM$RANDOM"
start_bind() { # DIR PORT
  local d=$1 port=$2
  mkdir -p "$d"
  printf '$TTL 60\n@ IN SOA ns1.example.test. hostmaster.example.test. 1 60 60 600 60\n@ IN NS ns1.example.test.\nns1 IN A 127.0.0.1\napi 5 IN A 192.0.2.10\n' > "$d/example.test.db"
  printf 'key "lifeboat-key" { algorithm hmac-sha256; secret "%s"; };\n' "$SECRET" > "$d/tsig.key"
  cat > "$d/named.conf" <<CONF
include "$d/tsig.key";
options { directory "$d"; pid-file "$d/named.pid"; session-keyfile "$d/session.key";
  listen-on port $port { 127.0.0.1; }; listen-on-v6 { none; };
  recursion no; dnssec-validation no; notify no; };
controls { };
zone "example.test" { type primary; file "$d/example.test.db";
  update-policy { grant lifeboat-key zonesub ANY; }; };
CONF
  named -g -c "$d/named.conf" >"$d/server.log" 2>&1 & PIDS+=($!)
  NS=$port
  wait_for "BIND" 30 dns_is 192.0.2.10
}
answer() { dig +short +time=1 +tries=1 @127.0.0.1 -p "$NS" api.example.test A 2>/dev/null; }

lifeboat_round() { # ROUND
  local r=$1 d="$WORK/lifeboat-$r" i s
  mkdir -p "$d"; chown postgres "$d"
  local P1 P2; P1=$(free_port); P2=$(free_port)
  local opts="-c listen_addresses=127.0.0.1 -c unix_socket_directories=$d -c wal_log_hints=on -c fsync=off"
  as_pg "$PG_BIN/initdb" -D "$d/pg1" -U postgres --auth=trust >"$d/initdb.log" 2>&1
  DATA_DIRS+=("$d/pg1" "$d/pg2")
  as_pg "$PG_BIN/pg_ctl" start -w -D "$d/pg1" -l "$d/pg1.log" -o "$opts -c port=$P1" >/dev/null
  psql_at "$P1" "CREATE TABLE acked (id bigint PRIMARY KEY, at timestamptz DEFAULT now())" >/dev/null
  as_pg "$PG_BIN/pg_basebackup" -D "$d/pg2" -R -X stream -c fast -h 127.0.0.1 -p "$P1" -U postgres >/dev/null 2>&1
  as_pg "$PG_BIN/pg_ctl" start -w -D "$d/pg2" -l "$d/pg2.log" -o "$opts -c port=$P2" >/dev/null
  NS=$(free_port); start_bind "$d/bind" "$NS"
  local SITES=(primary secondary witness) PORTS=() DAEMON=()
  for i in 0 1 2; do PORTS[i]=$(free_port); done
  local sites_yaml="" dns
  for i in 0 1 2; do
    s=${SITES[i]}
    case $s in
      primary) sites_yaml+="  - { name: primary, peer: \"http://127.0.0.1:${PORTS[0]}\", services: { db: { kind: postgres, url: \"postgres://postgres@127.0.0.1:$P1/postgres\", data_dir: \"$d/pg1\" } }, dns: { \"api.example.test.\": [\"192.0.2.10\"] } }"$'\n' ;;
      secondary) sites_yaml+="  - { name: secondary, peer: \"http://127.0.0.1:${PORTS[1]}\", services: { db: { kind: postgres, url: \"postgres://postgres@127.0.0.1:$P2/postgres\", data_dir: \"$d/pg2\" } }, dns: { \"api.example.test.\": [\"192.0.2.20\"] } }"$'\n' ;;
      witness) sites_yaml+="  - { name: witness, peer: \"http://127.0.0.1:${PORTS[2]}\", dns: { \"api.example.test.\": [\"192.0.2.99\"] } }"$'\n' ;;
    esac
  done
  for i in 0 1 2; do
    s=${SITES[i]}
    mkdir -p "$d/$s"
    local recipient
    recipient=$("$LIFEBOAT_BIN" keys generate --output "$d/$s/age.key" 2>/dev/null)
    cat > "$d/$s/lifeboat.yaml" <<CONF
catalog: "sqlite://$d/$s/catalog.db"
stores: { local: { url: "file://$d/$s/store" } }
encryption: { recipients: ["$recipient"] }
sources: []
daemon: { listen: "127.0.0.1:${PORTS[i]}" }
dns:
  providers:
    bind: { kind: rfc2136, server: "127.0.0.1:$NS", tsig: { name: lifeboat-key, secret: "\${TSIG_SECRET}" } }
  records:
    - { name: api.example.test., zone: example.test., type: A, ttl: 5, provider: bind, nameservers: ["127.0.0.1:$NS"], verify_timeout: 30s }
sites:
$sites_yaml
failover:
  site: $s
  mode: automatic
  order: [primary, secondary]
  probe_interval: 1s
  unhealthy_after: 3
  fence_after: 5s
  peer_token: "\${LIFEBOAT_PEER_TOKEN}"
CONF
  done
  for i in 0 1 2; do
    s=${SITES[i]}
    (cd "$d/$s" && exec "$LIFEBOAT_BIN" -c lifeboat.yaml --log-format json run >"$d/$s/daemon.log" 2>&1) & DAEMON[i]=$!; PIDS+=("${DAEMON[i]}")
  done
  for i in 0 1 2; do
    wait_for "the ${SITES[i]} daemon's observations" 60 \
      curl -sf -H "Authorization: Bearer $LIFEBOAT_PEER_TOKEN" "http://127.0.0.1:${PORTS[i]}/api/v1/failover/observations"
  done
  wait_for "the primary writable" 30 pg_writable "$P1"
  sleep 4
  local log="$d/writer.log" tk t0 t1
  start_writer "$log" "$(dsn "$P1")" "$(dsn "$P2")"
  sleep 3
  # Unplanned: kill -9 of the primary's postmaster and of its site's lifeboat.
  tk=$(now)
  kill -KILL "${DAEMON[0]}"; kill_postmaster "$d/pg1"
  wait_for "DNS to answer the secondary" 120 dns_is 192.0.2.20
  DNS_AGREED=$(calc "$(now) - $tk")
  wait_for "a write on the secondary" 60 has_ack "$log" "$tk" 1
  sleep 2
  stop_writer
  FIRST_WRITE=$(first_ack_after "$log" "$tk" 1)
  LOST=$(lost_rows "$log" "$P2")
  # Failback as a planned switchover, the daemons stopped: rejoin the old primary, then
  # `failover execute --to primary --force` with the writer going (--force: no controller
  # is there to vote, and `mode: automatic` wants a quorum of them otherwise).
  kill -KILL "${DAEMON[1]}" "${DAEMON[2]}" 2>/dev/null || true
  as_pg "$PG_BIN/pg_ctl" start -w -D "$d/pg1" -l "$d/pg1.log" -o "$opts -c port=$P1" >/dev/null 2>&1 || true
  (cd "$d/secondary" && "$LIFEBOAT_BIN" -c lifeboat.yaml --log-level warn failover rejoin primary) >"$d/rejoin.log" 2>&1 \
    || die "failover rejoin failed ($d/rejoin.log)"
  local log2="$d/writer-switchover.log"
  start_writer "$log2" "$(dsn "$P2")" "$(dsn "$P1")"
  sleep 3
  t0=$(now)
  (cd "$d/secondary" && "$LIFEBOAT_BIN" -c lifeboat.yaml --log-level warn failover execute --to primary --yes --force) >"$d/switchover.log" 2>&1 \
    || die "failover execute failed ($d/switchover.log)"
  t1=$(now)
  sleep 3
  stop_writer
  SW_GAP=$(max_gap "$log2" "$(calc "$t0 - 1")" "$(calc "$t1 + 3")")
  local lost2
  lost2=$(lost_rows "$log2" "$P1")
  LOST=$((LOST + lost2))
  for dd in "$d/pg1" "$d/pg2"; do kill_postmaster "$dd" 2>/dev/null || true; done
  kill "${PIDS[@]}" 2>/dev/null || true
}

ROWS=()
run() { # LABEL FUNCTION ARGS...
  local label=$1 fn=$2 r fw=() dns=() gap=() lost=0; shift 2
  [[ $label == *"${BENCH_ONLY:-}"* ]] || return 0
  for r in $(seq 1 "$ROUNDS"); do
    say "$label: round $r of $ROUNDS"
    "$fn" "$label" "$r" "$@"
    say "$label round $r: first write after ${FIRST_WRITE}s, DNS ${DNS_AGREED}, lost $LOST, switchover gap ${SW_GAP}s"
    fw+=("$FIRST_WRITE"); dns+=("$DNS_AGREED"); gap+=("$SW_GAP"); lost=$((lost + LOST))
  done
  local dmed="-" dmax="-"
  if [[ ${dns[0]} != "-" ]]; then
    dmed=$(printf '%s\n' "${dns[@]}" | median); dmax=$(printf '%s\n' "${dns[@]}" | maxof)
  fi
  ROWS+=("| $label | $(printf '%s\n' "${fw[@]}" | median) | $(printf '%s\n' "${fw[@]}" | maxof) | $dmed | $dmax | $lost | $(printf '%s\n' "${gap[@]}" | median) |")
}
lifeboat_run() { lifeboat_round "$2"; }

run "patroni/defaults (ttl 30, loop_wait 10)" patroni_round 30 10 10
run "patroni/tight (ttl 10, loop_wait 2, retry 3)" patroni_round 10 2 3
run "lifeboat (probe 1s, unhealthy_after 3, fence_after 5s)" lifeboat_run

SUMMARY=$(cat <<MD
Failover of a two-node PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on loopback, kill -9 of the primary, one writer every 100 ms; $ROUNDS rounds each, seconds (median, max).

| contender | kill → first write (median) | (max) | kill → DNS agreed (median) | (max) | acked rows lost | planned switchover write gap (median) |
|---|---|---|---|---|---|---|
$(printf '%s\n' "${ROWS[@]}")
MD
)
echo "$SUMMARY"
if [[ -n $OUT ]]; then echo "$SUMMARY" > "$OUT"; fi
