# Moving from pgEdge's snowflake extension (README: "Moving from pgEdge's
# snowflake"): keys composed in SQL the way pgEdge's code composes them
# (milliseconds since 2023-01-01 00:00 UTC << 22 | node << 12 | count) are
# decoded exactly by our functions with that epoch; a server given
# snowflake.epoch = '2023-01-01 00:00:00+00' converts the table, and every
# new key, made under the same node id, is above every old one; a server
# left on the default epoch refuses the conversion, and so does the right
# server when an old key lies in its future.  A snowflake.node line left in
# postgresql.conf is removed with a warning when our library loads.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test/lib';
use SnowflakeTest;

# pgEdge's keys: every 7 hours of the last 700 days up to a minute ago, on
# its nodes 1, 2 and 3, with counts 0, 1 and 4095; ts, node and cnt kept
# beside the key to compare the decoding with.
my $pgedge_keys = q{
	CREATE TABLE tickets (id bigint PRIMARY KEY, subject text,
		ts timestamptz, node int, cnt int);
	INSERT INTO tickets (id, subject, ts, node, cnt)
	SELECT ((floor(extract(epoch FROM t.ts) * 1000)::bigint - 1672531200000) << 22)
	       | (n.node::bigint << 12) | c.cnt,
	       'made by pgEdge', t.ts, n.node, c.cnt
	FROM (SELECT date_trunc('milliseconds', now() - interval '1 min' - g * interval '7 hours') AS ts
	      FROM generate_series(0, 2399) g) t,
	     (VALUES (1), (2), (3)) n(node), (VALUES (0), (1), (4095)) c(cnt);
};
my $old_rows = 2400 * 3 * 3;

sub sql_error
{
	my ($node, $sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	return $ret == 0 ? '' : $err;
}

# The first try: our library preloaded, pgEdge's snowflake.node line still
# in postgresql.conf, the default epoch.
my $first = snowflake_node('first_try', "snowflake.node = 3\nsnowflake.node_id = 3\n");
$first->start;
wait_until_ready($first);
ok( $first->log_contains(
		qr/WARNING: .*invalid configuration parameter name "snowflake\.node", removing it/),
	'a snowflake.node line in postgresql.conf is removed with a warning');
ok($first->log_contains(qr/DETAIL: .*"snowflake" is now a reserved prefix/),
	'the warning says the snowflake prefix is reserved');
like(sql_error($first, 'SHOW snowflake.node'),
	qr/unrecognized configuration parameter "snowflake\.node"/,
	'snowflake.node no longer exists');
like(sql_error($first, 'SET snowflake.node = 3'),
	qr/invalid configuration parameter name "snowflake\.node"/,
	'and cannot be set');

$first->safe_psql('postgres', $pgedge_keys);
is( $first->safe_psql('postgres', q{
		SELECT count(*) FROM tickets, snowflake_decode(id, '2023-01-01+00') d
		WHERE d.ts = tickets.ts AND d.node = tickets.node AND d.seq = tickets.cnt}),
	$old_rows,
	"pgEdge's keys decode exactly with the explicit epoch 2023-01-01: its layout is ours");
is( $first->safe_psql('postgres',
		q{SELECT snowflake_timestamp(max(id)) > now() + interval '360 days' FROM tickets}),
	't', 'read with the default epoch, the newest key seems a year ahead');
my $err = sql_error($first, q{SELECT snowflake_convert_column('tickets', 'id')});
like($err, qr/55000: column "id" of table (?:public\.)?tickets holds values up to \d+, at or above the snowflake ID of now/,
	'on the default epoch, snowflake_convert_column refuses the table');
is( $first->safe_psql('postgres', q{
		SELECT count(*) FROM pg_attrdef WHERE adrelid = 'tickets'::regclass}),
	'0', 'and leaves the column without a default');
$first->stop;

# The move done right: pgEdge's epoch, the node id its snowflake.node had.
my $moved = snowflake_node('moved',
	"snowflake.node_id = 3\nsnowflake.epoch = '2023-01-01 00:00:00+00'\n");
$moved->start;
wait_until_ready($moved);
ok(!$moved->log_contains(qr/snowflake\.node"/), 'without the old line, no warning');
$moved->safe_psql('postgres', $pgedge_keys);
is( $moved->safe_psql('postgres', q{
		SELECT count(*) FROM tickets, snowflake_decode(id) d
		WHERE d.ts = tickets.ts AND d.node = tickets.node AND d.seq = tickets.cnt}),
	$old_rows, "with snowflake.epoch = 2023-01-01, snowflake_decode(id) reads pgEdge's keys");
is($moved->psql('postgres', q{SELECT snowflake_convert_column('tickets', 'id')}),
	0, 'snowflake_convert_column accepts the table');
$moved->safe_psql('postgres', q{
	INSERT INTO tickets (subject) SELECT 'made by us' FROM generate_series(1, 20000)});
is( $moved->safe_psql('postgres', q{
		SELECT count(*) FILTER (WHERE subject = 'made by us') || ' ' ||
		       count(DISTINCT id) || ' ' ||
		       (min(id) FILTER (WHERE subject = 'made by us') >
		        max(id) FILTER (WHERE subject = 'made by pgEdge')) || ' ' ||
		       bool_and(snowflake_node(id) = 3) FILTER (WHERE subject = 'made by us')
		FROM tickets}),
	'20000 ' . ($old_rows + 20000) . ' true true',
	'20000 new keys on node 3, all distinct from and above every pgEdge key');
is( $moved->safe_psql('postgres', q{
		SELECT count(*) FROM (
			SELECT subject, lag(subject) OVER (ORDER BY id) AS before FROM tickets) s
		WHERE subject = 'made by pgEdge' AND before = 'made by us'}),
	'0', 'sorted by key, every old row comes before every new one');
is( $moved->safe_psql('postgres', q{
		SELECT bool_and(snowflake_timestamp(id) BETWEEN now() - interval '1 min' AND clock_timestamp())
		FROM tickets WHERE subject = 'made by us'}),
	't', 'the new keys decode to the time they were made');

# An old key in the future of this server (a pgEdge clock that ran ahead):
# the conversion is refused until the clock has passed it.
$moved->safe_psql('postgres', q{
	CREATE TABLE ahead (id bigint PRIMARY KEY, subject text);
	INSERT INTO ahead VALUES
		(((floor(extract(epoch FROM now()) * 1000)::bigint - 1672531200000 - 60000) << 22) | (3 << 12), 'a minute ago'),
		(((floor(extract(epoch FROM now() + interval '30 s') * 1000)::bigint - 1672531200000) << 22) | (3 << 12), 'ahead');
});
like(sql_error($moved, q{SELECT snowflake_convert_column('ahead', 'id')}),
	qr/55000: column "id" of table (?:public\.)?ahead holds values up to \d+, at or above the snowflake ID of now/,
	'a pgEdge key 30 s ahead of the clock makes snowflake_convert_column refuse');
$moved->safe_psql('postgres', q{DELETE FROM ahead WHERE subject = 'ahead'});
is($moved->psql('postgres', q{SELECT snowflake_convert_column('ahead', 'id')}),
	0, 'without it, the table is accepted');

$moved->stop;
done_testing();
