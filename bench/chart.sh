#!/usr/bin/env bash
#
# bench/chart.sh - draws the benchmark's insert throughput as a PNG: TPS by
# number of pgbench clients for snowflake, bigserial and uuid keys (median
# of the repetitions, bars from the slowest to the fastest run), from the
# raw figures bench/run.sh writes.  Needs gnuplot (Debian: gnuplot-nox).
#
#   bash bench/chart.sh [results.tsv [chart.png]]
#
# Defaults: bench/results/latest.tsv and docs/bench-inserts.png, the chart
# the README shows.  bench/run.sh calls it after every complete run.
#
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TSV=${1:-$BENCH_DIR/results/latest.tsv}
PNG=${2:-$BENCH_DIR/../docs/bench-inserts.png}
export LC_ALL=C

command -v gnuplot >/dev/null || { echo "chart.sh: gnuplot is missing (apt-get install gnuplot-nox)" >&2; exit 1; }
[[ -s $TSV ]] || { echo "chart.sh: no results in $TSV (run bench/run.sh)" >&2; exit 1; }

data=$(mktemp)
trap 'rm -f "$data"' EXIT

# One gnuplot data block per key type: clients, median, min, max.
for key in snowflake bigserial uuid; do
	awk -F'\t' -v key="$key" '
		$2 == key && $1 == "insert_tps" { med[$3] = $4; order[++n] = $3 }
		$2 == key && $1 == "insert_tps_min" { lo[$3] = $4 }
		$2 == key && $1 == "insert_tps_max" { hi[$3] = $4 }
		END {
			if (n == 0) exit 1
			for (i = 1; i <= n; i++) { c = order[i]; print c, med[c], lo[c], hi[c] }
		}' "$TSV" >>"$data" || { echo "chart.sh: no insert_tps rows for $key in $TSV" >&2; exit 1; }
	printf '\n\n' >>"$data"
done

title="single-row INSERTs with the key as DEFAULT"
stamp=$(date -u -r "$TSV" '+%Y-%m-%d')

mkdir -p "$(dirname "$PNG")"
gnuplot <<EOF
set terminal pngcairo size 800,480 font "DejaVu Sans,11" noenhanced
set output "$PNG"
set title "snowflake benchmark: $title${stamp:+ ($stamp)}"
set xlabel "pgbench clients"
set ylabel "transactions per second"
set logscale x 2
set xtics (1, 2, 4, 8, 16, 32)
set xrange [0.8:20]
set yrange [0:*]
set grid ytics
set key bottom right
set style line 1 lc rgb "#1f77b4" lw 2 pt 7
set style line 2 lc rgb "#7f7f7f" lw 2 pt 5
set style line 3 lc rgb "#d62728" lw 2 pt 9
# Each key type a little to the side of the client count, so that the
# bars do not hide one another.
plot "$data" index 0 using (\$1 * 0.95):2:3:4 with yerrorlines ls 1 title "snowflake_nextval()", \
     "$data" index 1 using (\$1):2:3:4 with yerrorlines ls 2 title "bigserial", \
     "$data" index 2 using (\$1 * 1.05):2:3:4 with yerrorlines ls 3 title "gen_random_uuid()"
EOF
echo "Chart: $PNG"
