# Multi-primary with pglogical, the README recipe run as written: two
# primaries with node ids 1 and 2 replicate one table to each other both
# ways (forward_origins '{}'), clients insert on both at once with the
# DEFAULT.  No key conflict, no error, the same rows on both, ids of both
# interleaved in creation order.  Then one row updated on both while the
# subscriptions are paused: pglogical reports that conflict and resolves it
# (last_update_wins), which shows that the log check above can see one.
use strict;
use warnings;

use IPC::Run ();
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test/lib';
use SnowflakeTest;

my ($conf, $create, $subscribe, $insert, $check) = readme_blocks('pglogical');
like($conf, qr/^shared_preload_libraries = 'snowflake, pglogical'$/m,
	'the first pglogical block of the README is the configuration');

my %node;
for my $name ('a', 'b')
{
	my $n = snowflake_node($name, '', allows_streaming => 'logical');
	$n->append_conf('postgresql.conf', $conf);
	# "2 on the other primary", as the README's comment says.
	$n->append_conf('postgresql.conf', "snowflake.node_id = 2\n") if $name eq 'b';
	$n->start;
	wait_until_ready($n);
	$node{$name} = $n;
}
is($node{b}->safe_psql('postgres', 'SELECT node_id FROM snowflake_status()'), '2',
	'b runs with node id 2');
my %peer = (a => 'b', b => 'a');
my %vars = map {
	$_ => {
		node_name => $_,
		self_dsn => $node{$_}->connstr('postgres'),
		peer_name => $peer{$_},
		peer_dsn => $node{ $peer{$_} }->connstr('postgres'),
	  }
} keys %node;

run_readme_sql($node{$_}, $create, $vars{$_}) for qw(a b);
run_readme_sql($node{$_}, $subscribe, $vars{$_}) for qw(a b);
for my $name (qw(a b))
{
	$node{$name}->poll_query_until('postgres',
		q{SELECT status = 'replicating' FROM pglogical.show_subscription_status()})
	  or die "the subscription of $name does not replicate";
}

# Clients on both at once: on each primary 3 psql sessions, each running the
# README's INSERT block 400 times, one transaction per row.  The script and
# the errors are files, so that every client runs on its own at once.
my ($clients, $per_client) = (3, 400);
my @running;
for my $name (qw(a b))
{
	my $script = $node{$name}->basedir . '/inserts.sql';
	PostgreSQL::Test::Utils::append_to_file($script, $insert x $per_client);
	for my $c (1 .. $clients)
	{
		my $err = $node{$name}->basedir . "/client_$c.err";
		push @running, [ $name, $err, IPC::Run::start(
				[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-v', "node_name=$name",
					'-d', $node{$name}->connstr('postgres'), '-f', $script ],
				'<', '/dev/null', '>', '/dev/null', '2>', $err) ];
	}
}
for my $r (@running)
{
	my ($name, $err, $h) = @$r;
	ok($h->finish, "a client on $name inserted its rows") or diag(slurp_file($err));
}
my $total = 2 * $clients * $per_client;

for my $name (qw(a b))
{
	$node{$name}->poll_query_until('postgres', "SELECT count(*) = $total FROM orders")
	  or die "$name did not receive every row";
}
my $content_a = run_readme_sql($node{a}, $check);
my $content_b = run_readme_sql($node{b}, $check);
is($content_b, $content_a, 'both primaries give the same count, content and nodes');
like($content_a, qr/^\s+$total \|/m, "with all $total rows");
like($content_a, qr/^\s+1 \|\s+@{[ $clients * $per_client ]}$/m, 'node 1 made its share');
like($content_a, qr/^\s+2 \|\s+@{[ $clients * $per_client ]}$/m, 'node 2 made its share');

is($node{a}->safe_psql('postgres',
	q{SELECT count(*) FROM orders WHERE item <> 'made on ' || CASE snowflake_node(id) WHEN 1 THEN 'a' ELSE 'b' END}),
	'0', 'every row carries the node id of the primary it was inserted on');
is($node{b}->safe_psql('postgres',
	q{SELECT array_agg(id ORDER BY id) = array_agg(id ORDER BY snowflake_timestamp(id), snowflake_node(id), snowflake_sequence(id)) FROM orders}),
	't', 'ORDER BY id is the order of the decoded creation time');
my $switches = $node{a}->safe_psql('postgres',
	q{SELECT count(*) FROM (SELECT snowflake_node(id) AS n, lag(snowflake_node(id)) OVER (ORDER BY id) AS p FROM orders) s WHERE n <> p});
cmp_ok($switches, '>=', 10,
	"in id order the rows of both primaries interleave ($switches changes of node)");

for my $name (qw(a b))
{
	my $log = slurp_file($node{$name}->logfile);
	unlike($log, qr/CONFLICT/, "no replication conflict on $name");
	unlike($log, qr/\b(ERROR|FATAL|PANIC):/, "no error in the log of $name");
}

# The same row updated on both primaries while neither receives the other's
# changes: a conflict of pglogical's, not of keys.  b commits last and wins
# on both sides.
my $row = $node{a}->safe_psql('postgres', 'SELECT min(id) FROM orders');
$node{$_}->safe_psql('postgres',
	"SELECT pglogical.alter_subscription_disable('from_$peer{$_}', true)") for qw(a b);
$node{a}->safe_psql('postgres', "UPDATE orders SET item = 'changed on a' WHERE id = $row");
$node{b}->safe_psql('postgres', "UPDATE orders SET item = 'changed on b' WHERE id = $row");
$node{$_}->safe_psql('postgres',
	"SELECT pglogical.alter_subscription_enable('from_$peer{$_}', true)") for qw(a b);
$node{a}->poll_query_until('postgres', "SELECT item = 'changed on b' FROM orders WHERE id = $row")
  or die 'a did not take the later update';
$node{b}->poll_query_until('postgres',
	q{SELECT count(*) > 0 FROM pglogical.show_subscription_status() WHERE status = 'replicating'})
  or die 'the subscription of b does not replicate again';
# b has received a's update when a's marker row arrives after it.
$node{a}->safe_psql('postgres', "INSERT INTO orders (item) VALUES ('marker')");
$node{b}->poll_query_until('postgres', "SELECT count(*) = 1 FROM orders WHERE item = 'marker'")
  or die 'b did not receive the rows after the update';
is(run_readme_sql($node{b}, $check), run_readme_sql($node{a}, $check),
	'after the update conflict both primaries hold the same rows again');
is($node{b}->safe_psql('postgres', "SELECT item FROM orders WHERE id = $row"), 'changed on b',
	'the update that committed last won on both');
my $conflicts = 0;
for my $name (qw(a b))
{
	$conflicts++ if slurp_file($node{$name}->logfile) =~
	  /CONFLICT: remote UPDATE on relation public\.orders/;
}
is($conflicts, 2, 'pglogical logged the update conflict on both primaries');

$node{$_}->stop for qw(a b);
done_testing();
