#!/usr/bin/env bash
# Installs what lifeboat's demo and tests need on a fresh Debian machine (idempotent):
# PostgreSQL, Redis, zstd and age from apt; the moto S3 server in a Python venv.
# Prints `export` lines for the caller to eval (LIFEBOAT_MOTO_SERVER, PATH additions).
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

APT_PACKAGES=(postgresql postgresql-client redis-server redis-tools etcd-server etcd-client protobuf-compiler zstd age python3-venv time)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
fi

# PostgreSQL server binaries (initdb, pg_ctl) live outside PATH on Debian.
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$PG_BIN" ] || { echo "setup: no PostgreSQL server binaries found" >&2; exit 1; }

VENV="${LIFEBOAT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/lifeboat/venv}"
if [ ! -x "$VENV/bin/moto_server" ]; then
  echo "setup: installing moto[server] into $VENV" >&2
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q --upgrade pip >&2
  "$VENV/bin/pip" install -q 'moto[server]' >&2
fi

echo "export LIFEBOAT_PG_BIN_DIR='$PG_BIN'"
echo "export LIFEBOAT_MOTO_SERVER='$VENV/bin/moto_server'"
echo "export PATH='$PG_BIN':\"\$PATH\""
