# The persisted high-water mark: after a crash, restarts
# with the clock set back, a killed worker, an idle server, a clean restart,
# a table the worker cannot write, and a changed epoch, no ID is ever issued
# twice and every ID issued after a restart is above every ID before it.
# libfaketime moves only this server's clock.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use lib 'test/lib';
use SnowflakeTest;

my $node = snowflake_node('mark',
	"snowflake.node_id = 5\nsnowflake.reserve = 1000\nsnowflake.max_clock_rollback = 5000\nrestart_after_crash = on\n");
my $clock = start_with_movable_clock($node, '+0');
wait_until_ready($node);
$node->safe_psql('postgres',
	'CREATE TABLE ids (id bigint NOT NULL, run int NOT NULL)');

# One single-row-batch INSERT per pgbench transaction, for load while things break.
my $pgbench_script = $node->basedir . '/load.sql';
sub write_load
{
	my ($tag) = @_;
	open(my $fh, '>', $pgbench_script) or die;
	print $fh "INSERT INTO ids SELECT snowflake_nextval(), $tag FROM generate_series(1, 50);\n";
	close($fh);
	return $pgbench_script;
}

my $run = 0;
sub issue
{
	my ($count) = @_;
	$run++;
	return $node->psql('postgres',
		"INSERT INTO ids SELECT snowflake_nextval(), $run FROM generate_series(1, $count)");
}
sub ids_above_all_earlier_runs
{
	return query($node, q{
		SELECT count(*) FROM ids a JOIN (SELECT run, max(id) AS top FROM ids GROUP BY run) b
		ON a.run > b.run AND a.id <= b.top}) == 0;
}
sub mark_in_table
{
	return query($node, 'SELECT high_water FROM snowflake_high_water WHERE node_id = 5');
}
# On a server running without a worker (node id -1): move node 5's mark
# $seconds ahead of the clock, then restart as node 5 with the clock at
# $offset.  Returns the mark.
sub restart_with_mark_ahead
{
	my ($seconds, $offset) = @_;
	query($node, "UPDATE snowflake_high_water SET high_water = clock_timestamp() + interval '$seconds s'
		WHERE node_id = 5");
	my $mark = mark_in_table();
	$node->stop('fast');
	$node->append_conf('postgresql.conf', "snowflake.node_id = 5\n");
	start_with_movable_clock($node, $offset);
	return $mark;
}

is(issue(1000), 0, 'IDs are issued');
is(query($node, 'SELECT high_water >= last_timestamp FROM snowflake_status()'), 't',
	'the committed mark is at or above the last ID');

# Idle: no IDs, no writes.
my $row_version = query($node, 'SELECT xmin FROM snowflake_high_water WHERE node_id = 5');
sleep 3;
is(query($node, 'SELECT xmin FROM snowflake_high_water WHERE node_id = 5'), $row_version,
	'an idle server writes no mark for 3 s');
# ... while issuing for longer than half a reserve does write (issued in
# rounds until it has, for at most 4 s: four reserves).
for (1 .. 20)
{
	issue(100);
	usleep(200_000);
	last if query($node, 'SELECT xmin FROM snowflake_high_water WHERE node_id = 5') ne $row_version;
}
isnt(query($node, 'SELECT xmin FROM snowflake_high_water WHERE node_id = 5'), $row_version,
	'a server issuing IDs renews the mark');
is(query($node, 'SELECT high_water >= last_timestamp FROM snowflake_status()'), 't',
	'the renewed mark covers the last ID');

# Clean restart on a correct clock: the exact last timestamp is recorded,
# so nothing needs waiting out.
my $last = query($node, 'SELECT last_timestamp FROM snowflake_status()');
$node->stop('fast');
# Look at the table with no worker running (no node id), then restart.
$node->append_conf('postgresql.conf', "snowflake.node_id = -1\n");
$node->start;
is(mark_in_table(), $last, 'a clean shutdown records the exact last issued timestamp');
$node->stop('fast');
$node->append_conf('postgresql.conf', "snowflake.node_id = 5\n");
start_with_movable_clock($node, '+0');
is(issue(10), 0, 'a clean restart issues IDs');
ok(ids_above_all_earlier_runs(), 'above every earlier ID');

# Crash under load: the mark in the table bounds every ID issued.  Looked
# at with no worker running (no node id), before any new reservation.
my $load = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '4', '-T', '30', '-f', write_load(1000), '-h', $node->host, '-p', $node->port, 'postgres' ],
	'>', \my $load_out, '2>', \my $load_err);
sleep 2;
$node->kill9;
$load->finish;
$node->append_conf('postgresql.conf', "snowflake.node_id = -1\n");
start_with_movable_clock($node, '+0');
cmp_ok(query($node, 'SELECT count(*) FROM ids WHERE run = 1000'), '>', 0,
	'the load had committed rows before the crash');
is(query($node, q{SELECT count(*) FROM ids, snowflake_high_water m
	WHERE m.node_id = 5 AND snowflake_timestamp(id) > m.high_water}), 0,
	'after a crash, the mark is at or above every ID issued');

# A restart with the clock far behind the mark.  libfaketime cannot move the
# clock of the worker: the PostgreSQL 15 postmaster forks it from a signal
# handler while it sleeps in select(), which libfaketime wraps with faking
# switched off, and the child keeps it off (its backends, forked from the
# main loop, do follow the moved clock).  So the clock "going back" across
# the restart is made the other way round: the mark is moved 10 s ahead, as
# a previous run with a clock 10 s fast would have left it.  10 s is more
# than reserve + max_clock_rollback (6 s): refused at once, naming node, mark
# and gap; IDs resume by themselves once the clock passes the mark.
my $mark_ahead = restart_with_mark_ahead(10, '+0');
$node->poll_query_until('postgres', q{SELECT state = 'clock_behind' FROM snowflake_status()})
  or die 'the server did not report clock_behind';
my ($ret, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\nSELECT snowflake_nextval()");
isnt($ret, 0, 'far behind the mark: nextval refuses at once');
like($err, qr/55000: the clock is \d+ ms behind the high-water mark of node 5/,
	'the error names the node and the gap');
like($err, qr/reserved up to/, 'and the mark');
ok($node->log_contains(qr/WARNING:  the clock is \d+ ms behind the high-water mark of node 5/),
	'the log gets a WARNING');
$node->poll_query_until('postgres', q{SELECT state = 'ready' FROM snowflake_status()})
  or die 'the server did not become ready once the clock passed the mark';
is(issue(1000), 0, 'IDs resume by themselves once the clock passes the mark');
is(query($node, "SELECT count(*) FROM ids WHERE run = $run AND snowflake_timestamp(id) <= '$mark_ahead'"),
	0, 'no ID at or below the mark');
query($node, "UPDATE ids SET run = $run - 1 WHERE run = 1000");
ok(ids_above_all_earlier_runs(), 'every ID after the crash is above every ID before');

# A crash, then a restart with the clock 0.3 s behind (libfaketime: the
# backends run behind, the worker does not, see above) and the mark 3 s
# ahead: within reserve + max_clock_rollback, so callers wait for the clock,
# then get IDs above the mark.
is(issue(1000), 0, 'IDs before the second crash');
$node->kill9;
$node->append_conf('postgresql.conf', "snowflake.node_id = -1\n");
start_with_movable_clock($node, '+0');
my $mark_second = restart_with_mark_ahead(3, '-0.3');
is(issue(1000), 0, 'restarted behind the mark: nextval waits for the clock, then issues');
is(query($node, "SELECT count(*) FROM ids WHERE run = $run AND snowflake_timestamp(id) <= '$mark_second'"),
	0, 'no ID at or below the mark');
ok(ids_above_all_earlier_runs(), 'above every ID before the crash');
set_clock_offset($clock, '+0');

# The worker killed while clients insert: the postmaster restarts it (and,
# for a killed process, every backend), no ID repeats.
my $worker = query($node, q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'snowflake high-water worker'});
ok($worker > 0, 'the worker runs');
$load = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '4', '-T', '4', '-f', write_load(2000), '-h', $node->host, '-p', $node->port, 'postgres' ],
	'>', \$load_out, '2>', \$load_err);
sleep 1;
kill 'KILL', $worker;
$load->finish;
$node->poll_query_until('postgres', q{SELECT state = 'ready' FROM snowflake_status()})
  or die 'the worker did not come back';
isnt(query($node, q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'snowflake high-water worker'}),
	$worker, 'the worker was restarted');
is(issue(100), 0, 'IDs flow after the worker restarted');
query($node, "UPDATE ids SET run = $run - 1 WHERE run = 2000");    # the load came before
ok(ids_above_all_earlier_runs(), 'IDs after the restart are above every ID before');
is(query($node, 'SELECT count(*) - count(DISTINCT id) FROM ids'), 0, 'no ID repeats');
unlike($load_err, qr/snowflake|timed out/, 'clients saw no snowflake error, only the restart');

# The worker stopped without a crash (pg_terminate_backend): it closes the
# generator and records the exact last millisecond; its successor reopens
# above it, and nothing is ever issued above what the table holds.
$worker = query($node, q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'snowflake high-water worker'});
is(issue(1000), 0, 'IDs before the worker is terminated');
query($node, "SELECT pg_terminate_backend($worker)");
is(issue(1000), 0, 'callers wait for the next worker, then get IDs');
isnt(query($node, q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'snowflake high-water worker'}),
	$worker, 'a new worker took over');
is(query($node, q{SELECT count(*) FROM ids, snowflake_high_water m
	WHERE m.node_id = 5 AND snowflake_timestamp(id) > m.high_water}), 0,
	'no ID is above the mark in the table');
ok(ids_above_all_earlier_runs(), 'and IDs kept increasing');

# Reservation outage: the worker cannot write its table.  IDs continue up to
# the committed reservation, then callers wait and time out; nothing past
# the mark is issued; IDs flow again once the table is free.
# A reservation of 5 s, fresh when the lock is taken, so that IDs can be
# seen to continue however slow the machine is.
$node->append_conf('postgresql.conf', "snowflake.reserve = 5000\n");
$node->reload;
$node->poll_query_until('postgres', q{SELECT current_setting('snowflake.reserve') = '5s'})
  or die 'reload did not apply';
issue(100);
$node->poll_query_until('postgres',
	q{SELECT high_water > clock_timestamp() + interval '3 s' FROM snowflake_status()})
  or die 'no reservation of 5 s';
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE snowflake_high_water IN ACCESS EXCLUSIVE MODE;');
my ($issued, $failure) = (0, '');
for (1 .. 60)
{
	($ret, $out, $err) = $node->psql('postgres',
		"SET snowflake.wait_timeout = 300; INSERT INTO ids SELECT snowflake_nextval(), 3000 FROM generate_series(1, 100)");
	if ($ret != 0) { $failure = $err; last; }
	$issued++;
	usleep(100_000);
}
ok($issued > 0, 'IDs continue while the reservation lasts');
like($failure, qr/timed out after 300 ms waiting for a high-water reservation/,
	'then callers time out waiting for a reservation');
$node->poll_query_until('postgres',
	q{SELECT last_error ~ 'could not reserve the high-water mark' FROM snowflake_status()})
  or die 'status did not show the failed reservation';
pass('status shows what the worker could not do');
is(query($node, q{SELECT count(*) FROM ids, snowflake_status() s
	WHERE snowflake_timestamp(id) > s.high_water}), 0,
	'no ID is past the committed mark');
$locker->query_safe('COMMIT');
$locker->quit;
$node->append_conf('postgresql.conf', "snowflake.reserve = 1000\n");
$node->reload;
is(issue(100), 0, 'IDs flow again once the worker can write');
is(query($node, 'SELECT count(*) - count(DISTINCT id) FROM ids'), 0, 'still no ID repeats');

# A changed epoch on a data directory with marks is refused.
$node->stop('fast');
$node->append_conf('postgresql.conf', "snowflake.epoch = '2024-06-01 00:00:00+00'\n");
start_with_movable_clock($node, '+0');
$node->poll_query_until('postgres', q{SELECT state = 'error' FROM snowflake_status()})
  or die 'a changed epoch was not refused';
like(query($node, 'SELECT last_error FROM snowflake_status()'),
	qr/snowflake.epoch was changed: the high-water table holds marks written under epoch 2024-01-01/,
	'status names the old and new epochs');
($ret, $out, $err) = $node->psql('postgres', 'SELECT snowflake_nextval()');
like($err, qr/snowflake.epoch was changed/, 'nextval refuses under a changed epoch');
$node->append_conf('postgresql.conf', "snowflake.epoch = '2024-01-01 00:00:00+00'\n");
$node->restart;
wait_until_ready($node);
is(issue(10), 0, 'the original epoch issues again');

ok(!$node->log_contains(qr/server process .* was terminated by signal (?!9)/),
	'no server process crashed except those the test killed');
$node->stop;
done_testing();
