# etcd outages (DESIGN-NOTES points 8 and 9).
#
# (a) An outage of 60% of the TTL (TTL 10 s, etcd killed with -9 for 6 s
#     right after a keep-alive, restarted on its data directory) under a
#     steady insert load (pgbench -R 200, 2 clients): no transaction fails
#     and no insert takes 200 ms or more, for the whole run.
# (b) An outage longer than the TTL: sampled in one session, state, then
#     snowflake_nextval() (wait_timeout 200 ms), then state again.  While
#     etcd is away, a nextval that failed is never followed by state
#     'ready'; past the TTL nothing is issued; once etcd is back the server
#     is ready and issues by itself.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use POSIX ();
use Time::HiRes qw(time usleep);
use lib 'test/lib';
use SnowflakeTest;
use EtcdTest;


my $etcd = EtcdTest->new(members => 1);

########################################################################
# (a) a short outage costs clients nothing

my $ttl = 10;
my $outage = 6;
my $rate = 200;
my $duration = 24;
my $node = etcd_snowflake_node('steady', $etcd, ttl => $ttl);
$node->start;
ensure_extension($node);
wait_until_ready($node);
query($node, 'CREATE TABLE t (id bigint NOT NULL)');
my $dir = $node->basedir;
PostgreSQL::Test::Utils::append_to_file("$dir/insert.sql",
	"INSERT INTO t VALUES (snowflake_nextval());\n");

my $errors_before = status($node)->{etcd_errors};
my $t_start = time();
my $bench = spawn_process("$dir/pgbench.out", {},
	'pgbench', '-n', '-c', '2', '-j', '1', '-R', $rate, '-T', $duration,
	'-l', "--log-prefix=$dir/latency", '-f', "$dir/insert.sql",
	'-h', $node->host, '-p', $node->port, 'postgres');
sleep 3;    # a steady load before the outage
ok(wait_for_keepalive($node, $ttl), 'a keep-alive seen under load');
my $t_kill = time();
$etcd->kill_member(0);
usleep(100_000) while time() < $t_kill + $outage;
my $t_restart = time();
$etcd->start_member(0);
$etcd->wait_healthy;
diag sprintf('etcd killed at +%.1f s for %.1f s (healthy again %.1f s after the kill)',
	$t_kill - $t_start, $t_restart - $t_kill, time() - $t_kill);
cmp_ok($t_restart - $t_kill, '<', 0.75 * $ttl, 'the outage stayed well inside the TTL');

my $rc = wait_process($bench, $duration + 60);
my $report = slurp_file("$dir/pgbench.out");
is($rc, 0, 'pgbench exited 0 (no client aborted)') or diag $report;
ok($report !~ /aborted|error/i, 'pgbench reports no error and no aborted client');
like($report, qr/number of failed transactions: 0\b/, 'pgbench counts no failed transaction')
  if $report =~ /number of failed transactions/;

# Per-transaction log lines: client_id transaction_no time script_no
# time_epoch time_us schedule_lag.  time (us) counts from the scheduled
# start; time - schedule_lag is the insert itself.
my ($lines, $bad, $slow, $max_exec, $max_total, $max_lag, $in_outage) = (0, 0, 0, 0, 0, 0, 0);
my @slowest;
for my $file (glob("$dir/latency.*"))
{
	for my $line (split /\n/, slurp_file($file))
	{
		my @f = split ' ', $line;
		$lines++;
		if (@f < 7 || $f[2] !~ /^\d+$/)
		{
			$bad++;
			diag "not a successful transaction: $line" if $bad <= 5;
			next;
		}
		my ($total, $lag) = ($f[2], $f[6]);
		my $exec = $total - $lag;
		my $end = $f[4] + $f[5] / 1e6;
		$in_outage++ if $end > $t_kill && $end < $t_restart;
		$max_exec = $exec if $exec > $max_exec;
		$max_total = $total if $total > $max_total;
		$max_lag = $lag if $lag > $max_lag;
		if ($exec >= 200_000)
		{
			$slow++;
			push @slowest, sprintf('%.1f ms, ended at +%.3f s after the kill (%s UTC)', $exec / 1000,
				$end - $t_kill, POSIX::strftime('%H:%M:%S', gmtime($end)) . sprintf('.%03d', ($end * 1000) % 1000));
		}
	}
}
diag sprintf('%d transactions logged; slowest insert %.1f ms, largest schedule lag %.1f ms, '
	  . 'largest latency incl. lag %.1f ms', $lines, $max_exec / 1000, $max_lag / 1000, $max_total / 1000);
cmp_ok($lines, '>=', 0.9 * $rate * $duration, "about $rate transactions a second were run");
is($bad, 0, 'every logged transaction succeeded');
cmp_ok($in_outage, '>=', 0.9 * $rate * ($t_restart - $t_kill), "the load went on while etcd was down ($in_outage)");
is($slow, 0, 'no insert took 200 ms or more')
  or diag join("\n", @slowest[0 .. ($#slowest < 9 ? $#slowest : 9)],
	'etcd after its restart:', grep { /elected leader|ready to serve client/ } split /\n/, slurp_file($etcd->member_log(0)));
is(query($node, 'SELECT count(*) FROM t'), $lines, 'every transaction inserted its ID');
is(query($node, 'SELECT count(*) - count(DISTINCT id) FROM t'), 0, 'no ID repeats');
my $st = status($node);
cmp_ok($st->{etcd_errors}, '>', $errors_before, "the worker saw etcd fail ($errors_before -> $st->{etcd_errors} errors)");
is($st->{state}, 'ready', 'ready after the outage');
$node->stop('fast');

########################################################################
# (b) an outage past the TTL: status never says ready while nextval fails

$ttl = 4;
my $fenced = etcd_snowflake_node('long', $etcd, ttl => $ttl);
$fenced->start;
ensure_extension($fenced);
wait_until_ready($fenced);
$dir = $fenced->basedir;
query($fenced, q{
	CREATE TABLE samples (i int, t0 float8, state_before text, ok bool, code text, msg text,
		state_after text, t1 float8);
	CREATE FUNCTION sample(seconds float8) RETURNS int LANGUAGE plpgsql AS $$
	DECLARE
		deadline timestamptz := clock_timestamp() + seconds * interval '1 second';
		n int := 0;
		sb text; sa text; good bool; c text; m text; t0 float8;
	BEGIN
		WHILE clock_timestamp() < deadline LOOP
			n := n + 1;
			t0 := extract(epoch FROM clock_timestamp());
			sb := (SELECT state FROM snowflake_status());
			BEGIN
				PERFORM snowflake_nextval();
				good := true; c := NULL; m := NULL;
			EXCEPTION WHEN OTHERS THEN
				good := false; c := SQLSTATE; m := SQLERRM;
			END;
			sa := (SELECT state FROM snowflake_status());
			INSERT INTO samples VALUES (n, t0, sb, good, c, m, sa, extract(epoch FROM clock_timestamp()));
			PERFORM pg_sleep(0.02);
		END LOOP;
		RETURN n;
	END $$;});

my $long = $ttl + 4;
my $sampling = 2 + $long + 5;
my $sampler = spawn_process("$dir/sampler.out", {}, 'psql', '-X', '-v', 'ON_ERROR_STOP=1',
	'-h', $fenced->host, '-p', $fenced->port, '-d', 'postgres',
	'-c', 'SET snowflake.wait_timeout = 200', '-c', "SELECT sample($sampling)");
sleep 2;    # samples with etcd up
$t_kill = time();
$etcd->kill_member(0);
usleep(100_000) while time() < $t_kill + $long;
$t_restart = time();
$etcd->start_member(0);
$etcd->wait_healthy;
diag sprintf('etcd down for %.1f s (TTL %d s)', $t_restart - $t_kill, $ttl);
is(wait_process($sampler, $sampling + 60), 0, 'the sampler ran to its end')
  or diag slurp_file("$dir/sampler.out");

sub samples { return query($fenced, "SELECT count(*) FROM samples WHERE $_[0]"); }
diag 'samples while etcd was down: ' . query($fenced, qq{
	SELECT string_agg(format('%s/%s/%s %s x%s', state_before, CASE WHEN ok THEN 'ok' ELSE code END,
		state_after, coalesce(msg, ''), n), E'\n')
	FROM (SELECT state_before, ok, code, left(msg, 90) AS msg, state_after, count(*) AS n
		FROM samples WHERE t0 >= $t_kill AND t1 < $t_restart GROUP BY 1, 2, 3, 4, 5 ORDER BY 5 DESC) s});
cmp_ok(samples("t1 < $t_kill AND ok AND state_before = 'ready' AND state_after = 'ready'"), '>', 0,
	'with etcd up: state ready and nextval issues');
my $down = "t1 < $t_restart AND t0 > $t_kill";
cmp_ok(samples($down), '>', 20, 'sampled while etcd was down');
is(samples("t1 < $t_restart AND NOT ok AND state_after = 'ready'"), 0,
	"while etcd was down no failed nextval was followed by state 'ready'");
my $before = samples("t1 < $t_restart AND NOT ok AND state_before = 'ready'");
cmp_ok($before, '<=', 1, "state read 'ready' just before a failed nextval at most once"
	  . ' (the moment the fence passed)');
is(samples("t0 > $t_kill + $ttl AND t1 < $t_restart AND ok"), 0, 'past the TTL nothing was issued');
cmp_ok(samples("t0 > $t_kill + $ttl AND t1 < $t_restart AND NOT ok"), '>', 0, 'and nextval failed');
cmp_ok(samples("$down AND state_after = 'fenced'"), '>', 0, "state read 'fenced'");

ok(wait_for_state($fenced, 'ready', 60), 'once etcd is back the server is ready by itself');
my ($nrc, $out, $err) = nextval_result($fenced, 5000);
is($nrc, 0, 'and issues IDs') or diag $err;
diag 'status after: ' . query($fenced, q{SELECT format('state %s, node %s, last_error %s', state, node_id,
	coalesce(last_error, 'NULL')) FROM snowflake_status()});

for my $n ($node, $fenced)
{
	ok(!$n->log_contains(qr/terminated by signal|server process .* was terminated/),
		$n->name . ': no server process crashed');
}
$fenced->stop('fast');
done_testing();
