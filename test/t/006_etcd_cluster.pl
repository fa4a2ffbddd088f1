# etcd node-id leases on a three-member etcd cluster, with
# several endpoints): while two servers insert, the leader (listed as the
# first endpoint) is killed, later a member listed first is paused so that
# requests to it hang.  IDs keep flowing, clients see no error (a generous
# wait_timeout absorbs any pause), the servers keep their node ids, and no
# ID repeats.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use lib 'test/lib';
use SnowflakeTest;
use EtcdTest;

my $etcd = EtcdTest->new(members => 3);
my $prefix = $etcd->prefix;
my $leader = $etcd->leader;
ok(defined $leader, "the cluster has a leader (member $leader)");
my @order = ($leader, grep { $_ != $leader } 0 .. 2);


my @servers = map {
	etcd_snowflake_node("clu$_", $etcd, ttl => 6, endpoints => $etcd->endpoints(@order),
		conf => "snowflake.wait_timeout = 30000\n")
} 0 .. 1;
$_->start for @servers;
wait_until_ready($_) for @servers;
my %node_of = map { ($_->name => status($_)->{node_id}) } @servers;
for my $node (@servers)
{
	query($node, 'CREATE TABLE ids (id bigint NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())');
	PostgreSQL::Test::Utils::append_to_file($node->basedir . '/load.sql',
		"INSERT INTO ids (id) SELECT snowflake_nextval() FROM generate_series(1, 20);\n");
}

# pgbench on every server for $seconds; returns the handles.
sub start_load
{
	my ($seconds) = @_;
	return map {
		my ($out, $err) = ('', '');
		my $h = IPC::Run::start(
			[ 'pgbench', '-n', '-c', '2', '-R', '100', '-T', $seconds, '-f', $_->basedir . '/load.sql',
			  '-h', $_->host, '-p', $_->port, 'postgres' ],
			'>', \$out, '2>', \$err);
		{ h => $h, out => \$out, err => \$err, name => $_->name }
	} @servers;
}

sub finish_load
{
	my ($what, @loads) = @_;
	for my $l (@loads)
	{
		ok($l->{h}->finish, "$l->{name}: pgbench exits 0 ($what)");
		unlike(${ $l->{err} }, qr/error|abort/i, "$l->{name}: clients saw no error ($what)")
		  or diag ${ $l->{err} };
		like(${ $l->{out} }, qr/number of failed transactions: 0 \(/, "$l->{name}: no failed transaction ($what)")
		  or diag ${ $l->{out} };
		like(${ $l->{out} }, qr/number of transactions actually processed: [1-9]/,
			"$l->{name}: transactions were processed ($what)");
	}
}

# IDs made between two moments (ms) on every server.
sub ids_between
{
	my ($from, $to) = @_;
	my $n = 0;
	$n += query($_, "SELECT count(*) FROM ids WHERE snowflake_timestamp(id)
		BETWEEN to_timestamp($from / 1000.0) AND to_timestamp($to / 1000.0)") for @servers;
	return $n;
}

# 1. Kill the leader, which every server lists first.
my @loads = start_load(14);
sleep 3;
my $t_kill = now_ms();
$etcd->kill_member($leader);
my $new_leader = wait_for(sub { my $l = eval { $etcd->leader }; defined $l ? $l + 1 : 0 }, 30);
ok($new_leader, 'the two other members elect a new leader (member ' . ($new_leader - 1) . ')');
sleep 6;
my $t_restart = now_ms();
finish_load('leader killed', @loads);
cmp_ok(ids_between($t_kill, $t_restart), '>', 0, 'IDs were issued while the old leader was down');
for my $node (@servers)
{
	is(query($node, 'SELECT state FROM snowflake_status()'), 'ready', $node->name . ' is ready');
	is(status($node)->{node_id}, $node_of{ $node->name }, $node->name . ' kept its node id');
}
my $keys = $etcd->node_keys;
for my $node (@servers)
{
	my $st = status($node);
	ok($keys->{ $st->{node_id} } && $keys->{ $st->{node_id} }{lease} eq $st->{lease_text},
		$node->name . ': its key is still held under its lease');
}
$etcd->start_member($leader);
$etcd->wait_healthy;

# 2. Pause (SIGSTOP) the member listed first: requests to it hang until
# snowflake.etcd_timeout, then go to the next endpoint.
@loads = start_load(12);
sleep 2;
my $t_pause = now_ms();
$etcd->pause_member($order[0]);
sleep 8;
my $t_resume = now_ms();
$etcd->resume_member($order[0]);
finish_load('first endpoint paused', @loads);
cmp_ok(ids_between($t_pause, $t_resume), '>', 0, 'IDs were issued while the first endpoint hung');
for my $node (@servers)
{
	is(query($node, 'SELECT state FROM snowflake_status()'), 'ready', $node->name . ' is ready');
	is(status($node)->{node_id}, $node_of{ $node->name }, $node->name . ' kept its node id');
	ok(!$node->log_contains(qr/terminated by signal|server process .* was terminated/),
		$node->name . ': no server process crashed');
}

gather_ids($servers[0], 'ids', @servers);
cmp_ok(query($servers[0], 'SELECT count(*) FROM all_ids'), '>', 0, 'IDs gathered');
is(query($servers[0], 'SELECT count(*) - count(DISTINCT id) FROM all_ids'), 0, 'no ID repeats');
is(overlapping_tenures($servers[0]), '', 'no node id shared by both servers');
$_->stop('fast') for @servers;
is(scalar keys %{ $etcd->node_keys }, 0, 'clean stops free both ids');
done_testing();
