# Fan-in with PostgreSQL's own logical replication, the README recipe run as
# written: three regional servers (node ids 11, 12, 13) publish their
# orders, one central server subscribes to all three while clients insert
# on every region at once.  The central server ends with every row, as many
# as the regions' sum, without a key conflict or an apply error.
use strict;
use warnings;

use IPC::Run ();
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test/lib';
use SnowflakeTest;

my ($conf, $create, $subscribe, $by_node) = readme_blocks('fan-in');
like($conf, qr/^snowflake\.node_id = 11\b/m,
	'the first fan-in block of the README is the regional configuration');

my @regions = ('east', 'west', 'south');
my %node_id = (east => 11, west => 12, south => 13);
my %region;
for my $name (@regions)
{
	my $n = snowflake_node($name, '', allows_streaming => 'logical');
	$n->append_conf('postgresql.conf', $conf);
	# "12, 13, ...: one per region", as the README's comment says.
	$n->append_conf('postgresql.conf', "snowflake.node_id = $node_id{$name}\n");
	$n->start;
	wait_until_ready($n);
	run_readme_sql($n, $create);
	$region{$name} = $n;
}

# The central server: preloaded, no node id of its own (it inserts nothing),
# the same table without the publication.
my $central = snowflake_node('central');
$central->start;
my $table_only = join("\n", grep { !/PUBLICATION/ } split(/\n/, $create)) . "\n";
run_readme_sql($central, $table_only);

# Rows made before the subscription exist come with its initial copy.
$region{$_}->safe_psql('postgres',
	"INSERT INTO orders (region, item) SELECT '$_', 'before ' || n FROM generate_series(1, 100) n")
  for @regions;
for my $name (@regions)
{
	run_readme_sql($central, $subscribe,
		{ region => $name, region_dsn => $region{$name}->connstr('postgres') });
}

# Clients on all three regions at once: 2 psql sessions each, 300
# single-row transactions per session, reading their script from a file so
# that all run at the same time.
my @running;
for my $name (@regions)
{
	my $script = $region{$name}->basedir . '/inserts.sql';
	PostgreSQL::Test::Utils::append_to_file($script,
		"INSERT INTO orders (region, item) VALUES ('$name', 'live');\n" x 300);
	for my $c (1 .. 2)
	{
		my $err = $region{$name}->basedir . "/client_$c.err";
		push @running, [ $name, $err, IPC::Run::start(
				[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1',
					'-d', $region{$name}->connstr('postgres'), '-f', $script ],
				'<', '/dev/null', '>', '/dev/null', '2>', $err) ];
	}
}
for my $r (@running)
{
	my ($name, $err, $h) = @$r;
	ok($h->finish, "a client on $name inserted its rows") or diag(slurp_file($err));
}

my $sum = 0;
for my $name (@regions)
{
	$sum += $region{$name}->safe_psql('postgres', 'SELECT count(*) FROM orders');
}
is($sum, 3 * (100 + 2 * 300), 'the regions hold every row their clients made');
$central->poll_query_until('postgres', "SELECT count(*) = $sum FROM orders")
  or die 'the central server did not receive every row';
is($central->safe_psql('postgres', 'SELECT count(*) FROM orders'), $sum,
	'the central server holds as many rows as the regions together');

# The same rows, not only as many: each region's rows, by id, on central.
for my $name (@regions)
{
	my $q = "SELECT md5(string_agg(id || ' ' || region || ' ' || item, ',' ORDER BY id)) FROM orders WHERE snowflake_node(id) = $node_id{$name}";
	is($central->safe_psql('postgres', $q), $region{$name}->safe_psql('postgres', $q),
		"central holds exactly the rows of $name");
}
my $out = run_readme_sql($central, $by_node);
for my $name (@regions)
{
	like($out, qr/^\s+$node_id{$name} \|\s+700$/m, "the README's query shows the rows of $name");
}
is($central->safe_psql('postgres',
	q{SELECT count(*) FROM orders WHERE snowflake_node(id) <> CASE region WHEN 'east' THEN 11 WHEN 'west' THEN 12 ELSE 13 END}),
	'0', 'every row carries the node id of its region');

my $log = slurp_file($central->logfile);
unlike($log, qr/duplicate key/, 'no key conflict on the central server');
unlike($log, qr/\b(ERROR|FATAL|PANIC):/, 'no error in the central server\'s log');

$_->stop for values %region;
$central->stop;
done_testing();
