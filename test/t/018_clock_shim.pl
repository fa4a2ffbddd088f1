# The whole-server clock shim (test/clock_shim.c): every process of a server
# started with start_with_server_clock() runs on the shifted clock, our
# background worker and the other processes the postmaster forks from its
# SIGCHLD handler included (libfaketime leaves those on the real clock), and
# set_server_clock() steps the running server, processes that already exist
# included, without a restart.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();
use lib 'test/lib';
use SnowflakeTest;

my $node = snowflake_node('shim', "snowflake.node_id = 1\n");
my $started = Time::HiRes::time();
start_with_server_clock($node, -30);

wait_until_ready($node);

# Seconds by which the server's clock (an epoch expression in SQL) lags the
# real clock, read between two real-time readings: the lag is known to lie
# within [real before - server, real after - server].
sub lag
{
	my ($session, $expr) = @_;
	my $before = Time::HiRes::time();
	my $server = $session->query_safe("SELECT extract(epoch FROM $expr)");
	my $after = Time::HiRes::time();
	return ($before - $server, $after - $server);
}

sub lag_ok
{
	my ($session, $expr, $expected, $what) = @_;
	my ($low, $high) = lag($session, $expr);
	# The server's clock has microseconds and IDs milliseconds: a quarter
	# of a second is ample slack, and small against the steps tested.
	ok($low - 0.25 <= $expected && $expected <= $high + 0.25, $what)
	  or diag("lag between $low and $high s, expected $expected");
	return;
}

my $session = $node->background_psql('postgres');

lag_ok($session, 'now()', 30, 'now() is 30 s behind the real clock');
lag_ok($session, 'clock_timestamp()', 30,
	'clock_timestamp() is 30 s behind the real clock');
lag_ok($session, 'snowflake_timestamp(snowflake_nextval())', 30,
	'IDs carry the shifted time (the generator reads clock_gettime)');

# Every process started after the server's start, so each one's start time,
# read from its own clock, lies 30 s before the real time of the start, not
# after it: the worker and the other processes forked from the SIGCHLD
# handler as much as the client backends.
my $now = Time::HiRes::time();
my $rows = $node->safe_psql('postgres', q{
	SELECT backend_type, extract(epoch FROM backend_start)
	FROM pg_stat_activity WHERE backend_start IS NOT NULL ORDER BY 1});
my %start_of;
for my $row (split /\n/, $rows)
{
	my ($type, $start) = split /\|/, $row;
	$start_of{$type} = $start;
}
ok(exists $start_of{'snowflake high-water worker'}, 'the worker is listed')
  or diag($rows);
for my $type ('snowflake high-water worker', 'autovacuum launcher',
	'logical replication launcher', 'client backend')
{
	my $start = $start_of{$type} // 'NaN';
	ok($start >= $started - 30 - 1 && $start <= $now - 30 + 1,
		"$type started on the shifted clock")
	  or diag("$type started at $start, server started at $started, now $now");
}

# Step to the real time while the server runs: the open session (a process
# that read the old offset) and a new one follow at once.
set_server_clock($node, 0);
lag_ok($session, 'clock_timestamp()', 0,
	'an existing backend follows the step at once');
my $fresh = $node->background_psql('postgres');
lag_ok($fresh, 'clock_timestamp()', 0, 'a new backend sees the stepped clock');
lag_ok($fresh, 'snowflake_timestamp(snowflake_nextval())', 0,
	'IDs follow the stepped clock');

# Fractions of a second, both ways.
set_server_clock($node, 0.5);
lag_ok($session, 'clock_timestamp()', -0.5, 'half a second ahead');
set_server_clock($node, -4);
lag_ok($session, 'clock_timestamp()', 4, 'four seconds behind');

$session->quit;
$fresh->quit;
$node->stop;
done_testing();
