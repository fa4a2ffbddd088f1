# Upgrading in place: a server whose high-water table was made by the
# released 1.0 install script is updated with ALTER EXTENSION snowflake
# UPDATE while it runs, to 1.1, 1.2 and 1.3.  The functions, the
# settings, the generator and the high-water table with its rows survive;
# each version's additions arrive; the updated extension has the same
# objects as a fresh install; and the extension drops and reinstalls
# cleanly.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test/lib';
use SnowflakeTest;

# No node id at first: the test installs 1.0 in snowflake.database
# (postgres) on a server that issues nothing yet.
my $node = snowflake_node('upgrade', "snowflake.node_id = -1\nsnowflake.reserve = 500\n");
$node->start;

query($node, q{CREATE EXTENSION snowflake VERSION '1.0'});
is(query($node, q{SELECT extversion FROM pg_extension WHERE extname = 'snowflake'}), '1.0',
	'1.0 installs');
my $objects_sql = q{
	SELECT string_agg(pg_describe_object(classid, objid, objsubid), E'\n'
		ORDER BY pg_describe_object(classid, objid, objsubid))
	FROM pg_depend d JOIN pg_extension e ON d.refobjid = e.oid
		AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
	WHERE e.extname = 'snowflake'};
my $objects_1_0 = query($node, $objects_sql);

# The worker of node 3 uses the 1.0 table for its marks.
$node->stop;
$node->append_conf('postgresql.conf', "snowflake.node_id = 3\n");
$node->start;
wait_until_ready($node);
query($node, 'CREATE TABLE ids (id bigint PRIMARY KEY DEFAULT snowflake_nextval(), phase text)');
query($node, q{INSERT INTO ids (phase) SELECT 'before' FROM generate_series(1, 5000)});
# A second node's mark, as a server that changed node ids leaves behind.
query($node, q{INSERT INTO snowflake_high_water (node_id, epoch, high_water)
	VALUES (11, '2024-01-01+00', '2025-06-01+00')});
# Idle from here (the worker writes only while IDs are issued): the rows
# must come through the update exactly.
sleep 1;
my $rows_sql = q{SELECT string_agg(format('%s %s %s %s', node_id, epoch, high_water, updated_at), E'\n'
	ORDER BY node_id) FROM snowflake_high_water};
my $marks_before = query($node, $rows_sql);
like($marks_before, qr/^3 .*\n11 /, 'node 3 wrote its mark into the 1.0 table');
my $settings_sql = q{SELECT string_agg(name || '=' || setting, ',' ORDER BY name)
	FROM pg_settings WHERE name LIKE 'snowflake.%'};
my $settings_before = query($node, $settings_sql);
my $issued_before = query($node, 'SELECT ids_generated FROM snowflake_status()');

query($node, q{ALTER EXTENSION snowflake UPDATE TO '1.1'});
is(query($node, q{SELECT extversion FROM pg_extension WHERE extname = 'snowflake'}), '1.1',
	'ALTER EXTENSION snowflake UPDATE goes to 1.1');
is(query($node, $rows_sql), $marks_before, 'the high-water rows survive the update unchanged');
is(query($node, $settings_sql), $settings_before, 'the settings survive the update');
is(query($node, q{SELECT state || ' ' || node_id FROM snowflake_status()}), 'ready 3',
	'the generator keeps running through the update');
is(query($node, 'SELECT ids_generated FROM snowflake_status()'), $issued_before,
	'its counters too');
is(query($node, q{SELECT count(*) FROM pg_extension
	WHERE extname = 'snowflake' AND 'snowflake_high_water'::regclass = ANY (extconfig)}), 1,
	'the high-water table is now carried by pg_dump');
query($node, q{INSERT INTO ids (phase) SELECT 'after' FROM generate_series(1, 5000)});
is(query($node, q{SELECT count(*) FROM ids a, ids b
	WHERE a.phase = 'after' AND b.phase = 'before' AND a.id <= b.id}), 0,
	'IDs after the update are above every ID before it');
is(query($node, q{SELECT count(DISTINCT snowflake_node(id)) || ' ' || min(snowflake_node(id)) FROM ids}),
	'1 3', 'all of node 3');
is(query($node, q{SELECT high_water >= (SELECT max(snowflake_timestamp(id)) FROM ids)
	FROM snowflake_high_water WHERE node_id = 3}), 't',
	'the worker keeps writing its mark into the updated table');

# 1.1's function works on the updated extension.
query($node, 'CREATE TABLE legacy (id bigserial PRIMARY KEY)');
query($node, 'INSERT INTO legacy DEFAULT VALUES');
query($node, q{SELECT snowflake_convert_column('legacy', 'id')});
query($node, 'INSERT INTO legacy DEFAULT VALUES');
is(query($node, 'SELECT count(*) FILTER (WHERE snowflake_node(id) = 3 AND id > 1000) FROM legacy'), 1,
	'snowflake_convert_column works after the update');

# A restart reads the mark from the updated table.
$node->restart;
wait_until_ready($node);
query($node, q{INSERT INTO ids (phase) SELECT 'restart' FROM generate_series(1, 1000)});
is(query($node, q{SELECT count(*) FROM ids a, ids b
	WHERE a.phase = 'restart' AND b.phase <> 'restart' AND a.id <= b.id}), 0,
	'after a restart, IDs are above every earlier ID');

# 1.2 while running: the marks lose their primary key (a restore adds rows
# instead of failing) and gain the trigger that honours marks written by
# others; the rows and the generator come through.
$marks_before = query($node, $rows_sql);
query($node, q{ALTER EXTENSION snowflake UPDATE TO '1.2'});
is(query($node, q{SELECT extversion FROM pg_extension WHERE extname = 'snowflake'}), '1.2',
	'ALTER EXTENSION snowflake UPDATE goes on to 1.2');
is(query($node, $rows_sql), $marks_before, 'the high-water rows survive the update to 1.2');
is(query($node, q{SELECT count(*) FROM pg_index WHERE indrelid = 'snowflake_high_water'::regclass
	AND indisunique}), 0, '1.2: no unique index on the marks');
is(query($node, q{SELECT count(*) FROM pg_trigger WHERE tgrelid = 'snowflake_high_water'::regclass
	AND tgname = 'snowflake_high_water_honour'}), 1, '1.2: the trigger is there');
query($node, q{INSERT INTO ids (phase) SELECT '1.2' FROM generate_series(1, 1000)});
is(query($node, q{SELECT count(*) FROM ids a, ids b
	WHERE a.phase = '1.2' AND b.phase <> '1.2' AND a.id <= b.id}), 0,
	'after the update to 1.2, IDs are above every earlier ID');

# 1.3 while running: every row so far was written under the original
# layout, which the new layout column says; node ids go up to 65535.
query($node, 'ALTER EXTENSION snowflake UPDATE');
is(query($node, q{SELECT extversion FROM pg_extension WHERE extname = 'snowflake'}), '1.3',
	'ALTER EXTENSION snowflake UPDATE goes on to 1.3');
is(query($node, q{SELECT string_agg(DISTINCT layout, ',') FROM snowflake_high_water}),
	'time 41, node 10, sequence 12, unit 1ms', '1.3: the rows are of the original layout');
query($node, q{INSERT INTO ids (phase) SELECT '1.3' FROM generate_series(1, 1000)});
is(query($node, q{SELECT count(*) FROM ids a, ids b
	WHERE a.phase = '1.3' AND b.phase <> '1.3' AND a.id <= b.id}), 0,
	'after the update to 1.3, IDs are above every earlier ID');
is(query($node, q{SELECT string_agg(DISTINCT layout, ',') FROM snowflake_high_water}),
	'time 41, node 10, sequence 12, unit 1ms', 'and the worker writes its layout');

# A server of another layout cannot record it in a table older than 1.3:
# it refuses until the extension is updated, then issues.
my $other = snowflake_node('upgrade_layout', "snowflake.node_id = 4\nsnowflake.layout = sonyflake\n");
$other->start;
query($other, q{CREATE EXTENSION snowflake VERSION '1.2'});
my ($ret, $out, $err);
poll_until($other, 'postgres',
	q{SELECT last_error LIKE '%older than 1.3%' FROM snowflake_status()}, 30);
like(query($other, 'SELECT last_error FROM snowflake_status()'),
	qr/older than 1\.3 and cannot record snowflake\.layout "time 39, sequence 8, node 16, unit 10ms"/,
	'a sonyflake server refuses a 1.2 table, naming its layout');
($ret, $out, $err) = $other->psql('postgres', 'SELECT snowflake_nextval()');
like($err, qr/ALTER EXTENSION snowflake UPDATE/, 'snowflake_nextval() says to update');
query($other, 'ALTER EXTENSION snowflake UPDATE');
wait_until_ready($other);
is(query($other, q{SELECT snowflake_node(snowflake_nextval())}), 4, 'after the update it issues');
is(query($other, q{SELECT layout FROM snowflake_high_water}),
	'time 39, sequence 8, node 16, unit 10ms', 'and records its layout');
$other->stop;

# A fresh install (1.0 then the update scripts, as PostgreSQL chains them)
# has exactly the objects of the updated one.
query($node, 'CREATE DATABASE app');
query($node, 'CREATE EXTENSION snowflake', 'app');
is(query($node, q{SELECT extversion FROM pg_extension WHERE extname = 'snowflake'}, 'app'), '1.3',
	'CREATE EXTENSION installs 1.3');
my $objects_1_1 = query($node, $objects_sql, 'app');
is($objects_1_1, query($node, $objects_sql), 'a fresh 1.3 has the same objects as an updated 1.0');
like($objects_1_1, qr/snowflake_convert_column/, 'including snowflake_convert_column');
like($objects_1_1, qr/snowflake_high_water_honour/, 'and the trigger function');
like($objects_1_1, qr/snowflake_layout\(text\)/, 'and snowflake_layout()');
is(scalar(() = $objects_1_1 =~ /\n/g), scalar(() = $objects_1_0 =~ /\n/g) + 8,
	'1.1 and 1.2 add one function each to 1.0, 1.3 six');

# Drop and reinstall, in a database other than snowflake.database (there
# the table holds the marks: see the README).
query($node, 'CREATE TABLE t (id bigint PRIMARY KEY DEFAULT snowflake_nextval())', 'app');
query($node, 'INSERT INTO t DEFAULT VALUES', 'app');
($ret, $out, $err) = $node->psql('app', 'DROP EXTENSION snowflake');
like($err, qr/cannot drop extension snowflake because other objects depend on it/,
	'DROP EXTENSION refuses while a table uses its default');
query($node, 'DROP TABLE t; DROP EXTENSION snowflake', 'app');
is(query($node, q{SELECT count(*) FROM pg_proc WHERE proname LIKE 'snowflake%'}, 'app')
	. query($node, q{SELECT count(*) FROM pg_class WHERE relname LIKE 'snowflake%'}, 'app'),
	'00', 'DROP EXTENSION leaves no function or table behind');
query($node, 'CREATE EXTENSION snowflake', 'app');
is(query($node, $objects_sql, 'app'), $objects_1_1, 'reinstalled with the same objects');
is(query($node, 'SELECT snowflake_node(snowflake_nextval())', 'app'), 3, 'and it issues IDs');

$node->stop;
done_testing();
