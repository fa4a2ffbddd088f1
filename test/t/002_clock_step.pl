# A clock stepped back while the server runs (libfaketime moves only this
# server's clock).  A small step is ridden out: IDs keep coming from the last
# millisecond, then the generator waits for the clock.  A large step is
# refused with an error naming the gap once the last millisecond is used up.
# Either way no ID is issued twice or out of order, the status counts the
# rollbacks, and IDs resume by themselves when the clock is right again.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test/lib';
use SnowflakeTest;

my $node = snowflake_node('clock',
	"snowflake.node_id = 3\nsnowflake.max_clock_rollback = 1000\n");
my $clock = start_with_movable_clock($node, '+0');

wait_until_ready($node);
$node->safe_psql('postgres', q{
	CREATE TABLE ids (id bigint NOT NULL, step int NOT NULL);
});

sub issue
{
	my ($step, $count) = @_;
	my ($ret, $out, $err) = $node->psql('postgres',
		"INSERT INTO ids SELECT snowflake_nextval(), $step FROM generate_series(1, $count)");
	return ($ret, $err);
}

my ($ret, $err) = issue(1, 1000);
is($ret, 0, 'IDs are issued on a correct clock');

# Step back 0.3 s, less than max_clock_rollback: 10000 IDs need the rest of
# the last millisecond, then a wait for the clock, then more milliseconds.
set_clock_offset($clock, '-0.3');
($ret, $err) = issue(2, 10000);
is($ret, 0, 'a 0.3 s step back is waited out') or diag($err);
is($node->safe_psql('postgres', 'SELECT clock_rollbacks >= 1 FROM snowflake_status()'),
	't', 'the rollback is counted');

# A wait longer than wait_timeout is an error, not an endless wait.
set_clock_offset($clock, '-0.8');
($ret, undef, $err) = $node->psql('postgres', q{
	SET snowflake.wait_timeout = 100;
	SELECT count(snowflake_nextval()) FROM generate_series(1, 5000)});
isnt($ret, 0, 'a wait beyond snowflake.wait_timeout fails');
like($err, qr/timed out after 100 ms waiting for the clock/, 'the error says it timed out');
set_clock_offset($clock, '+0');
($ret, $err) = issue(3, 1000);
is($ret, 0, 'IDs flow again on a correct clock') or diag($err);

# Step back 5 s, more than max_clock_rollback.
my $rollbacks_before = $node->safe_psql('postgres',
	'SELECT clock_rollbacks FROM snowflake_status()');
my $last_before = $node->safe_psql('postgres',
	'SELECT last_timestamp FROM snowflake_status()');
set_clock_offset($clock, '-5');
is($node->safe_psql('postgres', 'SELECT now() < timestamptz ' . "'$last_before'"),
	't', 'the server clock now reads before the last issued ID');

# The last millisecond still has sequence numbers left (1000 IDs fill less
# than one), so the next ID is issued from it, ahead of the clock.
($ret, $err) = issue(4, 1);
is($ret, 0, 'right after the step, the last millisecond is used up first') or diag($err);
is($node->safe_psql('postgres',
		"SELECT snowflake_timestamp(id) = timestamptz '$last_before' FROM ids WHERE step = 4"),
	't', 'that ID carries the last issued millisecond');

($ret, undef, $err) = $node->psql('postgres', q{
	\set VERBOSITY verbose
	SELECT count(snowflake_nextval()) FROM generate_series(1, 5000)});
isnt($ret, 0, 'then a 5 s step back is refused');
like($err, qr/55000/, 'with SQLSTATE 55000');
like($err, qr/the clock moved backwards by \d+ ms, more than snowflake.max_clock_rollback \(1000 ms\)/,
	'the error names the gap and the setting');
my ($gap) = $err =~ /moved backwards by (\d+) ms/;
ok(defined $gap && $gap > 1000 && $gap <= 5000,
	'the gap is the distance from the clock back to the last ID') or diag($err);
is($node->safe_psql('postgres', 'SELECT clock_rollbacks FROM snowflake_status()'),
	$rollbacks_before + 1, 'the rollback is counted once');
like($node->safe_psql('postgres', 'SELECT last_error FROM snowflake_status()'),
	qr/moved backwards/, 'status shows the last error');

# Back to the right time: IDs resume with no restart.
set_clock_offset($clock, '+0');
($ret, $err) = issue(5, 1000);
is($ret, 0, 'IDs resume by themselves when the clock is right') or diag($err);

is($node->safe_psql('postgres', 'SELECT count(*) - count(DISTINCT id) FROM ids'),
	0, 'no ID was issued twice');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM ids a JOIN (SELECT step, max(id) AS top FROM ids GROUP BY step) b
	ON a.step > b.step AND a.id <= b.top}),
	0,
	'every ID is greater than every ID of the steps before it');
is($node->safe_psql('postgres', 'SELECT count(*) FROM ids'), 1000 + 10000 + 1000 + 1 + 1000,
	'every successful statement kept all its IDs');

$node->stop;
done_testing();
