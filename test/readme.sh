#!/usr/bin/env bash
# The README's SQL examples, run as written: every ```sql fenced block of
# README.md, in the order it appears, verbatim, with
# psql -v ON_ERROR_STOP=1 in database postgres of a throwaway server
# preloading snowflake with snowflake.node_id set, one psql session per
# block.  A block that fails is shown with its README line, its text and
# psql's error.
#
# The convention this pins down (stated in the README's Tests section):
# README examples are self-contained.  A block may use what an earlier block
# created (a database, a table), never a setup that is not in the README.
# What cannot run on one throwaway server (postgresql.conf lines, shell
# commands, diagrams) is fenced as ini, sh or text; every fence names its
# language, so no SQL example escapes the check by having none.
#
# Run alone, it builds and installs the extension itself first, as
# scripts/demo.sh does, so that it checks the README against this tree, not
# a stale install; scripts/test.sh runs it after its own build of the tree.
set -uo pipefail

PROJECT_DIR=$(cd "$(dirname "$0")/.." && pwd)
. "$PROJECT_DIR/scripts/lib.sh"

README=$PROJECT_DIR/README.md
failures=0
work=$(mktemp -d "${TMPDIR:-/tmp}/snowflake-readme.XXXXXX")
cleanup() {
	stop_throwaway_server "$work" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

# scripts/test.sh has just built and installed this tree: no need to again.
if [ "${SNOWFLAKE_INSTALLED_FROM:-}" != "$PROJECT_DIR" ]; then
	install_packages make gcc "postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR" libcurl4-openssl-dev
	build_and_install "-DUSE_ASSERT_CHECKING" || { echo "not ok - build and install"; exit 1; }
fi

# Split the README: blocks/NNN.sql per ```sql block (the first line of
# blocks/NNN.line holds its README line number); untagged opening fences
# are listed in untagged.txt.  Fences count only at the start of a line.
# A fence with a recipe name after its language (```sql pglogical) is a
# recipe that needs servers of its own: a TAP suite runs it
# (readme_blocks() in test/lib/SnowflakeTest.pm), so it is not run here,
# only listed in recipes.txt with its line.
mkdir "$work/blocks"
awk -v dir="$work/blocks" '
	function flush() { close(file) }
	inside == 0 && /^```/ {
		lang = substr($0, 4)
		recipe = lang
		sub(/[ \t].*$/, "", lang)
		sub(/^[^ \t]*[ \t]*/, "", recipe)
		sub(/[ \t].*$/, "", recipe)
		if (lang == "")
			print NR > (dir "/../untagged.txt")
		if (recipe != "")
			print NR, recipe > (dir "/../recipes.txt")
		inside = 1
		if (lang == "sql" && recipe == "") {
			n++
			file = sprintf("%s/%03d.sql", dir, n)
			printf "" > file
			print NR + 1 > sprintf("%s/%03d.line", dir, n)
			close(sprintf("%s/%03d.line", dir, n))
			in_sql = 1
		}
		next
	}
	inside == 1 && /^```[ \t]*$/ {
		if (in_sql) flush()
		inside = 0
		in_sql = 0
		next
	}
	in_sql { print > file }
	END { if (inside) print "unclosed" > (dir "/../unclosed.txt") }
' "$README"

blocks=("$work"/blocks/*.sql)
check "README.md has sql blocks to run" test -e "${blocks[0]}"
check "every fenced block of README.md names its language (sql, ini, sh, text)" \
	bash -c "[ ! -s '$work/untagged.txt' ] || { echo 'untagged fences at README.md lines:'; cat '$work/untagged.txt'; exit 1; }"
check "every fenced block of README.md is closed" test ! -e "$work/unclosed.txt"

# recipe_has_suite RECIPE: some test/t/*.pl runs readme_blocks('RECIPE').
recipe_has_suite() {
	grep -lF "readme_blocks('$1')" "$PROJECT_DIR"/test/t/*.pl
}
if [ -s "$work/recipes.txt" ]; then
	for recipe in $(awk '{ print $2 }' "$work/recipes.txt" | sort -u); do
		check "README.md recipe '$recipe' is run by a TAP suite" recipe_has_suite "$recipe"
	done
fi

# The server the README's Getting started describes: preloaded, a node id,
# snowflake.database left at its default, postgres.
[ "$(id -u)" -eq 0 ] && chown "$(server_user)" "$work"
chmod 755 "$work" "$work/blocks"
chmod 644 "$work"/blocks/*
init_throwaway_server "$work" 1
if ! as_server_user pg_ctl -D "$work/data" -l "$work/server.log" -w start >/dev/null; then
	echo "not ok - a preloaded throwaway server starts"
	cat "$work/server.log"
	exit 1
fi

# run_block FILE: one psql session, the block verbatim, stop at the first
# error; on failure the block and the error, for check() to show.
run_block() {
	local file=$1 line
	line=$(cat "${file%.sql}.line")
	if as_server_user psql -X -q -h "$work" -U postgres -d postgres \
		-v ON_ERROR_STOP=1 -f "$file" >"$file.out" 2>&1; then
		return 0
	fi
	echo "README.md line $line, the block:"
	sed 's/^/    /' "$file"
	echo "failed with:"
	cat "$file.out"
	return 1
}

for file in "${blocks[@]}"; do
	[ -e "$file" ] || continue
	line=$(cat "${file%.sql}.line")
	first=$(grep -m1 -v '^[[:space:]]*\(--.*\)\?$' "$file")
	check "README.md line $line runs: ${first:0:60}" run_block "$file"
done

# The table of presets under Layouts says what snowflake_layout() says of
# each preset, row for row, in the same words.
presets_table() {
	sed -n '/<!-- presets:begin -->/,/<!-- presets:end -->/p' "$README" |
		grep '^| `' >"$work/presets.readme"
	[ -s "$work/presets.readme" ] || { echo "no presets table in README.md"; return 1; }
	as_server_user psql -X -q -At -h "$work" -U postgres -d postgres -c "
		SET TimeZone = 'UTC';
		SELECT format('| \`%s\` | %s | %s | %s | %s | %s | %s | %s |', l.name,
			regexp_replace(l.fields, ', unit .*$', ''), substring(l.fields from 'unit (.*)$'),
			to_char(l.ids_per_unit, 'FM999,999,999'), to_char(l.node_ids, 'FM999,999'),
			to_char(l.epoch, 'YYYY-MM-DD HH24:MI:SS.MS'),
			round((extract(epoch FROM l.covers_until - l.epoch) / (365.25 * 86400))::numeric, 1),
			l.covers_until::date)
		FROM unnest(ARRAY['snowflake', 'twitter', 'instagram', 'sonyflake']) WITH ORDINALITY AS p(name, n),
			snowflake_layout(p.name) AS l ORDER BY p.n" >"$work/presets.sql.out" || return 1
	diff -u "$work/presets.sql.out" "$work/presets.readme"
}
check "README.md's table of presets matches snowflake_layout()" presets_table

check "the server is still up after the examples" \
	as_server_user pg_ctl -D "$work/data" status
if [ "$failures" -ne 0 ]; then
	echo "# tail of the server log:"
	tail -n 30 "$work/server.log" | sed 's/^/#   /'
fi

[ "$failures" -eq 0 ]
