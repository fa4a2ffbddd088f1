# pg_dump / pg_restore of a database keyed by snowflake IDs into a fresh
# server: tables, defaults, foreign keys and data come back, the high-water
# table's rows come with the dump of snowflake.database, and a server that
# takes over the dumped server's node id issues IDs above every restored ID
# of that node, even one made by a clock running ahead of the new server's.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test/lib';
use SnowflakeTest;

my $old = snowflake_node('dumped', "snowflake.node_id = 3\n");
$old->start;
wait_until_ready($old);
sub on { my ($node, $db, $sql) = @_; return $node->safe_psql($db, $sql); }

on($old, 'postgres', 'CREATE DATABASE app');
on($old, 'app', q{
	CREATE EXTENSION snowflake;
	CREATE TABLE orders (id bigint PRIMARY KEY DEFAULT snowflake_nextval(), item text NOT NULL);
	CREATE TABLE order_lines (id bigint PRIMARY KEY DEFAULT snowflake_nextval(),
		order_id bigint NOT NULL REFERENCES orders (id), qty int NOT NULL);
	INSERT INTO orders (item) SELECT 'item ' || g FROM generate_series(1, 2000) g;
	INSERT INTO order_lines (order_id, qty) SELECT id, 1 FROM orders;
	CREATE TABLE customers (id bigserial PRIMARY KEY, name text);
	INSERT INTO customers (name) SELECT 'c' || g FROM generate_series(1, 100) g;
	SELECT snowflake_convert_column('customers', 'id');
	INSERT INTO customers (name) VALUES ('new customer');
});

# The dumped server's clock ran 8 s ahead: its last ID and its mark are
# ahead of the clock the new server will have.  Made with no worker
# running (no node id), as the worker would have left them.
$old->stop;
$old->append_conf('postgresql.conf', "snowflake.node_id = -1\n");
$old->start;
on($old, 'postgres', q{UPDATE snowflake_high_water
	SET high_water = clock_timestamp() + interval '8.5 s' WHERE node_id = 3});
on($old, 'app', q{INSERT INTO orders (id, item)
	VALUES (snowflake_from_timestamp(clock_timestamp() + interval '8 s', 3, 0), 'fast clock')});

my $content_sql = q{
	SELECT (SELECT count(*) || ' ' || sum(id % 1000003) FROM orders) || ' / ' ||
	       (SELECT count(*) || ' ' || sum(order_id % 1000003) FROM order_lines) || ' / ' ||
	       (SELECT count(*) || ' ' || sum(id % 1000003) FROM customers)};
my $content = on($old, 'app', $content_sql);
my $defaults_sql = q{
	SELECT string_agg(c.relname || '.' || a.attname || ' ' || pg_get_expr(d.adbin, d.adrelid), ', '
		ORDER BY c.relname)
	FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid
	JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
	WHERE c.relname IN ('orders', 'order_lines', 'customers')};
my $defaults = on($old, 'app', $defaults_sql);
is($defaults, 'customers.id snowflake_nextval(), order_lines.id snowflake_nextval(), orders.id snowflake_nextval()',
	'the dumped database is keyed by snowflake_nextval()');
my $max_node3 = on($old, 'app', q{
	SELECT max(id) FROM (SELECT id FROM orders UNION ALL SELECT id FROM order_lines
		UNION ALL SELECT id FROM customers) x WHERE snowflake_node(id) = 3});
my $marks = on($old, 'postgres', 'SELECT node_id, epoch, high_water FROM snowflake_high_water ORDER BY 1');
like($marks, qr/^3\|/, 'the dumped server has a mark for node 3');

my $dir = PostgreSQL::Test::Utils::tempdir;
for my $db ('postgres', 'app')
{
	command_ok([ 'pg_dump', '-Fc', '-f', "$dir/$db.dump", '-d', $old->connstr($db) ],
		"pg_dump of $db");
}
$old->stop;

# The new server takes node 3 over.  The marks are restored before it uses
# the node id (no worker runs yet), so its worker reads them at its start.
my $new = snowflake_node('restored',
	"snowflake.node_id = -1\nsnowflake.max_clock_rollback = 10000\nsnowflake.wait_timeout = 20000\n");
$new->start;
command_ok([ 'pg_restore', '--exit-on-error', '-d', $new->connstr('postgres'), "$dir/postgres.dump" ],
	'pg_restore of snowflake.database');
on($new, 'postgres', 'CREATE DATABASE app');
command_ok([ 'pg_restore', '--exit-on-error', '-d', $new->connstr('app'), "$dir/app.dump" ],
	'pg_restore of the application database');

is(on($new, 'postgres', 'SELECT node_id, epoch, high_water FROM snowflake_high_water ORDER BY 1'),
	$marks, 'the high-water rows come back with the dump');
is(on($new, 'app', $content_sql), $content, 'the data comes back');
is(on($new, 'app', $defaults_sql), $defaults, 'the defaults come back');
is(on($new, 'app', q{SELECT count(*) FROM pg_constraint WHERE contype = 'f'
	AND conrelid = 'order_lines'::regclass AND confrelid = 'orders'::regclass}), 1,
	'the foreign key comes back');

$new->stop;
$new->append_conf('postgresql.conf', "snowflake.node_id = 3\n");
$new->start;
# What makes this test mean something: without the restored mark, this
# server's clock would put its IDs below the fast clock's.
is(on($new, 'app', qq{SELECT clock_timestamp() < snowflake_timestamp($max_node3)}), 't',
	'the new server starts with its clock behind the last restored ID of node 3');
like(on($new, 'postgres', 'SELECT state FROM snowflake_status()'), qr/^(starting|waiting_for_clock)$/,
	'so it waits for its clock to pass the restored mark');
on($new, 'app', q{
	INSERT INTO orders (item) SELECT 'after restore ' || g FROM generate_series(1, 2000) g;
	INSERT INTO order_lines (order_id, qty) SELECT id, 2 FROM orders WHERE item LIKE 'after%';
	INSERT INTO customers (name) VALUES ('after restore');
});
is(on($new, 'app', qq{
	SELECT count(*) FROM (SELECT id FROM orders WHERE item LIKE 'after%'
		UNION ALL SELECT id FROM order_lines WHERE qty = 2
		UNION ALL SELECT id FROM customers WHERE name = 'after restore') x
	WHERE id <= $max_node3 OR snowflake_node(id) <> 3}), 0,
	'the restored server issues above every restored ID of its node, the fast clock\'s too');
is(on($new, 'app', q{SELECT count(*) FROM orders WHERE item LIKE 'after%'}), 2000,
	'new rows go in with the restored defaults');
cmp_ok(on($new, 'postgres', q{SELECT snowflake_from_timestamp(high_water, 3, 0) FROM snowflake_high_water
	WHERE node_id = 3}), '>', $max_node3, 'its mark is above the restored IDs');

$new->stop;
done_testing();
