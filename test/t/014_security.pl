# What the owner of snowflake.database, and settings of that database, can
# do to the worker (a superuser session):
#  (a) an operator planted by a non-superuser database owner, ahead of
#      pg_catalog in the database's search_path, does not run as the worker:
#      the server refuses to issue while a non-superuser owns the database,
#      and once it is given back the worker still runs none of her code;
#  (b) ALTER DATABASE ... SET default_transaction_read_only = on and
#      ALLOW_CONNECTIONS false do not stop the worker's reservations;
#  (c) marks dropped (DROP SCHEMA public CASCADE by a database owner, DROP
#      EXTENSION by a superuser) do not make the node id fresh: no ID at or
#      below one issued before, even after a restart with the clock behind;
#  (d) a snowflake.database that does not exist is reported, without a loop
#      of FATALs in the log;
#  (e) the same on a server no client has connected to since it started.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use lib 'test/lib';
use SnowflakeTest;

# The test's own sessions must not run alice's operators (they run as a
# superuser too), nor be read-only: these override the database's settings.
# (CREATE EXTENSION therefore names its schema: the first of the path is pg_catalog.)
$ENV{PGOPTIONS} = '-c search_path=pg_catalog,public -c default_transaction_read_only=off';

my $node = snowflake_node('security',
	"snowflake.node_id = 7\nsnowflake.reserve = 1000\nsnowflake.max_clock_rollback = 10000\n");
$node->start;

# (d)'s server runs from here, so that its log covers the whole test (many
# more than the 5 s (d) needs) without waiting for it at the end.  Its
# extension is created at once, as before: a server no client connected to
# since its start is another case (its worker was seen failing each second
# with "cannot read pg_class without having selected a database").
my $nodb = snowflake_node('nodb', "snowflake.node_id = 8\nsnowflake.database = 'nosuchdb'\n");
$nodb->start;
my $nodb_started = time();
$nodb->safe_psql('postgres', 'CREATE EXTENSION snowflake SCHEMA public');

# (e)'s server: nothing connects to it before (e), at the end.
my $untouched = snowflake_node('untouched', "snowflake.node_id = 9\nsnowflake.database = 'nosuchdb'\n");
$untouched->start;
my $untouched_started = time();

sub as_alice
{
	my ($sql) = @_;
	return $node->psql('postgres', $sql, extra_params => [ '-U', 'alice' ],
		on_error_stop => 1);
}

# ($ret, $stderr) of one snowflake_nextval() with the SQLSTATE shown.
sub nextval_error
{
	my ($n, $db) = @_;
	my ($ret, $out, $err) = $n->psql($db,
		"\\set VERBOSITY verbose\nSET snowflake.wait_timeout = 2000;\nSELECT snowflake_nextval()");
	return ($ret, $err);
}

sub alice_is_superuser
{
	return query($node, q{SELECT rolsuper FROM pg_roles WHERE rolname = 'alice'}) eq 't';
}

my $run = 0;
# $count IDs into app's ids table; 0 on success.
sub issue
{
	my ($count, $wait) = @_;
	$run++;
	$wait //= 20000;
	my ($ret, $out, $err) = $node->psql('app',
		"SET snowflake.wait_timeout = $wait;
		 INSERT INTO ids SELECT snowflake_nextval(), $run FROM generate_series(1, $count)");
	diag("issue($count): $err") if $ret != 0;
	return $ret;
}
# $rounds batches over 0.3 s each: longer than a reservation.
sub issue_for_a_while
{
	my ($rounds, $wait) = @_;
	my $failed = 0;
	for (1 .. $rounds) { $failed++ if issue(200, $wait) != 0; usleep(300_000); }
	return $failed;
}

# pgbench inserting IDs into app's ids table for $secs seconds.
# Returns the pgbench handle, its stderr and the run number of its rows.
sub start_load
{
	my ($secs) = @_;
	my $tag = ++$run;
	my $script = $node->basedir . "/load_$tag.sql";
	open(my $fh, '>', $script) or die;
	print $fh "SET snowflake.wait_timeout = 20000;\n";
	print $fh "INSERT INTO ids SELECT snowflake_nextval(), $tag FROM generate_series(1, 50);\n";
	close($fh);
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'pgbench', '-n', '-c', '4', '-T', $secs, '-f', $script, '-h', $node->host,
		  '-p', $node->port, 'app' ],
		'>', \$out, '2>', \$err);
	return ($h, \$err, $tag);
}

$node->psql('postgres', 'CREATE EXTENSION IF NOT EXISTS snowflake SCHEMA public');
wait_until_ready($node);
query($node, 'CREATE DATABASE app');
query($node, 'CREATE EXTENSION snowflake SCHEMA public; CREATE TABLE public.ids (id bigint NOT NULL, run int NOT NULL)', 'app');
is(issue(1000), 0, 'IDs are issued');

###########################################################################
# (a) An operator hijack by a non-superuser owner of snowflake.database.
###########################################################################
query($node, q{
	CREATE ROLE alice LOGIN;
	ALTER DATABASE postgres OWNER TO alice;
});
ok(!alice_is_superuser(), 'alice starts as a plain role');

# Alice plants, in public (hers as database owner since PostgreSQL 15),
# comparison operators for the types the worker's SQL compares, and a max()
# aggregate, each of which makes her a superuser when a superuser runs it,
# and puts public ahead of pg_catalog for every session in the database.
my $trap = '';
my %ops = ('=' => 'eq', '<>' => 'ne', '<' => 'lt', '>' => 'gt', '<=' => 'le', '>=' => 'ge');
for my $type (qw(oid int4 int8 name text timestamptz))
{
	for my $op (sort keys %ops)
	{
		my $fn = "public.trap_$ops{$op}_$type";
		$trap .= qq{
CREATE FUNCTION $fn(a $type, b $type) RETURNS boolean LANGUAGE plpgsql AS \$\$
BEGIN
	IF pg_catalog.current_setting('is_superuser') OPERATOR(pg_catalog.=) 'on' THEN
		EXECUTE 'ALTER ROLE alice SUPERUSER';
	END IF;
	RETURN a OPERATOR(pg_catalog.$op) b;
END \$\$;
CREATE OPERATOR public.$op (LEFTARG = $type, RIGHTARG = $type, FUNCTION = $fn);
};
	}
}
$trap .= q{
CREATE FUNCTION public.trap_max(a timestamptz, b timestamptz) RETURNS timestamptz
LANGUAGE plpgsql AS $$
BEGIN
	IF pg_catalog.current_setting('is_superuser') OPERATOR(pg_catalog.=) 'on' THEN
		EXECUTE 'ALTER ROLE alice SUPERUSER';
	END IF;
	RETURN CASE WHEN a IS NULL OR b OPERATOR(pg_catalog.>) a THEN b ELSE a END;
END $$;
CREATE AGGREGATE public.max(timestamptz) (SFUNC = public.trap_max, STYPE = timestamptz);
ALTER DATABASE postgres SET search_path = public, pg_catalog;
};
my ($ret, $out, $err) = as_alice($trap);
is($ret, 0, 'alice, owner of snowflake.database, plants operators and a search_path') or diag($err);

$node->restart;
# The restart makes the worker read the mark and reserve: drive IDs.
issue_for_a_while(8, 2000);
ok(!alice_is_superuser(), 'the worker ran none of alice\'s operators: she is not a superuser');
ok(poll_until($node, 'postgres', q{SELECT state = 'error' FROM snowflake_status()}, 10),
	'a server whose snowflake.database a non-superuser owns is in state error');
like(query($node, 'SELECT last_error FROM snowflake_status()'),
	qr/database "postgres" \(snowflake\.database\) is owned by role "alice", who is not a superuser/,
	'last_error names the database and its owner');
($ret, $err) = nextval_error($node, 'app');
isnt($ret, 0, 'nextval refuses');
like($err, qr/55000: .*owned by role "alice"/, 'with 55000 naming the owner');
like($err, qr/ALTER DATABASE postgres OWNER TO/, 'the hint says how to fix it');

# (Should the worker have fallen into the trap, undo it, so that what
# follows is judged on its own.)
query($node, 'ALTER ROLE alice NOSUPERUSER; ALTER DATABASE postgres OWNER TO postgres');
ok(poll_until($node, 'postgres', q{SELECT state = 'ready' FROM snowflake_status()}, 10),
	'given back to a superuser, the server becomes ready by itself');
is(issue_for_a_while(8), 0, 'IDs flow over several reservations');
is(query($node, q{SELECT setconfig::text FROM pg_db_role_setting s
	JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = 'postgres' AND s.setrole = 0}),
	'{"search_path=public, pg_catalog"}', 'alice\'s search_path is still set on the database');
ok(!alice_is_superuser(),
	'with her operators and search_path in place, the worker still runs none of them');

# The trap is real: a superuser session with the database's search_path
# falls into it.
query($node, q{SET search_path = public, pg_catalog; SELECT 1::oid = 1::oid});
ok(alice_is_superuser(), 'the trap works on a superuser session that uses the search_path');
query($node, 'ALTER ROLE alice NOSUPERUSER');

###########################################################################
# (b) Read-only by default and closed to connections: the worker still
# reserves.  (alice's operators and search_path stay in place.)
###########################################################################
issue(100);
my $updated_before = query($node, 'SELECT max(updated_at) FROM snowflake_high_water WHERE node_id = 7');
query($node, q{
	ALTER DATABASE postgres SET default_transaction_read_only = on;
	ALTER DATABASE postgres ALLOW_CONNECTIONS false;
}, 'app');
$node->restart;
my $restarted_at = query($node, 'SELECT clock_timestamp()', 'app');
ok(poll_until($node, 'app', q{SELECT state = 'ready' FROM snowflake_status()}, 10),
	'read-only by default and ALLOW_CONNECTIONS false: the server becomes ready');
is(issue_for_a_while(10), 0, 'IDs flow over several reservations');
is(query($node, qq{SELECT high_water > '$restarted_at'::timestamptz + interval '1 s'
	FROM snowflake_status()}, 'app'), 't', 'the worker reserved past the restart');
query($node, 'ALTER DATABASE postgres ALLOW_CONNECTIONS true', 'app');
is(query($node, qq{SELECT max(updated_at) > '$updated_before'::timestamptz
	AND max(updated_at) > '$restarted_at'::timestamptz FROM snowflake_high_water WHERE node_id = 7}),
	't', 'the mark row was written after the restart (updated_at advanced)');
is(query($node, q{SELECT count(*) FROM ids, snowflake_status() s
	WHERE snowflake_timestamp(id) > s.high_water}, 'app'), 0, 'no ID above the committed mark');

###########################################################################
# (c) Marks dropped.
###########################################################################
# A database owner can drop the marks (the extension's schema is hers);
# while alice owns snowflake.database the server issues nothing at all.
issue(1000);
my $max_before = query($node, 'SELECT max(id) FROM ids WHERE snowflake_node(id) = 7', 'app');
query($node, 'ALTER DATABASE postgres OWNER TO alice');
ok(poll_until($node, 'postgres', q{SELECT state = 'error' FROM snowflake_status()}, 10),
	'alice given snowflake.database while the server runs: state error')
  or diag(query($node, 'SELECT state, last_error, high_water, last_timestamp, clock_timestamp() FROM snowflake_status()'));
($ret, $err) = nextval_error($node, 'app');
like($err, qr/55000: .*owned by role "alice"/, 'nextval refuses, naming her');
($ret, $out, $err) = as_alice('DROP SCHEMA public CASCADE');
is($ret, 0, 'alice, as database owner, drops the schema holding the marks (and the extension)')
  or diag($err);
($ret, $err) = nextval_error($node, 'app');
isnt($ret, 0, 'still nothing is issued');
query($node, 'ALTER DATABASE postgres OWNER TO postgres');
sleep 2;
is(query($node, q{SELECT count(*) FROM pg_extension WHERE extname = 'snowflake'}), 0,
	'the worker did not recreate the extension');
($ret, $err) = nextval_error($node, 'app');
like($err, qr/55000: the snowflake extension is not installed in database "postgres" \(snowflake\.database\)/,
	'given back without the extension: nextval says it is not installed');
query($node, 'CREATE SCHEMA public AUTHORIZATION pg_database_owner; CREATE EXTENSION snowflake SCHEMA public');
ok(poll_until($node, 'app', q{SELECT state = 'ready' FROM snowflake_status()}, 10),
	'recreated by a superuser: ready again');
my $first_run = $run + 1;
is(issue(5000), 0, 'IDs after the marks were recreated');
is(query($node, "SELECT count(*) FROM ids WHERE run >= $first_run AND id <= $max_before", 'app'), 0,
	'none at or below an ID issued before the marks were dropped');

# A superuser drops the extension under load, then the server restarts with
# its whole clock 4 s behind and the extension is created again.
my ($load, $load_err, $load_run) = start_load(4);
sleep 2;
($ret, $out, $err) = $node->psql('postgres', 'DROP EXTENSION snowflake CASCADE');
is($ret, 0, 'DROP EXTENSION snowflake CASCADE in snowflake.database while IDs are issued') or diag($err);
$load->finish;
$max_before = query($node, 'SELECT max(id) FROM ids WHERE snowflake_node(id) = 7', 'app');
my $count_before = query($node, 'SELECT count(*) FROM ids', 'app');
cmp_ok(query($node, "SELECT count(*) FROM ids WHERE run = $load_run", 'app'), '>', 0, 'the load issued IDs');
ok(-s $node->data_dir . '/snowflake.marks', '$PGDATA/snowflake.marks holds the marks');
$node->stop('fast');

SKIP:
{
	# TODO: start_with_server_clock comes with branch h1-shim-convert
	# (design point 10); without it no restart with the worker's clock
	# behind can be made here.
	skip 'start_with_server_clock (test/clock_shim.c) is not available yet', 6
	  unless SnowflakeTest->can('start_with_server_clock');
	SnowflakeTest::start_with_server_clock($node, -4);
	is(query($node, qq{SELECT clock_timestamp() < snowflake_timestamp($max_before)}, 'app'), 't',
		'restarted with the clock behind the last ID issued before the drop');
	query($node, 'CREATE EXTENSION snowflake SCHEMA public');
	# Until the worker has seen the extension, nextval says it is missing.
	ok(poll_until($node, 'app', q{SELECT state <> 'error' FROM snowflake_status()}, 10),
		'the worker takes the new extension as the home of the marks');
	my $after = $run + 1;
	is(issue(10000), 0, 'IDs once the extension is back');
	($load, $load_err) = start_load(3);
	$load->finish;
	is(query($node, "SELECT count(*) FROM ids WHERE (run >= $after) AND id <= $max_before", 'app'), 0,
		'zero IDs at or below the old maximum: the marks file remembered the node');
	cmp_ok(query($node, 'SELECT count(*) FROM ids', 'app'), '>', $count_before + 10000,
		'the load after the restart issued IDs');
	is(query($node, 'SELECT count(*) - count(DISTINCT id) FROM ids', 'app'), 0, 'no ID repeats');
	$node->stop('fast');
}

###########################################################################
# (d) snowflake.database names no database.
###########################################################################
# (Started, and its extension created, at the beginning.)
ok(poll_until($nodb, 'postgres', q{SELECT state = 'error' FROM snowflake_status()}, 10),
	'snowflake.database = nosuchdb: state error');
like($nodb->safe_psql('postgres', 'SELECT last_error FROM snowflake_status()'),
	qr/database "nosuchdb" \(snowflake\.database\) does not exist/, 'last_error names it');
($ret, $err) = nextval_error($nodb, 'postgres');
like($err, qr/55000: database "nosuchdb" \(snowflake\.database\) does not exist/,
	'nextval refuses, naming it');
my $ran = time() - $nodb_started;
if ($ran < 6) { usleep(1_000_000 * (6 - $ran)); $ran = time() - $nodb_started; }
my $fatals = () = slurp_file($nodb->logfile) =~ /FATAL:/g;
cmp_ok($fatals, '<=', 2, sprintf('no FATAL loop in the log over %.0f s (%d FATAL lines)', $ran, $fatals));
$nodb->stop;

###########################################################################
# (e) snowflake.database names no database, and no client has connected
# since the start: the worker's check of the shared catalog must not need
# what only a backend's connection leaves behind.
###########################################################################
my $untouched_log = $untouched->logfile;
my $warned = 0;
for (1 .. 100)
{
	last if $warned = slurp_file($untouched_log) =~
	  /WARNING: .*database "nosuchdb" \(snowflake\.database\) does not exist/;
	usleep(100_000);
}
ok($warned, 'untouched server: the worker warns that nosuchdb does not exist');
$ran = time() - $untouched_started;
if ($ran < 6) { usleep(1_000_000 * (6 - $ran)); $ran = time() - $untouched_started; }
my @untouched_fatals = slurp_file($untouched_log) =~ /(FATAL:.*)/g;
cmp_ok(scalar(@untouched_fatals), '<=', 2,
	sprintf('untouched server: no FATAL loop over %.0f s before any connection (%d FATAL lines)',
		$ran, scalar(@untouched_fatals)))
  or diag(join("\n", @untouched_fatals[0 .. ($#untouched_fatals < 4 ? $#untouched_fatals : 4)]));
unlike(join("\n", @untouched_fatals), qr/cannot read pg_class/,
	'untouched server: the worker reads pg_database without a database selected');
$untouched->safe_psql('postgres', 'CREATE EXTENSION snowflake SCHEMA public');
like($untouched->safe_psql('postgres', 'SELECT last_error FROM snowflake_status()'),
	qr/database "nosuchdb" \(snowflake\.database\) does not exist/, 'untouched server: last_error names it');
$untouched->stop;

done_testing();
