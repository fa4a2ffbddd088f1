# Time partitions on the key, the README recipes run as written: a table
# partitioned by hand with one partition per UTC day, and one managed by
# pg_partman in integer mode with one day of IDs per partition.  The
# server's clock is moved a day ahead twice (every process of it, through
# test/clock_shim.c), so rows are made on three days: each row lands in the
# partition of the day it was made, pg_partman's maintenance adds the days
# ahead, and a query by time on the key leaves the other days out of the
# plan.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test/lib';
use SnowflakeTest;

my ($readings, $readings_days, $create_parent, $maintenance, $show, $move_default, $explain) =
  readme_blocks('partitions');
like($create_parent, qr/create_parent/, 'the README creates the pg_partman set');

# The server's clock starts at noon UTC today, so that no midnight passes
# while the test runs.
my $noon = 43200 - (time() % 86400);
my $node = snowflake_node('part', "snowflake.node_id = 5\n");
start_with_server_clock($node, $noon);
wait_until_ready($node);
local $ENV{PGTZ} = 'UTC';

run_readme_sql($node, $readings);
run_readme_sql($node, $readings_days);
run_readme_sql($node, $create_parent);
is($node->safe_psql('postgres',
	q{SELECT count(*) FROM pg_inherits WHERE inhparent = 'readings'::regclass}),
	'7', 'the declarative recipe made 7 daily partitions');

# Rows made on three days: today, tomorrow and the day after, each day
# after the README's daily runs: its statement for the declarative
# partitions, pg_partman's maintenance.
my %partition_of_day;
for my $day (0 .. 2)
{
	set_server_clock($node, $noon + $day * 86400);
	run_readme_sql($node, $readings_days) if $day > 0;
	$node->safe_psql('postgres', qq{
		INSERT INTO readings (value) SELECT n FROM generate_series(1, 50) n;
		INSERT INTO events (body) SELECT jsonb_build_object('day', $day, 'n', n) FROM generate_series(1, 50) n;
	});
	run_readme_sql($node, $maintenance);
	$partition_of_day{$day} = $node->safe_psql('postgres', q{
		SELECT 'events_p' || snowflake_from_timestamp(date_trunc('day', now(), 'UTC'))});
}
is($node->safe_psql('postgres',
	q{SELECT count(DISTINCT snowflake_timestamp(id)::date) FROM events}),
	'3', 'the rows were made on three days');

# The declarative table: every row in the partition named after its day.
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM readings
	WHERE tableoid::regclass::text <> 'readings_' || to_char(snowflake_timestamp(id) AT TIME ZONE 'UTC', 'YYYYMMDD')}),
	'0', 'every row of the declarative table is in the partition of its day');
is($node->safe_psql('postgres', 'SELECT count(DISTINCT tableoid) FROM readings'),
	'3', 'which are three partitions');
is($node->safe_psql('postgres', q{
	SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
	WHERE i.inhparent = 'readings'::regclass}),
	$node->safe_psql('postgres', q{
	SELECT string_agg('readings_' || to_char(d, 'YYYYMMDD'), ',' ORDER BY d)
	FROM generate_series(now() AT TIME ZONE 'UTC' - interval '2 days', now() AT TIME ZONE 'UTC' + interval '6 days', interval '1 day') d}),
	'run again each day, the statement keeps one partition per day up to 6 days ahead');

# pg_partman: nothing in the default partition, every row in the partition
# starting at the midnight (UTC) of its day, each partition one day of IDs.
is($node->safe_psql('postgres', 'SELECT count(*) FROM ONLY events_default'),
	'0', 'no row went to pg_partman\'s default partition');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM events e,
	     partman.show_partition_info('public.' || e.tableoid::regclass::text) i
	WHERE i.child_start_id::bigint <> snowflake_from_timestamp(date_trunc('day', snowflake_timestamp(e.id), 'UTC'))
	   OR i.child_end_id::bigint - i.child_start_id::bigint + 1 <> 86400000::bigint << 22}),
	'0', 'every pg_partman row is in the partition of its day, one day of IDs long');
is($node->safe_psql('postgres', 'SELECT count(DISTINCT tableoid) FROM events'),
	'3', 'which are three partitions');

# Maintenance kept 4 days ahead of the newest row: the partitions run from
# the first day to 4 days after the third, one per day, at midnight UTC.
my $days = run_readme_sql($node, $show, {}, ['-At']);
my @days = map { (split /\|/)[1] } split /\n/, $days;
my $expected = $node->safe_psql('postgres', q{
	SELECT string_agg(d::text, E'\n' ORDER BY d)
	FROM generate_series(date_trunc('day', now(), 'UTC') - interval '2 days',
	                     date_trunc('day', now(), 'UTC') + interval '4 days', interval '1 day') d});
is(join("\n", @days), $expected,
	'pg_partman holds one partition per day, from the first day to 4 days ahead of the newest row');
like($days[0], qr/ 00:00:00\+00$/, 'starting at midnight UTC');

# Pruning: rows of yesterday and today (the third day) leave the first day
# out of the plan.
my $plan = run_readme_sql($node, $explain);
my ($first_day, $yesterday_part, $today_part) = @partition_of_day{ 0, 1, 2 };
like($plan, qr/Subplans Removed: 1\b/, 'EXPLAIN shows one partition pruned when the query starts');
unlike($plan, qr/\b$first_day\b/, 'the partition of the first day is not in the plan');
like($plan, qr/\b$yesterday_part\b/, 'yesterday\'s partition is');
like($plan, qr/\b$today_part\b/, 'today\'s partition is');

# The IMMUTABLE form with constants prunes when the query is planned.
my $yesterday = $node->safe_psql('postgres',
	q{SELECT date_trunc('day', now(), 'UTC') - interval '1 day'});
my $first = $node->safe_psql('postgres',
	q{SELECT 'readings_' || to_char(now() AT TIME ZONE 'UTC' - interval '2 days', 'YYYYMMDD')});
$plan = $node->safe_psql('postgres', qq{
	EXPLAIN (COSTS OFF) SELECT * FROM readings
	WHERE id >= snowflake_from_timestamp('$yesterday', 0, 0, '2024-01-01+00')});
unlike($plan, qr/Subplans Removed/, 'with the IMMUTABLE form nothing is left to prune at run time');
unlike($plan, qr/\b$first\b/, 'the first day\'s partition is left out at planning');
like($plan, qr/readings_/, 'the others are scanned');

# A week without rows: the next ones are beyond the partitions made ahead
# and go to the default partition, which the README's call empties into the
# partition of their day.
set_server_clock($node, $noon + 9 * 86400);
$node->safe_psql('postgres',
	q{INSERT INTO events (body) SELECT jsonb_build_object('day', 9, 'n', n) FROM generate_series(1, 20) n});
is($node->safe_psql('postgres', 'SELECT count(*) FROM ONLY events_default'),
	'20', 'rows made after a week without rows went to the default partition');
run_readme_sql($node, $move_default);
is($node->safe_psql('postgres', 'SELECT count(*) FROM ONLY events_default'),
	'0', 'partition_data_id() moved them out');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM events e,
	     partman.show_partition_info('public.' || e.tableoid::regclass::text) i
	WHERE i.child_start_id::bigint <> snowflake_from_timestamp(date_trunc('day', snowflake_timestamp(e.id), 'UTC'))}),
	'0', 'into the partition of their day');
is($node->safe_psql('postgres', 'SELECT count(*) FROM events'), '170', 'every row is still there');

$node->stop;
done_testing();
