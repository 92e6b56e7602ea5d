# Shared by bench/backup.sh, bench/redis_etcd.sh and bench/verify.sh (sourced after
# `set -euo pipefail`): messages, the --out/--keep/--help arguments, BENCH_NICE, the
# prerequisite checks and finding (or building) the lifeboat binary.

die() { echo "$(basename "$0"): error: $*" >&2; exit 1; }
say() { echo "==> $*" >&2; }
usage() { sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; }

# Parses the script's arguments: sets OUT (absolute, or empty), KEEP, NICE (a command prefix
# array from BENCH_NICE) and REPO.
bench_init() {
  OUT=""
  KEEP=0
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --out) [[ $# -ge 2 ]] || die "--out needs a file"; OUT=$2; shift 2 ;;
      --keep) KEEP=1; shift ;;
      -h | --help) usage; exit 0 ;;
      *) die "unknown argument '$1' (see --help)" ;;
    esac
  done
  REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  NICE=()
  if [[ -n ${BENCH_NICE:-} ]]; then NICE=(nice -n "$BENCH_NICE"); fi
  if [[ -n $OUT && $OUT != /* ]]; then OUT="$PWD/$OUT"; fi
}

# GNU time at $TIME, for -v: wall time and peak RSS.
bench_need_time() {
  TIME=/usr/bin/time
  if ! [[ -x $TIME ]] || ! "$TIME" -v true >/dev/null 2>&1; then
    die "GNU time is needed at /usr/bin/time (for -v: wall time and peak RSS); install it with: apt-get install -y time"
  fi
}

bench_need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || die "'$tool' is not installed (apt-get install -y $tool)"
  done
}

# PostgreSQL tools in $PG_BIN, put first on PATH so that both sides use the same ones.
bench_need_pg() {
  local tool
  for tool in "$@"; do
    [[ -x $PG_BIN/$tool ]] || die "$PG_BIN/$tool not found; set PG_BIN to the PostgreSQL bin directory"
  done
  export PATH="$PG_BIN:$PATH"
}

# LIFEBOAT_BIN, absolute: as given, else target/release/lifeboat (built if missing).
bench_lifeboat_bin() {
  if [[ -z ${LIFEBOAT_BIN:-} ]]; then
    LIFEBOAT_BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/lifeboat"
    if [[ ! -x $LIFEBOAT_BIN ]]; then
      say "building lifeboat (cargo build --release); set LIFEBOAT_BIN to skip"
      (cd "$REPO" && cargo build --release) || die "cargo build --release failed"
    fi
  fi
  [[ -x $LIFEBOAT_BIN ]] || die "LIFEBOAT_BIN=$LIFEBOAT_BIN is not an executable"
  LIFEBOAT_BIN=$(cd "$(dirname "$LIFEBOAT_BIN")" && pwd)/$(basename "$LIFEBOAT_BIN")
}
