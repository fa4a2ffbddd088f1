#!/usr/bin/env bash
# Runs every test of snowflake: installs what a fresh Debian 12 lacks,
# builds with -Werror and assertions, installs, then runs the pg_regress
# suite (sql/, expected/) on its own preloaded throwaway server and each TAP
# suite (test/t/*.pl) on the servers it starts.  Ends with one line
# "N passed, N failed" and exits non-zero on any failure.
#
#   bash scripts/test.sh                      everything
#   bash scripts/test.sh test/t/002_x.pl ...  only these TAP suites
#   bash scripts/test.sh test/package.sh      only this script suite
set -uo pipefail

PROJECT_DIR=$(cd "$(dirname "$0")/.." && pwd)
. "$PROJECT_DIR/scripts/lib.sh"

install_packages make gcc "postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR" \
	libipc-run-perl faketime libcurl4-openssl-dev etcd-server etcd-client openssl \
	postgresql-server-dev-all debhelper build-essential gnuplot-nox \
	lintian pgxnclient unzip
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

# Script suites (test/*.sh) run as root.  test/package.sh installs the
# Debian package over the installed files and removes them with it, so the
# scripts run before the build that the other suites use.
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
	[[ $f == *.sh ]] && script_files+=("$f")
done
if [ $# -eq 0 ]; then
	for f in "$PROJECT_DIR"/test/*.sh; do
		[ -e "$f" ] && script_files+=("test/$(basename "$f")")
	done
fi
for f in "${script_files[@]}"; do
	run_script "$f"
done
build_and_install "-DUSE_ASSERT_CHECKING" || { echo "build failed"; echo "$passed passed, $((failed + 1)) failed"; exit 1; }

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

run_tap() {
	local file=$1 log
	echo "== $file"
	if (cd "$work" && as_server_user env \
		PG_REGRESS="$PGXS_DIR/src/test/regress/pg_regress" \
		TESTDIR="$work" PGXS_DIR="$PGXS_DIR" PG_TEST_TIMEOUT_DEFAULT="${PG_TEST_TIMEOUT_DEFAULT:-180}" \
		prove -I "$PGXS_DIR/src/test/perl" -I "$work/test/lib" "$file"); then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		for log in "$work"/tmp_check/log/*; do
			[ -f "$log" ] || continue
			echo "---- tail of $log"
			tail -n 60 "$log"
		done
	fi
	rm -rf "$work/tmp_check/log"
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
for f in "${tap_files[@]}"; do
	run_tap "$f"
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
