#!/usr/bin/env bash
# Sets snowflake up on a throwaway PostgreSQL 15 server and shows its main
# job: making IDs and decoding them.  Installs what this machine lacks,
# builds and installs the extension, starts a server in a temporary
# directory (Unix socket only, nothing on the network), runs a short
# session, then stops the server and removes the directory.
#
#   bash scripts/demo.sh            the session, then clean up
#   bash scripts/demo.sh --shell    the same, then psql until you quit
set -euo pipefail

PROJECT_DIR=$(cd "$(dirname "$0")/.." && pwd)
. "$PROJECT_DIR/scripts/lib.sh"

install_packages make gcc "postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR" libcurl4-openssl-dev
build_and_install

dir=$(mktemp -d "${TMPDIR:-/tmp}/snowflake-demo.XXXXXX")
[ "$(id -u)" -eq 0 ] && chown "$(server_user)" "$dir"
stop_server() {
	as_server_user pg_ctl -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap stop_server EXIT

init_throwaway_server "$dir" 1
as_server_user pg_ctl -D "$dir/data" -l "$dir/server.log" -w start >/dev/null ||
	{ cat "$dir/server.log"; exit 1; }

psql_demo() {
	as_server_user psql -X -h "$dir" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"
}

psql_demo --echo-queries <<'SQL'
-- First in snowflake.database (postgres): its table holds the high-water
-- marks.  Other databases then run the same.
CREATE EXTENSION snowflake;

-- A table keyed by snowflake IDs.
CREATE TABLE orders (id bigint PRIMARY KEY DEFAULT snowflake_nextval(), item text);
INSERT INTO orders (item) VALUES ('coffee'), ('tea'), ('cake');

-- Each ID decodes to when it was made, by which node, in which sequence.
SELECT o.id, o.item, d.ts, d.node, d.seq
FROM orders o, snowflake_decode(o.id) d ORDER BY o.id;

-- The smallest ID of a moment: range scans by time on the primary key.
SELECT count(*) AS orders_in_the_last_minute FROM orders
WHERE id >= snowflake_from_timestamp(now() - interval '1 minute');

-- IDs for a client to pre-fetch.
SELECT snowflake_nextval_batch(3) AS prefetched;

\x on
SELECT * FROM snowflake_status();
SQL

if [ "${1:-}" = "--shell" ]; then
	echo "psql on the throwaway server; quit with \\q to stop and remove it."
	psql_demo
fi
