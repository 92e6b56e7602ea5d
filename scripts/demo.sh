#!/usr/bin/env bash
# The main job on the embedded default, end to end: a throwaway PostgreSQL with sample data →
# `lifeboat backup` to a local store with a SQLite catalog → `lifeboat restore` into a fresh
# database → per-table checksums of both printed side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/setup.sh)"
. scripts/lib/pg.sh

if [ -n "${LIFEBOAT_BIN:-}" ]; then
  LIFEBOAT=$(realpath "$LIFEBOAT_BIN")
else
  cargo build --release --locked --quiet
  LIFEBOAT="$PWD/target/release/lifeboat"
fi
WORK=$(mktemp -d /tmp/lifeboat-demo-XXXXXX)
trap 'pg_stop_all; rm -rf "$WORK"' EXIT

echo "== starting a throwaway PostgreSQL with sample data"
pg_start src
pg_sql "$PG_PORT_src" postgres "CREATE DATABASE shop"
pg_sql "$PG_PORT_src" shop "
  CREATE TABLE customers (id int PRIMARY KEY, name text, city text);
  INSERT INTO customers SELECT g, 'Kundin ' || g || ' — Zoë 東京', (ARRAY['Zürich','São Paulo','Łódź'])[1 + g % 3]
    FROM generate_series(1, 20000) g;
  CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int REFERENCES customers, amount numeric(12,2), note text);
  INSERT INTO orders SELECT g, 1 + g % 20000, (g % 10000) / 100.0, md5(g::text) FROM generate_series(1, 100000) g;
  CREATE TABLE attachments (id int PRIMARY KEY, body bytea);
  INSERT INTO attachments SELECT g, decode(md5(random()::text) || md5(g::text), 'hex') FROM generate_series(1, 20000) g;"

cd "$WORK"
echo "== lifeboat keys generate"
RECIPIENT=$("$LIFEBOAT" keys generate --output ./lifeboat-data/age.key)
cat > lifeboat.yaml <<YAML
catalog: sqlite://./lifeboat-data/catalog.db
stores:
  local: { url: "file://./lifeboat-data/store" }
encryption:
  recipients: ["$RECIPIENT"]
  identity_file: ./lifeboat-data/age.key
sources:
  - name: shop-db
    kind: postgres
    url: "postgres://postgres@127.0.0.1:$PG_PORT_src/shop"
    store: local
    schedule: "0 */6 * * *"
    objectives: { rpo: 6h, rto: 30m }
YAML
"$LIFEBOAT" config check

echo "== lifeboat backup shop-db"
"$LIFEBOAT" --log-format human backup shop-db
"$LIFEBOAT" snapshots list
echo "== lifeboat verify shop-db (restore into a throwaway server, check row counts, measure the restore)"
"$LIFEBOAT" --log-format human verify shop-db
echo "== lifeboat status (exit 2 only when an objective is breached)"
"$LIFEBOAT" status
ID=$("$LIFEBOAT" snapshots list shop-db --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')

echo "== lifeboat restore $ID into a fresh server"
pg_start dst
pg_sql "$PG_PORT_dst" postgres "CREATE DATABASE shop_restored"
"$LIFEBOAT" --log-format human restore "$ID" --target "postgres://postgres@127.0.0.1:$PG_PORT_dst/shop_restored"

CHECK="SELECT string_agg(t || ' ' || n || ' rows md5=' || h, E'\n' ORDER BY t) FROM (
  SELECT 'customers' t, count(*) n, md5(string_agg(x::text, '|' ORDER BY id)) h FROM customers x
  UNION ALL SELECT 'orders', count(*), md5(string_agg(x::text, '|' ORDER BY id)) FROM orders x
  UNION ALL SELECT 'attachments', count(*), md5(string_agg(x::text, '|' ORDER BY id)) FROM attachments x) s"
A=$(pg_sql "$PG_PORT_src" shop "$CHECK")
B=$(pg_sql "$PG_PORT_dst" shop_restored "$CHECK")
echo "== comparison (source | restored)"
paste -d'|' <(echo "$A") <(echo "$B") | column -t -s'|'
if [ "$A" = "$B" ]; then echo "RESULT: restored data is identical to the source"; else echo "RESULT: MISMATCH"; exit 1; fi
