# Edges of snowflake.layout found in review, each needing a server of its
# own or a restart:
# (1) a layout whose time field is wider than timestamps can show (44 bits
# of seconds) issues IDs, at the clock's second, and continues above them
# after a restart (its marks were refused as out of range, so it issued
# nothing);
# (2) a row of another layout written into the mark table stops issuing
# even when its node id lies beyond this layout's (it was ignored until the
# next restart), and even when its transaction commits after the worker,
# woken by the trigger, read the table again (that read missed it, and IDs
# went on until the next restart; so for another epoch too);
# (3) a mark file of another layout is refused naming both layouts and is
# left as it was, even when its node ids do not fit this layout (it was
# called corrupted); set back, IDs continue above the earlier ones.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test/lib';
use SnowflakeTest;

my $sonyflake = 'time 39, sequence 8, node 16, unit 10ms';

# (1) 44 bits of seconds: about 146,000 years are counted, not 557,000.
my $wide = snowflake_node('wide',
	"snowflake.node_id = 200\nsnowflake.layout = 'time 44, node 8, sequence 11, unit 1s'\n");
$wide->start;
query($wide, 'CREATE EXTENSION snowflake');
ok( poll_until(
		$wide, 'postgres',
		q{SELECT state = 'ready' FROM snowflake_status()}, 30),
	'a 44-bit field of seconds: the generator becomes ready');
SKIP:
{
	skip 'the generator is not ready', 2
	  unless query($wide, 'SELECT state FROM snowflake_status()') eq 'ready';
	query($wide, 'CREATE TABLE ids (id bigint, run int, ts timestamptz)');
	query($wide, 'INSERT INTO ids SELECT snowflake_nextval(), 1, clock_timestamp() FROM generate_series(1, 300)');
	is( query(
			$wide, q{
		SELECT count(DISTINCT id) = 300
		   AND bool_and(snowflake_node(id) = 200)
		   AND bool_and(snowflake_timestamp(id) <= ts
		                AND snowflake_timestamp(id) > ts - interval '1 s')
		FROM ids}),
		't',
		'it issues IDs of its node, each at the clock\'s second');
	$wide->restart;
	wait_until_ready($wide);
	query($wide, 'INSERT INTO ids SELECT snowflake_nextval(), 2, clock_timestamp() FROM generate_series(1, 10)');
	is( query(
			$wide,
			'SELECT min(id) FILTER (WHERE run = 2) > max(id) FILTER (WHERE run = 1) FROM ids'),
		't',
		'after a restart its IDs continue above the earlier ones');
}
$wide->stop;

# (2) The default layout: node ids 0..1023.
my $node = snowflake_node('review', "snowflake.node_id = 7\n");
$node->start;
wait_until_ready($node);
query($node, 'CREATE TABLE ids (id bigint, run int)');
query($node, 'INSERT INTO ids SELECT snowflake_nextval(), 1 FROM generate_series(1, 100)');
my $epoch = query($node, 'SHOW snowflake.epoch');

# Insert a row into the mark table in a transaction that stays open for a
# while (as a restore's does), so that the worker, woken by the trigger,
# reads the table before it commits; returns once it has committed.
sub insert_mark_slowly
{
	my ($values) = @_;
	my ($stdout, $stderr) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres') ],
		'<', \"BEGIN;\nINSERT INTO snowflake_high_water (node_id, epoch, high_water, layout) VALUES ($values);\nSELECT pg_sleep(3);\nCOMMIT;\n",
		'>', \$stdout, '2>', \$stderr);
	$h->finish or die "insert failed: $stderr";
	return;
}

insert_mark_slowly("40000, '$epoch', clock_timestamp(), '$sonyflake'");
ok( poll_until(
		$node, 'postgres',
		q{SELECT state = 'error' FROM snowflake_status()}, 10),
	'a mark row of another layout, of a node id beyond ours, committed late, stops issuing');
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT snowflake_nextval()');
like($err, qr/snowflake\.layout was changed: the high-water table holds marks written under layout "\Q$sonyflake\E", but the server runs with "time 41, node 10, sequence 12, unit 1ms"/,
	'the refusal names both layouts');

# The same for a row of another epoch, of a node id in range.
query($node, 'DELETE FROM snowflake_high_water WHERE node_id = 40000');
$node->restart;
wait_until_ready($node);
insert_mark_slowly("3, '2020-01-01+00', clock_timestamp(), 'time 41, node 10, sequence 12, unit 1ms'");
ok( poll_until(
		$node, 'postgres',
		q{SELECT state = 'error' FROM snowflake_status()}, 10),
	'a mark row of another epoch, committed late, stops issuing');
($ret, $out, $err) = $node->psql('postgres', 'SELECT snowflake_nextval()');
like($err, qr/snowflake\.epoch was changed: the high-water table holds marks written under epoch 2020-01-01/,
	'the refusal names the epochs');
query($node, 'DELETE FROM snowflake_high_water WHERE node_id = 3');

# (3) The table set right, the mark file made another layout's, with a node
# id beyond ours.
$node->stop;
my $marks_file = $node->data_dir . '/snowflake.marks';
my $ours = slurp_file($marks_file);
my ($header, $lines) = $ours =~ /^(snowflake marks 1 epoch \d+) layout [^\n]*\n(.*)\z/s
  or die "unexpected mark file: $ours";
my $theirs = "$header layout $sonyflake\n40000 1796143200003 0\n$lines";
replace_file($marks_file, $theirs);
$node->start;
ok( poll_until(
		$node, 'postgres',
		q{SELECT state = 'error' FROM snowflake_status()}, 10),
	'a mark file of another layout is refused');
like(
	query($node, 'SELECT last_error FROM snowflake_status()'),
	qr/snowflake\.layout was changed: the mark file snowflake\.marks holds marks written under layout "\Q$sonyflake\E"/,
	'its refusal names the file\'s layout, not a corrupted line');
is(slurp_file($marks_file), $theirs, 'and the file is left as it was');

# Set back: IDs continue above those issued before.
$node->stop;
replace_file($marks_file, $ours);
$node->start;
wait_until_ready($node);
query($node, 'INSERT INTO ids SELECT snowflake_nextval(), 2 FROM generate_series(1, 100)');
is( query(
		$node,
		'SELECT min(id) FILTER (WHERE run = 2) > max(id) FILTER (WHERE run = 1) FROM ids'),
	't',
	'with the mark file set back, IDs continue above the earlier ones');
$node->stop;

done_testing();
