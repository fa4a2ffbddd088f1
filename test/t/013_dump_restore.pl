# pg_dump / pg_restore of a database keyed by snowflake IDs into a fresh
# server: tables, defaults, foreign keys and data come back, the high-water
# table's rows come with the dump of snowflake.database, and a server that
# takes over the dumped server's node id issues IDs above every restored ID
# of that node, even one made by a clock running ahead of the new server's.
# Then the same dumps are restored with pg_restore --exit-on-error into
# fresh servers that already have that node id, in each ordering against
# the new server's worker: before its first write, while clients take IDs,
# and after it wrote its own mark.
use strict;
use warnings;

use IPC::Run;
use Time::HiRes qw(time usleep);

use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test/lib';
use SnowflakeTest;

my $old = snowflake_node('dumped', "snowflake.node_id = 3\n");
$old->start;
$old->psql('postgres', 'CREATE EXTENSION IF NOT EXISTS snowflake');
wait_until_ready($old);

query($old, 'CREATE DATABASE app');
query($old, q{
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
}, 'app');

# The dumped server's clock ran 8 s ahead: its last ID and its mark are
# ahead of the clock the new server will have.  Made with no worker
# running (no node id), as the worker would have left them.
$old->stop;
$old->append_conf('postgresql.conf', "snowflake.node_id = -1\n");
$old->start;
query($old, q{UPDATE snowflake_high_water
	SET high_water = clock_timestamp() + interval '8.5 s' WHERE node_id = 3});
query($old, q{INSERT INTO orders (id, item)
	VALUES (snowflake_from_timestamp(clock_timestamp() + interval '8 s', 3, 0), 'fast clock')}, 'app');

my $content_sql = q{
	SELECT (SELECT count(*) || ' ' || sum(id % 1000003) FROM orders) || ' / ' ||
	       (SELECT count(*) || ' ' || sum(order_id % 1000003) FROM order_lines) || ' / ' ||
	       (SELECT count(*) || ' ' || sum(id % 1000003) FROM customers)};
my $content = query($old, $content_sql, 'app');
my $defaults_sql = q{
	SELECT string_agg(c.relname || '.' || a.attname || ' ' || pg_get_expr(d.adbin, d.adrelid), ', '
		ORDER BY c.relname)
	FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid
	JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
	WHERE c.relname IN ('orders', 'order_lines', 'customers')};
my $defaults = query($old, $defaults_sql, 'app');
is($defaults, 'customers.id snowflake_nextval(), order_lines.id snowflake_nextval(), orders.id snowflake_nextval()',
	'the dumped database is keyed by snowflake_nextval()');
my $max_node3 = query($old, q{
	SELECT max(id) FROM (SELECT id FROM orders UNION ALL SELECT id FROM order_lines
		UNION ALL SELECT id FROM customers) x WHERE snowflake_node(id) = 3}, 'app');
my $max_node3_at = query($old, qq{SELECT extract(epoch FROM snowflake_timestamp($max_node3))}, 'app');
my $marks = query($old, 'SELECT node_id, epoch, high_water FROM snowflake_high_water ORDER BY 1');
my $restored_mark = query($old, 'SELECT high_water FROM snowflake_high_water WHERE node_id = 3');
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
query($new, 'CREATE DATABASE app');
command_ok([ 'pg_restore', '--exit-on-error', '-d', $new->connstr('app'), "$dir/app.dump" ],
	'pg_restore of the application database');

is(query($new, 'SELECT node_id, epoch, high_water FROM snowflake_high_water ORDER BY 1'),
	$marks, 'the high-water rows come back with the dump');
is(query($new, $content_sql, 'app'), $content, 'the data comes back');
is(query($new, $defaults_sql, 'app'), $defaults, 'the defaults come back');
is(query($new, q{SELECT count(*) FROM pg_constraint WHERE contype = 'f'
	AND conrelid = 'order_lines'::regclass AND confrelid = 'orders'::regclass}, 'app'), 1,
	'the foreign key comes back');

$new->stop;
$new->append_conf('postgresql.conf', "snowflake.node_id = 3\n");
$new->start;
# What makes this test mean something: without the restored mark, this
# server's clock would put its IDs below the fast clock's.
is(query($new, qq{SELECT clock_timestamp() < snowflake_timestamp($max_node3)}, 'app'), 't',
	'the new server starts with its clock behind the last restored ID of node 3');
like(query($new, 'SELECT state FROM snowflake_status()'), qr/^(starting|waiting_for_clock)$/,
	'so it waits for its clock to pass the restored mark');
query($new, q{
	INSERT INTO orders (item) SELECT 'after restore ' || g FROM generate_series(1, 2000) g;
	INSERT INTO order_lines (order_id, qty) SELECT id, 2 FROM orders WHERE item LIKE 'after%';
	INSERT INTO customers (name) VALUES ('after restore');
}, 'app');
is(query($new, qq{
	SELECT count(*) FROM (SELECT id FROM orders WHERE item LIKE 'after%'
		UNION ALL SELECT id FROM order_lines WHERE qty = 2
		UNION ALL SELECT id FROM customers WHERE name = 'after restore') x
	WHERE id <= $max_node3 OR snowflake_node(id) <> 3}, 'app'), 0,
	'the restored server issues above every restored ID of its node, the fast clock\'s too');
is(query($new, q{SELECT count(*) FROM orders WHERE item LIKE 'after%'}, 'app'), 2000,
	'new rows go in with the restored defaults');
cmp_ok(query($new, q{SELECT snowflake_from_timestamp(high_water, 3, 0) FROM snowflake_high_water
	WHERE node_id = 3}), '>', $max_node3, 'its mark is above the restored IDs');

$new->stop;

###########################################################################
# pg_restore into a fresh server that runs as node 3 from its start.
###########################################################################
my $server_clock = SnowflakeTest->can('start_with_server_clock');

# A fresh server as node 3, its whole clock (worker included) 3 s behind the
# last restored ID of node 3.  Without start_with_server_clock (design
# point 10, branch h1-shim-convert) nothing is moved: the clock is behind
# the restored IDs only while the real clock has not caught up with the
# dumped server's fast clock (8 s), and that is not asserted.
sub fresh_node3
{
	my ($name) = @_;
	my $node = snowflake_node($name,
		"snowflake.node_id = 3\nsnowflake.max_clock_rollback = 20000\nsnowflake.wait_timeout = 30000\n");
	if ($server_clock)
	{
		my $lead = $max_node3_at - time();
		# 3 s behind that ID, whether the real clock has passed it by now or not.
		$server_clock->($node, $lead - 3);
		# (No snowflake_timestamp() here: the extension is not there yet.)
		is(query($node, qq{SELECT clock_timestamp() < to_timestamp($max_node3_at)}), 't',
			"$name: the server's clock is behind the last restored ID of node 3");
	}
	else
	{
		$node->start;
	}
	return $node;
}

sub restore_both
{
	my ($node, $name) = @_;
	command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('postgres'), "$dir/postgres.dump" ],
		"$name: pg_restore --exit-on-error of snowflake.database exits 0");
	query($node, 'CREATE DATABASE app');
	command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('app'), "$dir/app.dump" ],
		"$name: pg_restore --exit-on-error of the application database exits 0");
	return;
}

# IDs issued once the restore is done, in both databases: every one above
# every restored ID of node 3.
sub check_after_restore
{
	my ($node, $name) = @_;
	is(query($node, $content_sql, 'app'), $content, "$name: the data comes back");
	is(query($node, qq{SELECT max(high_water) >= '$restored_mark'
		FROM snowflake_high_water WHERE node_id = 3}), 't',
		"$name: the mark of node 3 is at or above the restored one");
	query($node, q{
		INSERT INTO orders (item) SELECT 'after restore ' || g FROM generate_series(1, 2000) g;
		INSERT INTO order_lines (order_id, qty) SELECT id, 2 FROM orders WHERE item LIKE 'after%';
	}, 'app');
	my $from_postgres = query($node, 'SELECT min(x) FROM snowflake_nextval_batch(1000) x');
	is(query($node, qq{
		SELECT count(*) FROM (SELECT id FROM orders WHERE item LIKE 'after%'
			UNION ALL SELECT id FROM order_lines WHERE qty = 2) x
		WHERE id <= $max_node3 OR snowflake_node(id) <> 3}, 'app'), 0,
		"$name: every ID issued after the restore is above every restored ID of node 3");
	cmp_ok($from_postgres, '>', $max_node3, "$name: in snowflake.database too");
	is(query($node, q{SELECT count(*) FROM orders WHERE item LIKE 'after%'}, 'app'), 2000,
		"$name: all new rows went in");
	return;
}

# (i) Before the worker's first write: the server has just started, and the
# extension does not exist in snowflake.database until the restore's
# CREATE EXTENSION IF NOT EXISTS makes it.
my $before = fresh_node3('before_first_write');
is(query($before, q{SELECT count(*) FROM pg_extension WHERE extname = 'snowflake'}), 0,
	'before_first_write: the new server has no extension yet');
restore_both($before, 'before_first_write');
check_after_restore($before, 'before_first_write');
$before->stop;

# (ii) During: clients take IDs in snowflake.database through the restore.
my $during = fresh_node3('during_load');
query($during, 'CREATE EXTENSION IF NOT EXISTS snowflake');
wait_until_ready($during);
query($during, 'CREATE TABLE hammer (n bigserial, id bigint NOT NULL)');
my $script = $during->basedir . '/hammer.sql';
open(my $fh, '>', $script) or die;
print $fh "INSERT INTO hammer (id) VALUES (snowflake_nextval());\n";
close($fh);
my ($hammer_out, $hammer_err) = ('', '');
# -T is only an upper bound: the clients are stopped once they took IDs
# after the restore.
my $hammer = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '4', '-T', '60', '-f', $script, '-h', $during->host,
	  '-p', $during->port, 'postgres' ],
	'>', \$hammer_out, '2>', \$hammer_err);
poll_until($during, 'postgres', 'SELECT count(*) > 0 FROM hammer', 30);
cmp_ok(query($during, 'SELECT count(*) FROM hammer'), '>', 0,
	'during_load: clients are taking IDs when the restore starts');
restore_both($during, 'during_load');
# A row whose serial is taken after this point had its ID made after the
# restore returned (n is evaluated before id).
my $n_after = query($during, 'SELECT last_value FROM hammer_n_seq');
check_after_restore($during, 'during_load');
poll_until($during, 'postgres', "SELECT count(*) >= 1000 FROM hammer WHERE n > $n_after", 30);
$hammer->kill_kill;
cmp_ok(query($during, "SELECT count(*) FROM hammer WHERE n > $n_after"), '>', 0,
	'during_load: the clients kept taking IDs after the restore');
is(query($during, "SELECT count(*) FROM hammer WHERE n > $n_after AND id <= $max_node3"), 0,
	'during_load: none of their IDs after the restore is at or below a restored ID');
is(query($during, 'SELECT count(*) - count(DISTINCT id) FROM hammer'), 0,
	'during_load: no ID repeats');
$during->stop;

# (iii) After the worker wrote its own mark for node 3.
my $after = fresh_node3('after_own_mark');
query($after, 'CREATE EXTENSION IF NOT EXISTS snowflake');
wait_until_ready($after);
query($after, 'CREATE TABLE own AS SELECT snowflake_nextval() AS id FROM generate_series(1, 1000)');
$after->poll_query_until('postgres', 'SELECT count(*) > 0 FROM snowflake_high_water WHERE node_id = 3')
  or die 'the worker wrote no mark';
pass('after_own_mark: the worker wrote its own mark for node 3');
restore_both($after, 'after_own_mark');
check_after_restore($after, 'after_own_mark');
$after->stop;

done_testing();
