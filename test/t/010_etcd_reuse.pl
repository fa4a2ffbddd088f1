# Reuse of a node id across servers: the etcd mark
# of node N is at or above every ID issued under N, so a server that later
# claims N after its holder died starts above everything N issued.  Server
# A issues IDs under N and is killed; server B, whose clock (libfaketime)
# is a little behind A's mark, claims N after the TTL and waits for its
# clock (or migrates): no ID of B under N is at or below A's mark.  Then
# N's mark is moved 30 s ahead (as a server with a fast clock would have
# left it): the next server to claim N migrates to another id at once
# instead of waiting.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use List::Util qw(min);
use Time::HiRes qw(time usleep);
use Time::Local qw(timegm);
use lib 'test/lib';
use SnowflakeTest;
use EtcdTest;

my $ttl = 3;
my $etcd = EtcdTest->new(members => 1);
my $prefix = $etcd->prefix;
my %conf = (ttl => $ttl, conf => "snowflake.reserve = 1000\nsnowflake.max_clock_rollback = 1000\n"
	  . "snowflake.wait_timeout = 10000\n");

sub max_ms
{
	my ($node, $where) = @_;
	return query($node, 'SELECT (extract(epoch FROM snowflake_timestamp(max(id))) * 1000)::bigint FROM ids'
		  . ($where ? " WHERE $where" : ''));
}

# A issues IDs for about 2 s under N, then dies.
my $srv_a = etcd_snowflake_node('a', $etcd, %conf);
start_ready($srv_a);
my $n = status($srv_a)->{node_id};
is($n, 0, 'server A holds node id 0');
query($srv_a, 'CREATE TABLE ids (id bigint NOT NULL)');
for (1 .. 10)
{
	query($srv_a, 'INSERT INTO ids SELECT snowflake_nextval() FROM generate_series(1, 1000)');
	usleep(200_000);
}
my $a_last = max_ms($srv_a);
my $a_max_id = query($srv_a, 'SELECT max(id) FROM ids');
my $mark_before_kill = $etcd->mark($n);
ok(defined $mark_before_kill && $mark_before_kill >= $a_last,
	"while A runs, $prefix/marks/$n (" . ($mark_before_kill // 'none') . ") is at or above its last ID ($a_last)");
$srv_a->kill9;
ok(wait_for(sub { !defined $etcd->get_key("$prefix/nodes/$n") }, 60), "after kill -9, node id $n frees after the TTL");
my $mark = $etcd->mark($n);
ok(defined $mark && $mark >= $a_last, "A's mark survives it: $mark >= $a_last");

# B: its clock 1 s behind A's mark (within reserve + max_clock_rollback).
my $srv_b = etcd_snowflake_node('b', $etcd, %conf);
# A's etcd mark is kept ahead of its IDs (by up to two TTLs), so B at the
# real clock may already be behind it; its backends run at least 0.6 s
# behind the real clock either way.
my $offset = sprintf('%+.3f', min(($mark - 1000 - now_ms()) / 1000, -0.6));
my $t_start = time();
start_with_movable_clock($srv_b, $offset);
my $skew = query($srv_b, 'SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint') - now_ms();
diag "B started with FAKETIME offset $offset s; its backends' clock is $skew ms off, A's mark is "
  . ($mark - now_ms()) . ' ms ahead of real time';
ok($skew < -500, "B's backends run behind the real clock");
wait_until_ready($srv_b);
query($srv_b, 'CREATE TABLE ids (id bigint NOT NULL)');
query($srv_b, 'INSERT INTO ids SELECT snowflake_nextval() FROM generate_series(1, 1000)');
my $st = status($srv_b);
if ($st->{node_id} == $n)
{
	pass("B claimed node id $n and waited for its clock");
	diag "B claimed node id $n and waited for its clock (no migration)";
	cmp_ok(query($srv_b, 'SELECT min(id) FROM ids'), '>', $a_max_id, "B's IDs under $n are above every ID of A");
	cmp_ok(query($srv_b, 'SELECT (extract(epoch FROM snowflake_timestamp(min(id))) * 1000)::bigint FROM ids'),
		'>', $mark, "and above A's mark in etcd");
}
else
{
	cmp_ok($st->{node_migrations}, '>=', 1, "B migrated from $n to $st->{node_id}");
	diag "B migrated from node id $n to $st->{node_id}";
}
is(query($srv_b, "SELECT count(*) FROM ids WHERE snowflake_node(id) <> $st->{node_id}"), 0,
	"B's IDs carry its node id");

# Does B's worker follow the faked clock?  Its log lines carry its own
# clock in %m; the first one is written after $t_start in real time.
my $log = PostgreSQL::Test::Utils::slurp_file($srv_b->logfile);
my @worker_pids = snowflake_worker_pids($srv_b);
for my $pid (@worker_pids)
{
	if ($log =~ /^(\d+)-(\d+)-(\d+) (\d+):(\d+):(\d+).(\d+) \w+ \[$pid\]/m)
	{
		my $ts = timegm($6, $5, $4, $3, $2 - 1, $1) + $7 / 1000;
		diag sprintf("B's worker (pid %d) logged its first line %.3f s from real time at its start: %s",
			$pid, $ts - $t_start, ($ts < $t_start - 0.5) ? 'its clock is faked' : 'its clock is real');
	}
}

# Gathered: no ID of A and B repeats.
gather_ids($srv_b, 'ids', $srv_b);
my $file = $srv_b->basedir . '/a_ids.copy';
# A is down: read its IDs from its data directory by starting it without etcd.
$srv_a->append_conf('postgresql.conf', "snowflake.node_source = 'guc'\nsnowflake.node_id = -1\nsnowflake.etcd_endpoints = ''\n");
$srv_a->start;
query($srv_a, "COPY (SELECT 'a', id, 0 FROM ids) TO '$file'");
query($srv_b, "COPY all_ids (server, id, run) FROM '$file'");
is(query($srv_b, 'SELECT count(*) FROM all_ids'), 11000, 'all IDs of A and B gathered');
is(query($srv_b, 'SELECT count(*) - count(DISTINCT id) FROM all_ids'), 0, 'no ID of A and B repeats');
$srv_a->stop('fast');

# Far behind: N's mark 30 s ahead of every clock.  B stops cleanly (N is
# free at once); C claims N, finds its clock 30 s behind N's mark (more than
# reserve + max_clock_rollback) and migrates to another id instead of
# refusing or waiting.
$srv_b->stop('fast');
ok(!defined $etcd->get_key("$prefix/nodes/$n"), "B's clean stop frees node id $n");
my $far = now_ms() + 30_000;
$etcd->etcdctl('put', "$prefix/marks/$n", $far);
my $srv_c = etcd_snowflake_node('c', $etcd, %conf);
start_ready($srv_c);
$st = status($srv_c);
isnt($st->{node_id}, $n, "C, 30 s behind node $n's mark, holds another node id ($st->{node_id})");
cmp_ok($st->{node_migrations}, '>=', 1, 'status counts the migration');
ok(!defined $etcd->get_key("$prefix/nodes/$n") || $etcd->get_key("$prefix/nodes/$n")->{lease} ne $st->{lease_text},
	"C gave node id $n back");
my ($rc, $out, $err) = nextval_result($srv_c, 10000);
is($rc, 0, 'C issues IDs at once (well before the mark)') or diag $err;
is($rc == 0 && query($srv_c, "SELECT snowflake_node($out)"), $st->{node_id}, 'under its new node id');
cmp_ok($etcd->mark($n), '>=', $far, "node $n's mark was not lowered");
for my $node ($srv_b, $srv_c)
{
	ok(!$node->log_contains(qr/terminated by signal|server process .* was terminated/),
		$node->name . ': no server process crashed');
}
$srv_c->stop('fast');
done_testing();
