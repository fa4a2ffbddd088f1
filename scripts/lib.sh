# Shared by scripts/demo.sh, scripts/test.sh, the script suites (test/*.sh)
# and bench/run.sh: install what this machine lacks, build and install the
# extension, run things as a user that PostgreSQL agrees to run as, and
# throwaway servers on a Unix socket.  Sourced, not run.

PG_MAJOR=15
# PG_BIN may name the bin directory of a relocated copy of the PostgreSQL
# installation, so that several trees build and test side by side without
# installing over each other.
PG_BIN=${PG_BIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
PG_CONFIG=$PG_BIN/pg_config
PGXS_DIR=$(dirname "$PG_BIN")/lib/pgxs

# as_root CMD...: root runs it as is, anyone else through sudo.
as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# The user the throwaway servers run as: PostgreSQL refuses root.
server_user() {
	if [ "$(id -u)" -eq 0 ]; then echo postgres; else id -un; fi
}

# as_server_user CMD...: run CMD as that user, with the PostgreSQL binaries
# first on PATH (a fresh Debian has no initdb on PATH).
as_server_user() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- env PATH="$PG_BIN:$PATH" "$@"
	else
		env PATH="$PG_BIN:$PATH" "$@"
	fi
}

# install_packages PKG...: apt-get only what is missing.
install_packages() {
	local missing=() pkg
	for pkg in "$@"; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" ||
			missing+=("$pkg")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "Installing: ${missing[*]}"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# build_and_install [PG_CFLAGS]: compile warning-free and install into the
# PostgreSQL 15 directories.
build_and_install() {
	make -s -C "$PROJECT_DIR" PG_CONFIG="$PG_CONFIG" clean >/dev/null
	make -s -C "$PROJECT_DIR" PG_CONFIG="$PG_CONFIG" PG_CFLAGS="-Werror ${1:-}"
	as_root make -s -C "$PROJECT_DIR" PG_CONFIG="$PG_CONFIG" install >/dev/null
}

# server_owned_copy: a copy of the project in a fresh temporary directory
# owned by the server user, since pg_regress and TAP write beside the
# sources and the clone may belong to root.
server_owned_copy() {
	local dir
	dir=$(mktemp -d "${TMPDIR:-/tmp}/snowflake.XXXXXX")
	tar -C "$PROJECT_DIR" --exclude=.git -cf - . | tar -C "$dir" -xf -
	[ "$(id -u)" -eq 0 ] && chown -R postgres: "$dir"
	chmod 755 "$dir"
	echo "$dir"
}

# init_throwaway_server DIR NODE_ID [INITDB_OPTION...]: a data directory in
# DIR/data for a server preloading snowflake with that node id, on a Unix
# socket in DIR only.  DIR must belong to the server user.
init_throwaway_server() {
	local dir=$1 node_id=$2
	shift 2
	as_server_user initdb -D "$dir/data" -A trust -U postgres "$@" >/dev/null || return 1
	cat >>"$dir/data/postgresql.conf" <<CONF
shared_preload_libraries = 'snowflake'
snowflake.node_id = $node_id
listen_addresses = ''
unix_socket_directories = '$dir'
CONF
}

# start_throwaway_server DIR: start the server of DIR/data, logging to
# DIR/server.log, and wait until it accepts connections.
start_throwaway_server() {
	as_server_user pg_ctl -D "$1/data" -l "$1/server.log" -w -t 60 start >/dev/null
}

# throwaway_psql DIR SQL: run SQL in database postgres of the server on
# DIR's socket, unaligned and tuples only, stopping at the first error.
throwaway_psql() {
	as_server_user psql -X -q -A -t -h "$1" -U postgres -d postgres -v ON_ERROR_STOP=1 -c "$2"
}

# stop_throwaway_server DIR: stop it (fast shutdown) if it runs.
stop_throwaway_server() {
	[ -f "$1/data/postmaster.pid" ] || return 0
	as_server_user pg_ctl -D "$1/data" -m fast -w -t 60 stop >/dev/null
}

# wait_until_ready DIR [PORT [SECONDS]]: poll snowflake_status() in
# database postgres of the server on DIR's socket every 0.2 s until the
# generator's state is ready, for at most SECONDS (default 30); otherwise
# fail, naming the last state seen.
wait_until_ready() {
	local dir=$1 port=${2:-} seconds=${3:-30} state= deadline
	deadline=$((SECONDS + seconds))
	while :; do
		state=$(as_server_user psql -X -A -t -h "$dir" ${port:+-p "$port"} -U postgres \
			-d postgres -c "SELECT state FROM snowflake_status()" 2>/dev/null) || state=
		[ "$state" = ready ] && return 0
		[ "$SECONDS" -ge "$deadline" ] && break
		sleep 0.2
	done
	echo "the generator did not become ready within $seconds s (state: ${state:-no answer})" >&2
	return 1
}

# check DESCRIPTION COMMAND...: for the script suites (test/*.sh), one TAP
# line for COMMAND's success, its output shown on failure.  Uses the
# caller's $work (a scratch directory) and counts into $failures.
check() {	# description command...
	local what=$1
	shift
	if "$@" >"$work/check.out" 2>&1; then
		echo "ok - $what"
	else
		echo "not ok - $what"
		sed 's/^/#   /' "$work/check.out"
		failures=$((failures + 1))
	fi
}

# SOAK_PACKAGES: what the nemesis soak (test/soak/nemesis.pl) needs.
SOAK_PACKAGES="libipc-run-perl libdbd-pg-perl etcd-server etcd-client"

# run_soak DIR ARGS...: the nemesis soak on the project copy DIR (owned by
# the server user, extension installed), with its arguments (--seconds,
# --seed, --report).  Its TAP output and summary go to stdout.
run_soak() {
	local dir=$1
	shift
	(cd "$dir" && as_server_user env \
		PG_REGRESS="$PGXS_DIR/src/test/regress/pg_regress" \
		TESTDIR="$dir" PGXS_DIR="$PGXS_DIR" PG_TEST_TIMEOUT_DEFAULT="${PG_TEST_TIMEOUT_DEFAULT:-180}" \
		perl -I "$PGXS_DIR/src/test/perl" -I "$dir/test/lib" test/soak/nemesis.pl "$@")
}
