# pg_upgrade (15 to 15) of a cluster using snowflake, with the library
# preloaded and the same node id in both clusters, as a DBA who copies
# postgresql.conf has it: pg_upgrade succeeds, the new cluster issues IDs at
# once, above every ID of the old one, and the rows and the high-water
# table come over intact.
use strict;
use warnings;

use Cwd;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use lib 'test/lib';
use SnowflakeTest;

my $bindir = '/usr/lib/postgresql/15/bin';
# reserve 3 s: a server that had to wait out a reservation would take
# seconds before its first ID; one that knows the exact mark does not.
my $conf = "snowflake.node_id = 5\nsnowflake.reserve = 3000\nsnowflake.wait_timeout = 20000\n";
my $old = snowflake_node('old', $conf);
my $new = snowflake_node('new', $conf);

$old->start;
$old->psql('postgres', 'CREATE EXTENSION IF NOT EXISTS snowflake');
wait_until_ready($old);
query($old, q{
	CREATE TABLE events (id bigint PRIMARY KEY DEFAULT snowflake_nextval(), what text NOT NULL);
	INSERT INTO events (what) SELECT 'event ' || g FROM generate_series(1, 3000) g;
	CREATE DATABASE app;
});
query($old, q{
	CREATE EXTENSION snowflake;
	CREATE TABLE orders (id bigint PRIMARY KEY DEFAULT snowflake_nextval(), item text NOT NULL);
	CREATE TABLE order_lines (id bigint PRIMARY KEY DEFAULT snowflake_nextval(),
		order_id bigint NOT NULL REFERENCES orders (id), qty int NOT NULL);
	INSERT INTO orders (item) SELECT 'item ' || g FROM generate_series(1, 3000) g;
	INSERT INTO order_lines (order_id, qty) SELECT id, 1 FROM orders;
}, 'app');
my %content_sql = (
	postgres => q{SELECT count(*) || ' ' || sum(id % 1000003) || ' ' || max(id) FROM events},
	app => q{SELECT (SELECT count(*) || ' ' || sum(id % 1000003) FROM orders) || ' / ' ||
		(SELECT count(*) || ' ' || sum(order_id % 1000003) || ' ' || max(id) FROM order_lines)});
my %max_sql = (
	postgres => 'SELECT max(id) FROM events',
	app => 'SELECT greatest((SELECT max(id) FROM orders), (SELECT max(id) FROM order_lines))');
my (%content, $max_old);
for my $db ('postgres', 'app')
{
	$content{$db} = query($old, $content_sql{$db}, $db);
	my $m = query($old, $max_sql{$db}, $db);
	$max_old = $m if !defined $max_old || $m > $max_old;
}
my $version = query($old, q{SELECT extversion FROM pg_extension WHERE extname = 'snowflake'}, 'app');
$old->stop('fast');

# The mark the clean shutdown left, read with no node id (no worker writes).
$old->append_conf('postgresql.conf', "snowflake.node_id = -1\n");
$old->start;
my $marks_sql = 'SELECT node_id, epoch, high_water FROM snowflake_high_water ORDER BY 1, 3';
my $marks = query($old, $marks_sql);
like($marks, qr/^5\|/m, 'the old cluster has a mark for node 5');
$old->stop('fast');
$old->append_conf('postgresql.conf', "snowflake.node_id = 5\n");

# pg_upgrade, as the PostgreSQL user, from a writable directory.
my $cwd = getcwd();
my $work = PostgreSQL::Test::Utils::tempdir;
chdir $work or die "cannot chdir to $work: $!";
my ($ok, $stdout, $stderr) = (0, '', '');
$ok = IPC::Run::run(
	[ 'pg_upgrade', '--no-sync', '-d', $old->data_dir, '-D', $new->data_dir,
	  '-b', $bindir, '-B', $bindir, '-p', $old->port, '-P', $new->port,
	  '-s', $new->host ],
	'>', \$stdout, '2>', \$stderr);
chdir $cwd;
ok($ok, 'pg_upgrade succeeds with snowflake preloaded in both clusters');
if (!$ok)
{
	diag("pg_upgrade stdout:\n$stdout\nstderr:\n$stderr");
	for my $log (glob($new->data_dir . '/pg_upgrade_output.d/*/log/*'), glob("$work/*.log"))
	{
		my $text = slurp_file($log);
		$text = substr($text, -3000) if length($text) > 3000;
		diag("---- $log\n$text");
	}
}

SKIP:
{
	skip 'pg_upgrade failed', 10 unless $ok;

	# The high-water table as pg_upgrade left it, read with no node id (no
	# worker writes), then the first start as node 5.
	$new->append_conf('postgresql.conf', "snowflake.node_id = -1\n");
	$new->start;
	is(query($new, $marks_sql), $marks, 'snowflake_high_water came over');
	$new->stop('fast');
	$new->append_conf('postgresql.conf', "snowflake.node_id = 5\n");

	$new->start;
	my $t0 = time();
	my ($ret, $first, $err) = $new->psql('app', 'SELECT snowflake_nextval()');
	my $elapsed = time() - $t0;
	is($ret, 0, 'the upgraded cluster issues an ID') or diag($err);
	cmp_ok($elapsed, '<', 2.0,
		sprintf('at once (%.2f s): the clean shutdown left the exact mark, no reservation is waited out',
			$elapsed));
	cmp_ok($first, '>', $max_old, 'above every ID of the old cluster');
	is(query($new, 'SELECT state FROM snowflake_status()'), 'ready', 'the server is ready');

	for my $db ('postgres', 'app')
	{
		is(query($new, $content_sql{$db}, $db), $content{$db}, "the rows of $db are intact");
	}
	my $old_mark = (split /\|/, $marks)[2];
	is(query($new, qq{SELECT max(high_water) >= '$old_mark' FROM snowflake_high_water
		WHERE node_id = 5}), 't', 'the mark of node 5 stays at or above the carried-over one');
	is(query($new, q{SELECT extversion FROM pg_extension WHERE extname = 'snowflake'}, 'app'),
		$version, 'the extension has the same version');

	query($new, q{INSERT INTO events (what) SELECT 'after ' || g FROM generate_series(1, 1000) g});
	query($new, q{INSERT INTO orders (item) SELECT 'after ' || g FROM generate_series(1, 1000) g}, 'app');
	is(query($new, qq{SELECT count(*) FROM events WHERE what LIKE 'after%' AND id <= $max_old})
		+ query($new, qq{SELECT count(*) FROM orders WHERE item LIKE 'after%' AND id <= $max_old}, 'app'),
		0, 'every ID issued after the upgrade is above every ID of the old cluster');
	$new->stop;
}

done_testing();
