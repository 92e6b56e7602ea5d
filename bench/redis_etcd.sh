#!/usr/bin/env bash
# bench/redis_etcd.sh: lifeboat backup of Redis and etcd against the raw shell pipelines.
#
# Redis (≈1 GB of used_memory):
#   (a) lifeboat backup redis         (mode: replication, the default; local file:// store)
#   (b) redis-cli --rdb - | zstd -LEVEL -T0 | age -r KEY > file
#   (c) lifeboat backup redis-file    (mode: file: BGSAVE, wait, read rdb_path)
#   (d) redis-cli BGSAVE, poll INFO persistence every 0.1 s, then
#       zstd -LEVEL -T0 -c dump.rdb | age -r KEY > file
# etcd (≈100k keys):
#   (e) lifeboat backup etcd
#   (f) etcdctl snapshot save F && zstd -LEVEL -T0 -c F | age -r KEY > file   (one bash -c)
#
# It starts a throwaway redis-server and a one-member etcd under TMPDIR on free loopback
# ports, fills them, runs each side BENCH_ROUNDS (etcd: BENCH_ETCD_ROUNDS) times in
# alternating order (lifeboat, raw, raw, lifeboat, ...), and prints wall times, peak RSS
# (GNU /usr/bin/time -v), CPU, sizes and the lifeboat/raw ratios. lifeboat starts no child
# process for these sources, so its `time -v` peak RSS is lifeboat's own.
#
# Redis dataset: BENCH_REDIS_POPULATE_PCT % of the target memory from `DEBUG POPULATE` (values
# "value:N" zero-padded to 256 bytes: very compressible), the rest from `redis-cli --pipe`:
# 3 of 4 keys are strings of random hex text (100–900 chars), 1 of 4 a small hash (name,
# email, counter, 100–300 chars of random hex). Random hex compresses ≈2:1 with zstd, like
# the md5 text in bench/backup.sh. Filled in batches until INFO memory used_memory reaches
# BENCH_REDIS_MB. The server runs with `repl-diskless-sync yes`, `repl-diskless-sync-delay 0`
# (the default delay of 5 s would be added to every replication-mode run, on both sides),
# no `save` points and no AOF.
#
# etcd dataset: BENCH_ETCD_KEYS keys /registry/bench/ns-NN/obj-NNNNNNN with values of 100–500
# bytes, put through etcd's HTTP/JSON gateway (/v3/kv/txn, 128 puts per transaction, 4
# connections). BENCH_ETCD_VALUES=hex (default): a small JSON envelope around random hex,
# compresses ≈2:1; binary: random bytes, incompressible.
#
# Usage: bench/redis_etcd.sh [--out FILE] [--keep]
#   --out FILE   also write the summary (markdown) to FILE
#   --keep       keep the work directory (outputs, logs, /usr/bin/time outputs) for inspection
#
# Environment:
#   LIFEBOAT_BIN              lifeboat binary (default: target/release/lifeboat, built if missing)
#   BENCH_ONLY                redis | etcd: run one half only (default: both)
#   BENCH_REDIS_MB            Redis used_memory to reach (default 1024)
#   BENCH_REDIS_POPULATE_PCT  share of it from DEBUG POPULATE (default 20)
#   BENCH_REDIS_FILE          1 = also measure mode: file against BGSAVE + zstd | age (default 1)
#   BENCH_ETCD_KEYS           etcd keys (default 100000)
#   BENCH_ETCD_VALUES         hex | binary (default hex)
#   BENCH_ROUNDS              runs of each Redis side (default 2)
#   BENCH_ETCD_ROUNDS         runs of each etcd side (default 5; an etcd run takes ~1 s)
#   BENCH_ZSTD_LEVEL          zstd level on both sides (default 3)
#   BENCH_ZSTD_THREADS        zstd workers on both sides, 0 = all cores (default 0)
#   BENCH_NICE                run the servers and every measured command under
#                             `nice -n BENCH_NICE` (e.g. -10 as root, to shield both sides
#                             equally from other work on the machine); default: no nice
#   REDIS_BIN_DIR             where redis-server / redis-cli are (default: PATH)
#   ETCD_BIN_DIR              where etcd / etcdctl are (default: PATH)
#   TMPDIR                    where the work directory goes (default /tmp)
#
# Needs redis-server + redis-cli 7 (`--rdb -`), etcd + etcdctl 3.4+, python3, zstd, age, jq,
# GNU time. Nothing is written into the repository unless --out points there.

set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init "$@"
BENCH_ONLY=${BENCH_ONLY:-}
REDIS_MB=${BENCH_REDIS_MB:-1024}
POP_PCT=${BENCH_REDIS_POPULATE_PCT:-20}
REDIS_FILE=${BENCH_REDIS_FILE:-1}
ETCD_KEYS=${BENCH_ETCD_KEYS:-100000}
ETCD_VALUES=${BENCH_ETCD_VALUES:-hex}
ROUNDS=${BENCH_ROUNDS:-2}
ETCD_ROUNDS=${BENCH_ETCD_ROUNDS:-5}
LEVEL=${BENCH_ZSTD_LEVEL:-3}
THREADS=${BENCH_ZSTD_THREADS:-0}
DO_REDIS=1
DO_ETCD=1
case "$BENCH_ONLY" in
  "") ;;
  redis) DO_ETCD=0 ;;
  etcd) DO_REDIS=0 ;;
  *) die "BENCH_ONLY must be redis or etcd, not '$BENCH_ONLY'" ;;
esac
[[ $ETCD_VALUES == hex || $ETCD_VALUES == binary ]] || die "BENCH_ETCD_VALUES must be hex or binary"
[[ -n ${REDIS_BIN_DIR:-} ]] && export PATH="$REDIS_BIN_DIR:$PATH"
[[ -n ${ETCD_BIN_DIR:-} ]] && export PATH="$ETCD_BIN_DIR:$PATH"
export ETCDCTL_API=3

# ---------------------------------------------------------------------------- prerequisites
bench_need_time
bench_need age zstd jq python3
if ((DO_REDIS)); then
  for tool in redis-server redis-cli; do
    command -v "$tool" >/dev/null || die "'$tool' not found (apt-get install -y redis-server redis-tools, or set REDIS_BIN_DIR)"
  done
  redis-cli --help 2>&1 | grep -q 'filename of "-"' || die "redis-cli cannot write --rdb to stdout (needs Redis 7)"
fi
if ((DO_ETCD)); then
  for tool in etcd etcdctl; do
    command -v "$tool" >/dev/null || die "'$tool' not found (apt-get install -y etcd-server etcd-client, or set ETCD_BIN_DIR)"
  done
fi

bench_lifeboat_bin

# ---------------------------------------------------------------------------- work dir, cleanup
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lifeboat-bench-re.XXXXXX")
REDIS_PID=""
ETCD_PID=""

stop_pid() { # pid: TERM, then KILL after 10 s
  local pid=$1 i
  kill "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null
}

cleanup() {
  local rc=$?
  set +e
  [[ -n $REDIS_PID ]] && stop_pid "$REDIS_PID"
  [[ -n $ETCD_PID ]] && stop_pid "$ETCD_PID"
  if [[ $KEEP -eq 1 ]]; then
    echo "redis_etcd.sh: work directory kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$WORK/redis" "$WORK/etcd" "$WORK/lb" "$WORK/raw" "$WORK/res"

TAKEN_PORTS=" "
free_port() { # a free loopback port in 56379-56778, not handed out before
  local p
  for p in $(seq 56379 56778); do
    [[ $TAKEN_PORTS == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      TAKEN_PORTS+="$p "
      echo "$p"
      return 0
    fi
  done
  die "no free TCP port in 56379-56778"
}
# Called in the main shell (not in $(...)) so TAKEN_PORTS is kept.
pick_port() { free_port >"$WORK/port"; local p; p=$(cat "$WORK/port"); TAKEN_PORTS+="$p "; printf -v "$1" %s "$p"; }

LOAD_START=$(uptime)

# ---------------------------------------------------------------------------- Redis
if ((DO_REDIS)); then
  pick_port REDIS_PORT
  say "starting redis-server on 127.0.0.1:$REDIS_PORT ($WORK/redis)"
  "${NICE[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK/redis" \
    --dbfilename dump.rdb --save "" --appendonly no \
    --repl-diskless-sync yes --repl-diskless-sync-delay 0 \
    --enable-debug-command local --protected-mode no \
    --logfile "$WORK/redis/redis.log" --daemonize no >/dev/null 2>&1 &
  REDIS_PID=$!
  rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
  for ((i = 0; i < 200; i++)); do
    [[ $(rcli PING 2>/dev/null) == PONG ]] && break
    kill -0 "$REDIS_PID" 2>/dev/null || { tail -20 "$WORK/redis/redis.log" >&2; die "redis-server exited"; }
    sleep 0.1
  done
  [[ $(rcli PING 2>/dev/null) == PONG ]] || die "redis-server did not answer PING"

  used_memory() { rcli INFO memory | tr -d '\r' | awk -F: '$1 == "used_memory" {print $2}'; }

  # RESP for keys FIRST..LAST (seeded by FIRST, so the data is the same on every run).
  gen_redis() { # first last
    python3 - "$1" "$2" <<'PY'
import random, sys
first, last = int(sys.argv[1]), int(sys.argv[2])
rnd = random.Random(first)
out = sys.stdout.buffer
def cmd(*args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)
buf = []
for i in range(first, last + 1):
    if i % 4 == 0:
        buf.append(cmd("HSET", "user:%d" % i,
                       "name", rnd.randbytes(8).hex(),
                       "email", rnd.randbytes(6).hex() + "@example.com",
                       "visits", str(rnd.randrange(100000)),
                       "bio", rnd.randbytes(rnd.randrange(50, 151)).hex()))
    else:
        buf.append(cmd("SET", "doc:%d" % i, rnd.randbytes(rnd.randrange(50, 451)).hex()))
    if len(buf) >= 10000:
        out.write(b"".join(buf)); buf = []
out.write(b"".join(buf))
PY
  }
  pipe_redis() { # first last
    gen_redis "$1" "$2" | rcli --pipe >"$WORK/redis/pipe.log" 2>&1 \
      || { cat "$WORK/redis/pipe.log" >&2; die "redis-cli --pipe failed"; }
    grep -q 'errors: 0,' "$WORK/redis/pipe.log" || { cat "$WORK/redis/pipe.log" >&2; die "redis-cli --pipe reported errors"; }
  }

  target=$((REDIS_MB * 1024 * 1024))
  say "creating the Redis dataset: ≈$REDIS_MB MB used_memory ($POP_PCT% DEBUG POPULATE, the rest random hex strings and hashes)"
  base=$(used_memory)
  pop_keys=0
  if ((POP_PCT > 0)); then
    # A sample tells the memory per populated key.
    rcli DEBUG POPULATE 10000 pop 256 >/dev/null
    per=$((($(used_memory) - base) / 10000))
    pop_keys=$((target * POP_PCT / 100 / per))
    if ((pop_keys > 10000)); then rcli DEBUG POPULATE "$pop_keys" pop 256 >/dev/null; fi
  fi
  sample=100000
  m0=$(used_memory)
  pipe_redis 1 "$sample"
  m1=$(used_memory)
  rows=$sample
  if ((m1 < target)); then
    rows=$((sample + (target - m1) * sample / (m1 - m0)))
    next=$((sample + 1))
    while ((next <= rows)); do
      last=$((next + 299999))
      ((last > rows)) && last=$rows
      pipe_redis "$next" "$last"
      next=$((last + 1))
    done
  fi
  REDIS_KEYS=$(rcli DBSIZE)
  REDIS_MEM=$(used_memory)
  REDIS_VERSION=$(rcli INFO server | tr -d '\r' | awk -F: '$1 == "redis_version" {print $2}')
  say "Redis: $REDIS_KEYS keys, used_memory $((REDIS_MEM / 1024 / 1024)) MiB ($pop_keys from DEBUG POPULATE, $rows via --pipe)"
fi

# ---------------------------------------------------------------------------- etcd
if ((DO_ETCD)); then
  pick_port ETCD_PORT
  pick_port ETCD_PEER_PORT
  ETCD_URL="http://127.0.0.1:$ETCD_PORT"
  say "starting etcd on $ETCD_URL ($WORK/etcd)"
  "${NICE[@]}" etcd --name default --data-dir "$WORK/etcd/data" \
    --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "default=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new \
    --log-level warn >"$WORK/etcd/etcd.log" 2>&1 &
  ETCD_PID=$!
  ectl() { etcdctl --endpoints="$ETCD_URL" "$@"; }
  for ((i = 0; i < 300; i++)); do
    ectl endpoint health --command-timeout=2s >/dev/null 2>&1 && break
    kill -0 "$ETCD_PID" 2>/dev/null || { tail -20 "$WORK/etcd/etcd.log" >&2; die "etcd exited"; }
    sleep 0.1
  done
  ectl endpoint health --command-timeout=2s >/dev/null 2>&1 || die "etcd is not healthy"

  say "creating the etcd dataset: $ETCD_KEYS keys, 100–500 byte $ETCD_VALUES values"
  python3 - "$ETCD_URL" "$ETCD_KEYS" "$ETCD_VALUES" <<'PY' || die "filling etcd failed"
import base64, http.client, json, random, sys, threading, urllib.parse
url, total, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
host = urllib.parse.urlparse(url).netloc
BATCH, CONNS = 128, 4
b64 = lambda b: base64.b64encode(b).decode()
def value(rnd, i):
    n = rnd.randrange(100, 501)
    if kind == "binary":
        return rnd.randbytes(n)
    head = '{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"obj-%07d","resourceVersion":"%d"},"data":{"v":"' % (i, i)
    tail = '"}}'
    pad = max(0, n - len(head) - len(tail))
    return (head + rnd.randbytes((pad + 1) // 2).hex()[:pad] + tail).encode()
errors = []
def worker(w):
    try:
        conn = http.client.HTTPConnection(host, timeout=60)
        for start in range(w * BATCH, total, BATCH * CONNS):
            rnd = random.Random(start)
            ops = [{"requestPut": {"key": b64(b"/registry/bench/ns-%02d/obj-%07d" % (i % 50, i)),
                                   "value": b64(value(rnd, i))}}
                   for i in range(start, min(start + BATCH, total))]
            conn.request("POST", "/v3/kv/txn", json.dumps({"success": ops}),
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200 or b'"succeeded":true' not in body:
                raise RuntimeError("txn at %d: HTTP %d %s" % (start, resp.status, body[:200]))
    except Exception as e:
        errors.append(str(e))
threads = [threading.Thread(target=worker, args=(w,)) for w in range(CONNS)]
for t in threads: t.start()
for t in threads: t.join()
if errors:
    sys.exit("etcd fill: " + errors[0])
PY
  ETCD_COUNT=$(ectl get "" --prefix --keys-only --limit=1 -w json | jq -r '.count')
  [[ $ETCD_COUNT -eq $ETCD_KEYS ]] || die "etcd holds $ETCD_COUNT keys, expected $ETCD_KEYS"
  ETCD_STATUS=$(ectl endpoint status -w json | jq -r '.[0].Status | "db size \(.dbSize) bytes, revision \(.header.revision), etcd \(.version)"')
  say "etcd: $ETCD_COUNT keys, $ETCD_STATUS"
fi

# ---------------------------------------------------------------------------- lifeboat setup
cd "$WORK/lb"
RECIPIENT=$("$LIFEBOAT_BIN" keys generate --output ./age.key 2>"$WORK/lb/keys.log" | grep -o 'age1[0-9a-z]*' | head -1) \
  || { cat "$WORK/lb/keys.log" >&2; die "lifeboat keys generate failed"; }
[[ -n $RECIPIENT ]] || die "lifeboat keys generate printed no age1... recipient"
{
  cat <<EOF
catalog: sqlite://./lifeboat-data/catalog.db
stores:
  local: { url: "file://./lifeboat-data/store" }
encryption:
  recipients: ["$RECIPIENT"]
  identity_file: ./age.key
compression: { level: $LEVEL, threads: $THREADS }
sources:
EOF
  if ((DO_REDIS)); then
    cat <<EOF
  - { name: redis, kind: redis, url: "redis://127.0.0.1:$REDIS_PORT", store: local }
  - { name: redis-file, kind: redis, url: "redis://127.0.0.1:$REDIS_PORT", mode: file, rdb_path: "$WORK/redis/dump.rdb", store: local }
EOF
  fi
  if ((DO_ETCD)); then
    echo "  - { name: etcd, kind: etcd, endpoints: [\"$ETCD_URL\"], store: local }"
  fi
} >lifeboat.yaml
LB=("$LIFEBOAT_BIN" -c ./lifeboat.yaml --log-format json)
"${LB[@]}" config check >"$WORK/lb/config-check.log" 2>&1 \
  || { cat "$WORK/lb/config-check.log" >&2; die "lifeboat config check failed"; }
ZT=$THREADS

# ---------------------------------------------------------------------------- measuring
quiesce() { sync; uptime | sed 's/.*load average: //' >"$WORK/res/$1.load"; }

measure() { # NAME CMD...: CMD under /usr/bin/time -v; output in $WORK/res/NAME.{time,log}
  local name=$1
  shift
  quiesce "$name"
  say "run: $name"
  local rc=0
  "${NICE[@]}" "$TIME" -v -o "$WORK/res/$name.time" "$@" >"$WORK/res/$name.log" 2>&1 || rc=$?
  if ((rc != 0)); then
    tail -20 "$WORK/res/$name.log" >&2
    die "$name failed (exit $rc); log: $WORK/res/$name.log (use --keep to keep it)"
  fi
}

t_wall() { # seconds
  awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.2f", s}' "$1"
}
t_rss() { awk -F': ' '/Maximum resident set size/ {print $2}' "$1"; } # KiB
t_cpu() { awk -F': ' '/Percent of CPU/ {print $2}' "$1"; }
t_cpusec() { awk -F': ' '/User time/ {u = $2} /System time/ {s = $2} END {printf "%.1f", u + s}' "$1"; }

fsync_time() { # FILE OUT: how long `sync FILE` takes (lifeboat's store fsyncs; `> file` does not)
  local t0 t1
  t0=$EPOCHREALTIME
  sync -- "$1"
  t1=$EPOCHREALTIME
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f\n", b - a}' >"$2"
}

lb_backup() { # source name
  local src=$1 name=$2 before id
  before=$("${LB[@]}" snapshots list --output json 2>/dev/null | jq -r '.[].id')
  measure "$name" "${LB[@]}" backup "$src"
  id=$("${LB[@]}" snapshots list --output json 2>/dev/null \
    | jq -r --arg before "$before" '[.[] | select(.status == "complete") | .id] - ($before | split("\n")) | .[0] // empty')
  [[ -n $id ]] || die "$name: no new complete snapshot in 'lifeboat snapshots list'"
  echo "$id" >"$WORK/res/$name.id"
  "${LB[@]}" snapshots list --output json 2>/dev/null \
    | jq -r --arg id "$id" '.[] | select(.id == $id) | "\(.raw_bytes) \(.stored_bytes)"' >"$WORK/res/$name.bytes"
}

raw_done() { # name file: size, fsync time; keep only round 1's output
  local name=$1 f=$2
  stat -c %s "$f" >"$WORK/res/$name.size"
  fsync_time "$f" "$WORK/res/$name.fsync"
  [[ $name == *-1 ]] || rm -f "$f"
}

raw_redis() { # round
  local name="raw-redis-$1" f="$WORK/raw/redis-$1.rdb.zst.age" r="$WORK/res/raw-redis-$1"
  # Each stage under its own /usr/bin/time for per-process RSS; the outer -v covers the whole.
  # shellcheck disable=SC2016 # expanded by the inner bash, from its arguments
  measure "$name" bash -c 'set -o pipefail
    /usr/bin/time -f %M -o "$1.redis-cli.rss" redis-cli -h 127.0.0.1 -p "$2" --rdb - 2>"$1.redis-cli.err" \
    | /usr/bin/time -f %M -o "$1.zstd.rss" zstd -q -"$3" -T"$4" \
    | /usr/bin/time -f %M -o "$1.age.rss" age -r "$5" >"$6"' \
    _ "$r" "$REDIS_PORT" "$LEVEL" "$ZT" "$RECIPIENT" "$f"
  raw_done "$name" "$f"
}

raw_redis_file() { # round
  local name="rawfile-redis-$1" f="$WORK/raw/redisfile-$1.rdb.zst.age" r="$WORK/res/rawfile-redis-$1"
  # BGSAVE, wait until INFO persistence says it finished (polling every 0.1 s), check it
  # succeeded, then compress and encrypt the file the server wrote.
  # shellcheck disable=SC2016 # expanded by the inner bash, from its arguments
  measure "$name" bash -c 'set -o pipefail
    port=$2
    cli() { redis-cli -h 127.0.0.1 -p "$port" "$@"; }
    [[ $(cli BGSAVE) == *started* ]] || exit 1
    while cli INFO persistence | grep -q "^rdb_bgsave_in_progress:1"; do sleep 0.1; done
    cli INFO persistence | grep -q "^rdb_last_bgsave_status:ok" || exit 1
    /usr/bin/time -f %M -o "$1.zstd.rss" zstd -q -"$3" -T"$4" -c "$7" \
    | /usr/bin/time -f %M -o "$1.age.rss" age -r "$5" >"$6"' \
    _ "$r" "$REDIS_PORT" "$LEVEL" "$ZT" "$RECIPIENT" "$f" "$WORK/redis/dump.rdb"
  raw_done "$name" "$f"
}

raw_etcd() { # round
  local name="raw-etcd-$1" f="$WORK/raw/etcd-$1.db.zst.age" snap="$WORK/raw/etcd-$1.db" r="$WORK/res/raw-etcd-$1"
  # shellcheck disable=SC2016 # expanded by the inner bash, from its arguments
  measure "$name" bash -c 'set -o pipefail
    /usr/bin/time -f %M -o "$1.etcdctl.rss" etcdctl --endpoints="$2" snapshot save "$7" >"$1.etcdctl.out" 2>&1 &&
    /usr/bin/time -f %M -o "$1.zstd.rss" zstd -q -"$3" -T"$4" -c "$7" \
    | /usr/bin/time -f %M -o "$1.age.rss" age -r "$5" >"$6"' \
    _ "$r" "$ETCD_URL" "$LEVEL" "$ZT" "$RECIPIENT" "$f" "$snap"
  stat -c %s "$snap" >"$WORK/res/$name.snapsize"
  [[ $1 == 1 ]] || rm -f "$snap"
  raw_done "$name" "$f"
}

# ---------------------------------------------------------------------------- runs
if ((DO_REDIS)); then
  for ((i = 1; i <= ROUNDS; i++)); do
    if ((i % 2 == 1)); then
      lb_backup redis "lb-redis-$i"
      raw_redis "$i"
      if [[ $REDIS_FILE == 1 ]]; then lb_backup redis-file "lbfile-redis-$i"; raw_redis_file "$i"; fi
    else
      raw_redis "$i"
      lb_backup redis "lb-redis-$i"
      if [[ $REDIS_FILE == 1 ]]; then raw_redis_file "$i"; lb_backup redis-file "lbfile-redis-$i"; fi
    fi
  done
  # The raw output of round 1 is a valid RDB of the right size.
  rest=$(age -d -i ./age.key "$WORK/raw/redis-1.rdb.zst.age" | zstd -q -d | { head -c 5 >"$WORK/res/rdb-magic"; wc -c; })
  RAW_RDB_BYTES=$((rest + 5))
  [[ $(cat "$WORK/res/rdb-magic") == REDIS ]] || die "the raw Redis output does not decrypt to an RDB"
  RDB_FILE_BYTES=$(stat -c %s "$WORK/redis/dump.rdb" 2>/dev/null || echo 0)
fi
if ((DO_ETCD)); then
  for ((i = 1; i <= ETCD_ROUNDS; i++)); do
    if ((i % 2 == 1)); then
      lb_backup etcd "lb-etcd-$i"
      raw_etcd "$i"
    else
      raw_etcd "$i"
      lb_backup etcd "lb-etcd-$i"
    fi
  done
  ETCD_SNAP_KEYS=$(etcdctl snapshot status "$WORK/raw/etcd-1.db" -w json | jq -r '.totalKey')
fi
LOAD_END=$(uptime)

# ---------------------------------------------------------------------------- summary
median() { sort -g | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
col() { # kind rounds field-fn
  local i
  for ((i = 1; i <= $2; i++)); do "$3" "$WORK/res/$1-$i.time"; echo; done | median
}
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
maxof() { sort -g | tail -1; }
maxrss() { # kind rounds
  local i
  for ((i = 1; i <= $2; i++)); do t_rss "$WORK/res/$1-$i.time"; echo; done | maxof
}

RES=$WORK/res
rows_for() { # sideA sideB what rounds
  local i n
  for ((i = 1; i <= $4; i++)); do
    for side in "$1" "$2"; do
      n="$side-$3-$i"
      echo "| $n | $(t_wall "$RES/$n.time") | $(t_cpu "$RES/$n.time") | $(t_cpusec "$RES/$n.time") | $(mib "$(t_rss "$RES/$n.time")") | $(cat "$RES/$n.load") |"
    done
  done
}
stage_rss() { # prefix stage: max over rounds, MiB
  mib "$(cat "$RES"/"$1"-*."$2".rss | maxof)"
}
{
  echo "## lifeboat Redis and etcd backup benchmark"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "- machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(free -m | awk '/^Mem:/ {print $2}') MiB RAM, $(uname -sr)"
  echo "- lifeboat: $LIFEBOAT_BIN ($("$LIFEBOAT_BIN" --version 2>/dev/null || echo '?'); repo at $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?'))"
  echo "- tools: zstd $(zstd -V | grep -o 'v[0-9.]*'), age $(age --version)$( ((DO_REDIS)) && echo ", redis $REDIS_VERSION")$( ((DO_ETCD)) && echo ", $(etcdctl version | head -1)")"
  if ((DO_REDIS)); then echo "- Redis dataset: $REDIS_KEYS keys ($pop_keys DEBUG POPULATE of 256 bytes, $rows strings/hashes of random hex); used_memory $((REDIS_MEM / 1024 / 1024)) MiB; RDB $RAW_RDB_BYTES bytes (replication) / $RDB_FILE_BYTES bytes (BGSAVE file)"; fi
  if ((DO_ETCD)); then echo "- etcd dataset: $ETCD_COUNT keys, $ETCD_VALUES values of 100–500 bytes; $ETCD_STATUS; snapshot holds $ETCD_SNAP_KEYS keys"; fi
  echo "- zstd level $LEVEL, threads $THREADS (0 = all cores) on both sides; rounds: Redis $ROUNDS, etcd $ETCD_ROUNDS, order alternating; nice: ${BENCH_NICE:-none}"
  echo "- load at start: ${LOAD_START##*load average: }; at end: ${LOAD_END##*load average: }"
  echo
  echo "| run | wall s | CPU % | CPU s | peak RSS MiB (time -v, largest process) | load before |"
  echo "|---|---:|---:|---:|---:|---|"
  if ((DO_REDIS)); then
    rows_for lb raw redis "$ROUNDS"
    if [[ $REDIS_FILE == 1 ]]; then rows_for lbfile rawfile redis "$ROUNDS"; fi
  fi
  if ((DO_ETCD)); then rows_for lb raw etcd "$ETCD_ROUNDS"; fi
  echo
  echo "Raw pipelines, peak RSS per process (MiB, max over rounds):"
  if ((DO_REDIS)); then
    echo "- redis-cli --rdb: redis-cli $(stage_rss raw-redis redis-cli), zstd $(stage_rss raw-redis zstd), age $(stage_rss raw-redis age)"
    if [[ $REDIS_FILE == 1 ]]; then echo "- BGSAVE + file: zstd $(stage_rss rawfile-redis zstd), age $(stage_rss rawfile-redis age)"; fi
  fi
  if ((DO_ETCD)); then echo "- etcd: etcdctl $(stage_rss raw-etcd etcdctl), zstd $(stage_rss raw-etcd zstd), age $(stage_rss raw-etcd age)"; fi
  echo
  echo "Sizes (round 1):"
  if ((DO_REDIS)); then
    read -r a b <"$RES/lb-redis-1.bytes"
    s=$(cat "$RES/raw-redis-1.size")
    echo "- Redis replication: RDB $a bytes; lifeboat stored $b; raw file $s (lifeboat/raw $(ratio "$b" "$s")); compression $(ratio "$a" "$b"):1"
    if [[ $REDIS_FILE == 1 ]]; then
      read -r a b <"$RES/lbfile-redis-1.bytes"
      s=$(cat "$RES/rawfile-redis-1.size")
      echo "- Redis file: RDB $a bytes; lifeboat stored $b; raw file $s (lifeboat/raw $(ratio "$b" "$s")); compression $(ratio "$a" "$b"):1"
    fi
  fi
  if ((DO_ETCD)); then
    read -r a b <"$RES/lb-etcd-1.bytes"
    s=$(cat "$RES/raw-etcd-1.size")
    echo "- etcd: snapshot $a bytes (etcdctl's file: $(cat "$RES/raw-etcd-1.snapsize")); lifeboat stored $b; raw file $s (lifeboat/raw $(ratio "$b" "$s")); compression $(ratio "$a" "$b"):1"
  fi
  echo "- fsync of the raw output after the pipeline (not in its time; lifeboat's store fsyncs):$( ((DO_REDIS)) && echo " redis $(cat "$RES"/raw-redis-*.fsync | paste -sd' ') s;")$( ((DO_REDIS)) && [[ $REDIS_FILE == 1 ]] && echo " redis file $(cat "$RES"/rawfile-redis-*.fsync | paste -sd' ') s;")$( ((DO_ETCD)) && echo " etcd $(cat "$RES"/raw-etcd-*.fsync | paste -sd' ') s")"
  echo
  echo "| summary (median wall) | lifeboat s | raw s | lifeboat/raw | lifeboat peak RSS MiB | raw largest process MiB |"
  echo "|---|---:|---:|---:|---:|---:|"
  summary_row() { # label lbkind rawkind what rounds
    local l r
    l=$(col "$2-$4" "$5" t_wall)
    r=$(col "$3-$4" "$5" t_wall)
    echo "| $1 | $l | $r | $(ratio "$l" "$r") | $(mib "$(maxrss "$2-$4" "$5")") | $(mib "$(maxrss "$3-$4" "$5")") |"
  }
  if ((DO_REDIS)); then
    summary_row "Redis, replication vs redis-cli --rdb -" lb raw redis "$ROUNDS"
    if [[ $REDIS_FILE == 1 ]]; then summary_row "Redis, mode: file vs BGSAVE + file" lbfile rawfile redis "$ROUNDS"; fi
  fi
  if ((DO_ETCD)); then summary_row "etcd vs etcdctl snapshot save + file" lb raw etcd "$ETCD_ROUNDS"; fi
} | tee "$RES/summary.md"

if [[ -n $OUT ]]; then
  cp "$RES/summary.md" "$OUT"
  say "summary written to $OUT"
fi
