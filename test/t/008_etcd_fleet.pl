# etcd node-id leases, a fleet on one real etcd: servers
# claim distinct node ids (the lowest free ones) under their lease and name
# themselves in the key; concurrent inserts on all of them never repeat an
# ID; a clean stop frees the id at once, a kill -9 only once the lease
# expired; the etcd mark covers every ID; with every id taken a server says
# so and takes an id as soon as one frees; node_source = guc with etcd
# claims its configured id and refuses one held by a live server.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use lib 'test/lib';
use SnowflakeTest;
use EtcdTest;

my $ttl = 3;
my $etcd = EtcdTest->new(members => 1);
my $prefix = $etcd->prefix;
my %conf = (ttl => $ttl, conf => "snowflake.wait_timeout = 10000\n");

sub sysid { return query($_[0], 'SELECT system_identifier FROM pg_control_system()'); }

# Four servers started together.
my @fleet = map { etcd_snowflake_node("fleet$_", $etcd, %conf) } 0 .. 3;

# $successor, which took over the node id of $predecessor, issues 1000 IDs,
# gathered with the rest: none is at or below an ID of $predecessor.
sub issues_above
{
	my ($successor, $predecessor, $what) = @_;
	query($successor, 'CREATE TABLE ids (id bigint NOT NULL)');
	query($successor, 'INSERT INTO ids SELECT snowflake_nextval() FROM generate_series(1, 1000)');
	gather_ids($fleet[0], 'ids', $successor);
	is(query($fleet[0], "SELECT count(*) FROM all_ids a, all_ids b
		WHERE a.server = '" . $successor->name . "' AND b.server = '" . $predecessor->name . "'
		  AND a.id <= b.id"), 0, $what);
}

$_->start for @fleet;
wait_until_ready($_) for @fleet;
my %node_of = map { ($_->name => status($_)->{node_id}) } @fleet;
is_deeply([ sort { $a <=> $b } values %node_of ], [ 0, 1, 2, 3 ],
	'four servers on one etcd hold four distinct node ids, the lowest free ones');
is(status($fleet[0])->{node_source}, 'etcd', 'status names the node source');

my $keys = $etcd->node_keys;
is_deeply([ sort { $a <=> $b } keys %$keys ], [ 0, 1, 2, 3 ], "etcd holds exactly $prefix/nodes/0..3");
for my $node (@fleet)
{
	my $st = status($node);
	my $key = $keys->{ $st->{node_id} };
	ok(defined $st->{lease_text} && $key->{lease} eq $st->{lease_text},
		$node->name . ": the key is attached to the lease status shows");
	is(ref $key->{value} eq 'HASH' && $key->{value}{port}, $node->port, $node->name . ': the key names its port');
	is(ref $key->{value} eq 'HASH' && "$key->{value}{system_identifier}", sysid($node),
		$node->name . ': and its system identifier');
	ok(ref $key->{value} eq 'HASH' && defined $key->{value}{host} && $key->{value}{host} ne '',
		$node->name . ': and a host');
	my $lease = json_decode($etcd->etcdctl('lease', 'timetolive', sprintf('%x', $key->{lease}), '-w', 'json'));
	is($lease->{'granted-ttl'} // $lease->{granted_ttl}, $ttl, $node->name . ": the lease was granted with TTL $ttl");
	ok(defined $st->{lease_expires_at}, $node->name . ': status shows when the lease expires');
}

# Concurrent inserts on all four servers (pgbench with a script file),
# gathered into one table: no ID twice, each under its server's node id.
for my $node (@fleet)
{
	query($node, 'CREATE TABLE ids (id bigint NOT NULL)');
	PostgreSQL::Test::Utils::append_to_file($node->basedir . '/load.sql',
		"INSERT INTO ids SELECT snowflake_nextval() FROM generate_series(1, 100);\n");
}
my @loads = map {
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'pgbench', '-n', '-c', '2', '-t', '100', '-f', $_->basedir . '/load.sql',
		  '-h', $_->host, '-p', $_->port, 'postgres' ],
		'>', \$out, '2>', \$err);
	[ $h, \$out, \$err, $_->name ]
} @fleet;
for my $l (@loads)
{
	ok($l->[0]->finish, "$l->[3]: pgbench load succeeded") or diag ${ $l->[2] };
}
gather_ids($fleet[0], 'ids', @fleet);
query($fleet[0], 'CREATE TABLE server_node (server text, node int)');
query($fleet[0], "INSERT INTO server_node VALUES ('$_', $node_of{$_})") for keys %node_of;
is(query($fleet[0], 'SELECT count(*) FROM all_ids'), 4 * 2 * 100 * 100, 'every inserted ID was gathered');
is(query($fleet[0], 'SELECT count(*) - count(DISTINCT id) FROM all_ids'), 0,
	'no ID was issued twice across the fleet');
is(query($fleet[0], 'SELECT count(*) FROM all_ids a JOIN server_node s USING (server)
	WHERE snowflake_node(a.id) <> s.node'), 0, "each server's IDs carry its own node id");

# The etcd mark of each node id is at or above every ID issued under it.
for my $node (@fleet)
{
	my $n = $node_of{ $node->name };
	my $top = query($fleet[0], "SELECT (extract(epoch FROM snowflake_timestamp(max(id))) * 1000)::bigint
		FROM all_ids WHERE server = '" . $node->name . "'");
	my $mark = $etcd->mark($n);
	ok(defined $mark && $mark =~ /^\d+$/ && $mark >= $top,
		"$prefix/marks/$n is at or above the last ID of node $n ("
		  . ($mark // 'no mark') . " >= $top)");
}

# Clean stop: the lease is revoked, the key is gone when stop returns, and
# the next server takes that id and issues above the old IDs.
my $stopped = $fleet[3];
my $freed = $node_of{ $stopped->name };
my $stopped_lease = status($stopped)->{lease_text};
my $mark_running = $etcd->mark($freed);
$stopped->stop('fast');
ok(!defined $etcd->get_key("$prefix/nodes/$freed"), "a clean stop frees node id $freed at once");
my $stopped_top = query($fleet[0], "SELECT (extract(epoch FROM snowflake_timestamp(max(id))) * 1000)::bigint
	FROM all_ids WHERE server = '" . $stopped->name . "'");
my $mark_stopped = $etcd->mark($freed);
ok(defined $mark_stopped && $mark_stopped >= $stopped_top,
	"after the clean stop the mark of $freed still covers its IDs (" . ($mark_stopped // 'none') . " >= $stopped_top)");
diag "mark of node $freed: $mark_running while running, " . ($mark_stopped // 'none')
  . " after the clean stop; last ID at $stopped_top";
# While held, the mark only rises; a clean stop, with the generator closed
# and the lease still held, brings it to the exact last issued millisecond
# (README, "Running a fleet with etcd") so the next holder issues at once.
is($mark_stopped, $stopped_top,
	"the clean stop settles the mark of $freed at its last issued millisecond");
my $ttl_left = json_decode($etcd->etcdctl('lease', 'timetolive', sprintf('%x', $stopped_lease), '-w', 'json'))->{ttl};
ok($ttl_left < 0, "and revokes its lease (timetolive $ttl_left)");
my $next = etcd_snowflake_node('fleet4', $etcd, %conf);
start_ready($next);
is(status($next)->{node_id}, $freed, "the next server takes the freed id $freed");
issues_above($next, $stopped, 'and issues above every ID the stopped server issued under it');

# kill -9: the postmaster dies without revoking; the id stays held until
# the lease expires (no one can take it while orphaned backends might still
# issue), then it is free and the next server takes it.
my $killed = $fleet[2];
my $killed_node = $node_of{ $killed->name };
$killed->kill9;
ok(defined $etcd->get_key("$prefix/nodes/$killed_node"),
	"right after kill -9, node id $killed_node is still held");
my $t_kill = time();
ok(wait_for(sub { !defined $etcd->get_key("$prefix/nodes/$killed_node") }, 60),
	"after kill -9, node id $killed_node is freed once the lease expires");
diag sprintf('the key went away %.1f s after kill -9 (TTL %d s)', time() - $t_kill, $ttl);
my $after_kill = etcd_snowflake_node('fleet5', $etcd, %conf);
start_ready($after_kill);
is(status($after_kill)->{node_id}, $killed_node, "the next server takes id $killed_node");
issues_above($after_kill, $killed, 'and issues above every ID the killed server issued under it');

# Exhaustion: ids 0-3 are held by servers; take every other id but 4 and 5
# by hand (plain keys, no lease).  Two more servers take 4 and 5; the third
# has none: state no_node_id, nextval fails at once with 55000; once an id
# frees it takes it by itself.
my %taken = map { ("$prefix/nodes/$_" => '{"host":"preclaimed","port":1,"system_identifier":"1"}') } 6 .. 1023;
$etcd->put_many(\%taken);
my @more = map { etcd_snowflake_node("more$_", $etcd, %conf) } 0 .. 1;
$_->start for @more;
wait_until_ready($_) for @more;
is_deeply([ sort { $a <=> $b } map { status($_)->{node_id} } @more ], [ 4, 5 ],
	'two more servers take the last two free ids');
my $starved = etcd_snowflake_node('starved', $etcd, %conf);
$starved->start;
ensure_extension($starved);
ok(wait_for_state($starved, 'no_node_id', 60), 'with all 1024 ids taken, the state is no_node_id');
is(status($starved)->{node_id}, undef, 'and node_id is NULL');
my ($rc, $out, $err) = nextval_result($starved, 20000);
isnt($rc, 0, 'nextval fails without a node id');
like($err, qr/55000/, 'with SQLSTATE 55000 (not a wait timeout)');
like($err, qr/no free (?:snowflake )?node id/i, 'saying that no node id is free');
$etcd->etcdctl('del', "$prefix/nodes/700");
ok(wait_for_state($starved, 'ready', 60), 'once id 700 frees, the server takes it by itself');
is(status($starved)->{node_id}, 700, 'node id 700');
($rc, $out, $err) = nextval_result($starved, 10000);
is($rc, 0, 'and issues IDs');
is(query($starved, "SELECT snowflake_node($out)"), 700, 'under node id 700') if $rc == 0;

# node_source = guc with etcd_endpoints: a configured id another live
# server holds is refused, naming the holder; a free one is claimed in etcd.
my $holder = $fleet[0];
my $held = $node_of{ $holder->name };
my $guc = etcd_snowflake_node('guc_held', $etcd, %conf, source => 'guc',
	conf => "snowflake.node_id = $held\nsnowflake.wait_timeout = 10000\n");
$guc->start;
ensure_extension($guc);
ok(wait_for_state($guc, 'no_node_id', 60), "guc mode, id $held held by another server: state no_node_id");
($rc, $out, $err) = nextval_result($guc, 10000);
isnt($rc, 0, 'nextval refuses');
like($err, qr/55000/, 'with SQLSTATE 55000');
my ($holder_port, $holder_sysid) = ($holder->port, sysid($holder));
like($err, qr/\b$holder_port\b/, "naming the holder's port ($holder_port)");
like($err, qr/\b$holder_sysid\b/, "and its system identifier ($holder_sysid)");
is(status($guc)->{node_source}, 'guc', 'status says node_source guc');

$etcd->etcdctl('del', "$prefix/nodes/900");
my $guc_free = etcd_snowflake_node('guc_free', $etcd, %conf, source => 'guc',
	conf => "snowflake.node_id = 900\n");
start_ready($guc_free);
my $key900 = $etcd->get_key("$prefix/nodes/900");
ok(defined $key900 && defined $key900->{lease} && $key900->{lease} eq status($guc_free)->{lease_text},
	'guc mode with etcd: the configured free id is claimed under the lease');
like($key900 ? $key900->{value} : '', qr/"port"\s*:\s*${\ $guc_free->port}\b/, 'naming this server');
($rc, $out, $err) = nextval_result($guc_free, 10000);
is($rc == 0 && query($guc_free, "SELECT snowflake_node($out)"), 900, 'and it issues under 900');

for my $node (@fleet[0, 1], $next, $after_kill, @more, $starved, $guc, $guc_free)
{
	ok(!$node->log_contains(qr/terminated by signal|server process .* was terminated/),
		$node->name . ': no server process crashed');
}
$_->stop('fast') for ($guc_free, $guc, $starved, @more, $after_kill, $next, @fleet[0, 1]);
ok(!defined $etcd->get_key("$prefix/nodes/$held"), 'after the clean stops the servers hold no keys');
done_testing();
