#!/usr/bin/env bash
# The nemesis soak: a three-member etcd cluster and four servers under random
# faults (kill -9, SIGSTOP, clock steps and drift, etcd members killed and
# paused, the mark table locked, settings reloaded) while clients insert,
# then a check of every ID issued.  Builds (with assertions) and installs
# the extension first, as scripts/test.sh does.
#
#   bash scripts/soak.sh [--minutes M | --seconds S] [--seed N|random]
#       [--layout NAME|random] [--report FILE]
#
# --layout runs the servers with that snowflake.layout (a preset such as
# sonyflake, or the custom form in quotes); random picks one from the seed.
# Prints one summary line (IDs checked, faults by kind, duplicates,
# availability) and exits non-zero on any violation, with the seed and the
# fault log to replay it.
set -euo pipefail

PROJECT_DIR=$(cd "$(dirname "$0")/.." && pwd)
. "$PROJECT_DIR/scripts/lib.sh"

args=()
report=
while [ $# -gt 0 ]; do
	case $1 in
	--minutes) args+=(--seconds "$(($2 * 60))"); shift 2 ;;
	--report) report=$(realpath -m "$2"); shift 2 ;;
	--seconds | --seed | --layout | --ttl | --clients | --pace) args+=("$1" "$2"); shift 2 ;;
	*) echo "unknown argument: $1 (see the head of $0)" >&2; exit 2 ;;
	esac
done

install_packages make gcc "postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR" \
	libcurl4-openssl-dev $SOAK_PACKAGES
build_and_install "-DUSE_ASSERT_CHECKING"
work=$(server_owned_copy)
trap 'rm -rf "$work"' EXIT
status=0
if [ -n "$report" ]; then
	run_soak "$work" "${args[@]}" --report "$work/report.txt" || status=$?
	cp "$work/report.txt" "$report" 2>/dev/null || true
else
	run_soak "$work" "${args[@]}" || status=$?
fi
if [ "$status" -ne 0 ]; then
	log=$(ls "$work"/tmp_check/log/regress_log_* 2>/dev/null | head -1)
	[ -n "$log" ] && { echo "---- tail of $log"; tail -n 80 "$log"; }
fi
exit $status
