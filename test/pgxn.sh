#!/usr/bin/env bash
# The PGXN distribution: META.json follows the PGXN meta spec 1.0.0 (checked
# by test/lib/pgxn_meta.pl, which must also reject broken copies of it) and
# agrees with snowflake.control, debian/changelog and debian/control;
# `make dist` builds snowflake-<version>.zip; pgxnclient installs it from
# that local file, loads it into a fresh preloaded server (CREATE
# EXTENSION), which makes and decodes an ID; `pgxn uninstall` removes it.
# Needs root (or sudo, which pgxnclient calls for the install) and the
# packages named in scripts/test.sh; prints "ok - ..." per check and exits
# non-zero on any failure.
#
# Like test/package.sh it replaces files that `make install` put in the
# PostgreSQL directories and removes them: scripts/test.sh runs it before
# it builds and installs the extension for the other suites.
set -uo pipefail

PROJECT_DIR=$(cd "$(dirname "$0")/.." && pwd)
. "$PROJECT_DIR/scripts/lib.sh"

LIBDIR=$("$PG_CONFIG" --pkglibdir)
SHAREDIR=$("$PG_CONFIG" --sharedir)/extension
VALIDATE="$PROJECT_DIR/test/lib/pgxn_meta.pl"
failures=0
work=$(mktemp -d "${TMPDIR:-/tmp}/snowflake-pgxn.XXXXXX")

cleanup() {
	stop_throwaway_server "$work" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

# meta KEY...: a value of META.json (keys and array indexes, in order).
meta() {
	perl -MJSON::PP -e 'local $/; my $v = JSON::PP->new->decode(<STDIN>);
		for my $k (@ARGV) { $v = ref $v eq "ARRAY" ? $v->[$k] : $v->{$k}; }
		print defined $v ? (ref $v ? JSON::PP->new->canonical->encode($v) : $v) : "";' \
		"$@" <"$PROJECT_DIR/META.json"
}

check "META.json follows the PGXN meta spec 1.0.0, its files in the tree" \
	perl "$VALIDATE" --dist "$PROJECT_DIR" "$PROJECT_DIR/META.json"

# What PGXN shows of a distribution, beyond what the spec requires.
check "META.json has a description, tags, release_status, resources and runtime prereqs" \
	bash -c '[ -n "$1" ] && [ -n "$2" ] && [ "$3" = stable ] && [ -n "$4" ] && [ -n "$5" ] && [ -n "$6" ]' _ \
	"$(meta description)" "$(meta tags 0)" "$(meta release_status)" \
	"$(meta resources homepage)" "$(meta resources bugtracker web)" "$(meta resources repository url)"
check "it requires PostgreSQL 15 and libcurl, to build and to run" \
	bash -c '[ "$1" = ">= 15.0.0, < 16.0.0" ] && [ "$2" = "$1" ] && [ "$3" = 0 ] && [ "$4" = 0 ]' _ \
	"$(meta prereqs runtime requires PostgreSQL)" "$(meta prereqs build requires PostgreSQL)" \
	"$(meta prereqs runtime requires libcurl)" "$(meta prereqs build requires libcurl)"
control_version=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$PROJECT_DIR/snowflake.control")
changelog_version=$(sed -n '1s/^snowflake (\([^)]*\)).*/\1/p' "$PROJECT_DIR/debian/changelog")
version=$(meta version)
check "its version ($version) is snowflake.control's ($control_version) and debian/changelog's ($changelog_version)" \
	bash -c '[ "$1" = "$2.0" ] && [ "$1" = "$3" ] && [ "$1" = "$4" ]' _ \
	"$version" "$control_version" "$changelog_version" "$(meta provides snowflake version)"
maintainer=$(sed -n 's/^Maintainer: //p' "$PROJECT_DIR/debian/control")
check "its maintainer is the Debian package's ($maintainer), everywhere, and not a placeholder" \
	bash -c '[ "$1" = "$2" ] && [ "$(sed -n "s/^Maintainer: //p" "$3/debian/control.in")" = "$2" ] &&
		! grep "^ -- " "$3/debian/changelog" | grep -vqF " -- $2  " &&
		! grep -qiE "example\.invalid|@localhost|^the snowflake developers" <<<"$2"' _ \
	"$(meta maintainer 0)" "$maintainer" "$PROJECT_DIR"

# The validator must catch what it claims to check: each broken copy is
# rejected with a message naming the key.
broken() {	# description expected-message perl-code-changing-$m
	local what=$1 expect=$2 code=$3
	perl -MJSON::PP -e 'local $/; my $m = JSON::PP->new->decode(<STDIN>); '"$code"';
		print JSON::PP->new->pretty->encode($m);' <"$PROJECT_DIR/META.json" >"$work/broken.json"
	check "the check rejects a META.json with $what" \
		bash -c '! perl "$1" --dist "$2" "$3" >"$4" 2>&1 && grep -qF -- "$5" "$4" || { cat "$4"; exit 1; }' _ \
		"$VALIDATE" "$PROJECT_DIR" "$work/broken.json" "$work/broken.out" "$expect"
}
broken "no version" "version: is required" 'delete $m->{version}'
broken "a version that is not semantic" 'version: "1.2" is not a semantic version' '$m->{version} = "1.2"'
broken "a version as a JSON number" 'version: must be a string' '$m->{version} = 1.2'
broken "no maintainer" "maintainer: is required" 'delete $m->{maintainer}'
broken "an empty maintainer list" "maintainer: must list at least one" '$m->{maintainer} = []'
broken "a license name the spec does not know" 'license: "PostgreSQL License" is not a license name' \
	'$m->{license} = "PostgreSQL License"'
broken "an extension without its file" 'provides.snowflake: "file" is required' 'delete $m->{provides}{snowflake}{file}'
broken "an extension file missing from the distribution" 'provides.snowflake.file: "snowflake--9.9.sql" is not in the distribution' \
	'$m->{provides}{snowflake}{file} = "snowflake--9.9.sql"'
broken "an absolute docfile" 'provides.snowflake.docfile: "/README.md" is not a relative Unix path' \
	'$m->{provides}{snowflake}{docfile} = "/README.md"'
broken "meta-spec 2.0.0" "meta-spec.version: must be a string 1.0.x" '$m->{"meta-spec"}{version} = "2.0.0"'
broken "a prereq version range that is not one" 'prereqs.runtime.requires.PostgreSQL: ">= fifteen" is not a version range' \
	'$m->{prereqs}{runtime}{requires}{PostgreSQL} = ">= fifteen"'
broken "an unknown prereq phase" 'prereqs: unknown key "install"' '$m->{prereqs}{install} = $m->{prereqs}{runtime}'
broken "a bugtracker that is not a URI" 'resources.bugtracker.web: "our issues" is not a URI' \
	'$m->{resources}{bugtracker}{web} = "our issues"'
broken "a repository with a url but no type" "resources.repository: must hold url and type, or web" \
	'delete $m->{resources}{repository}{type}; delete $m->{resources}{repository}{web}'
broken "a one-letter tag" 'tags[0]: "x" is not a tag' '$m->{tags}[0] = "x"'
broken "a release_status the spec does not know" "release_status: must be stable, testing or unstable" \
	'$m->{release_status} = "final"'
broken "an unknown top-level key" 'top level: unknown key "homepage"' '$m->{homepage} = "https://example.org"'
printf '{ "name": "snowflake", }\n' >"$work/broken.json"
check "the check rejects a META.json that is not JSON" \
	bash -c '! perl "$1" "$2" >"$3" 2>&1 && grep -q "not valid JSON" "$3" || { cat "$3"; exit 1; }' _ \
	"$VALIDATE" "$work/broken.json" "$work/broken.out"

# The distribution, from one command.
zip=snowflake-$version.zip
check "make dist builds $zip" \
	make -s -C "$PROJECT_DIR" PG_CONFIG="$PG_CONFIG" dist DIST_DIR="$work"
mkdir "$work/unpacked"
check "it unpacks into snowflake-$version/ with META.json, Makefile, the control file and the sources" \
	bash -c 'cd "$1/unpacked" && unzip -q "../$2" && [ "$(ls)" = "snowflake-$3" ] &&
		cd "snowflake-$3" && [ -f META.json ] && [ -f Makefile ] && [ -f snowflake.control ] &&
		[ -f src/generator.c ] && [ ! -e .ci ] && [ ! -e .git ]' _ "$work" "$zip" "$version"
check "its META.json follows the spec, its files in the distribution" \
	perl "$VALIDATE" --dist "$work/unpacked/snowflake-$version" "$work/unpacked/snowflake-$version/META.json"

# pgxnclient: from the local file (a spec with a "/"), as root without
# sudo (the library directory is writable), as anyone else through sudo.
touch "$work/before-install"
check "pgxn install ./$zip builds and installs it" \
	bash -c 'cd "$1" && pgxn install --yes --pg_config "$2" "./$3"' _ "$work" "$PG_CONFIG" "$zip"
check "the library and the control file are the ones it just installed" \
	bash -c '[ "$1/snowflake.so" -nt "$3" ] && [ "$2/snowflake.control" -nt "$3" ] &&
		[ "$2/snowflake--1.1--1.2.sql" -nt "$3" ]' _ "$LIBDIR" "$SHAREDIR" "$work/before-install"

# A fresh server preloading the library pgxn installed.
[ "$(id -u)" -eq 0 ] && chown "$(server_user)" "$work"
init_throwaway_server "$work" 7
check "a server starts with that library preloaded" \
	start_throwaway_server "$work"
psql_pgxn() { throwaway_psql "$work" "$1"; }
check "pgxn load ./$zip creates the extension (CREATE EXTENSION)" \
	bash -c 'cd "$1" && pgxn load --yes --pg_config "$2" -h "$1" -U postgres -d postgres "./$3"' _ \
	"$work" "$PG_CONFIG" "$zip"
check "the extension is version $control_version" \
	test "$(psql_pgxn "SELECT extversion FROM pg_extension WHERE extname = 'snowflake'")" = "$control_version"
ready=no
for _ in $(seq 1 60); do
	if [ "$(psql_pgxn "SELECT state FROM snowflake_status()" 2>/dev/null)" = ready ]; then
		ready=yes
		break
	fi
	sleep 0.5
done
check "the generator becomes ready" test "$ready" = yes
check "it makes an ID that decodes to node 7, now" \
	test "$(psql_pgxn "SELECT d.node = 7 AND d.ts BETWEEN now() - interval '1 min' AND clock_timestamp()
		FROM snowflake_nextval() id, snowflake_decode(id) d")" = t
stop_throwaway_server "$work"

check "pgxn uninstall ./$zip removes its files" \
	bash -c 'cd "$1" && pgxn uninstall --yes --pg_config "$2" "./$3" && [ ! -e "$4/snowflake.so" ] &&
		[ ! -e "$5/snowflake.control" ]' _ "$work" "$PG_CONFIG" "$zip" "$LIBDIR" "$SHAREDIR"

[ "$failures" -eq 0 ]
