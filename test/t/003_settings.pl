# Settings at server start: a server that is not preloaded, has no node id,
# or was given an invalid node id, epoch or node source issues no IDs and
# says exactly why and what to change, without crashing; a valid custom
# epoch is used by both the generator and the decode functions, and text
# without a time zone is read as UTC whatever the server's TimeZone.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test/lib';
use SnowflakeTest;

my $node = PostgreSQL::Test::Cluster->new('settings');
$node->init;
$node->append_conf('postgresql.conf', "timezone = 'UTC'\n");

# Each case: restart with these settings, then look at nextval and status.
sub restart_with
{
	my ($conf) = @_;
	$node->stop if defined $node->{_pid};
	$node->append_conf('postgresql.conf', $conf);
	my $log_offset = -s $node->logfile;
	$node->start;
	return $log_offset;
}

sub nextval_error
{
	my ($ret, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nSELECT snowflake_nextval()");
	return $ret == 0 ? '' : $err;
}

# Not preloaded: the functions are there, nextval says how to preload.
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION snowflake');
my $err = nextval_error();
like($err, qr/55000: snowflake must be loaded via shared_preload_libraries/,
	'without preload, nextval fails with SQLSTATE 55000');
like($err, qr/HINT:  Add snowflake to shared_preload_libraries in postgresql.conf/,
	'and the hint says what to put in postgresql.conf');
is($node->safe_psql('postgres', q{SELECT snowflake_node(4096 * 5, 'snowflake') || ',' || snowflake_timestamp(4194304, '2024-01-01+00')
	|| ',' || snowflake_timestamp(16777216, '2014-09-01+00', 'sonyflake')}),
	'5,2024-01-01 00:00:00.001+00,2014-09-01 00:00:00.01+00',
	'decoding with the epoch and layout given works without preload');
my ($ret, $out);
($ret, $out, $err) = $node->psql('postgres', 'SELECT snowflake_timestamp(4194304)');
like($err, qr/must be loaded via shared_preload_libraries.*\n.*HINT:.*takes the epoch and the layout as arguments/,
	'decoding by snowflake.epoch says to preload or pass the epoch and layout');
($ret, $out, $err) = $node->psql('postgres', 'SELECT snowflake_node(20480)');
like($err, qr/must be loaded via shared_preload_libraries.*\n.*HINT:.*takes the epoch and the layout as arguments/,
	'so does decoding the node by snowflake.layout');
like($node->safe_psql('postgres', q{SELECT count(*) FROM pg_settings WHERE name LIKE 'snowflake.%'}),
	qr/^0$/, 'no settings are defined without preload');

# Preloaded, node id unset.
restart_with("shared_preload_libraries = 'snowflake'\n");
$err = nextval_error();
like($err, qr/55000: snowflake.node_id is not set/, 'unset node id: nextval fails');
like($err, qr/HINT:  Set snowflake.node_id to a number from 0 to 1023/,
	'and the hint names the setting and its range');
is($node->safe_psql('postgres', q{SELECT state || ',' || coalesce(node_id::text, 'null') FROM snowflake_status()}),
	'no_node_id,null', 'status says no_node_id');

# Node id out of range: PostgreSQL warns and keeps -1, so nothing is issued.
my $offset = restart_with("snowflake.node_id = 70000\n");
ok($node->log_contains(qr/70000 is outside the valid range for parameter "snowflake.node_id" \(-1 \.\. 65535\)/, $offset),
	'an out-of-range node id is rejected in the log, naming the range');
like(nextval_error(), qr/snowflake.node_id is not set/, 'and no ID is issued under a default node');

# A node id the layout has no room for (10 node bits): refused, named.
$offset = restart_with("snowflake.node_id = 5000\n");
ok($node->log_contains(qr/WARNING:  snowflake.node_id 5000 does not fit snowflake.layout\n.*DETAIL:  Layout "time 41, node 10, sequence 12, unit 1ms" has node ids 0 to 1023/, $offset),
	'a node id beyond the layout is refused in the log, naming the layout and its range');
like(nextval_error(), qr/22023: snowflake is not issuing IDs because the configured value of snowflake.node_id was rejected/,
	'and no ID is issued');

# A valid node id: IDs flow.
restart_with("snowflake.node_id = 9\n");
is($node->safe_psql('postgres', 'SELECT snowflake_node(snowflake_nextval())'), 9,
	'with snowflake.node_id = 9, IDs carry node 9');

# Invalid epochs: garbage, a moving word, an unknown time zone (whose parser
# raises rather than returns an error: it must not take the server down).
for my $bad ("'not a date'", "'now'", "'2024-01-01 00:00:00 Europe/Pariss'")
{
	$offset = restart_with("snowflake.epoch = $bad\n");
	ok($node->log_contains(qr/invalid value for parameter "snowflake.epoch"/, $offset),
		"epoch $bad is rejected in the log");
	$err = nextval_error();
	like($err, qr/22023: snowflake is not issuing IDs because the configured value of snowflake.epoch was rejected at server start/,
		"epoch $bad: nextval refuses instead of using the default epoch");
	is($node->safe_psql('postgres', 'SELECT state FROM snowflake_status()'), 'error',
		"epoch $bad: status says error");
	($ret, $out, $err) = $node->psql('postgres', 'SELECT snowflake_timestamp(4194304)');
	like($err, qr/the configured value of snowflake.epoch was rejected/,
		"epoch $bad: decoding by the epoch refuses too");
}
like($node->safe_psql('postgres', 'SELECT last_error FROM snowflake_status()'),
	qr/snowflake.epoch/, 'status last_error names the setting');

# A reload with the bad value still in place leaves the server running.
$node->reload;
ok($node->safe_psql('postgres', 'SELECT 1') == 1, 'a reload with an invalid epoch keeps the server up');

# etcd mode needs somewhere to lease from: refused, not silently guc.
$offset = restart_with("snowflake.epoch = '2024-01-01 00:00:00+00'\nsnowflake.node_source = etcd\n");
ok($node->log_contains(qr/snowflake.node_source = etcd needs snowflake.etcd_endpoints/, $offset),
	'node_source = etcd without endpoints is refused with a clear message');
like(nextval_error(), qr/configured value of snowflake.etcd_endpoints was rejected/,
	'and no ID is issued');

# A typo in the node source: PostgreSQL would replace an enum it does not
# know by the default (guc) and issue IDs under snowflake.node_id, perhaps a
# node id a leased server holds.  The extension checks it itself.
$offset = restart_with("snowflake.node_source = 'etdc'\nsnowflake.node_id = 5\n");
ok($node->log_contains(qr/invalid value for parameter "snowflake.node_source": "etdc"/, $offset),
	'node_source = etdc is rejected in the log, naming the setting and the value');
ok($node->log_contains(qr/snowflake.node_source must be "guc" or "etcd"/, $offset),
	'and the log says which values are valid');
$err = nextval_error();
like($err, qr/22023: snowflake is not issuing IDs because the configured value of snowflake.node_source was rejected/,
	'node_source = etdc: no ID is issued, not even under node_id 5');
is($node->safe_psql('postgres', 'SELECT state FROM snowflake_status()'), 'error',
	'node_source = etdc: status says error');
like($node->safe_psql('postgres', 'SELECT last_error FROM snowflake_status()'),
	qr/snowflake.node_source/, 'and last_error names the setting');
$offset = restart_with("snowflake.node_source = 'GUC'\n");
is($node->safe_psql('postgres', 'SELECT snowflake_node(snowflake_nextval())'), 5,
	'node_source is case-insensitive: GUC issues under node_id 5');
is($node->safe_psql('postgres', 'SHOW snowflake.node_source'), 'guc',
	'and SHOW gives the canonical name');
$offset = restart_with("snowflake.node_id = 9\nsnowflake.node_source = guc\n");

# A number setting PostgreSQL rejects (out of range, an unknown unit) would
# fall back to its default with a WARNING: the extension refuses instead.
for my $bad ("snowflake.etcd_lease_ttl = '2h'", "snowflake.reserve = '10 ss'",
	"snowflake.max_clock_rollback = -5", "snowflake.etcd_timeout = 0")
{
	my ($name) = $bad =~ /^(\S+)/;
	# Lines added later win: the others are set valid again first.
	$offset = restart_with("snowflake.etcd_lease_ttl = 10\nsnowflake.reserve = 1000\n"
		  . "snowflake.max_clock_rollback = 1000\nsnowflake.etcd_timeout = 1000\n$bad\n");
	ok($node->log_contains(qr/parameter "\Q$name\E"/, $offset),
		"$bad: PostgreSQL's own WARNING names the setting");
	like(nextval_error(), qr/22023: snowflake is not issuing IDs because the configured value of \Q$name\E was rejected/,
		"$bad: no ID is issued under the default");
}
$offset = restart_with("snowflake.etcd_lease_ttl = 10\nsnowflake.reserve = 1000\n"
	  . "snowflake.max_clock_rollback = 1000\nsnowflake.etcd_timeout = 1000\n");
is($node->safe_psql('postgres', 'SELECT snowflake_node(snowflake_nextval())'), 9,
	'with those settings valid again, IDs flow');

# Malformed etcd settings name the setting and issue nothing.
foreach my $bad ("snowflake.etcd_endpoints = '127.0.0.1:2379'",
	"snowflake.etcd_endpoints = 'http://127.0.0.1:2379,ftp://x'",
	"snowflake.etcd_prefix = 'snowflake'",
	"snowflake.etcd_prefix = '/snowflake/'")
{
	my ($name) = $bad =~ /^(\S+)/;
	$offset = restart_with("snowflake.epoch = '2024-01-01 00:00:00+00'\nsnowflake.node_source = etcd\n"
		  . "snowflake.etcd_endpoints = 'http://127.0.0.1:9'\nsnowflake.etcd_prefix = '/snowflake'\n$bad\n");
	ok($node->log_contains(qr/invalid value for parameter "\Q$name\E"/, $offset),
		"$bad: rejected at start, naming the setting");
	like(nextval_error(), qr/configured value of \Q$name\E was rejected/,
		"$bad: no ID is issued");
}
# A custom epoch without a time zone is UTC, whatever TimeZone says.
my $fresh = fresh_node('utc_epoch', "snowflake.epoch = '2025-01-01'\ntimezone = 'America/New_York'\n");
wait_until_ready($fresh);
is($fresh->safe_psql('postgres', q{SELECT snowflake_from_timestamp('2025-01-01 00:00:00+00')}),
	0, 'an epoch without a zone is read as UTC');
is( $fresh->safe_psql(
		'postgres', q{
	SELECT snowflake_timestamp(x) = snowflake_timestamp(x, '2025-01-01+00')
	   AND snowflake_timestamp(x) BETWEEN now() - interval '1 minute' AND clock_timestamp()
	FROM (SELECT snowflake_nextval() AS x) s}),
	't',
	'IDs are made and decoded with the custom epoch');
$fresh->stop;

# An epoch with an explicit zone.
$fresh = fresh_node('zoned_epoch', "snowflake.epoch = '2025-01-01 00:00:00-05'\n");
wait_until_ready($fresh);
is($fresh->safe_psql('postgres', q{SELECT snowflake_from_timestamp('2025-01-01 05:00:00+00')}),
	0, 'an epoch with a zone is read in that zone');
$fresh->stop;

# The epoch is fixed for the life of a data directory (its high-water marks
# record it), so each of these runs on a fresh server.
sub fresh_node
{
	my ($name, $conf) = @_;
	my $fresh = snowflake_node($name, "snowflake.node_id = 9\ntimezone = 'UTC'\n$conf");
	$fresh->start;
	return $fresh;
}

# Epochs whose range does not contain the clock: accepted at start (a wrong
# clock must not stop a server from starting), refused when issuing.
for my $far ('2999-01-01', '1900-01-01')
{
	my $fresh = fresh_node("far_$far", "snowflake.epoch = '$far'\n");
	$fresh->safe_psql('postgres', 'CREATE EXTENSION snowflake');
	($ret, $out, $err) = $fresh->psql('postgres',
		"\\set VERBOSITY verbose\nSELECT snowflake_nextval()");
	like($err, qr/22008: the clock reads .* outside the range of IDs for snowflake.epoch/,
		"epoch $far: nextval says the clock is outside its range");
	$fresh->stop;
}

# max_clock_rollback changes on reload; wait_timeout per session.
restart_with("snowflake.node_source = guc\nsnowflake.etcd_endpoints = ''\nsnowflake.etcd_prefix = '/snowflake'\n");
$node->append_conf('postgresql.conf', "snowflake.max_clock_rollback = 250\n");
$node->reload;
$node->poll_query_until('postgres', q{SELECT current_setting('snowflake.max_clock_rollback') = '250ms'})
  or die 'reload did not apply';
pass('snowflake.max_clock_rollback changes on reload');

ok(!$node->log_contains(qr/terminated by signal|server process .* was terminated/),
	'no server process crashed through all of this');
$node->stop;
done_testing();
