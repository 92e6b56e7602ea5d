#!/usr/bin/env bash
# bench/dns.sh: time from `lifeboat dns set` to agreement of every authoritative nameserver,
# per provider: the median of BENCH_ROUNDS switches (this figure is part of a failover's RTO).
#
#   bind+knot      RFC 2136 + TSIG to a BIND 9 primary; verified on BIND and a Knot secondary
#                  (NOTIFY + AXFR over TSIG), BIND's default notify-delay (5 s)
#   bind+knot/nd0  the same with `notify-delay 0;` on the primary
#   knot           RFC 2136 + TSIG to a Knot primary, verified on it
#   powerdns       PowerDNS Authoritative HTTP API (PATCH), verified on its DNS port
#
# Each round switches the record between two values with --expect-current (compare-and-swap)
# and reads `timings.agreement_ms` (end of apply → every nameserver agrees) and
# `timings.total_ms` (plan + apply + agreement) from `--output json`. Servers run from a temp
# dir on free loopback ports, as the tests start them.
#
# Usage: bench/dns.sh [--out FILE] [--keep]
#   --out FILE   also write the summary (markdown) to FILE
#   --keep       keep the work directory (configs, server logs) for inspection
#
# Environment:
#   LIFEBOAT_BIN   lifeboat binary (default: target/release/lifeboat, built if missing; the
#                  time measured is network and server time, a debug build is fine)
#   BENCH_ROUNDS   switches per provider (default 10)
#   TMPDIR         where the work directory goes (default /tmp)

set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init "$@"
bench_need named knotd pdns_server dig sqlite3 python3 tsig-keygen
bench_lifeboat_bin
ROUNDS=${BENCH_ROUNDS:-10}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/lifeboat-bench-dns.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  if [[ $KEEP == 1 ]]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_soa() {
  local port=$1 i
  for i in $(seq 1 200); do
    [[ -n $(dig +norec +short +time=1 +tries=1 @127.0.0.1 -p "$port" example.test SOA 2>/dev/null) ]] && return 0
    sleep 0.05
  done
  die "no SOA answer on port $port (logs in $WORK)"
}

SECRET=$(python3 -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())')
ZONE='$TTL 60
@ IN SOA ns1.example.test. hostmaster.example.test. 1 60 60 600 60
@ IN NS ns1.example.test.
ns1 IN A 127.0.0.1
bench 30 IN A 192.0.2.1'

start_bind() { # DIR PORT NOTIFY_PORT NOTIFY_DELAY
  local d=$1 port=$2 np=$3 nd=$4
  mkdir -p "$d"; echo "$ZONE" > "$d/example.test.db"
  printf 'key "lifeboat-key" { algorithm hmac-sha256; secret "%s"; };\n' "$SECRET" > "$d/tsig.key"
  cat > "$d/named.conf" <<CONF
include "$d/tsig.key";
options { directory "$d"; pid-file "$d/named.pid"; session-keyfile "$d/session.key";
  listen-on port $port { 127.0.0.1; }; listen-on-v6 { none; };
  recursion no; dnssec-validation no; notify no; allow-transfer { key lifeboat-key; }; $nd };
controls { };
zone "example.test" { type primary; file "$d/example.test.db";
  notify explicit; also-notify { 127.0.0.1 port $np key lifeboat-key; };
  update-policy { grant lifeboat-key zonesub ANY; }; };
CONF
  named -g -c "$d/named.conf" >"$d/server.log" 2>&1 & PIDS+=($!); disown
  wait_soa "$port"
}

start_knot() { # DIR PORT [PRIMARY_PORT]
  local d=$1 port=$2 primary=${3:-}
  mkdir -p "$d/db"
  local remote="" acl zone
  if [[ -z $primary ]]; then
    echo "$ZONE" > "$d/example.test.zone"
    acl="  - id: upd
    key: lifeboat-key
    action: update"
    zone="  - domain: example.test
    acl: upd"
  else
    remote="remote:
  - id: primary
    address: 127.0.0.1@$primary
    key: lifeboat-key"
    acl="  - id: ntf
    key: lifeboat-key
    action: notify"
    zone="  - domain: example.test
    master: primary
    acl: ntf"
  fi
  cat > "$d/knot.conf" <<CONF
server:
  rundir: "$d"
  listen: 127.0.0.1@$port
log:
  - target: stderr
    any: info
database:
  storage: "$d/db"
control:
  listen: "$d/knot.sock"
key:
  - id: lifeboat-key
    algorithm: hmac-sha256
    secret: "$SECRET"
$remote
acl:
$acl
template:
  - id: default
    storage: "$d"
    file: "%s.zone"
zone:
$zone
CONF
  knotd -c "$d/knot.conf" >"$d/server.log" 2>&1 & PIDS+=($!); disown
  wait_soa "$port"
}

start_pdns() { # DIR DNS_PORT API_PORT KEY
  local d=$1 port=$2 api=$3 key=$4
  mkdir -p "$d"
  sqlite3 "$d/pdns.sqlite3" < /usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql
  cat > "$d/pdns.conf" <<CONF
launch=gsqlite3
gsqlite3-database=$d/pdns.sqlite3
local-address=127.0.0.1
local-port=$port
api=yes
api-key=$key
webserver-address=127.0.0.1
webserver-port=$api
webserver-allow-from=127.0.0.0/8
socket-dir=$d
daemon=no
guardian=no
write-pid=no
disable-syslog=yes
security-poll-suffix=
CONF
  pdns_server --config-dir="$d" >"$d/server.log" 2>&1 & PIDS+=($!); disown
  local i
  for i in $(seq 1 200); do
    curl -s -o /dev/null "http://127.0.0.1:$api/api/v1/servers" && break
    sleep 0.05
  done
  curl -sf -X POST -H "X-API-Key: $key" "http://127.0.0.1:$api/api/v1/servers/localhost/zones" \
    -d '{"name":"example.test.","kind":"Native","nameservers":["ns1.example.test."],"rrsets":[{"name":"bench.example.test.","type":"A","ttl":30,"records":[{"content":"192.0.2.1","disabled":false}]}]}' >/dev/null \
    || die "PowerDNS zone creation failed (log $d/server.log)"
  wait_soa "$port"
}

say "starting servers in $WORK"
B1=$(free_port); K1=$(free_port); start_bind "$WORK/bind1" "$B1" "$K1" ""; start_knot "$WORK/knot1" "$K1" "$B1"
B2=$(free_port); K2=$(free_port); start_bind "$WORK/bind2" "$B2" "$K2" "notify-delay 0;"; start_knot "$WORK/knot2" "$K2" "$B2"
K3=$(free_port); start_knot "$WORK/knot3" "$K3"
P=$(free_port); PA=$(free_port); PKEY="bench-$RANDOM$RANDOM"; start_pdns "$WORK/pdns" "$P" "$PA" "$PKEY"

RECIPIENT=$("$LIFEBOAT_BIN" keys generate --output "$WORK/age.key" 2>/dev/null)
record() { # PROVIDER NAMESERVERS
  printf '    - { name: bench.example.test., zone: example.test., type: A, ttl: 30, provider: %s, nameservers: [%s], verify_timeout: 60s }\n' "$1" "$2"
}
config() { # PROVIDER NAMESERVERS
  cat <<CONF
stores: { local: { url: "file://$WORK/store" } }
encryption: { recipients: ["$RECIPIENT"] }
sources: []
dns:
  providers:
    bind1: { kind: rfc2136, server: "127.0.0.1:$B1", tsig: { name: lifeboat-key, secret: "\${TSIG_SECRET}" } }
    bind2: { kind: rfc2136, server: "127.0.0.1:$B2", tsig: { name: lifeboat-key, secret: "\${TSIG_SECRET}" } }
    knot:  { kind: rfc2136, server: "127.0.0.1:$K3", tsig: { name: lifeboat-key, secret: "\${TSIG_SECRET}" } }
    pdns:  { kind: powerdns, api_url: "http://127.0.0.1:$PA", api_key: "\${PDNS_API_KEY}" }
  records:
$(record "$1" "$2")
CONF
}
export TSIG_SECRET=$SECRET PDNS_API_KEY=$PKEY

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.0f\n", (a[NR/2]+a[NR/2+1])/2}'; }

ROWS=()
bench() { # LABEL PROVIDER NAMESERVERS
  local label=$1 cfg="$WORK/${1//\//_}.yaml" cur=192.0.2.1 next i out agree=() total=()
  config "$2" "$3" > "$cfg"
  say "$label: $ROUNDS switches"
  for i in $(seq 1 "$ROUNDS"); do
    next="198.51.100.$i"; [[ $cur == "$next" ]] && next="203.0.113.$i"
    out=$("$LIFEBOAT_BIN" -c "$cfg" --log-level warn dns set bench.example.test. "$next" --expect-current "$cur" --output json) \
      || die "$label round $i failed: $out"
    agree+=("$(python3 -c 'import json,sys; print(json.load(sys.stdin)["timings"]["agreement_ms"])' <<<"$out")")
    total+=("$(python3 -c 'import json,sys; print(json.load(sys.stdin)["timings"]["total_ms"])' <<<"$out")")
    cur=$next
  done
  local ma mt mn mx
  ma=$(printf '%s\n' "${agree[@]}" | median); mt=$(printf '%s\n' "${total[@]}" | median)
  mn=$(printf '%s\n' "${agree[@]}" | sort -n | head -1); mx=$(printf '%s\n' "${agree[@]}" | sort -n | tail -1)
  ROWS+=("| $label | $(echo "$3" | tr -d '"' | sed 's/,/ +/g') | $ma ms | $mn–$mx ms | $mt ms |")
}

bench "bind+knot" bind1 "\"127.0.0.1:$B1\", \"127.0.0.1:$K1\""
bench "bind+knot/nd0" bind2 "\"127.0.0.1:$B2\", \"127.0.0.1:$K2\""
bench "knot" knot "\"127.0.0.1:$K3\""
bench "powerdns" pdns "\"127.0.0.1:$P\""

SUMMARY="$(cat <<MD
| provider | nameservers verified | median set→agreement | min–max | median total (plan+apply+agreement) |
|---|---|---:|---:|---:|
$(printf '%s\n' "${ROWS[@]}")

$ROUNDS switches each, $(date -u '+%Y-%m-%d %H:%M UTC'), binary \`$(basename "$LIFEBOAT_BIN")\` ($LIFEBOAT_BIN), load $(cut -d' ' -f1-3 /proc/loadavg).
MD
)"
echo "$SUMMARY"
if [[ -n $OUT ]]; then echo "$SUMMARY" > "$OUT"; fi
