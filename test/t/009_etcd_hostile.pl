# Hostile answers from "etcd" (a malformed or hostile
# response is an error, never a crash): test/lib/hostile_etcd.pl answers
# with each kind of garbage in turn.  For each: the server stays up, counts
# the errors in etcd_errors, logs the problem (not at every retry), holds no
# node id, issues no ID, and snowflake_status() still answers.  Then with a
# "working" fake etcd that grants a lease and a node id, hostile keep-alive
# answers must fence the server: a keep-alive whose answer cannot be read
# does not extend the lease.  Last, a hostile first endpoint in front of a
# real etcd: the failed request moves on to the real one.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use lib 'test/lib';
use SnowflakeTest;
use EtcdTest;

my $ttl = 3;
my $hostile = start_hostile_etcd('garbage');
my $node = etcd_snowflake_node('hostile', $hostile->{endpoint}, ttl => $ttl, timeout => 1000,
	conf => "snowflake.wait_timeout = 100\n");
$node->start;
ensure_extension($node);

# snowflake_status() as a hash, failing the test (not hanging) if it does
# not answer within 30 s.
sub status_or_fail
{
	my ($what) = @_;
	my ($rc, $out, $err) = $node->psql('postgres',
		'SELECT row_to_json(s) FROM (SELECT *, lease_id::text AS lease_text FROM snowflake_status()) s',
		timeout => 30);
	ok($rc == 0 && $out ne '', "$what: snowflake_status() answers") or diag $err;
	return $rc == 0 && $out ne '' ? json_decode($out) : {};
}

sub worker_log_entries
{
	my ($from) = @_;
	my $log = substr(PostgreSQL::Test::Utils::slurp_file($node->logfile), $from);
	my @pids = snowflake_worker_pids($node);
	my $pids = join('|', @pids);
	return () unless @pids;
	return grep { /\[(?:$pids)\]\s+(?:LOG|WARNING|ERROR):/ } split /\n/, $log;
}

my @kinds = qw(garbage html wrong_types huge_numbers bad_values missing truncated bad_json
  oversized hang drip empty close http500 error_object deep);
for my $kind (@kinds)
{
	set_hostile_mode($hostile, $kind);
	my $before = status_or_fail("before $kind")->{etcd_errors} // 0;
	# The first kind is the one the server started with.
	my $log_from = $kind eq $kinds[0] ? 0 : -s $node->logfile;
	my $counted = wait_for(sub {
		my ($rc, $out) = $node->psql('postgres', 'SELECT etcd_errors FROM snowflake_status()', timeout => 30);
		return $rc == 0 && $out >= $before + 3;
	}, 90);
	ok($counted, "$kind: etcd_errors rises (from $before)");
	my $st = status_or_fail($kind);
	is($st->{node_id}, undef, "$kind: no node id");
	isnt($st->{state} // '', 'ready', "$kind: not ready (state " . ($st->{state} // '?') . ')');
	ok(defined $st->{last_error} && $st->{last_error} ne '', "$kind: last_error: " . ($st->{last_error} // ''));
	my ($rc, $out, $err) = nextval_result($node, 100);
	isnt($rc, 0, "$kind: nextval issues nothing");
	my @entries = worker_log_entries($log_from);
	# Logged now, or already: the same message as the previous kind's.
	my $earlier = substr(PostgreSQL::Test::Utils::slurp_file($node->logfile), 0, $log_from);
	ok(@entries >= 1 || (defined $st->{last_error} && index($earlier, $st->{last_error}) >= 0),
		"$kind: the worker logged the problem");
	ok(@entries <= 2, "$kind: logged once, not at every retry (" . scalar(@entries) . ' log entries for '
		  . (($st->{etcd_errors} // 0) - $before) . ' errors)')
	  or diag join("\n", @entries);
	ok(!$node->log_contains(qr/terminated by signal|server process .* was terminated/),
		"$kind: no server process crashed");
}

# A fake etcd that works: the server gets a lease and node id 0 from it.
# Then every answer (keep-alives included) turns hostile: the server must
# not take a hostile keep-alive answer as a renewal, and stops issuing once
# the lease may have expired.
for my $kind (qw(garbage missing wrong_types huge_numbers hang error_object))
{
	set_hostile_mode($hostile, 'ok');
	ok(wait_for_state($node, 'ready', 60), "keep-alive $kind: ready with the working fake etcd first");
	my ($rc, $out, $err) = nextval_result($node, 1000);
	is($rc, 0, "keep-alive $kind: IDs are issued while keep-alives work") or diag $err;
	set_hostile_mode($hostile, $kind);
	my $t_hostile = now_ms();
	ok(wait_for(sub { status_or_fail("keep-alive $kind")->{state} ne 'ready' }, 60),
		"keep-alive $kind: the server stops being ready");
	# Sample issuing until a TTL and a bit passed; nothing may be issued later
	# than one TTL after the last keep-alive that could have worked.
	my $last_issued = 0;
	while (now_ms() < $t_hostile + $ttl * 1000 + 1500)
	{
		($rc, $out) = nextval_result($node, 100);
		$last_issued = $node->safe_psql('postgres',
			"SELECT (extract(epoch FROM snowflake_timestamp($out)) * 1000)::bigint") if $rc == 0;
		usleep(200_000);
	}
	ok($last_issued <= $t_hostile + $ttl * 1000,
		"keep-alive $kind: no ID later than the TTL after keep-alives turned hostile");
	my $st = status_or_fail("keep-alive $kind");
	cmp_ok($st->{etcd_errors}, '>', 0, "keep-alive $kind: counted as etcd errors");
}

ok(!$node->log_contains(qr/terminated by signal|server process .* was terminated/),
	'no server process crashed');
$node->stop('fast');

# A hostile first endpoint in front of a real etcd: a failed request moves
# to the next endpoint, so the server gets its node id from the real one.
my $etcd = EtcdTest->new(members => 1);
for my $kind (qw(garbage hang))
{
	set_hostile_mode($hostile, $kind);
	my $mixed = etcd_snowflake_node("mixed_$kind", $etcd, ttl => $ttl,
		endpoints => $hostile->{endpoint} . ',' . $etcd->endpoints);
	$mixed->start;
	ensure_extension($mixed);
	ok(wait_for_state($mixed, 'ready', 30), "first endpoint $kind, second a real etcd: ready")
	  or diag 'last_error: ' . (status($mixed)->{last_error} // '');
	my $st = status($mixed);
	my $key = defined $st->{node_id} ? $etcd->get_key($etcd->prefix . "/nodes/$st->{node_id}") : undef;
	ok($key && $key->{lease} eq $st->{lease_text}, "first endpoint $kind: node id "
		  . ($st->{node_id} // 'none') . ' held in the real etcd under its lease');
	my ($rc, $out, $err) = nextval_result($mixed, 5000);
	is($rc, 0, "first endpoint $kind: IDs are issued") or diag $err;
	$mixed->stop('fast');
	ok(!$mixed->log_contains(qr/terminated by signal|server process .* was terminated/),
		"first endpoint $kind: no server process crashed");
}
ok(!$node->log_contains(qr/PANIC|TRAP:/), 'no PANIC or assertion failure');
done_testing();
