# etcd losing our keys while servers issue IDs (DESIGN-NOTES point 8).
#
# (a) The keys deleted by hand (etcdctl del --prefix): server A (node_source
#     etcd) holds node 0, server B (node_source guc, node_id 0) waits for
#     it.  Both are hammered with inserts through the deletion; B takes
#     node 0; A must stop issuing under node 0 within one keep-alive round
#     and B must not issue under it before A stopped: no ID handed out by
#     either server repeats.
# (b) etcd wiped (killed, data directory removed, restarted empty on the
#     same ports) right after A's keep-alive, with a TTL and a reservation
#     of 30 s, so that the old holder has the longest time not knowing:
#     again no ID handed out by either server repeats.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use lib 'test/lib';
use SnowflakeTest;
use EtcdTest;

my $etcd_timeout_ms = 1000;


# Tables and the error-tolerant insert the hammering clients call: every
# ID handed out lands in ids; an error is counted in errs and never stops
# the client.
sub prepare_hammer
{
	my ($node) = @_;
	ensure_extension($node);
	query($node, q{
		CREATE TABLE ids (id bigint NOT NULL);
		CREATE TABLE errs (at timestamptz NOT NULL, code text, msg text);
		CREATE FUNCTION hammer() RETURNS void LANGUAGE plpgsql AS $$
		BEGIN
			INSERT INTO ids SELECT snowflake_nextval_batch(5);
		EXCEPTION WHEN OTHERS THEN
			INSERT INTO errs VALUES (clock_timestamp(), SQLSTATE, SQLERRM);
			PERFORM pg_sleep(0.01);
		END $$;});
	PostgreSQL::Test::Utils::append_to_file($node->basedir . '/hammer.sql', "SELECT hammer();\n");
	return;
}

# pgbench, 3 clients, 1000 calls of hammer() per second, until stopped.
sub start_hammer
{
	my ($node) = @_;
	return spawn_process($node->basedir . '/hammer.log',
		{ PGOPTIONS => '-c snowflake.wait_timeout=100' },
		'pgbench', '-n', '-c', '3', '-j', '1', '-R', '1000', '-T', '600',
		'-f', $node->basedir . '/hammer.sql', '-h', $node->host, '-p', $node->port, 'postgres');
}

sub id_count { return query($_[0], 'SELECT count(*) FROM ids'); }

# Epoch seconds of the timestamp of $node's first ID under node id $n, or ''.
sub first_ts
{
	my ($node, $n) = @_;
	return query($node, "SELECT extract(epoch FROM snowflake_timestamp(min(id))) FROM ids
		WHERE snowflake_node(id) = $n");
}

sub error_summary
{
	my ($node) = @_;
	return query($node, q{SELECT string_agg(format('%s x%s: %s', code, n, msg), E'\n')
		FROM (SELECT code, msg, count(*) AS n FROM errs GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 6) e});
}

# The checks shared by (a) and (b), on the IDs gathered into $A's all_ids.
# $t_loss: when the keys were lost; $stop_by: by when A must have stopped
# issuing under node 0 (epoch seconds).
sub check_ids
{
	my ($what, $A, $B, $t_loss, $stop_by) = @_;
	my ($an, $bn) = ($A->name, $B->name);
	gather_ids($A, 'ids', $A, $B);
	my $total = query($A, 'SELECT count(*) FROM all_ids');
	my $dups = query($A, 'SELECT count(*) - count(DISTINCT id) FROM all_ids');
	diag "$what: $total IDs handed out, $dups duplicates; per server and node: "
	  . query($A, q{SELECT string_agg(format('%s node %s: %s IDs, %s .. %s', server, n, c,
			to_char(lo, 'HH24:MI:SS.MS'), to_char(hi, 'HH24:MI:SS.MS')), '; ')
		FROM (SELECT server, snowflake_node(id) AS n, count(*) AS c,
			snowflake_timestamp(min(id)) AS lo, snowflake_timestamp(max(id)) AS hi
			FROM all_ids GROUP BY 1, 2 ORDER BY 1, 2) s});
	cmp_ok(query($A, "SELECT count(*) FROM all_ids WHERE server = '$an' AND snowflake_node(id) = 0
		AND snowflake_timestamp(id) < to_timestamp($t_loss)"), '>', 0,
		"$what: $an issued under node 0 before the keys were lost");
	cmp_ok(query($A, "SELECT count(*) FROM all_ids WHERE server = '$bn' AND snowflake_node(id) = 0"),
		'>', 0, "$what: $bn issued under node 0 after it");
	is($dups, 0, "$what: no ID was handed out twice");
	is(overlapping_tenures($A), '', "$what: ${an}'s and ${bn}'s IDs under node 0 do not interleave");
	is(query($A, "SELECT count(*) FROM all_ids WHERE server = '$an' AND snowflake_node(id) = 0
		AND snowflake_timestamp(id) > to_timestamp($stop_by)"), 0,
		sprintf('%s: %s issued nothing under node 0 later than %.1f s after the keys were lost',
			$what, $an, $stop_by - $t_loss));
	diag sprintf('%s: %s issued under node 0 until %.3f s after the keys were lost, %s from %.3f s',
		$what, $an,
		(query($A, "SELECT extract(epoch FROM max(snowflake_timestamp(id))) FROM all_ids
			WHERE server = '$an' AND snowflake_node(id) = 0") || 0) - $t_loss,
		$bn, (first_ts($B, 0) || 0) - $t_loss);
	diag "$what: $an now: " . query($A, q{SELECT format('state %s, node %s', state, node_id) FROM snowflake_status()})
	  . ", later IDs of $an under nodes "
	  . query($A, "SELECT string_agg(DISTINCT snowflake_node(id)::text, ',') FROM all_ids
		WHERE server = '$an' AND snowflake_node(id) <> 0");
	diag "$what: errors on $_->[0]:\n" . (error_summary($_->[1]) || '(none)') for ([ $an, $A ], [ $bn, $B ]);
}

# One scenario: a fresh etcd, A holding node 0 and B waiting for it, both
# hammered, $lose->($etcd) losing the keys right after one of A's
# keep-alives; then hammering goes on until B issued under node 0 and
# A's bound plus 3 s passed.
sub scenario
{
	my (%o) = @_;
	my $what = $o{what};
	my $ttl = $o{ttl};
	my $etcd = EtcdTest->new(members => 1);
	my %common = (ttl => $ttl, timeout => $etcd_timeout_ms,
		conf => "snowflake.reserve = $o{reserve}\n");
	my $A = etcd_snowflake_node("$o{tag}_a", $etcd, %common);
	my $B = etcd_snowflake_node("$o{tag}_b", $etcd, %common, source => 'guc',
		conf => "snowflake.reserve = $o{reserve}\nsnowflake.node_id = 0\n");
	$A->start;
	prepare_hammer($A);
	wait_until_ready($A);
	is(status($A)->{node_id}, 0, "$what: A holds node 0");
	$B->start;
	prepare_hammer($B);
	ok(wait_for_state($B, 'no_node_id', 60), "$what: B (guc, node_id 0) waits: state no_node_id");
	my ($rc, $out, $err) = nextval_result($B, 1000);
	my $port = $A->port;
	like($err, qr/55000.*\b$port\b/s, "$what: B's nextval fails with 55000 naming the holder, port $port");

	my @hammers = map { start_hammer($_) } $A, $B;
	ok(wait_for(sub { id_count($A) > 1000 }, 30), "$what: A issues under the hammering");

	my $seen = wait_for_keepalive($A, $ttl);
	diag "$what: " . ($seen ? 'losing the keys right after a keep-alive of A' : 'no keep-alive of A seen; losing the keys now');
	my $t_loss = time();
	$o{lose}->($etcd);
	my $t_back = time();
	my $stop_by = $o{stop_by}->($t_loss, $t_back);
	diag sprintf('%s: keys lost at %.3f (etcd answering again %.1f s later); A must stop by +%.1f s',
		$what, $t_loss, $t_back - $t_loss, $stop_by - $t_loss);

	ok(wait_for(sub { id_count($B) > 0 }, $ttl + 60), "$what: B issues (under node 0) after the keys were lost");
	my $b_first = first_ts($B, 0) || time();
	my $until = ($b_first > $stop_by ? $b_first : $stop_by) + 3;
	usleep(100_000) while time() < $until;
	stop_process($_, 'TERM') for @hammers;
	diag sprintf('%s: hammered until %.1f s after the loss', $what, time() - $t_loss);

	check_ids($what, $A, $B, $t_loss, $stop_by);
	for my $node ($A, $B)
	{
		ok(!$node->log_contains(qr/terminated by signal|server process .* was terminated/),
			"$what: " . $node->name . ': no server process crashed');
	}
	$_->stop('fast') for $A, $B;
	$etcd->stop_all;
	return;
}

# (a) TTL 10 s: keep-alive every 2.5 s; a bigger reservation (10 s) than
# the default, so that a holder that only finds out at its next
# reservation keeps issuing for seconds.  Bound: one keep-alive round,
# TTL/4 plus the keep-alive's and the key check's request timeouts, plus
# 0.5 s for the fence reaching the backends.
my $ttl_a = 10;
scenario(
	what => 'keys deleted',
	tag => 'del',
	ttl => $ttl_a,
	reserve => 10000,
	lose => sub {
		my ($etcd) = @_;
		my $deleted = $etcd->etcdctl('del', '--prefix', $etcd->prefix . '/');
		chomp $deleted;
		like($deleted, qr/^(?:[2-9]|\d\d+)$/, "etcdctl del --prefix deleted the node key and the mark ($deleted keys)");
	},
	stop_by => sub { $_[0] + $ttl_a / 4 + 2 * $etcd_timeout_ms / 1000 + 0.5 });

# (b) etcd wiped, TTL and reservation 30 s.  etcd comes back empty before
# A's next keep-alive is due (TTL/4 after the one just seen), so the bound
# is the same: one keep-alive round from that keep-alive.
my $ttl_b = 30;
scenario(
	what => 'etcd wiped',
	tag => 'wipe',
	ttl => $ttl_b,
	reserve => 30000,
	lose => sub {
		my ($etcd) = @_;
		my $before = $etcd->cluster_id;
		$etcd->wipe_member(0);
		diag "etcd cluster_id before the wipe $before, after " . $etcd->cluster_id;
	},
	stop_by => sub {
		my ($t_loss, $t_back) = @_;
		my $round = $ttl_b / 4 + 2 * $etcd_timeout_ms / 1000 + 0.5;
		# etcd back before the next keep-alive: one round; else one round
		# after it answers again (the fence, TTL - TTL/10, at the latest).
		my $by = $t_back < $t_loss + $ttl_b / 4 ? $t_loss + $round : $t_back + $round;
		return $by < $t_loss + 0.9 * $ttl_b ? $by : $t_loss + 0.9 * $ttl_b;
	});

done_testing();
