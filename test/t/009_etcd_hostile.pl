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

# The kinds are independent of each other and the server spends most of
# each in its retry sleep: three servers, each with a hostile server of its
# own, take them in turns side by side.  Every kind gets the same checks as
# if it were alone.
my $lanes = 3;
my @kinds = qw(garbage html wrong_types huge_numbers bad_values missing truncated bad_json
  oversized hang drip empty close http500 error_object deep);
my @lanes = map {
	my $hostile = start_hostile_etcd($kinds[$_]);
	my $node = etcd_snowflake_node("hostile$_", $hostile->{endpoint}, ttl => $ttl, timeout => 1000,
		conf => "snowflake.wait_timeout = 100\n");
	{ hostile => $hostile, node => $node }
} 0 .. $lanes - 1;
for my $lane (@lanes)
{
	$lane->{node}->start;
	ensure_extension($lane->{node});
}

# snowflake_status() of $node as a hash, failing the test (not hanging) if
# it does not answer within 30 s.
sub status_or_fail
{
	my ($node, $what) = @_;
	my ($rc, $out, $err) = $node->psql('postgres',
		'SELECT row_to_json(s) FROM (SELECT *, lease_id::text AS lease_text FROM snowflake_status()) s',
		timeout => 30);
	ok($rc == 0 && $out ne '', "$what: snowflake_status() answers") or diag $err;
	return $rc == 0 && $out ne '' ? json_decode($out) : {};
}

sub worker_log_entries
{
	my ($node, $from) = @_;
	my $log = substr(PostgreSQL::Test::Utils::slurp_file($node->logfile), $from);
	my @pids = snowflake_worker_pids($node);
	my $pids = join('|', @pids);
	return () unless @pids;
	return grep { /\[(?:$pids)\]\s+(?:LOG|WARNING|ERROR):/ } split /\n/, $log;
}

# Round $r: lane $l takes kind $r * $lanes + $l (the first round's kinds
# are the ones the servers started with).
for (my $first = 0; $first < @kinds; $first += $lanes)
{
	my @turn;
	for my $l (0 .. $lanes - 1)
	{
		my $kind = $kinds[ $first + $l ] // next;
		my $node = $lanes[$l]{node};
		set_hostile_mode($lanes[$l]{hostile}, $kind);
		push @turn, {
			kind => $kind,
			node => $node,
			before => status_or_fail($node, "before $kind")->{etcd_errors} // 0,
			log_from => $first == 0 ? 0 : -s $node->logfile,
		};
	}
	for my $t (@turn)
	{
		my ($kind, $node, $before) = @$t{qw(kind node before)};
		my $counted = wait_for(sub {
			my ($rc, $out) = $node->psql('postgres', 'SELECT etcd_errors FROM snowflake_status()', timeout => 30);
			return $rc == 0 && $out >= $before + 3;
		}, 90);
		ok($counted, "$kind: etcd_errors rises (from $before)");
	}
	for my $t (@turn)
	{
		my ($kind, $node, $before, $log_from) = @$t{qw(kind node before log_from)};
		my $st = status_or_fail($node, $kind);
		is($st->{node_id}, undef, "$kind: no node id");
		isnt($st->{state} // '', 'ready', "$kind: not ready (state " . ($st->{state} // '?') . ')');
		ok(defined $st->{last_error} && $st->{last_error} ne '', "$kind: last_error: " . ($st->{last_error} // ''));
		my ($rc, $out, $err) = nextval_result($node, 100);
		isnt($rc, 0, "$kind: nextval issues nothing");
		my @entries = worker_log_entries($node, $log_from);
		# Logged now, or already: the same message as this server's previous kind's.
		my $earlier = substr(PostgreSQL::Test::Utils::slurp_file($node->logfile), 0, $log_from);
		ok(@entries >= 1 || (defined $st->{last_error} && index($earlier, $st->{last_error}) >= 0),
			"$kind: the worker logged the problem");
		ok(@entries <= 2, "$kind: logged once, not at every retry (" . scalar(@entries) . ' log entries for '
			  . (($st->{etcd_errors} // 0) - $before) . ' errors)')
		  or diag join("\n", @entries);
		ok(!$node->log_contains(qr/terminated by signal|server process .* was terminated/),
			"$kind: no server process crashed");
	}
}

# A fake etcd that works: the server gets a lease and node id 0 from it.
# Then every answer (keep-alives included) turns hostile: the server must
# not take a hostile keep-alive answer as a renewal, and stops issuing once
# the lease may have expired.  The lanes again take the kinds side by side.
my @keepalive_kinds = qw(garbage missing wrong_types huge_numbers hang error_object);
for (my $first = 0; $first < @keepalive_kinds; $first += $lanes)
{
	my @turn;
	for my $l (0 .. $lanes - 1)
	{
		my $kind = $keepalive_kinds[ $first + $l ] // next;
		set_hostile_mode($lanes[$l]{hostile}, 'ok');
		push @turn, { kind => $kind, node => $lanes[$l]{node}, hostile => $lanes[$l]{hostile} };
	}
	for my $t (@turn)
	{
		my ($kind, $node) = @$t{qw(kind node)};
		ok(wait_for_state($node, 'ready', 60), "keep-alive $kind: ready with the working fake etcd first");
		my ($rc, $out, $err) = nextval_result($node, 1000);
		is($rc, 0, "keep-alive $kind: IDs are issued while keep-alives work") or diag $err;
	}
	for my $t (@turn)
	{
		set_hostile_mode($t->{hostile}, $t->{kind});
		$t->{t_hostile} = now_ms();
		$t->{last_issued} = 0;
	}
	for my $t (@turn)
	{
		my ($kind, $node) = @$t{qw(kind node)};
		ok(wait_for(sub { status_or_fail($node, "keep-alive $kind")->{state} ne 'ready' }, 60),
			"keep-alive $kind: the server stops being ready");
	}
	# Sample issuing until a TTL and a bit passed; nothing may be issued later
	# than one TTL after the last keep-alive that could have worked.
	my $sample_until = (sort { $b <=> $a } map { $_->{t_hostile} } @turn)[0] + $ttl * 1000 + 1500;
	while (now_ms() < $sample_until)
	{
		for my $t (@turn)
		{
			my ($rc, $out) = nextval_result($t->{node}, 100);
			$t->{last_issued} = $t->{node}->safe_psql('postgres',
				"SELECT (extract(epoch FROM snowflake_timestamp($out)) * 1000)::bigint") if $rc == 0;
		}
		usleep(200_000 / @turn);
	}
	for my $t (@turn)
	{
		my ($kind, $node) = @$t{qw(kind node)};
		ok($t->{last_issued} <= $t->{t_hostile} + $ttl * 1000,
			"keep-alive $kind: no ID later than the TTL after keep-alives turned hostile");
		my $st = status_or_fail($node, "keep-alive $kind");
		cmp_ok($st->{etcd_errors}, '>', 0, "keep-alive $kind: counted as etcd errors");
	}
}

for my $lane (@lanes)
{
	ok(!$lane->{node}->log_contains(qr/terminated by signal|server process .* was terminated/),
		$lane->{node}->name . ': no server process crashed');
	$lane->{node}->stop('fast');
}

# A hostile first endpoint in front of a real etcd: a failed request moves
# to the next endpoint, so the server gets its node id from the real one.
# One server per kind, side by side, each behind its own hostile server.
my $etcd = EtcdTest->new(members => 1);
my @mixed;
for my $kind (qw(garbage hang))
{
	my $hostile = $lanes[ scalar @mixed ]{hostile};
	set_hostile_mode($hostile, $kind);
	my $mixed = etcd_snowflake_node("mixed_$kind", $etcd, ttl => $ttl,
		endpoints => $hostile->{endpoint} . ',' . $etcd->endpoints);
	$mixed->start;
	ensure_extension($mixed);
	push @mixed, [ $kind, $mixed ];
}
for (@mixed)
{
	my ($kind, $mixed) = @$_;
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
ok(!$_->{node}->log_contains(qr/PANIC|TRAP:/), $_->{node}->name . ': no PANIC or assertion failure')
  for @lanes;
done_testing();
