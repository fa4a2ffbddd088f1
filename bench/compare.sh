#!/usr/bin/env bash
#
# bench/compare.sh - the cost of one snowflake_nextval() call in two to four
# builds of the extension, side by side in one run: did a change make the
# hot path slower?
#
#   bash bench/compare.sh [--rounds R] [--ids N] [--callgrind CALLS] [--layout NAME]
#       PG_BIN_A PG_BIN_B [PG_BIN_C ...]
#
# Each PG_BIN is the bin directory of a PostgreSQL 15 copy of its own (a
# copy of /usr/lib/postgresql/15 and /usr/share/postgresql/15 in the same
# relative places; scripts/lib.sh explains PG_BIN), with its own build of
# the extension installed:
#   make PG_CONFIG=$PG_BIN_A/pg_config && make PG_CONFIG=$PG_BIN_A/pg_config install
#
# The servers (GUC mode, node id 1; the default layout, or with --layout
# that snowflake.layout, which builds from before layouts do not know) run
# at once.  In each
# round, one session per server runs, after a warm-up:
#   - SELECT count(snowflake_nextval()) FROM generate_series(1, N): the wall
#     time, and the backend's CPU time per ID (/proc/PID/schedstat);
#   - 1,000,000 IDs through min/max: the generator's rate from the IDs'
#     timestamps as a share of the layout's limit (IDs per unit).
# The rounds rotate the order (A B, B A, ...) so that the load of other
# work on the machine falls on every build alike; each build against A is
# the median of the per-round ratios, and the best round of each build is
# shown too, since other work only ever adds to a run's time.  Wall time is
# capped by the layout (4,096 IDs per ms): the CPU time per ID, and with
# --callgrind, the instructions per call, show a cost that the cap hides.
#
# --callgrind CALLS starts each server once more under valgrind's callgrind
# tool and prints the instructions per ID of a statement making CALLS IDs,
# inside snowflake_nextval() and for the whole statement: figures the
# machine's load does not change.  Needs valgrind.
#
# A benchmark, not a test: it prints figures and exits 0 unless something
# broke.
#
set -euo pipefail
export LC_ALL=C

readonly PROJECT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$PROJECT_DIR/scripts/lib.sh"

ROUNDS=6
IDS=4000000
CALLGRIND_CALLS=0
SPAN_IDS=1000000
LAYOUT=

die() {
	printf 'compare.sh: error: %s\n' "$*" >&2
	exit 1
}

usage() {
	die "usage: bench/compare.sh [--rounds R] [--ids N] [--callgrind CALLS] [--layout NAME] PG_BIN_A PG_BIN_B [PG_BIN_C ...]"
}

BINS=()
while [[ $# -gt 0 ]]; do
	case $1 in
		--rounds) ROUNDS=$2; shift 2 ;;
		--ids) IDS=$2; shift 2 ;;
		--callgrind) CALLGRIND_CALLS=$2; shift 2 ;;
		--layout) LAYOUT=$2; shift 2 ;;
		-*) usage ;;
		*) BINS+=("$1"); shift ;;
	esac
done
[[ ${#BINS[@]} -ge 2 && ${#BINS[@]} -le 4 ]] || usage
SIDES=()
declare -A BIN
for i in "${!BINS[@]}"; do
	bin=${BINS[$i]}
	[[ -x $bin/postgres && -f $(dirname "$bin")/lib/snowflake.so ]] ||
		die "$bin: no postgres there, or no snowflake.so installed beside it"
	side=$(printf "\\x$(printf %x $((65 + i)))")
	SIDES+=("$side")
	BIN[$side]=$bin
done
readonly SIDES

# The share of the limit: IDs over the span of their timestamps, in units.
# Without --layout in the original layout's arithmetic (builds from before
# layouts have no snowflake_layout()).
if [[ -z $LAYOUT ]]; then
	SHARE_SQL="round(100.0 * count(*) / (max(x >> 22) - min(x >> 22) + 1) / 4096, 2)"
else
	SHARE_SQL="round(100.0 * count(*) / (round(extract(epoch FROM snowflake_timestamp(max(x))
		- snowflake_timestamp(min(x))) * 1000 / (SELECT extract(epoch FROM unit) * 1000 FROM snowflake_layout())) + 1)
		/ (SELECT ids_per_unit FROM snowflake_layout()), 2)"
fi

declare -A DIR PORT
cleanup() {
	local side
	for side in "${SIDES[@]}"; do
		[[ -n ${DIR[$side]:-} ]] || continue
		PG_BIN=${BIN[$side]} stop_throwaway_server "${DIR[$side]}" 2>/dev/null || true
		rm -rf "${DIR[$side]}"
	done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A data directory for SIDE on a port of its own, started.
start_side() {	# side
	local side=$1 dir
	dir=$(mktemp -d -t snowflake-compare.XXXXXX)
	[[ $EUID -eq 0 ]] && chown postgres: "$dir"
	DIR[$side]=$dir
	PORT[$side]=$((41000 + RANDOM % 20000))
	PG_BIN=${BIN[$side]} init_throwaway_server "$dir" 1 --no-sync
	cat >>"$dir/data/postgresql.conf" <<-EOF
	port = ${PORT[$side]}
	autovacuum = off
	EOF
	[[ -z $LAYOUT ]] || echo "snowflake.layout = '$LAYOUT'" >>"$dir/data/postgresql.conf"
	PG_BIN=${BIN[$side]} start_throwaway_server "$dir"
	side_psql "$side" -c "CREATE EXTENSION snowflake" >/dev/null
	PG_BIN=${BIN[$side]} wait_until_ready "$dir" "${PORT[$side]}" 30
}

side_psql() {	# side psql-args...
	local side=$1
	shift
	PG_BIN=${BIN[$side]} as_server_user psql -X -q -A -t -v ON_ERROR_STOP=1 \
		-h "${DIR[$side]}" -p "${PORT[$side]}" -U postgres -d postgres "$@"
}

# One session: warm-up, the timed count, then the span statement.  Prints
# "wall_ms cpu_ns_per_id share_pct".
measure() {	# side
	side_psql "$1" <<-EOF
	SELECT pg_backend_pid() AS pid \gset
	SELECT count(snowflake_nextval()) FROM generate_series(1, 100000) \gset
	\set cpu0 \`cut -d' ' -f1 /proc/:pid/schedstat\`
	SELECT clock_timestamp() AS t0 \gset
	SELECT count(snowflake_nextval()) AS n FROM generate_series(1, $IDS) \gset
	SELECT 1000 * extract(epoch FROM clock_timestamp() - :'t0') AS wall_ms \gset
	\set cpu1 \`cut -d' ' -f1 /proc/:pid/schedstat\`
	SELECT $SHARE_SQL AS share
		FROM (SELECT snowflake_nextval() AS x FROM generate_series(1, $SPAN_IDS)) s \gset
	SELECT round(:wall_ms, 1), round((:cpu1 - :cpu0)::numeric / :n, 1), :share;
	EOF
}

median() {
	sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

run_rounds() {
	local round side i n=${#SIDES[@]} wall cpu share
	local -A walls cpus shares
	printf '%-6s %-5s %10s %12s %14s\n' round side "wall ms" "CPU ns/ID" "share of limit"
	for ((round = 0; round < ROUNDS; round++)); do
		for ((i = 0; i < n; i++)); do
			side=${SIDES[$(((i + round) % n))]}
			read -r wall cpu share < <(measure "$side" | tr '|' ' ')
			printf '%-6s %-5s %10.1f %12.1f %13.2f%%\n' "$((round + 1))" "$side" "$wall" "$cpu" "$share"
			walls[$side]+="$wall "
			cpus[$side]+="$cpu "
			shares[$side]+="$share "
		done
	done
	echo
	printf 'median over %s rounds (vs A: median of the per-round ratios X/A - 1)\n' "$ROUNDS"
	printf '%-5s %10s %9s %12s %9s %14s %9s\n' side "wall ms" "vs A" "CPU ns/ID" "vs A" "share of limit" "vs A"
	for side in "${SIDES[@]}"; do
		printf '%-5s %s %s %s\n' "$side" "$(ratio_cell "${walls[A]}" "${walls[$side]}" 10)" \
			"$(ratio_cell "${cpus[A]}" "${cpus[$side]}" 12)" "$(ratio_cell "${shares[A]}" "${shares[$side]}" 14)"
	done
	# Other work only ever adds to a run's time: the best round is the one
	# it disturbed least.
	echo
	printf 'best of %s rounds (the least disturbed by other work)\n' "$ROUNDS"
	printf '%-5s %10s %9s %12s %9s %14s %9s\n' side "wall ms" "vs A" "CPU ns/ID" "vs A" "share of limit" "vs A"
	for side in "${SIDES[@]}"; do
		printf '%-5s %s %s %s\n' "$side" "$(best_cell "${walls[A]}" "${walls[$side]}" 10 min)" \
			"$(best_cell "${cpus[A]}" "${cpus[$side]}" 12 min)" "$(best_cell "${shares[A]}" "${shares[$side]}" 14 max)"
	done
}

# "best  ratio": the lowest (or highest) value of a side against A's.
best_cell() {	# a-values x-values width min|max
	local a x
	if [[ $4 == min ]]; then
		a=$(tr ' ' '\n' <<<"$1" | grep . | sort -g | head -n 1)
		x=$(tr ' ' '\n' <<<"$2" | grep . | sort -g | head -n 1)
	else
		a=$(tr ' ' '\n' <<<"$1" | grep . | sort -g | tail -n 1)
		x=$(tr ' ' '\n' <<<"$2" | grep . | sort -g | tail -n 1)
	fi
	awk -v a="$a" -v x="$x" -v w="$3" 'BEGIN { printf "%" w ".1f %+8.2f%%", x, 100 * (x / a - 1) }'
}

# "median  ratio" of the values of a side against A's, round by round.
ratio_cell() {	# a-values x-values width
	local x r
	x=$(tr ' ' '\n' <<<"$2" | grep . | median)
	r=$(awk -v a="$1" -v b="$2" 'BEGIN {
		n = split(a, x, " "); split(b, y, " ")
		for (i = 1; i <= n; i++) printf "%f\n", 100 * (y[i] / x[i] - 1)
	}' | median)
	printf "%${3}.1f %+8.2f%%" "$x" "$r"
}

# The server of SIDE under callgrind, collecting only while a statement
# runs (PortalRun); prints the instructions per ID of CALLS calls,
# inside snowflake_nextval() (generator_take() and the clock read with it)
# and for the whole statement (the executor's work for each row too).
callgrind_side() {	# side calls
	local side=$1 calls=$2 dir pid out
	dir=${DIR[$side]}
	PG_BIN=${BIN[$side]} stop_throwaway_server "$dir"
	mkdir -p "$dir/callgrind"
	[[ $EUID -eq 0 ]] && chown postgres: "$dir/callgrind"
	PG_BIN=${BIN[$side]} as_server_user bash -c "valgrind --tool=callgrind --trace-children=yes \
		--collect-atstart=no --toggle-collect=PortalRun \
		--callgrind-out-file='$dir/callgrind/out.%p' \
		postgres -D '$dir/data' >'$dir/valgrind.log' 2>&1 &"
	for _ in $(seq 1 600); do
		side_psql "$side" -c 'SELECT 1' >/dev/null 2>&1 && break
		sleep 0.5
	done
	PG_BIN=${BIN[$side]} wait_until_ready "$dir" "${PORT[$side]}" 120 >/dev/null
	pid=$(side_psql "$side" <<-EOF
	SELECT pg_backend_pid();
	SELECT count(snowflake_nextval()) FROM generate_series(1, $calls) \gset
	EOF
	)
	PG_BIN=${BIN[$side]} stop_throwaway_server "$dir"
	out="$dir/callgrind/out.$pid"
	[[ -s $out ]] || die "no callgrind output for backend $pid"
	[[ -n ${CALLGRIND_KEEP:-} ]] && cp "$out" "$CALLGRIND_KEEP/callgrind.$side"
	callgrind_annotate --inclusive=yes --threshold=100 "$out" | tr -d ',' | awk -v n="$calls" '
		{ for (i = 2; i <= NF; i++) if ($i ~ /^[^ ]*:[A-Za-z_]+$/) break }
		$i ~ /:PortalRun$/ { all = $1 }
		$i ~ /:snowflake_nextval$/ { sf = $1 }
		END { printf "%10.1f %12.1f\n", sf / n, all / n }'
}

echo "compare.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for side in "${SIDES[@]}"; do
	echo "$side = ${BIN[$side]}"
done
echo "layout: ${LAYOUT:-the default}"
for side in "${SIDES[@]}"; do
	start_side "$side"
done
run_rounds
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

if [[ $CALLGRIND_CALLS -gt 0 ]]; then
	command -v valgrind >/dev/null || die "--callgrind needs valgrind (apt-get install valgrind)"
	echo
	echo "callgrind: instructions per ID, SELECT count(snowflake_nextval()) FROM generate_series(1, $CALLGRIND_CALLS)"
	printf '%-5s %10s %12s\n' side "nextval()" "statement"
	for side in "${SIDES[@]}"; do
		printf '%-5s %s\n' "$side" "$(callgrind_side "$side" "$CALLGRIND_CALLS")"
	done
fi
