#!/usr/bin/env bash
#
# bench/run.sh - performance yardsticks of the snowflake extension, measured
# on a throwaway PostgreSQL 15 server, written where the README shows them.
#
# The targets: one session makes at least 95% of the layout's 4096 IDs per
# millisecond, and at least 95% of each other layout's limit (one call per
# ID, or snowflake_nextval_batch() where the limit is beyond what one call
# per ID reaches); snowflake keys insert at least as fast as bigserial keys
# and faster than uuid keys, with a smaller primary-key index than uuid's.
#
# What it measures:
#   1. One session, SELECT snowflake_nextval() over generate_series(1, 1e6):
#      the generator's rate taken from the IDs themselves (IDs / span of their
#      millisecond timestamps) against the layout's 4096 IDs/ms (target 95%),
#      plus wall time and backend CPU time per ID.
#   2. The same statement with nextval('a sequence') and gen_random_uuid(),
#      for comparison (reported, no target).
#   3. snowflake_nextval_batch(1000000): wall time, CPU per ID and rate.
#   4. pgbench clients inserting single rows keyed by snowflake, bigserial and
#      uuid, for several client counts: TPS and primary-key index size,
#      against the targets above.
#   5. For each preset (snowflake, twitter, instagram, sonyflake) and a
#      custom layout of 41 | 8 | 14 bits, a server of its own (the layout is
#      fixed per data directory) and one session: snowflake_nextval() and
#      snowflake_nextval_batch(), the rate from the IDs' decoded timestamps
#      as a share of that layout's IDs per unit.
#
# bench/compare.sh measures one snowflake_nextval() call in two or more
# builds side by side (a change to the hot path against the code before).
#
# What it writes, all from one run's figures:
#   - bench/results/latest.tsv (and a dated copy): the raw figures (test,
#     key_type, clients, value, unit; rows "info" describe the machine);
#   - bench/results.md: the figures as Markdown tables;
#   - docs/bench-inserts.png: the insert chart (bench/chart.sh, gnuplot);
#   - README.md: the same tables and chart between the lines
#     <!-- bench:begin --> and <!-- bench:end -->.
#
# How to run (from anywhere; takes three to four minutes on 2 cores):
#   bash bench/run.sh                    measure, then write all of the above
#   bash bench/run.sh --report [TSV]     only rewrite results.md, the chart and
#                                        the README block from TSV (default
#                                        bench/results/latest.tsv)
# as root (the server then runs as the `postgres` user) or as a user that can
# run PostgreSQL itself.  The extension must be installed first:
#   make && make install
#
# The script is a benchmark, not a test: a missed target is printed as MISS
# and the exit status is still 0.  It exits non-zero only when something broke.
#
set -euo pipefail

# Plain number formatting, whatever the caller's locale.
export LC_ALL=C

readonly BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly RESULTS_DIR="$BENCH_DIR/results"
readonly PROJECT_DIR="$(cd "$BENCH_DIR/.." && pwd)"
# as_server_user and the throwaway server's setup, as the tests use them.
. "$PROJECT_DIR/scripts/lib.sh"
export PATH="$PG_BIN:$PATH"
readonly RESULTS_MD="$BENCH_DIR/results.md"
readonly CHART_PNG="$PROJECT_DIR/docs/bench-inserts.png"
readonly README="$PROJECT_DIR/README.md"

# --- Sizes.  Chosen so that the whole run stays near three minutes. ---

readonly SESSION_IDS=1000000		# values per one-session statement
readonly SESSION_RUNS=3				# timed runs per statement (median shown)
readonly LAYOUT_IDS_PER_MS=4096		# 12-bit sequence per millisecond
readonly RATE_TARGET_PCT=95

# The layouts measured one by one (5.), each on a server of its own; the
# IDs per statement are LAYOUT_UNITS units' worth at the layout's limit.
readonly LAYOUTS=(snowflake twitter instagram sonyflake 'time 41, node 8, sequence 14, unit 1ms')
readonly LAYOUT_UNITS=250
# One SQL call per ID reaches the default layout's limit; a layout with a
# higher limit per millisecond needs snowflake_nextval_batch() to reach it.
readonly ONE_CALL_IDS_PER_MS=4096
readonly BATCH_MAX=1000000			# IDs per snowflake_nextval_batch() call

readonly CLIENT_COUNTS=(1 4 16)
# Shorter runs repeated more often beat longer runs here: the noise comes
# from whatever else the machine is doing, which shifts from second to second.
# The repetitions are a multiple of 3 so that, with the order rotated, each
# key type runs first, second and third equally often.
readonly ROWS_PER_RUN=32000			# divisible by every client count
readonly INSERT_REPS=6				# runs per key type and client count
readonly KEY_TYPES=(snowflake bigserial uuid)
readonly NOISE_PCT=3				# TPS gap still called "within noise"

WORK_DIR=""		# temp dir: data directory, socket, scratch files
DATA_DIR=""
SERVER_LOG=""
TSV_TMP=""
START_SECONDS=$SECONDS
# Other work on the machine skews every figure; the report shows the load.
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)

# --- Small helpers ---

log() {
	printf '[%3ds] %s\n' "$((SECONDS - START_SECONDS))" "$*" >&2
}

die() {
	printf 'run.sh: error: %s\n' "$*" >&2
	exit 1
}

# psql against the benchmark database; unaligned, tuples only, tab-separated.
psql_bench() {
	psql -X -q -A -t -F $'\t' -v ON_ERROR_STOP=1 "$@"
}

sql() {
	psql_bench -c "$1"
}

# Median of the numbers on stdin, one per line.
median() {
	sort -g | awk '{ v[NR] = $1 }
		END {
			if (NR == 0) exit 1
			if (NR % 2) print v[(NR + 1) / 2]
			else print (v[NR / 2] + v[NR / 2 + 1]) / 2
		}'
}

tsv_add() {	# test key_type clients value unit
	printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$TSV_TMP"
}

# --- Server lifecycle ---

# The server listens only on a socket in its own directory, but PostgreSQL
# also derives its shared-memory key from the port, and a port another server
# uses is confusing in ps and logs: take one nobody seems to be using.
port_is_free() {
	local port=$1 dir
	for dir in /tmp /var/run/postgresql; do
		[[ -e "$dir/.s.PGSQL.$port" ]] && return 1
	done
	# bash's /dev/tcp connects when something listens on that port
	if (: >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		return 1
	fi
	return 0
}

pick_port() {
	local try port
	for try in $(seq 1 50); do
		port=$((40000 + RANDOM % 20000))
		if port_is_free "$port"; then
			echo "$port"
			return 0
		fi
	done
	die "found no free port"
}

cleanup() {
	local status=$?
	trap - EXIT INT TERM
	if [[ -n $WORK_DIR && -d $WORK_DIR ]]; then
		if [[ $status -ne 0 && -s $SERVER_LOG ]]; then
			echo "--- last lines of the server log ---" >&2
			tail -n 20 "$SERVER_LOG" >&2 || true
		fi
		stop_server
		stop_layout_server 2>/dev/null
		[[ -n $ETCD_PID ]] && kill "$ETCD_PID" 2>/dev/null
		rm -rf "$WORK_DIR"
	fi
	[[ -n $TSV_TMP ]] && rm -f "$TSV_TMP"
	exit "$status"
}

stop_server() {
	local pid_file="$DATA_DIR/postmaster.pid" pid i
	[[ -f $pid_file ]] || return 0
	if stop_throwaway_server "$WORK_DIR" 2>/dev/null; then
		return 0
	fi
	# pg_ctl could not do it (e.g. it was interrupted): signal the postmaster.
	pid=$(head -n 1 "$pid_file" 2>/dev/null || true)
	[[ $pid =~ ^[0-9]+$ ]] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for i in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}

start_server() {
	local port
	WORK_DIR=$(mktemp -d -t snowflake-bench.XXXXXX)
	DATA_DIR="$WORK_DIR/data"
	SERVER_LOG="$WORK_DIR/server.log"
	if [[ $EUID -eq 0 ]]; then
		id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user to run the server"
		chown postgres: "$WORK_DIR"
	fi

	log "initdb in $WORK_DIR"
	init_throwaway_server "$WORK_DIR" 1 --encoding=UTF8 --locale=C --no-sync

	port=$(pick_port)
	# synchronous_commit = off and autovacuum = off apply to every key type
	# alike: they take fsync latency and background vacuum timing out of the
	# comparison, leaving the cost of making and indexing the keys.
	cat >>"$DATA_DIR/postgresql.conf" <<-EOF

	# --- snowflake benchmark ---
	port = $port
	max_connections = 40
	shared_buffers = 512MB
	synchronous_commit = off
	max_wal_size = 4GB
	checkpoint_timeout = 30min
	autovacuum = off
	log_checkpoints = off
	EOF

	log "starting the server on port $port (socket only)"
	start_throwaway_server "$WORK_DIR"

	export PGHOST="$WORK_DIR" PGPORT="$port" PGUSER=postgres PGDATABASE=bench
	# keeps "table does not exist, skipping" notices out of the output
	export PGOPTIONS="-c client_min_messages=warning"
	psql_bench -d postgres -c "CREATE DATABASE bench"
	# The high-water marks live in snowflake.database (postgres) first.
	psql_bench -d postgres -c "CREATE EXTENSION snowflake" >/dev/null ||
		die "CREATE EXTENSION snowflake failed in postgres; is it installed (make install)?"
	sql "CREATE EXTENSION snowflake" ||
		die "CREATE EXTENSION snowflake failed; is it installed (make install)?"
}

# --- 1-3: one session, one statement producing SESSION_IDS values ---

# A psql session that runs the statement in :query once to warm up, then
# SESSION_RUNS times for the record.  The backend's CPU time (first field of
# /proc/<pid>/schedstat, in ns) is read between statements, while the backend
# sits idle, so the kernel's figure is up to date (psql substitutes :pid
# inside the backquotes).  Each run prints
# "n span wall_ms cpu_before cpu_after".
one_session_script() {
	local run
	cat <<-'EOF'
	SELECT pg_backend_pid() AS pid \gset
	:query \gset
	EOF
	for ((run = 1; run <= SESSION_RUNS; run++)); do
		cat <<-'EOF'
		\set cpu0 `cut -d' ' -f1 /proc/:pid/schedstat`
		SELECT clock_timestamp() AS t0 \gset
		:query \gset
		SELECT round(1000 * extract(epoch FROM clock_timestamp() - :'t0'), 3) AS wall_ms \gset
		\set cpu1 `cut -d' ' -f1 /proc/:pid/schedstat`
		\echo :n :span :wall_ms :cpu0 :cpu1
		EOF
	done
}

# measure_statement KEY_TYPE QUERY: QUERY must return columns n (values made)
# and span (for snowflake key types, the milliseconds spanned by their
# timestamps; ignored for the others).  Records medians, and leaves them in
# SESSION_RESULT[KEY_TYPE] as "wall_ms cpu_ns_per_value values_per_ms_wall
# ids_per_ms_span" (the last 0 when not a snowflake).
declare -A SESSION_RESULT
measure_statement() {
	local key_type=$1 query=$2 runs wall cpu wall_rate span_rate
	one_session_script >"$WORK_DIR/session.sql"
	runs=$(psql_bench -v "query=$query" -f "$WORK_DIR/session.sql")
	[[ $(wc -l <<<"$runs") -eq $SESSION_RUNS ]] || die "unexpected output from $key_type runs: $runs"
	awk -v want="$SESSION_IDS" '$1 != want { exit 1 }' <<<"$runs" ||
		die "$key_type statement returned the wrong number of values: $runs"

	wall=$(awk '{ print $3 }' <<<"$runs" | median)
	cpu=$(awk '{ print ($5 - $4) / $1 }' <<<"$runs" | median)
	wall_rate=$(awk '{ print $1 / $3 }' <<<"$runs" | median)
	span_rate=0
	if [[ $key_type == snowflake* ]]; then
		span_rate=$(awk '{ print $1 / $2 }' <<<"$runs" | median)
	fi

	SESSION_RESULT[$key_type]="$wall $cpu $wall_rate $span_rate"
	tsv_add session_wall "$key_type" 1 "$wall" ms
	tsv_add session_cpu_per_value "$key_type" 1 "$cpu" ns
	tsv_add session_values_per_ms_wall "$key_type" 1 "$wall_rate" values_per_ms
	if [[ $span_rate != 0 ]]; then
		tsv_add session_ids_per_ms_span "$key_type" 1 "$span_rate" ids_per_ms
		tsv_add session_pct_of_layout "$key_type" 1 \
			"$(awk -v r="$span_rate" -v l="$LAYOUT_IDS_PER_MS" 'BEGIN { print 100 * r / l }')" percent
	fi
}

run_session_tests() {
	local from_series="FROM generate_series(1, $SESSION_IDS)"
	sql "CREATE SEQUENCE bench_seq"

	log "one session: snowflake_nextval() x $SESSION_IDS"
	measure_statement snowflake \
		"SELECT count(*) AS n, max(x >> 22) - min(x >> 22) + 1 AS span
		 FROM (SELECT snowflake_nextval() AS x $from_series) s"

	log "one session: snowflake_nextval_batch($SESSION_IDS)"
	measure_statement snowflake_batch \
		"SELECT count(*) AS n, max(x >> 22) - min(x >> 22) + 1 AS span
		 FROM snowflake_nextval_batch($SESSION_IDS) AS x"

	# The sequence does the same min/max work as the snowflake statement, so
	# their CPU figures compare; its "span" is a range of values, not of
	# milliseconds, and is not reported.
	log "one session: nextval('bench_seq') x $SESSION_IDS"
	measure_statement sequence \
		"SELECT count(*) AS n, max(x) - min(x) + 1 AS span
		 FROM (SELECT nextval('bench_seq') AS x $from_series) s"

	# uuid has no min/max aggregate: this statement only counts, a little
	# less work per row than the two above.
	log "one session: gen_random_uuid() x $SESSION_IDS"
	measure_statement uuid \
		"SELECT count(x) AS n, 0 AS span
		 FROM (SELECT gen_random_uuid() AS x $from_series) s"
}

# --- 3b: the same statement in etcd mode, beside guc mode ---

# etcd mode adds the fence to the hot path (a check of a monotonic clock
# each time a new millisecond starts).  The server is restarted leasing its
# node id from a one-member etcd on loopback, and the one-session statement
# is measured again; skipped when etcd is not installed.
ETCD_PID=""
run_etcd_mode_test() {
	local client_port peer_port i
	if ! command -v etcd >/dev/null; then
		log "etcd not installed: etcd mode not measured"
		return 0
	fi
	client_port=$(pick_port)
	peer_port=$(pick_port)
	log "etcd on 127.0.0.1:$client_port for the etcd-mode run"
	etcd --name bench --data-dir "$WORK_DIR/etcd" \
		--listen-client-urls "http://127.0.0.1:$client_port" \
		--advertise-client-urls "http://127.0.0.1:$client_port" \
		--listen-peer-urls "http://127.0.0.1:$peer_port" \
		--initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
		--initial-cluster "bench=http://127.0.0.1:$peer_port" \
		--initial-cluster-state new >"$WORK_DIR/etcd.log" 2>&1 </dev/null 3>&- &
	ETCD_PID=$!
	for i in $(seq 1 50); do
		ETCDCTL_API=3 etcdctl --endpoints="http://127.0.0.1:$client_port" endpoint health \
			>/dev/null 2>&1 && break
		sleep 0.2
	done

	stop_throwaway_server "$WORK_DIR"
	cat >>"$DATA_DIR/postgresql.conf" <<-EOF
	snowflake.node_source = etcd
	snowflake.etcd_endpoints = 'http://127.0.0.1:$client_port'
	snowflake.etcd_lease_ttl = 10
	EOF
	start_throwaway_server "$WORK_DIR"
	# A node id new to this etcd waits out any unknown earlier holder once.
	wait_until_ready "$WORK_DIR" "$PGPORT" 30 || die "the server did not become ready in etcd mode"

	log "one session, etcd mode: snowflake_nextval() x $SESSION_IDS"
	measure_statement snowflake_etcd \
		"SELECT count(*) AS n, max(x >> 22) - min(x >> 22) + 1 AS span
		 FROM (SELECT snowflake_nextval() AS x FROM generate_series(1, $SESSION_IDS)) s"
	# The server keeps running (print_header reads its settings; cleanup
	# stops it), etcd does not.
	kill "$ETCD_PID" 2>/dev/null || true
	wait "$ETCD_PID" 2>/dev/null || true
	ETCD_PID=""
}

# --- 5: one session under each layout ---

# For each layout, a throwaway server of its own (the layout is fixed for
# the life of a data directory), one session making IDs one call each and
# in one batch.  The rate comes from the IDs themselves: N IDs over the span
# of their timestamps, in the layout's units, against its IDs per unit.
# Each statement makes LAYOUT_UNITS units' worth of IDs at the limit, so
# the partly filled first and last units change the share by less than 1%,
# and sonyflake's 10 ms units (25.6 IDs per ms) take a few seconds.

LAYOUT_DIR=""
LAYOUT_PORT=""

layout_key() {	# layout
	case $1 in
		snowflake | twitter | instagram | sonyflake) echo "$1" ;;
		*) echo "custom" ;;
	esac
}

layout_psql() {
	PGHOST="$LAYOUT_DIR" PGPORT="$LAYOUT_PORT" psql_bench -d postgres "$@"
}

start_layout_server() {	# layout
	LAYOUT_DIR="$WORK_DIR/layout"
	mkdir -p "$LAYOUT_DIR"
	[[ $EUID -eq 0 ]] && chown postgres: "$LAYOUT_DIR"
	init_throwaway_server "$LAYOUT_DIR" 1 --encoding=UTF8 --locale=C --no-sync
	LAYOUT_PORT=$(pick_port)
	cat >>"$LAYOUT_DIR/data/postgresql.conf" <<-EOF

	# --- snowflake benchmark, one layout ---
	port = $LAYOUT_PORT
	snowflake.layout = '$1'
	autovacuum = off
	EOF
	start_throwaway_server "$LAYOUT_DIR"
	layout_psql -c "CREATE EXTENSION snowflake" >/dev/null
	wait_until_ready "$LAYOUT_DIR" "$LAYOUT_PORT" 30 ||
		die "the server with snowflake.layout = '$1' did not become ready"
}

stop_layout_server() {
	[[ -n $LAYOUT_DIR ]] || return 0
	stop_throwaway_server "$LAYOUT_DIR" || true
	rm -rf "$LAYOUT_DIR"
	LAYOUT_DIR=""
}

# layout_measure KEY STATEMENT N UNIT_MS: SESSION_RUNS runs of the
# statement (columns n and span, span in units) after a warm-up; prints
# the medians "wall_ms ids_per_unit_of_span".
layout_measure() {
	local key=$1 query=$2 ids=$3 runs
	one_session_script >"$WORK_DIR/layout_session.sql"
	runs=$(layout_psql -v "query=$query" -f "$WORK_DIR/layout_session.sql")
	[[ $(wc -l <<<"$runs") -eq $SESSION_RUNS ]] || die "unexpected output from the $key layout runs: $runs"
	awk -v want="$ids" '$1 != want { exit 1 }' <<<"$runs" ||
		die "the $key layout statement returned the wrong number of IDs: $runs"
	echo "$(awk '{ print $3 }' <<<"$runs" | median) $(awk '{ print $1 / $2 }' <<<"$runs" | median)"
}

run_layout_tests() {
	local layout key fields per_unit unit_ms per_ms ids span wall rate calls per_call
	for layout in "${LAYOUTS[@]}"; do
		key=$(layout_key "$layout")
		log "layout $layout: a server of its own"
		start_layout_server "$layout"
		IFS=$'\t' read -r fields per_unit unit_ms < <(layout_psql -c \
			"SELECT fields, ids_per_unit, round(extract(epoch FROM unit) * 1000) FROM snowflake_layout()")
		per_ms=$(awk -v n="$per_unit" -v u="$unit_ms" 'BEGIN { print n / u }')
		ids=$((per_unit * LAYOUT_UNITS))
		tsv_add layout_name "$key" 0 "$layout" text
		tsv_add layout_fields "$key" 0 "$fields" text
		tsv_add layout_ids_per_unit "$key" 0 "$per_unit" ids
		tsv_add layout_unit "$key" 0 "$unit_ms" ms
		tsv_add layout_limit "$key" 0 "$per_ms" ids_per_ms
		tsv_add layout_ids "$key" 0 "$ids" ids
		# The IDs' span in units, from their decoded timestamps: time is
		# the top field, so the lowest and highest IDs of one node have
		# the first and last timestamps.
		span="round(extract(epoch FROM snowflake_timestamp(max(x)) - snowflake_timestamp(min(x)))
			* 1000 / $unit_ms) + 1 AS span"

		log "  snowflake_nextval() x $ids"
		read -r wall rate < <(layout_measure "$key" \
			"SELECT count(*) AS n, $span
			 FROM (SELECT snowflake_nextval() AS x FROM generate_series(1, $ids)) s" \
			"$ids")
		tsv_add layout_wall "$key" 1 "$wall" ms
		tsv_add layout_pct "$key" 1 "$(awk -v r="$rate" -v n="$per_unit" 'BEGIN { print 100 * r / n }')" percent

		# A call hands out at most BATCH_MAX IDs: more take several calls,
		# each with its own span, so the time between them (reading one
		# call's rows before the next starts) is not counted.
		calls=$(((ids + BATCH_MAX - 1) / BATCH_MAX))
		per_call=$(((ids + calls - 1) / calls))
		log "  snowflake_nextval_batch($per_call) x $calls"
		read -r wall rate < <(layout_measure "$key" \
			"SELECT sum(n) AS n, sum(span) AS span FROM (
				SELECT count(*) AS n, $span
				FROM generate_series(1, $calls) AS g,
					LATERAL snowflake_nextval_batch(least($per_call, $ids - (g - 1) * $per_call)) AS x
				GROUP BY g) c" "$ids")
		tsv_add layout_batch_wall "$key" 1 "$wall" ms
		tsv_add layout_batch_pct "$key" 1 "$(awk -v r="$rate" -v n="$per_unit" 'BEGIN { print 100 * r / n }')" percent
		stop_layout_server
	done
}

# --- 4: concurrent inserts with pgbench ---

create_table() {	# key_type
	local key_type=$1 id_column
	case $key_type in
		snowflake) id_column="id bigint PRIMARY KEY DEFAULT snowflake_nextval()" ;;
		bigserial) id_column="id bigserial PRIMARY KEY" ;;
		uuid) id_column="id uuid PRIMARY KEY DEFAULT gen_random_uuid()" ;;
		*) die "unknown key type $key_type" ;;
	esac
	sql "DROP TABLE IF EXISTS bench_$key_type"
	sql "CREATE TABLE bench_$key_type ($id_column, payload text NOT NULL)"
	printf '%s\n' "INSERT INTO bench_$key_type (payload) VALUES ('0123456789abcdef0123456789abcdef');" \
		>"$WORK_DIR/insert_$key_type.sql"
}

# Run one pgbench load into a fresh table.  A CHECKPOINT first, so that no
# run pays for the dirty pages or full-page images left by the one before.
declare -A INSERT_TPS_RUNS		# "key clients" -> TPS of every run
declare -A INDEX_BYTES			# "key clients" -> pk index size, last run
insert_run() {	# key_type clients
	local key_type=$1 clients=$2 jobs per_client out tps rows
	jobs=$((clients < 2 ? clients : 2))
	per_client=$((ROWS_PER_RUN / clients))
	out="$WORK_DIR/pgbench.out"

	create_table "$key_type"
	sql "CHECKPOINT"
	if ! pgbench -n -M prepared -c "$clients" -j "$jobs" -t "$per_client" \
		-f "$WORK_DIR/insert_$key_type.sql" >"$out" 2>&1; then
		cat "$out" >&2
		die "pgbench failed for $key_type with $clients clients"
	fi
	tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out")
	[[ -n $tps ]] || { cat "$out" >&2; die "no TPS in pgbench output"; }

	rows=$(sql "SELECT count(*) FROM bench_$key_type")
	[[ $rows -eq $ROWS_PER_RUN ]] || die "bench_$key_type has $rows rows, expected $ROWS_PER_RUN"

	INSERT_TPS_RUNS["$key_type $clients"]+="$tps "
	INDEX_BYTES["$key_type $clients"]=$(sql "SELECT pg_relation_size('bench_${key_type}_pkey')")
	log "  $key_type: $(printf '%.0f' "$tps") TPS"
}

# Each repetition rotates the order of the key types, so that no type gains
# from its position in the order.
run_insert_tests() {
	local rep clients i key_type
	for ((rep = 0; rep < INSERT_REPS; rep++)); do
		for clients in "${CLIENT_COUNTS[@]}"; do
			log "inserts: repetition $((rep + 1))/$INSERT_REPS, clients = $clients"
			for i in "${!KEY_TYPES[@]}"; do
				key_type=${KEY_TYPES[$(((i + rep) % ${#KEY_TYPES[@]}))]}
				insert_run "$key_type" "$clients"
			done
		done
	done
}

# median / min / max TPS of one key type and client count
tps_stat() {	# key_type clients median|min|max
	local values
	values=$(tr ' ' '\n' <<<"${INSERT_TPS_RUNS["$1 $2"]}" | grep .)
	case $3 in
		median) median <<<"$values" ;;
		min) sort -g <<<"$values" | head -n 1 ;;
		max) sort -g <<<"$values" | tail -n 1 ;;
	esac
}

# --- Report ---

pct_of_layout() {
	awk -v r="$1" -v l="$LAYOUT_IDS_PER_MS" 'BEGIN { printf "%.1f", 100 * r / l }'
}

print_session_report() {
	local key_type label wall cpu wall_rate span_rate pct verdict
	echo
	echo "1-3. One session, $SESSION_IDS values per statement (median of $SESSION_RUNS runs after a warm-up)"
	printf '%-34s %9s %12s %12s %12s %10s  %s\n' \
		statement "wall ms" "CPU ns/val" "values/ms" "IDs/ms span" "of 4096" "target >= ${RATE_TARGET_PCT}%"
	for key_type in snowflake snowflake_etcd snowflake_batch sequence uuid; do
		[[ -n ${SESSION_RESULT[$key_type]:-} ]] || continue
		case $key_type in
			snowflake) label="snowflake_nextval()" ;;
			snowflake_etcd) label="snowflake_nextval(), etcd mode" ;;
			snowflake_batch) label="snowflake_nextval_batch($SESSION_IDS)" ;;
			sequence) label="nextval('bench_seq')" ;;
			uuid) label="gen_random_uuid()" ;;
		esac
		read -r wall cpu wall_rate span_rate <<<"${SESSION_RESULT[$key_type]}"
		if [[ $span_rate == 0 ]]; then
			printf '%-34s %9.1f %12.1f %12.0f %12s %10s  %s\n' \
				"$label" "$wall" "$cpu" "$wall_rate" - - "(reported only)"
			continue
		fi
		pct=$(pct_of_layout "$span_rate")
		verdict=$(awk -v p="$pct" -v t="$RATE_TARGET_PCT" 'BEGIN { print (p >= t) ? "HIT" : "MISS" }')
		[[ $key_type == snowflake || $key_type == snowflake_etcd ]] || verdict="($verdict, no target)"
		printf '%-34s %9.1f %12.1f %12.0f %12.0f %9s%%  %s\n' \
			"$label" "$wall" "$cpu" "$wall_rate" "$span_rate" "$pct" "$verdict"
	done
	echo "   values/ms = values / wall time; IDs/ms span = IDs / (max - min + 1) of their ms timestamps."
	echo "   uuid statement only counts (no min/max for uuid), slightly less work per row than the others."
}

# The layouts' figures, from the rows collected so far.
print_layout_report() {
	echo
	echo "5. One session under each layout: a server of its own, $LAYOUT_UNITS units' worth of IDs per statement"
	echo "   (median of $SESSION_RUNS runs after a warm-up); share = IDs / span of their timestamps in units / IDs per unit"
	awk -F'\t' -v target="$RATE_TARGET_PCT" -v one_call="$ONE_CALL_IDS_PER_MS" '
		$1 == "layout_name" { keys[++n] = $2; name[$2] = $4 }
		{ v[$1 SUBSEP $2] = $4 }
		END {
			printf "%-10s %-42s %14s %10s %12s %12s  %s\n", "layout", "fields", "limit IDs/ms", "IDs", "nextval()", "batch", "target"
			for (i = 1; i <= n; i++) {
				k = keys[i]
				limit = v["layout_limit" SUBSEP k]
				single = v["layout_pct" SUBSEP k]; batch = v["layout_batch_pct" SUBSEP k]
				if (limit <= one_call) { what = "nextval()"; got = single }
				else { what = "batch"; got = batch }
				printf "%-10s %-42s %14s %10d %11.1f%% %11.1f%%  %s >= %s%%: %s\n", k, v["layout_fields" SUBSEP k], \
					limit, v["layout_ids" SUBSEP k], single, batch, what, target, (got >= target) ? "HIT" : "MISS"
			}
		}' "$TSV_TMP"
	echo "   Target on snowflake_nextval() where one call per ID can reach the limit (up to $ONE_CALL_IDS_PER_MS IDs/ms),"
	echo "   on snowflake_nextval_batch() where the limit is higher."
}

mib() {
	awk -v b="$1" 'BEGIN { printf "%.2f MiB", b / 1048576 }'
}

# How far snowflake's TPS is above another key type's, in percent: the
# median over repetitions of the gap within each repetition.  The runs of one
# repetition follow each other within seconds and so share whatever else the
# machine was doing; the gap between two separate medians would not cancel
# that out.
paired_gap_pct() {	# other_key_type clients
	awk -v s="${INSERT_TPS_RUNS["snowflake $2"]}" -v o="${INSERT_TPS_RUNS["$1 $2"]}" 'BEGIN {
		n = split(s, sf, " "); split(o, other, " ")
		for (i = 1; i <= n; i++) print 100 * (sf[i] / other[i] - 1)
	}' | median
}

# "HIT", "WITHIN NOISE" or "MISS" for snowflake against bigserial
versus_bigserial() {	# gap_pct
	awk -v g="$1" -v n="$NOISE_PCT" 'BEGIN {
		if (g >= 0) print "HIT"
		else if (g >= -n) print "WITHIN NOISE"
		else print "MISS"
	}'
}

versus_uuid() {	# gap_pct
	awk -v g="$1" 'BEGIN { print (g > 0) ? "HIT" : "MISS" }'
}

print_insert_report() {
	local clients key_type tps gap_bs gap_uu sf_idx uu_idx
	echo
	echo "4. Concurrent inserts: pgbench -M prepared, one single-row INSERT per transaction,"
	echo "   $ROWS_PER_RUN rows per table per run (-t = $ROWS_PER_RUN / clients, -j <= 2),"
	echo "   fresh table + CHECKPOINT before each run, key types in rotated order;"
	echo "   TPS = median of $INSERT_REPS runs (min..max); index size after the last run."
	printf '%8s  %-10s %10s %21s %14s\n' clients "key type" "TPS" "min..max" "pk index"
	for clients in "${CLIENT_COUNTS[@]}"; do
		for key_type in "${KEY_TYPES[@]}"; do
			tps=$(tps_stat "$key_type" "$clients" median)
			printf '%8s  %-10s %10.0f %21s %14s\n' "$clients" "$key_type" "$tps" \
				"$(printf '%.0f..%.0f' "$(tps_stat "$key_type" "$clients" min)" "$(tps_stat "$key_type" "$clients" max)")" \
				"$(mib "${INDEX_BYTES["$key_type $clients"]}")"
			tsv_add insert_tps "$key_type" "$clients" "$tps" tps
			tsv_add insert_tps_min "$key_type" "$clients" "$(tps_stat "$key_type" "$clients" min)" tps
			tsv_add insert_tps_max "$key_type" "$clients" "$(tps_stat "$key_type" "$clients" max)" tps
			tsv_add pk_index_size "$key_type" "$clients" "${INDEX_BYTES["$key_type $clients"]}" bytes
		done
	done

	echo
	echo "   Targets.  TPS gap = median over the $INSERT_REPS repetitions of snowflake's TPS against"
	echo "   the other type's in the same repetition; within noise = no more than ${NOISE_PCT}% below."
	printf '%8s  %-36s %-26s %s\n' clients target measured result
	for clients in "${CLIENT_COUNTS[@]}"; do
		gap_bs=$(paired_gap_pct bigserial "$clients")
		gap_uu=$(paired_gap_pct uuid "$clients")
		sf_idx=${INDEX_BYTES["snowflake $clients"]}
		uu_idx=${INDEX_BYTES["uuid $clients"]}
		tsv_add insert_tps_gap_vs_bigserial snowflake "$clients" "$gap_bs" percent
		tsv_add insert_tps_gap_vs_uuid snowflake "$clients" "$gap_uu" percent
		printf '%8s  %-36s %-26s %s\n' "$clients" "snowflake TPS >= bigserial TPS" \
			"$(printf '%+.1f%%' "$gap_bs")" "$(versus_bigserial "$gap_bs")"
		printf '%8s  %-36s %-26s %s\n' "$clients" "snowflake TPS > uuid TPS" \
			"$(printf '%+.1f%%' "$gap_uu")" "$(versus_uuid "$gap_uu")"
		printf '%8s  %-36s %-26s %s\n' "$clients" "snowflake pk index < uuid pk index" \
			"$(mib "$sf_idx") vs $(mib "$uu_idx")" "$( ((sf_idx < uu_idx)) && echo HIT || echo MISS)"
	done
}

print_header() {
	echo "snowflake benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "PostgreSQL $(sql 'SHOW server_version'), $(nproc) CPUs, $(uname -sr)"
	echo "Server: shared_buffers = $(sql 'SHOW shared_buffers'), synchronous_commit = $(sql 'SHOW synchronous_commit')," \
		"autovacuum = $(sql 'SHOW autovacuum'), snowflake.node_id = $(sql 'SHOW snowflake.node_id')"
	echo "        (the same settings for every key type)"
	echo "Load average (1/5/15 min) before the run: $LOAD_AT_START"
	echo "        (well above 0 means other work was competing for the CPUs)"
}

# --- Results for readers: Markdown, chart and the README block, from a TSV ---

# The figures of TSV as Markdown tables; IMAGE is the chart's path as seen
# from the file the tables go into.  Everything comes from the TSV (the
# run's sizes and the machine are in its "info" rows), so --report redraws
# exactly what the run measured.
markdown_body() {	# tsv image
	awk -F'\t' -v image="$2" \
		-v d_ids="$SESSION_IDS" -v d_runs="$SESSION_RUNS" -v d_rows="$ROWS_PER_RUN" \
		-v d_reps="$INSERT_REPS" -v d_target="$RATE_TARGET_PCT" -v d_noise="$NOISE_PCT" \
		-v layout="$LAYOUT_IDS_PER_MS" '
	function commas(n,   s) {
		s = sprintf("%d", n)
		while (s ~ /[0-9][0-9][0-9][0-9]/)
			sub(/[0-9][0-9][0-9]($|,)/, ",&", s)
		return s
	}
	function get(test, key, clients) { return v[test SUBSEP key SUBSEP clients] }
	function has(test, key, clients) { return (test SUBSEP key SUBSEP clients) in v }
	function inf(name, dflt) { return (name in info && info[name] != "") ? info[name] : dflt }
	function mib(b) { return sprintf("%.2f", b / 1048576) }
	NR == 1 { next }
	$1 == "info" { info[$2] = $4; next }
	$1 == "layout_name" { lkeys[++nl] = $2; lname[$2] = $4 }
	$1 == "layout_fields" { lfields[$2] = $4 }
	{ v[$1 SUBSEP $2 SUBSEP $3] = $4 }
	$1 == "insert_tps" && $2 == "snowflake" { clients[++nc] = $3 }
	END {
		ids = inf("session_ids", d_ids); runs = inf("session_runs", d_runs)
		rows = inf("rows_per_run", d_rows); reps = inf("insert_reps", d_reps)
		target = inf("rate_target_pct", d_target); noise = inf("noise_pct", d_noise)

		printf "Run of %s: PostgreSQL %s, %s CPUs, %s; `shared_buffers = %s`, `synchronous_commit = %s`, `autovacuum = %s`, the same for every key type. Load average before the run: %s (well above 0 means other work competed for the CPUs). Total time: %s s.\n\n", \
			inf("date", "?"), inf("postgresql", "?"), inf("cpus", "?"), inf("kernel", "?"), \
			inf("shared_buffers", "?"), inf("synchronous_commit", "?"), inf("autovacuum", "?"), \
			inf("load_average", "?"), get("total_run_time", "all", 0)

		printf "| one session, %s values (median of %s runs) | wall ms | CPU ns per value | rate from the IDs'"'"' timestamps | target |\n", commas(ids), runs
		print "|---|---|---|---|---|"
		n = split("snowflake snowflake_etcd snowflake_batch sequence uuid", keys, " ")
		for (i = 1; i <= n; i++) {
			k = keys[i]
			if (!has("session_wall", k, 1)) continue
			if (k == "snowflake") label = "`snowflake_nextval()`"
			else if (k == "snowflake_etcd") label = "`snowflake_nextval()`, etcd mode"
			else if (k == "snowflake_batch") label = sprintf("`snowflake_nextval_batch(%d)`", ids)
			else if (k == "sequence") label = "`nextval('"'"'seq'"'"')`"
			else label = "`gen_random_uuid()`"
			rate = ""; verdict = "reported beside it"
			if (has("session_ids_per_ms_span", k, 1)) {
				pct = get("session_pct_of_layout", k, 1)
				if (k == "snowflake" || k == "snowflake_etcd") {
					rate = sprintf("%.0f IDs/ms = **%.1f%%** of %d", get("session_ids_per_ms_span", k, 1), pct, layout)
					verdict = sprintf("≥ %s%%: %s", target, (pct >= target) ? "met" : "missed")
				} else {
					rate = sprintf("%.0f IDs/ms = %.1f%%", get("session_ids_per_ms_span", k, 1), pct)
					verdict = ""
				}
			}
			printf "| %s | %.0f | %.0f | %s | %s |\n", label, get("session_wall", k, 1), get("session_cpu_per_value", k, 1), rate, verdict
		}

		if (nl > 0) {
			lunits = inf("layout_units", "?"); one_call = inf("one_call_ids_per_ms", 4096)
			printf "\n| layout: `snowflake.layout`, a server of its own each (%s units'"'"' worth of IDs per statement, median of %s runs) | fields | limit per node | IDs | `snowflake_nextval()`: share of the limit | `snowflake_nextval_batch()`: share of the limit | target |\n", lunits, runs
			print "|---|---|---|---|---|---|---|"
			for (i = 1; i <= nl; i++) {
				k = lkeys[i]
				limit = get("layout_limit", k, 0); unit = get("layout_unit", k, 0)
				single = get("layout_pct", k, 1); batch = get("layout_batch_pct", k, 1)
				if (limit + 0 <= one_call + 0) {
					single_s = sprintf("**%.1f%%**", single); batch_s = sprintf("%.1f%%", batch)
					verdict = sprintf("`snowflake_nextval()` ≥ %s%%: %s", target, (single >= target) ? "met" : "missed")
				} else {
					single_s = sprintf("%.1f%%", single); batch_s = sprintf("**%.1f%%**", batch)
					verdict = sprintf("batch ≥ %s%%: %s", target, (batch >= target) ? "met" : "missed")
				}
				label = (k == "custom") ? "custom" : sprintf("`%s`", lname[k])
				if (unit == 1) limit_s = sprintf("%s IDs/ms", commas(limit))
				else limit_s = sprintf("%s per %s ms = %s IDs/ms", commas(get("layout_ids_per_unit", k, 0)), unit, limit)
				printf "| %s | %s | %s | %s | %s | %s | %s |\n", label, lfields[k], \
					limit_s, commas(get("layout_ids", k, 0)), single_s, batch_s, verdict
			}
			printf "\nshare of the limit: IDs / the span of their decoded timestamps in the layout'"'"'s units / the layout'"'"'s IDs per unit. The target is on `snowflake_nextval()` where one SQL call per ID can reach the limit (up to %s IDs/ms, the default layout'"'"'s), on `snowflake_nextval_batch()` where the limit is higher.\n", commas(one_call)
		}

		printf "\n| pgbench clients, single-row INSERTs (%s rows per table; TPS: median of %s runs, min–max) | snowflake TPS | bigserial TPS | uuid TPS | snowflake vs bigserial | snowflake vs uuid | pk index: snowflake / bigserial / uuid |\n", commas(rows), reps
		print "|---|---|---|---|---|---|---|"
		for (i = 1; i <= nc; i++) {
			c = clients[i]
			line = "| " c
			for (j = 1; j <= 3; j++) {
				k = (j == 1) ? "snowflake" : (j == 2) ? "bigserial" : "uuid"
				line = line sprintf(" | %.0f (%.0f–%.0f)", get("insert_tps", k, c), get("insert_tps_min", k, c), get("insert_tps_max", k, c))
			}
			gb = get("insert_tps_gap_vs_bigserial", "snowflake", c)
			gu = get("insert_tps_gap_vs_uuid", "snowflake", c)
			vb = (gb >= 0) ? "met" : (gb >= -noise) ? "within noise" : "missed"
			vu = (gu > 0) ? "met" : "missed"
			si = get("pk_index_size", "snowflake", c); ui = get("pk_index_size", "uuid", c)
			line = line sprintf(" | %+.1f%%: %s | %+.1f%%: %s | %s / %s / %s MiB: %s |", gb, vb, gu, vu, \
				mib(si), mib(get("pk_index_size", "bigserial", c)), mib(ui), (si + 0 < ui + 0) ? "met" : "missed")
			print line
		}
		printf "\nsnowflake vs another key type: the median over the %s repetitions of snowflake'"'"'s TPS against the other type'"'"'s in the same repetition (the runs of one repetition share whatever else the machine was doing); within noise: no more than %s%% below. Targets: at least as fast as `bigserial`, faster than UUID, a smaller primary-key index than UUID'"'"'s.\n", reps, noise
		printf "\n![Insert throughput by number of pgbench clients for snowflake, bigserial\nand UUID keys](%s)\n", image
		printf "\nThe chart: median TPS of the repetitions, bars from the slowest to the fastest run.\n"
	}' "$1"
}

# Replace what lies between the README's bench markers with BODY_FILE.  The
# README is rewritten in place (same file, owner and mode), and only if both
# markers are there, each once, begin before end.
update_readme_block() {	# body_file
	local body=$1 tmp
	if [[ ! -f $README ]] ||
		[[ $(grep -c '^<!-- bench:begin -->$' "$README") -ne 1 ]] ||
		[[ $(grep -c '^<!-- bench:end -->$' "$README") -ne 1 ]] ||
		[[ $(grep -n '^<!-- bench:begin -->$' "$README" | cut -d: -f1) -gt \
			$(grep -n '^<!-- bench:end -->$' "$README" | cut -d: -f1) ]]; then
		log "README.md has no single <!-- bench:begin --> ... <!-- bench:end --> block: not updated"
		return 0
	fi
	tmp=$(mktemp)
	awk -v body="$body" '
		/^<!-- bench:end -->$/ { skip = 0 }
		!skip { print }
		/^<!-- bench:begin -->$/ {
			while ((getline line < body) > 0) print line
			close(body)
			skip = 1
		}' "$README" >"$tmp"
	cat "$tmp" >"$README"
	rm -f "$tmp"
	echo "README.md: benchmark block rewritten"
}

# results.md, the chart and the README block, all from one TSV.
write_report() {	# tsv
	local tsv=$1 body
	[[ -s $tsv ]] || die "no results in $tsv (run bench/run.sh)"
	grep -q $'^insert_tps\tsnowflake\t' "$tsv" || die "$tsv has no insert figures"
	body=$(mktemp)
	{
		echo "# snowflake benchmark results"
		echo
		echo "Written by \`bash bench/run.sh\` from \`bench/results/$(basename "$tsv")\`; README.md shows the same."
		echo
		markdown_body "$tsv" ../docs/bench-inserts.png
	} >"$RESULTS_MD"
	echo "Results: $RESULTS_MD"
	if command -v gnuplot >/dev/null; then
		bash "$BENCH_DIR/chart.sh" "$tsv" "$CHART_PNG"
	else
		echo "No chart: gnuplot is missing (apt-get install gnuplot-nox)"
	fi
	markdown_body "$tsv" docs/bench-inserts.png >"$body"
	update_readme_block "$body"
	rm -f "$body"
}

record_info() {
	tsv_add info date 0 "$(date -u '+%Y-%m-%d %H:%M UTC')" text
	tsv_add info postgresql 0 "$(sql 'SHOW server_version')" text
	tsv_add info cpus 0 "$(nproc)" text
	tsv_add info kernel 0 "$(uname -sr)" text
	tsv_add info shared_buffers 0 "$(sql 'SHOW shared_buffers')" text
	tsv_add info synchronous_commit 0 "$(sql 'SHOW synchronous_commit')" text
	tsv_add info autovacuum 0 "$(sql 'SHOW autovacuum')" text
	tsv_add info load_average 0 "$LOAD_AT_START" text
	tsv_add info session_ids 0 "$SESSION_IDS" text
	tsv_add info session_runs 0 "$SESSION_RUNS" text
	tsv_add info rows_per_run 0 "$ROWS_PER_RUN" text
	tsv_add info insert_reps 0 "$INSERT_REPS" text
	tsv_add info rate_target_pct 0 "$RATE_TARGET_PCT" text
	tsv_add info noise_pct 0 "$NOISE_PCT" text
	tsv_add info layout_units 0 "$LAYOUT_UNITS" text
	tsv_add info one_call_ids_per_ms 0 "$ONE_CALL_IDS_PER_MS" text
}

main() {
	if [[ ${1:-} == --report ]]; then
		write_report "${2:-$RESULTS_DIR/latest.tsv}"
		return 0
	fi
	[[ $# -eq 0 ]] || die "usage: bench/run.sh [--report [results.tsv]]"

	# Interrupts go through exit, so the EXIT trap stops the server and
	# removes its directory whatever happens.
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	# Rows collect in a hidden file; latest.tsv is only replaced by a
	# complete run.
	mkdir -p "$RESULTS_DIR"
	TSV_TMP=$(mktemp "$RESULTS_DIR/.partial.XXXXXX")
	printf 'test\tkey_type\tclients\tvalue\tunit\n' >"$TSV_TMP"

	start_server
	record_info
	run_session_tests
	run_insert_tests
	run_etcd_mode_test
	run_layout_tests

	print_header
	print_session_report
	print_insert_report
	print_layout_report

	local stamp
	stamp=$(date -u '+%Y%m%d-%H%M%S')
	tsv_add total_run_time all 0 "$((SECONDS - START_SECONDS))" s
	chmod 644 "$TSV_TMP"
	cp "$TSV_TMP" "$RESULTS_DIR/$stamp.tsv"
	mv "$TSV_TMP" "$RESULTS_DIR/latest.tsv"
	TSV_TMP=""
	echo
	echo "Raw results: $RESULTS_DIR/latest.tsv (copy: $RESULTS_DIR/$stamp.tsv)"
	# What readers see, from this run's figures only.
	write_report "$RESULTS_DIR/latest.tsv"
	echo "Total time: $((SECONDS - START_SECONDS)) s"
}

main "$@"
