#!/usr/bin/env bash
# Runs every test of snowflake: installs what a fresh Debian 12 lacks,
# builds with -Werror and assertions, installs, then runs the pg_regress
# suite (sql/, expected/) on its own preloaded throwaway server and each TAP
# suite (test/t/*.pl) on the servers it starts, through the Makefile's
# `make installcheck` and `make prove_installcheck`, as a user PostgreSQL
# runs as (postgres when run as root) in a copy of the tree that user owns.
# Then the nemesis soak (test/soak/nemesis.pl) with a fixed seed and the
# default layout, and with a random seed and a layout picked from it.  Ends
# with one line "N passed, N failed" and exits non-zero on any failure.
#
#   bash scripts/test.sh                      everything
#   bash scripts/test.sh test/t/002_x.pl ...  only these TAP suites
#   bash scripts/test.sh test/package.sh      only this script suite
set -uo pipefail

PROJECT_DIR=$(cd "$(dirname "$0")/.." && pwd)
. "$PROJECT_DIR/scripts/lib.sh"

install_packages make gcc "postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR" \
	libipc-run-perl faketime libcurl4-openssl-dev etcd-server etcd-client openssl \
	postgresql-server-dev-all debhelper build-essential gnuplot-nox $SOAK_PACKAGES \
	"postgresql-$PG_MAJOR-pglogical" "postgresql-$PG_MAJOR-partman" nodejs \
	lintian pgxnclient unzip
# npm, for test/t/025_interop.pl's npm ci: NodeSource's nodejs package
# brings its own and conflicts with Debian's, which Debian's nodejs lacks.
command -v npm >/dev/null || install_packages npm
passed=0
failed=0

# The README's first command, as a user runs it: it must make and decode IDs.
# It builds without assertions, so it runs before the build the suites use.
run_demo() {
	local out
	echo "== scripts/demo.sh"
	if out=$(bash "$PROJECT_DIR/scripts/demo.sh" 2>&1) &&
		grep -qE '^ *[0-9]+ \| coffee +\| [0-9-]+ [0-9:.+]+ \| +1 \| +0$' <<<"$out" &&
		grep -qE '^state +\| ready$' <<<"$out"; then
		echo "ok: the demo made and decoded IDs"
		passed=$((passed + 1))
	else
		echo "$out"
		echo "FAILED: the demo did not show decoded IDs on a ready server"
		failed=$((failed + 1))
	fi
}

[ $# -eq 0 ] && run_demo

# Script suites (test/*.sh) run as root.  test/package.sh and test/pgxn.sh
# install the extension their own way (the Debian package, pgxnclient) over
# the installed files and remove them again, so they run before the build
# that the other suites use; the others run after
# that build and are told so (SNOWFLAKE_INSTALLED_FROM), so that they need
# not build and install the same tree again.
run_script() {
	echo "== $1"
	if bash "$PROJECT_DIR/$1"; then
		passed=$((passed + 1))
	else
		echo "FAILED: $1"
		failed=$((failed + 1))
	fi
}
script_files=()
for f in "$@"; do
	[[ $f == *.sh ]] && script_files+=("${f#"$PROJECT_DIR"/}")
done
if [ $# -eq 0 ]; then
	for f in "$PROJECT_DIR"/test/*.sh; do
		[ -e "$f" ] && script_files+=("test/$(basename "$f")")
	done
fi
installs_its_own() { [ "$1" = test/package.sh ] || [ "$1" = test/pgxn.sh ]; }
for f in "${script_files[@]}"; do
	installs_its_own "$f" && run_script "$f"
done
build_and_install "-DUSE_ASSERT_CHECKING" || { echo "build failed"; echo "$passed passed, $((failed + 1)) failed"; exit 1; }
export SNOWFLAKE_INSTALLED_FROM=$PROJECT_DIR
for f in "${script_files[@]}"; do
	installs_its_own "$f" || run_script "$f"
done

work=$(server_owned_copy)
trap 'rm -rf "$work"' EXIT

run_regress() {
	local out=$work/regress.out ok bad
	as_server_user make -s -C "$work" PG_CONFIG="$PG_CONFIG" installcheck >"$out" 2>&1
	cat "$out"
	ok=$(grep -cE '\.\.\. ok' "$out")
	bad=$(grep -cE '\.\.\. FAILED|\.\.\. failed' "$out")
	if [ "$ok" -eq 0 ] && [ "$bad" -eq 0 ]; then
		bad=1		# pg_regress itself failed before running a test
	fi
	[ -f "$work/regression.diffs" ] && cat "$work/regression.diffs"
	passed=$((passed + ok))
	failed=$((failed + bad))
}

# run_tap FILE [DIR]: one TAP suite through the Makefile's
# prove_installcheck in the copy DIR (default $work), so that it runs
# exactly as `make prove_installcheck PROVE_TESTS=...` runs it for a
# developer; a failure shows the servers' logs.  Fails if the suite does.
run_tap() {
	local file=${1#"$PROJECT_DIR"/} dir=${2:-$work} log rc=0
	echo "== $file"
	as_server_user env PG_TEST_TIMEOUT_DEFAULT="${PG_TEST_TIMEOUT_DEFAULT:-180}" \
		${PG_TEST_PORT_DIR:+PG_TEST_PORT_DIR="$PG_TEST_PORT_DIR"} \
		make -s -C "$dir" PG_CONFIG="$PG_CONFIG" prove_installcheck PROVE_TESTS="$file" || rc=1
	if [ "$rc" -ne 0 ]; then
		for log in "$dir"/tmp_check/log/*; do
			[ -f "$log" ] || continue
			echo "---- tail of $log"
			tail -n 60 "$log"
		done
	fi
	rm -rf "$dir/tmp_check/log"
	return "$rc"
}

# TAP_JOBS=N runs up to N TAP suites at a time (default 1, one after the
# other), each in a copy of the tree of its own, the ports they pick
# reserved in one directory they share (PostgreSQL::Test::Cluster's
# PG_TEST_PORT_DIR); each suite's output is shown, in suite order, once all
# ended.  Most suites spend their time waiting for leases, retries and
# clocks, which overlaps well; suites that bound latencies then share the
# CPUs with another.
run_taps_side_by_side() {
	local jobs=$1 i f rc
	export PG_TEST_PORT_DIR=$work/portlock
	mkdir -p "$PG_TEST_PORT_DIR"
	[ "$(id -u)" -eq 0 ] && chown postgres: "$PG_TEST_PORT_DIR"
	for i in "${!tap_files[@]}"; do
		while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
			wait -n
		done
		(
			dir=$(server_owned_copy)
			run_tap "${tap_files[$i]}" "$dir" >"$work/tap.$i.out" 2>&1
			echo $? >"$work/tap.$i.rc"
			rm -rf "$dir"
		) &
	done
	wait
	for i in "${!tap_files[@]}"; do
		cat "$work/tap.$i.out"
		rc=$(cat "$work/tap.$i.rc" 2>/dev/null || echo 1)
		if [ "$rc" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
	done
}

if [ $# -gt 0 ]; then
	tap_files=()
	for f in "$@"; do
		[[ $f == *.sh ]] || tap_files+=("$f")
	done
else
	run_regress
	tap_files=()
	for f in "$PROJECT_DIR"/test/t/*.pl; do
		[ -e "$f" ] && tap_files+=("test/t/$(basename "$f")")
	done
fi
if [ "${TAP_JOBS:-1}" -gt 1 ]; then
	run_taps_side_by_side "$TAP_JOBS"
else
	for f in "${tap_files[@]}"; do
		if run_tap "$f"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
	done
fi

# The nemesis soak (test/soak/nemesis.pl, also bash scripts/soak.sh): 30 s
# of random faults with a fixed seed and the default layout, so a
# regression shows the same way every time, and 30 s with a new seed and a
# layout picked from it (another preset or a custom layout, printed with
# the seed), so the runs together cover more.
soak() {
	echo "== soak $*"
	if run_soak "$work" "$@"; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		tail -n 80 "$work"/tmp_check/log/regress_log_nemesis 2>/dev/null
	fi
	rm -rf "$work/tmp_check"
}
if [ $# -eq 0 ]; then
	soak --seconds 30 --seed 20261201
	soak --seconds 30 --seed random --layout random
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
