# etcd fencing: a server issues IDs under a node id only
# while its lease may still be alive, judged by the backends themselves.
# etcd stopped: every server stops issuing within the TTL (state fenced,
# 55P03 naming the etcd lease) and resumes by itself once etcd is back.  A
# worker SIGSTOPped past the TTL while another server takes its id: its
# backends issue nothing after the lease expired; SIGCONT: it gets a new
# lease and another id.  Across everything, no two servers ever issue
# under the same node id at the same time, and no ID repeats.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use lib 'test/lib';
use SnowflakeTest;
use EtcdTest;

my $ttl = 3;

# Workers this test stops (SIGSTOP): continued if the test dies, so that
# the servers can shut down.
my @workers;
END { kill 'CONT', @workers if @workers; }
my $etcd = EtcdTest->new(members => 1);
my $prefix = $etcd->prefix;


my @servers = map { etcd_snowflake_node("fence$_", $etcd, ttl => $ttl) } 0 .. 2;
$_->start for @servers;
wait_until_ready($_) for @servers;
query($_, 'CREATE TABLE ids (id bigint NOT NULL, run int NOT NULL)') for @servers;

# One attempt to insert 20 IDs on $node (wait_timeout 100 ms); returns
# (ok, stderr).
sub attempt
{
	my ($node, $run) = @_;
	my ($rc, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nSET snowflake.wait_timeout = 100;\n"
		  . "INSERT INTO ids SELECT snowflake_nextval(), $run FROM generate_series(1, 20)");
	return ($rc == 0, $err);
}

# IDs of run $run on every server whose timestamp is above $limit_ms.
sub ids_after
{
	my ($run, $limit_ms, @nodes) = @_;
	my $n = 0;
	$n += query($_, "SELECT count(*) FROM ids WHERE run = $run
		AND snowflake_timestamp(id) > to_timestamp($limit_ms / 1000.0)") for @nodes;
	return $n;
}

for my $node (@servers)
{
	my ($ok, $err) = attempt($node, 1);
	ok($ok, $node->name . ' issues IDs with etcd up') or diag $err;
}

# etcd goes away while the servers keep trying to issue.
my $t_stop = now_ms();
$etcd->kill_member(0);
my %fenced;
my %errors;
my $deadline = time() + $ttl + 30;
while (keys %fenced < @servers && time() < $deadline)
{
	for my $node (@servers)
	{
		my ($ok, $err) = attempt($node, 2);
		$errors{ $node->name } = $err unless $ok;
		$fenced{ $node->name } = 1
		  if query($node, 'SELECT state FROM snowflake_status()') eq 'fenced';
	}
	usleep(100_000);
}
for my $node (@servers)
{
	my $name = $node->name;
	ok($fenced{$name}, "$name: state fenced with etcd gone");
	# Asked again once fenced: before the fence, a caller may instead have
	# timed out waiting for a reservation the worker could not write.
	my ($ok, $err) = attempt($node, 2);
	$errors{$name} = $err unless $ok;
	like($errors{$name} // '', qr/55P03/, "$name: nextval fails with 55P03");
	like($errors{$name} // '', qr/etcd/i, "$name: the error names etcd")
	  and like($errors{$name} // '', qr/lease/i, "$name: and the lease");
	my ($rc, $out, $err) = nextval_result($node, 300);
	isnt($rc, 0, "$name: still fenced, nextval fails");
	cmp_ok(query($node, 'SELECT etcd_errors FROM snowflake_status()'), '>', 0,
		"$name: etcd_errors counts the failed calls");
}
is(ids_after(2, $t_stop + $ttl * 1000, @servers), 0,
	'no server issued an ID later than TTL after etcd went away');
is(ids_after(1, $t_stop + $ttl * 1000, @servers), 0, '(nor before)');

# etcd comes back: every server gets a lease and a node id by itself.
sleep 1;
$etcd->start_member(0);
$etcd->wait_healthy;
for my $node (@servers)
{
	ok(wait_for_state($node, 'ready', 60), $node->name . ': ready again by itself once etcd is back');
	my ($ok, $err) = attempt($node, 3);
	ok($ok, $node->name . ': issues IDs again') or diag $err;
}
my %node_of = map { ($_->name => status($_)->{node_id}) } @servers;
my %distinct = reverse %node_of;
is(scalar keys %distinct, 3, 'the three servers hold three distinct node ids: ' . join(' ', values %node_of));
my $keys = $etcd->node_keys;
for my $node (@servers)
{
	my $st = status($node);
	my $key = $keys->{ $st->{node_id} };
	ok($key && $key->{lease} eq $st->{lease_text} && ref $key->{value} eq 'HASH'
		  && $key->{value}{port} == $node->port,
		$node->name . ": etcd's key of node $st->{node_id} names it, under its lease");
}

# etcd paused (SIGSTOP): requests hang until snowflake.etcd_timeout
# instead of being refused; the servers are fenced all the same, and
# resume once etcd does.
my $t_pause = now_ms();
$etcd->pause_member(0);
%fenced = ();
$deadline = time() + $ttl + 30;
while (keys %fenced < @servers && time() < $deadline)
{
	for my $node (@servers)
	{
		attempt($node, 6);
		my ($rc, $state) = $node->psql('postgres', 'SELECT state FROM snowflake_status()', timeout => 30);
		$fenced{ $node->name } = 1 if $rc == 0 && $state eq 'fenced';
	}
	usleep(100_000);
}
is(scalar keys %fenced, scalar @servers, 'etcd paused: every server is fenced');
is(ids_after(6, $t_pause + $ttl * 1000, @servers), 0,
	'no server issued an ID later than TTL after etcd paused');
$etcd->resume_member(0);
for my $node (@servers)
{
	ok(wait_for_state($node, 'ready', 60), $node->name . ': ready again once etcd resumes');
}
%node_of = map { ($_->name => status($_)->{node_id}) } @servers;
%distinct = reverse %node_of;
is(scalar keys %distinct, 3, 'three distinct node ids again: ' . join(' ', values %node_of));

# A paused worker.  The victim holds the lowest id of the three; every free
# id below it is taken by hand, so that once the victim's lease expires a
# new server claims exactly the victim's id.
my ($victim) = sort { $node_of{ $a->name } <=> $node_of{ $b->name } } @servers;
my $victim_node = $node_of{ $victim->name };
my $victim_lease = status($victim)->{lease_text};
my %held = map { ($_ => 1) } values %node_of;
$etcd->etcdctl('put', "$prefix/nodes/$_", '{"host":"placeholder","port":1,"system_identifier":"1"}')
  for grep { !$held{$_} } 0 .. $victim_node - 1;
@workers = snowflake_worker_pids($victim);
ok(@workers > 0, 'found the worker of ' . $victim->name . ": @workers");
my $t_sigstop = now_ms();
kill 'STOP', @workers;
my ($issued_while_stopped, $victim_err) = (0, '');
my $gone = 0;
$deadline = time() + $ttl + 30;
while (!$gone && time() < $deadline)
{
	my ($ok, $err) = attempt($victim, 4);
	if ($ok) { $issued_while_stopped++ } else { $victim_err = $err }
	$gone = !defined $etcd->get_key("$prefix/nodes/$victim_node");
	usleep(100_000);
}
ok($gone, "the paused worker's lease expired: node id $victim_node is free in etcd");
my $taker = etcd_snowflake_node('taker', $etcd, ttl => $ttl);
$taker->start;
wait_until_ready($taker);
is(status($taker)->{node_id}, $victim_node, "a new server takes node id $victim_node");
query($taker, 'CREATE TABLE ids (id bigint NOT NULL, run int NOT NULL)');
for (1 .. 10)
{
	my ($ok, $err) = attempt($taker, 4);
	ok($ok, 'the new server issues IDs') or diag $err if $_ == 1;
	my ($vok, $verr) = attempt($victim, 4);
	if ($vok) { $issued_while_stopped++ } else { $victim_err = $verr }
	usleep(100_000);
}
diag "the paused server issued $issued_while_stopped batches after its worker stopped, before fencing";
is(query($victim, 'SELECT state FROM snowflake_status()'), 'fenced',
	'the server with the paused worker is fenced (and status answers)');
like($victim_err, qr/55P03/, 'its nextval fails with 55P03');
is(ids_after(4, $t_sigstop + $ttl * 1000, $victim), 0,
	'it issued no ID later than TTL after its worker stopped');

# SIGCONT: the worker finds its lease gone, gets a new one and another id.
kill 'CONT', @workers;
ok(wait_for_state($victim, 'ready', 60), 'after SIGCONT the server is ready again by itself');
my $st = status($victim);
isnt($st->{node_id}, $victim_node, "with another node id ($st->{node_id}), $victim_node being taken");
isnt($st->{lease_text}, $victim_lease, 'under a new lease');
for (1 .. 5)
{
	my ($ok, $err) = attempt($victim, 5);
	ok($ok, 'it issues IDs again') or diag $err if $_ == 1;
	attempt($taker, 5);
}

# Everything gathered: no duplicates, no shared node id at the same time.
gather_ids($servers[0], 'ids', @servers, $taker);
cmp_ok(query($servers[0], 'SELECT count(*) FROM all_ids'), '>', 0, 'IDs gathered');
is(query($servers[0], 'SELECT count(*) - count(DISTINCT id) FROM all_ids'), 0, 'no ID repeats');
is(query($servers[0], "SELECT count(*) FROM all_ids WHERE server = '" . $victim->name
	  . "' AND run = 5 AND snowflake_node(id) = $victim_node"), 0,
	"after SIGCONT the server issued nothing under $victim_node");
is(overlapping_tenures($servers[0]), '',
	'no two servers issued under one node id over overlapping spans');

for my $node (@servers, $taker)
{
	ok(!$node->log_contains(qr/terminated by signal|server process .* was terminated/),
		$node->name . ': no server process crashed');
}
$_->stop('fast') for (@servers, $taker);
done_testing();
