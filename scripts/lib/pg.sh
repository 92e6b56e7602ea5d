# Throwaway PostgreSQL servers for scripts (demo, benchmarks): `pg_start NAME` starts one on
# a free loopback port in a temp dir and sets PG_PORT_<NAME>; `pg_stop_all` removes them.
# PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user.
# Needs LIFEBOAT_PG_BIN_DIR (scripts/setup.sh prints it).

PG_DIRS=()

pg_as_owner() {
  if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pg_start() {
  local name="$1" dir port
  dir=$(mktemp -d /tmp/lifeboat-pg-XXXXXX)
  chmod 755 "$dir"
  mkdir "$dir/data"
  [ "$(id -u)" -ne 0 ] || chown -R postgres:postgres "$dir"
  port=$(free_port)
  pg_as_owner "$LIFEBOAT_PG_BIN_DIR/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1
  pg_as_owner "$LIFEBOAT_PG_BIN_DIR/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >/dev/null
  PG_DIRS+=("$dir")
  printf -v "PG_PORT_$name" '%s' "$port"
}

pg_stop_all() {
  local dir
  for dir in "${PG_DIRS[@]}"; do
    pg_as_owner "$LIFEBOAT_PG_BIN_DIR/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
  done
  PG_DIRS=()
}

# psql against a throwaway server: pg_sql PORT DB SQL
pg_sql() {
  "$LIFEBOAT_PG_BIN_DIR/psql" -X -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d "$2" -c "$3"
}
