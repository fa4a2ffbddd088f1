#!/usr/bin/env bash
# The benchmark's chart: bench/chart.sh turns results in the format
# bench/run.sh writes into a PNG with one line per key type, and refuses
# results without insert figures.  (The benchmark itself is not a test: it
# takes minutes and its figures depend on the machine.)
set -uo pipefail

PROJECT_DIR=$(cd "$(dirname "$0")/.." && pwd)
. "$PROJECT_DIR/scripts/lib.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/snowflake-chart.XXXXXX")
trap 'rm -rf "$work"' EXIT
failures=0

# Figures in bench/run.sh's format (made up for the test).
{
	printf 'test\tkey_type\tclients\tvalue\tunit\n'
	for clients in 1 4 16; do
		for key in snowflake bigserial uuid; do
			printf 'insert_tps\t%s\t%s\t%s\ttps\n' "$key" "$clients" $((10000 + clients * 100))
			printf 'insert_tps_min\t%s\t%s\t%s\ttps\n' "$key" "$clients" $((9000 + clients * 100))
			printf 'insert_tps_max\t%s\t%s\t%s\ttps\n' "$key" "$clients" $((11000 + clients * 100))
		done
	done
	printf 'session_wall\tsnowflake\t1\t300\tms\n'
} >"$work/results.tsv"

check "bench/chart.sh draws a PNG from the benchmark's results" \
	bash "$PROJECT_DIR/bench/chart.sh" "$work/results.tsv" "$work/chart.png"
check "the file is a PNG image of some substance" \
	bash -c "[ \"\$(head -c 8 '$work/chart.png' | od -An -tx1 | tr -d ' \n')\" = 89504e470d0a1a0a ] &&
		[ \$(stat -c %s '$work/chart.png') -gt 10000 ]"
grep -v '^insert_tps.*uuid' "$work/results.tsv" >"$work/no-uuid.tsv"
check "results without a key type's inserts are refused, naming it" \
	bash -c "! out=\$(bash '$PROJECT_DIR/bench/chart.sh' '$work/no-uuid.tsv' '$work/x.png' 2>&1) &&
		grep -q 'no insert_tps rows for uuid' <<<\"\$out\""

[ "$failures" -eq 0 ]
