#!/usr/bin/env bash
# Checks that src/*.c and src/*.h are formatted the way PostgreSQL formats
# its own C (pgindent's layout: pg_bsd_indent with PostgreSQL's options),
# and with --fix rewrites them so.  Prints the changes a file needs and exits
# 1 when any file needs one.
#
#   bash scripts/indent.sh          check (CI runs this)
#   bash scripts/indent.sh --fix    reformat in place
#
# pg_bsd_indent comes from Debian's package pg-bsd-indent, installed here
# when missing.  It must know which words are type names: those our files
# use (our own and PostgreSQL's, libcurl's, libc's) are listed, one a line,
# in scripts/typedefs.list; add a new type there when you add one to src/.
#
# Set PGINDENT to the path of PostgreSQL's own pgindent script (from a
# PostgreSQL source tree, src/tools/pgindent/pgindent) to run that instead
# of the steps below; both must leave our files unchanged.
set -euo pipefail

PROJECT_DIR=$(cd "$(dirname "$0")/.." && pwd)
. "$PROJECT_DIR/scripts/lib.sh"

fix=false
case "${1:-}" in
	--fix) fix=true ;;
	"") ;;
	*) echo "usage: $0 [--fix]" >&2; exit 2 ;;
esac

install_packages pg-bsd-indent
typedefs=$PROJECT_DIR/scripts/typedefs.list

# PostgreSQL's layout, as its pgindent passes it to pg_bsd_indent: 4-column
# tabs, braces on their own lines, declarations aligned at column 13, 79
# columns, comments from column 33.
INDENT_OPTIONS=(-bad -bap -bbb -bc -bl -cli1 -cp33 -cdb -nce -d0 -di12 -nfc1
	-i4 -l79 -lp -lpl -nip -npro -sac -tpg -ts4)

work=$(mktemp -d "${TMPDIR:-/tmp}/snowflake-indent.XXXXXX")
trap 'rm -rf "$work"' EXIT

# format IN OUT: OUT is IN as PostgreSQL formats it.
format() {
	local in=$1 out=$2
	if [ -n "${PGINDENT:-}" ]; then
		cp "$in" "$out"
		(cd "$work" && perl "$PGINDENT" --typedefs="$typedefs" \
			--indent="$(command -v pg_bsd_indent)" "$out" >/dev/null)
		return
	fi
	pg_bsd_indent "${INDENT_OPTIONS[@]}" "-U$typedefs" "$in" "$out.raw"
	# A return type on its own line ends in " *", not in tabs and "*", as
	# in PostgreSQL's sources.
	sed -E 's/^([A-Za-z_][^[:space:]]*)[[:space:]]+\*$/\1 */' "$out.raw" >"$out"
	rm -f "$out.raw"
}

status=0
for file in "$PROJECT_DIR"/src/*.c "$PROJECT_DIR"/src/*.h; do
	name=src/$(basename "$file")
	formatted=$work/$(basename "$file")
	if ! format "$file" "$formatted" 2>"$work/errors" || [ -s "$work/errors" ]; then
		echo "$name: pg_bsd_indent could not parse it:" >&2
		cat "$work/errors" >&2
		status=1
		continue
	fi
	if ! cmp -s "$file" "$formatted"; then
		if $fix; then
			cp "$formatted" "$file"
			echo "reformatted $name"
		else
			diff -u --label "$name" --label "$name (formatted)" "$file" "$formatted" || true
			status=1
		fi
	fi
done

if [ "$status" -ne 0 ]; then
	echo "Formatting differs from PostgreSQL's: run bash scripts/indent.sh --fix" >&2
else
	echo "ok: src/*.c src/*.h are formatted as PostgreSQL formats its C"
fi
exit "$status"
