#!/usr/bin/env bash
# The Debian package: builds the source package and postgresql-15-snowflake
# from a copy of the tree with dpkg-buildpackage and Debian's PostgreSQL
# extension tooling (pg_buildext, dh --with pgxs), checks them with lintian
# (no error, warning, info or pedantic tag but those debian/*lintian-overrides
# explain), installs the package with dpkg, runs a fresh server preloaded
# with the packaged library that makes and decodes IDs, then removes the
# package again.  Needs root (dpkg) and the packages named in
# scripts/test.sh; prints "ok - ..." per check and exits non-zero on any
# failure.
#
# It replaces files that `make install` put in the PostgreSQL directories
# and removes them with the package: scripts/test.sh runs it before it
# builds and installs the extension for the other suites.
set -uo pipefail

PROJECT_DIR=$(cd "$(dirname "$0")/.." && pwd)
. "$PROJECT_DIR/scripts/lib.sh"

PACKAGE=postgresql-$PG_MAJOR-snowflake
LIBDIR=$("$PG_CONFIG" --pkglibdir)
SHAREDIR=$("$PG_CONFIG" --sharedir)/extension
failures=0
work=$(mktemp -d "${TMPDIR:-/tmp}/snowflake-package.XXXXXX")

cleanup() {
	stop_throwaway_server "$work" 2>/dev/null
	if dpkg-query -W -f='${Status}' "$PACKAGE" 2>/dev/null | grep -q "ok installed"; then
		as_root dpkg -r "$PACKAGE" >/dev/null
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# Build from a copy, so the tree (root's or a user's clone) gets no build
# files; the package files land beside the copy.  The copy holds the files
# git tracks (as they are in the tree, changes included), so build output
# lying in the tree does not end up in the source package.
mkdir "$work/src"
if git -C "$PROJECT_DIR" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	git -C "$PROJECT_DIR" ls-files -z --cached --others --exclude-standard |
		(cd "$PROJECT_DIR" && tar --null -T - -cf -) | tar -C "$work/src" -xf -
else
	tar -C "$PROJECT_DIR" --exclude=.git -cf - . | tar -C "$work/src" -xf -
fi
check "dpkg-buildpackage builds the source and binary packages with pg_buildext" \
	bash -c "cd '$work/src' && dpkg-buildpackage -us -uc >'$work/build.log' 2>&1 || { tail -n 40 '$work/build.log'; exit 1; }"
changes=$(ls "$work"/snowflake_*.changes 2>/dev/null | head -n 1)
check "it made the .dsc and the .changes" \
	bash -c "[ -n '$changes' ] && ls '$work'/snowflake_*.dsc"

# lintian on the .changes checks it, the .dsc and the .deb files, at every
# level but experimental; run as root (CI), it says so on stderr.
check "lintian finds no tag that debian/*lintian-overrides does not explain" \
	bash -c "lintian --display-info --pedantic --fail-on error,warning,info,pedantic '$changes' 2>&1 | grep -v '^running with root privileges'; exit \${PIPESTATUS[0]}"
# ... and every override is still needed: without them lintian (now with
# experimental tags too) reports exactly the tags they explain, so it did
# look at the packages.
lintian --display-info --pedantic --display-experimental --no-override "$changes" 2>/dev/null |
	sed -n 's/^[EWIPX]: [^:]*: \([a-z0-9-]*\).*/\1/p' | sort -u >"$work/tags.found"
sed -e '/^#/d' -e '/^$/d' -e 's/^[a-z0-9.+-]* \{0,1\}[a-z]*: //' -e 's/ .*//' \
	"$PROJECT_DIR"/debian/binary.lintian-overrides "$PROJECT_DIR"/debian/source/lintian-overrides |
	sort -u >"$work/tags.overridden"
check "without the overrides lintian reports the tags they explain, no fewer" \
	diff "$work/tags.overridden" "$work/tags.found"
deb=$(ls "$work"/${PACKAGE}_*.deb 2>/dev/null | head -n 1)
[ -n "$deb" ] || { echo "not ok - no $PACKAGE .deb was built"; exit 1; }
check "the package holds the library, the control file and the install and upgrade scripts" \
	bash -c "dpkg-deb -c '$deb' | grep -q '$LIBDIR/snowflake.so\$' &&
		dpkg-deb -c '$deb' | grep -q '$SHAREDIR/snowflake.control\$' &&
		dpkg-deb -c '$deb' | grep -q '$SHAREDIR/snowflake--1.0.sql\$' &&
		dpkg-deb -c '$deb' | grep -q '$SHAREDIR/snowflake--1.0--1.1.sql\$' &&
		dpkg-deb -c '$deb' | grep -q '$SHAREDIR/snowflake--1.1--1.2.sql\$' &&
		dpkg-deb -c '$deb' | grep -q '$SHAREDIR/snowflake--1.2--1.3.sql\$'"
check "it is built for PostgreSQL $PG_MAJOR only" \
	bash -c "[ \"\$(ls '$work'/postgresql-*-snowflake_*.deb | wc -l)\" -eq 1 ] &&
		dpkg-deb -f '$deb' Depends | grep -q 'postgresql-$PG_MAJOR'"

check "dpkg -i installs it" as_root dpkg -i "$deb"
check "the installed files are the package's, unmodified" \
	bash -c "dpkg -S '$LIBDIR/snowflake.so' | grep -q '^$PACKAGE:' && dpkg --verify '$PACKAGE'"

# A clean server, preloaded with the packaged library.
[ "$(id -u)" -eq 0 ] && chown "$(server_user)" "$work"
init_throwaway_server "$work" 12
check "a server starts with the packaged library preloaded" \
	start_throwaway_server "$work"
psql_pkg() { throwaway_psql "$work" "$1"; }
check "CREATE EXTENSION snowflake works in snowflake.database" \
	psql_pkg "CREATE EXTENSION snowflake"
check "the generator becomes ready" wait_until_ready "$work" "" 30
check "the extension is version 1.3" \
	test "$(psql_pkg "SELECT extversion FROM pg_extension WHERE extname = 'snowflake'")" = 1.3
psql_pkg "CREATE TABLE t (id bigserial PRIMARY KEY, v text);
	INSERT INTO t (v) VALUES ('before');
	SELECT snowflake_convert_column('t', 'id');
	INSERT INTO t (v) SELECT 'after' FROM generate_series(1, 1000);" >/dev/null 2>&1
check "it makes IDs that decode to node 12, now" \
	test "$(psql_pkg "SELECT count(*) FROM t, snowflake_decode(id) d
		WHERE v = 'after' AND d.node = 12 AND d.ts BETWEEN now() - interval '1 min' AND clock_timestamp()")" = 1000
stop_throwaway_server "$work"

check "dpkg -r removes it" as_root dpkg -r "$PACKAGE"
check "and its files" test ! -e "$LIBDIR/snowflake.so" -a ! -e "$SHAREDIR/snowflake.control"

[ "$failures" -eq 0 ]
