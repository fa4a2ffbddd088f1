# etcd over TLS with client certificates, and with users and passwords
# against real etcd servers configured for them:
# a server with the right settings gets a node id; without a client
# certificate, with a CA that did not sign etcd's certificate, or with a
# wrong password it gets none and counts the errors; an expired auth token
# is renewed; the password is visible to no one through SHOW, SHOW ALL or
# pg_settings.
use strict;
use warnings;

use File::Basename ();
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test/lib';
use SnowflakeTest;
use EtcdTest;


# refused([$node, $what], ...): starts the servers side by side (each
# waits in its retry sleep), waits until each has counted etcd errors, then
# checks it holds no node id and issues nothing.
sub refused
{
	my (@cases) = @_;
	for my $case (@cases)
	{
		$case->[0]->start;
		ensure_extension($case->[0]);
	}
	for my $case (@cases)
	{
		my ($node, $what) = @$case;
		ok(wait_for(sub { query($node, 'SELECT etcd_errors >= 2 FROM snowflake_status()') eq 't' }, 60),
			"$what: etcd errors are counted");
		my $st = status($node);
		is($st->{node_id}, undef, "$what: no node id");
		isnt($st->{state}, 'ready', "$what: not ready (state $st->{state})");
		ok(defined $st->{last_error} && $st->{last_error} ne '', "$what: last_error says why: "
			  . ($st->{last_error} // ''));
		my ($rc) = nextval_result($node, 100);
		isnt($rc, 0, "$what: nextval fails");
	}
	$_->[0]->stop('fast') for @cases;
}

# 1. TLS, etcd requiring client certificates.
my $tls = EtcdTest->new(members => 1, tls => 1);
my $node = etcd_snowflake_node('tls', $tls);
start_ready($node);
my $st = status($node);
my $key = $tls->get_key($tls->prefix . "/nodes/$st->{node_id}");
ok($key && $key->{lease} eq $st->{lease_text}, "TLS with a client certificate: node id $st->{node_id} claimed");
my ($rc, $out, $err) = nextval_result($node, 5000);
is($rc, 0, 'and IDs issued');
$node->stop('fast');
ok(!defined $tls->get_key($tls->prefix . "/nodes/$st->{node_id}"), 'clean stop over TLS revokes');

refused(
	[ etcd_snowflake_node('tls_nocert', $tls, tls_client => 'ca'), 'TLS without a client certificate' ],
	[ etcd_snowflake_node('tls_wrongca', $tls,
			conf => "snowflake.etcd_cacert = '" . $tls->dir . "/tls/other-ca.crt'\n"),
		'TLS with a CA that did not sign etcd' ],
	[ etcd_snowflake_node('tls_as_http', $tls,
			endpoints => join(',', map { s/^https/http/r } split /,/, $tls->endpoints)),
		'plain http to a TLS etcd' ]);

# 2. Users and passwords; tokens expire after 3 s.
my $auth = EtcdTest->new(members => 1, auth => 1, token_ttl => 3);
$node = etcd_snowflake_node('auth', $auth);
start_ready($node);
$st = status($node);
$key = $auth->get_key($auth->prefix . "/nodes/$st->{node_id}");
ok($key && $key->{lease} eq $st->{lease_text}, "user and password: node id $st->{node_id} claimed");
query($node, 'CREATE TABLE ids (id bigint NOT NULL)');
query($node, 'INSERT INTO ids SELECT snowflake_nextval() FROM generate_series(1, 100)');
sleep 8;    # idle past the token's TTL: the next etcd write needs a new token
($rc, $out, $err) = $node->psql('postgres',
	'SET snowflake.wait_timeout = 10000; INSERT INTO ids SELECT snowflake_nextval() FROM generate_series(1, 100)');
is($rc, 0, 'after the token expired, IDs are still issued') or diag $err;
for (1 .. 3)
{
	query($node, 'INSERT INTO ids SELECT snowflake_nextval() FROM generate_series(1, 100)');
	sleep 1;
}
my $top = query($node, 'SELECT (extract(epoch FROM snowflake_timestamp(max(id))) * 1000)::bigint FROM ids');
my $mark = $auth->mark($st->{node_id});
ok(defined $mark && $mark >= $top, "and the etcd mark is written past them with a new token ($mark >= $top)");
is(status($node)->{lease_text}, $st->{lease_text}, 'the lease was kept');

# etcd forgets its tokens when it restarts: the server authenticates again.
$auth->stop_member(0);
$auth->start_member(0);
$auth->wait_healthy;
ok(wait_for_state($node, 'ready', 60), 'after an etcd restart (tokens lost) the server is ready');
($rc, $out, $err) = $node->psql('postgres',
	'SET snowflake.wait_timeout = 10000; INSERT INTO ids SELECT snowflake_nextval() FROM generate_series(1, 100)');
is($rc, 0, 'and issues IDs') or diag $err;
$top = query($node, 'SELECT (extract(epoch FROM snowflake_timestamp(max(id))) * 1000)::bigint FROM ids');
$mark = $auth->mark(status($node)->{node_id});
ok(defined $mark && $mark >= $top, "the etcd mark is written past them ($mark >= $top)");

# The password is for superusers only and never shown by SHOW ALL.
my $password = $auth->password;
query($node, 'CREATE ROLE alice LOGIN');
my @as_alice = (extra_params => [ '-U', 'alice' ]);
my @probes = (
	'SHOW snowflake.etcd_password',
	q{SELECT current_setting('snowflake.etcd_password')},
	q{SELECT setting, reset_val, boot_val FROM pg_settings WHERE name = 'snowflake.etcd_password'},
	'SHOW ALL',
	q{SELECT * FROM pg_show_all_settings()});
for my $sql (@probes)
{
	($rc, $out, $err) = $node->psql('postgres', $sql, @as_alice);
	unlike("$out\n$err", qr/\Q$password\E/, "a non-superuser cannot read the password: $sql");
}
($rc, $out, $err) = $node->psql('postgres', 'SHOW snowflake.etcd_password', @as_alice);
isnt($rc, 0, 'SHOW snowflake.etcd_password fails for a non-superuser');
($rc, $out, $err) = $node->psql('postgres', 'SHOW ALL');
unlike($out, qr/\Q$password\E|snowflake\.etcd_password/, 'SHOW ALL, even for a superuser, hides it');
like(query($node, 'SHOW snowflake.etcd_username'), qr/^snowflake$/, '(the user name is an ordinary setting)');
unlike(PostgreSQL::Test::Utils::slurp_file($node->logfile), qr/\Q$password\E/, 'the password is not in the log');
$node->stop('fast');

refused(
	[ etcd_snowflake_node('auth_wrongpw', $auth, password => 'not-the-password'), 'a wrong password' ],
	[ etcd_snowflake_node('auth_none', $auth, auth => 0), 'no user at all' ]);

# 3. Both: client certificate (no CN, see ETCD.md) and a password.
my $both = EtcdTest->new(members => 1, tls => 1, auth => 1, client_cn => '');
$node = etcd_snowflake_node('tls_auth', $both);
start_ready($node);
$st = status($node);
$key = $both->get_key($both->prefix . "/nodes/$st->{node_id}");
ok($key && $key->{lease} eq $st->{lease_text}, "TLS and password together: node id $st->{node_id} claimed");
($rc, $out, $err) = nextval_result($node, 5000);
is($rc, 0, 'and IDs issued');
$node->stop('fast');
ok(!defined $both->get_key($both->prefix . "/nodes/$st->{node_id}"), 'clean stop revokes');

# Each server's log, named as PostgreSQL::Test::Cluster names it: after
# this script and the server.
my $script = File::Basename::basename($0, '.pl');
for my $name (qw(tls tls_nocert tls_wrongca tls_as_http auth auth_wrongpw auth_none tls_auth))
{
	my $log = PostgreSQL::Test::Utils::slurp_file("$PostgreSQL::Test::Utils::log_path/${script}_$name.log");
	unlike($log, qr/terminated by signal|server process .* was terminated/, "$name: no server process crashed");
}
done_testing();
