# Helpers for the etcd suites (test/t/*_etcd_*.pl): real etcd clusters
# of one or three members on loopback (optionally TLS with client
# certificates, optionally with users and passwords), an etcdctl wrapper,
# member stop/kill/start/pause/resume and leader lookup, the hostile HTTP
# server of test/lib/hostile_etcd.pl, and snowflake servers in etcd mode.
#
# Every process started here is tracked by pid, in its own process group,
# and killed (after a SIGCONT, in case it was paused) when the test ends.
package EtcdTest;

use strict;
use warnings;

use Exporter 'import';
use File::Basename ();
use File::Path ();
use HTTP::Tiny;
use IPC::Run ();
use JSON::PP ();
use MIME::Base64 ();
use POSIX ();
use Time::HiRes qw(usleep time);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SnowflakeTest;

our @EXPORT = qw(
  etcd_snowflake_node start_ready status wait_for wait_for_state
  snowflake_worker_pids start_hostile_etcd set_hostile_mode stop_process
  now_ms nextval_result json_decode gather_ids overlapping_tenures ensure_extension has_extension
  spawn_process wait_process wait_for_keepalive
);

my $json = JSON::PP->new->allow_bignum->allow_nonref;
sub json_decode { return $json->decode($_[0]); }

# pid => 1 for every process started here and not yet reaped.
my %started;

# Run @cmd in the background in its own process group, output appended to
# $log.  Returns the pid (also its process group id).
sub spawn
{
	my ($log, @cmd) = @_;
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		POSIX::setpgid(0, 0);
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>>', $log) or POSIX::_exit(126);
		open(STDERR, '>&', \*STDOUT) or POSIX::_exit(126);
		exec(@cmd) or POSIX::_exit(127);
	}
	$started{$pid} = 1;
	return $pid;
}

# Signal a process started here (and its process group); SIGTERM and
# SIGKILL also reap it, waiting up to $wait seconds (then SIGKILL).
sub stop_process
{
	my ($pid, $signal, $wait) = @_;
	return unless $pid && $started{$pid};
	$signal //= 'KILL';
	kill 'CONT', -$pid if $signal ne 'STOP';
	kill $signal, -$pid;
	return if $signal eq 'STOP' || $signal eq 'CONT';
	my $deadline = time() + ($wait // 30);
	while (waitpid($pid, POSIX::WNOHANG()) == 0)
	{
		if (time() > $deadline)
		{
			kill 'KILL', -$pid;
			waitpid($pid, 0);
			last;
		}
		usleep(20_000);
	}
	delete $started{$pid};
	return;
}

END
{
	local $?;
	for my $pid (keys %started)
	{
		kill 'CONT', -$pid;
		kill 'KILL', -$pid;
		waitpid($pid, 0);
	}
}

sub now_ms { return int(time() * 1000); }

# Poll $code every 100 ms until it returns true or $seconds pass; returns
# its last value.
sub wait_for
{
	my ($code, $seconds) = @_;
	my $deadline = time() + ($seconds // $PostgreSQL::Test::Utils::timeout_default);
	while (1)
	{
		my $r = $code->();
		return $r if $r || time() > $deadline;
		usleep(100_000);
	}
}

########################################################################
# etcd clusters

my $cluster_seq = 0;

# EtcdTest->new(members => 1|3, tls => 0|1, auth => 0|1, token_ttl => s,
#               client_cn => 'snowflake' (TLS client cert CN; '' for none))
# Starts the members and waits until they are healthy.
sub new
{
	my ($class, %opt) = @_;
	my $self = bless {
		members => [],
		tls => $opt{tls} // 0,
		auth => $opt{auth} // 0,
		token_ttl => $opt{token_ttl},
		client_cn => $opt{client_cn} // 'snowflake',
		heartbeat => $opt{heartbeat} // 100,
		election => $opt{election} // 1000,
		root_password => 'root-secret',
		user => 'snowflake',
		password => 'sn0wflake-pw',
		prefix => $opt{prefix} // '/snowflake',
	}, $class;
	$cluster_seq++;
	$self->{dir} = PostgreSQL::Test::Utils::tempdir("etcd$cluster_seq");
	$self->{token} = "snowflake-test-$$-" . int(time()) . "-$cluster_seq";
	my $n = $opt{members} // 1;
	for my $i (1 .. $n)
	{
		push @{ $self->{members} }, {
			name => "m$i",
			client_port => PostgreSQL::Test::Cluster::get_free_port(),
			peer_port => PostgreSQL::Test::Cluster::get_free_port(),
			data_dir => "$self->{dir}/m$i.data",
			log => "$self->{dir}/m$i.log",
		};
	}
	$self->make_certs if $self->{tls};
	$self->start_member($_) for 0 .. $n - 1;
	$self->wait_healthy;
	$self->setup_auth if $self->{auth};
	return $self;
}

sub scheme { return $_[0]->{tls} ? 'https' : 'http'; }
sub dir { return $_[0]->{dir}; }
sub members { return scalar @{ $_[0]->{members} }; }
sub user { return $_[0]->{user}; }
sub password { return $_[0]->{password}; }
sub prefix { return $_[0]->{prefix}; }
sub tls { return $_[0]->{tls}; }
sub auth { return $_[0]->{auth}; }
sub cacert { return "$_[0]->{dir}/tls/ca.crt"; }
sub client_cert { return "$_[0]->{dir}/tls/client.crt"; }
sub client_key { return "$_[0]->{dir}/tls/client.key"; }
sub member_pid { return $_[0]->{members}[ $_[1] ]{pid}; }
sub member_log { return $_[0]->{members}[ $_[1] ]{log}; }

sub endpoint
{
	my ($self, $i) = @_;
	return $self->scheme . '://127.0.0.1:' . $self->{members}[$i]{client_port};
}

# All endpoints, comma-separated, in the given member order (default all).
sub endpoints
{
	my ($self, @order) = @_;
	@order = (0 .. $self->members - 1) unless @order;
	return join(',', map { $self->endpoint($_) } @order);
}

sub live_members
{
	my ($self) = @_;
	return grep { $self->{members}[$_]{pid} && !$self->{members}[$_]{paused} }
	  0 .. $self->members - 1;
}

sub make_certs
{
	my ($self) = @_;
	my $d = "$self->{dir}/tls";
	mkdir $d or die "mkdir $d: $!";
	my @ec = ('-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes');
	my $ssl = sub {
		my ($out, $err);
		IPC::Run::run([ "openssl", @_ ], ">", \$out, "2>", \$err)
		  or die "openssl @_ failed: $err";
	};
	$ssl->('req', '-x509', @ec, '-keyout', "$d/ca.key", '-out', "$d/ca.crt",
		'-days', '2', '-subj', '/CN=snowflake test CA');
	PostgreSQL::Test::Utils::append_to_file("$d/server.ext",
		"subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n");
	$ssl->('req', @ec, '-keyout', "$d/server.key", '-out', "$d/server.csr",
		'-subj', '/CN=127.0.0.1');
	$ssl->('x509', '-req', '-in', "$d/server.csr", '-CA', "$d/ca.crt", '-CAkey',
		"$d/ca.key", '-CAcreateserial', '-out', "$d/server.crt", '-days', '2',
		'-extfile', "$d/server.ext");
	# With --client-cert-auth and auth enabled, etcd takes a client
	# certificate's CN as the user: the client cert then has none.
	my $subj = $self->{client_cn} eq '' ? '/O=snowflake test client' : "/CN=$self->{client_cn}";
	PostgreSQL::Test::Utils::append_to_file("$d/client.ext", "extendedKeyUsage=clientAuth\n");
	$ssl->('req', @ec, '-keyout', "$d/client.key", '-out', "$d/client.csr", '-subj', $subj);
	$ssl->('x509', '-req', '-in', "$d/client.csr", '-CA', "$d/ca.crt", '-CAkey',
		"$d/ca.key", '-CAcreateserial', '-out', "$d/client.crt", '-days', '2',
		'-extfile', "$d/client.ext");
	# A second CA that signed nothing the server trusts, for negative tests.
	$ssl->('req', '-x509', @ec, '-keyout', "$d/other-ca.key", '-out', "$d/other-ca.crt",
		'-days', '2', '-subj', '/CN=some other CA');
	chmod 0600, glob("$d/*.key");
	return;
}

sub start_member
{
	my ($self, $i) = @_;
	my $m = $self->{members}[$i];
	die "$m->{name} already runs" if $m->{pid};
	my $cluster = join(',',
		map { "$_->{name}=http://127.0.0.1:$_->{peer_port}" } @{ $self->{members} });
	my $client = $self->endpoint($i);
	my @cmd = (
		'etcd', '--name', $m->{name}, '--data-dir', $m->{data_dir},
		'--listen-client-urls', $client, '--advertise-client-urls', $client,
		'--listen-peer-urls', "http://127.0.0.1:$m->{peer_port}",
		'--initial-advertise-peer-urls', "http://127.0.0.1:$m->{peer_port}",
		'--initial-cluster', $cluster, '--initial-cluster-state', 'new',
		'--initial-cluster-token', $self->{token},
		'--heartbeat-interval', $self->{heartbeat},
		'--election-timeout', $self->{election});
	if ($self->{tls})
	{
		my $d = "$self->{dir}/tls";
		push @cmd, '--cert-file', "$d/server.crt", '--key-file', "$d/server.key",
		  '--trusted-ca-file', "$d/ca.crt", '--client-cert-auth';
	}
	push @cmd, '--auth-token-ttl', $self->{token_ttl} if $self->{token_ttl};
	PostgreSQL::Test::Utils::append_to_file($m->{log}, "### start: @cmd\n");
	$m->{pid} = spawn($m->{log}, @cmd);
	$m->{paused} = 0;
	return $m->{pid};
}

# SIGTERM (clean) and wait for the member to exit.
sub stop_member
{
	my ($self, $i) = @_;
	my $m = $self->{members}[$i];
	stop_process($m->{pid}, 'TERM');
	$m->{pid} = undef;
	return;
}

sub kill_member
{
	my ($self, $i) = @_;
	my $m = $self->{members}[$i];
	stop_process($m->{pid}, 'KILL');
	$m->{pid} = undef;
	return;
}

sub pause_member
{
	my ($self, $i) = @_;
	my $m = $self->{members}[$i];
	kill 'STOP', $m->{pid} or die "cannot stop $m->{pid}";
	$m->{paused} = 1;
	return;
}

sub resume_member
{
	my ($self, $i) = @_;
	my $m = $self->{members}[$i];
	kill 'CONT', $m->{pid} or die "cannot continue $m->{pid}";
	$m->{paused} = 0;
	return;
}

sub stop_all
{
	my ($self) = @_;
	$self->stop_member($_) for grep { $self->{members}[$_]{pid} } 0 .. $self->members - 1;
	return;
}

sub start_all
{
	my ($self) = @_;
	$self->start_member($_) for grep { !$self->{members}[$_]{pid} } 0 .. $self->members - 1;
	$self->wait_healthy;
	return;
}

# etcdctl with this cluster's endpoints, certificates and root user.
# Returns (rc, stdout, stderr).  Options: endpoints => 'url,url', user => 'name:pw' or '' (none).
sub etcdctl_opts
{
	my ($self, $opt, @args) = @_;
	my @cmd = ('etcdctl', '--endpoints', $opt->{endpoints}
		  // join(',', map { $self->endpoint($_) } $self->live_members),
		'--dial-timeout', '3s', '--command-timeout', '10s');
	if ($self->{tls})
	{
		push @cmd, '--cacert', $self->cacert, '--cert', $self->client_cert,
		  '--key', $self->client_key;
	}
	my $user = $opt->{user} // ($self->{auth_enabled} ? "root:$self->{root_password}" : '');
	push @cmd, '--user', $user if $user ne '';
	local $ENV{ETCDCTL_API} = '3';
	my ($out, $err) = ('', '');
	my $in = $opt->{stdin} // '';
	my $ok = IPC::Run::run([ @cmd, @args ], '<', \$in, '>', \$out, '2>', \$err);
	return ($ok ? 0 : ($? >> 8) || 1, $out, $err);
}

# etcdctl as root (if auth is on): its standard output; dies on failure.
sub etcdctl
{
	my ($self, @args) = @_;
	my ($rc, $out, $err) = $self->etcdctl_opts({}, @args);
	die "etcdctl @args failed: $err$out" if $rc;
	return $out;
}

sub wait_healthy
{
	my ($self, $seconds) = @_;
	my $healthy = wait_for(
		sub {
			for my $i ($self->live_members)
			{
				my ($rc, $out, $err) =
				  $self->etcdctl_opts({ endpoints => $self->endpoint($i) }, 'endpoint', 'health');
				return 0 unless $rc == 0 && "$out$err" =~ /is healthy/;
			}
			return 1;
		},
		$seconds // 60);
	die "etcd did not become healthy; see $self->{dir}/*.log" unless $healthy;
	return;
}

# Index of the member that is leader, from the live members' status.
sub leader
{
	my ($self) = @_;
	my $out = $self->etcdctl('endpoint', 'status', '-w', 'json');
	for my $st (@{ json_decode($out) })
	{
		next unless "$st->{Status}{header}{member_id}" eq "$st->{Status}{leader}";
		for my $i (0 .. $self->members - 1)
		{
			return $i if $st->{Endpoint} eq $self->endpoint($i);
		}
	}
	return undef;
}

sub setup_auth
{
	my ($self) = @_;
	my $p = $self->{prefix};
	$self->etcdctl('user', 'add', 'root', "--new-user-password=$self->{root_password}");
	$self->etcdctl('user', 'grant-role', 'root', 'root');
	$self->etcdctl('role', 'add', 'snowflake_rw');
	$self->etcdctl('role', 'grant-permission', 'snowflake_rw', '--prefix=true', 'readwrite', "$p/");
	$self->etcdctl('user', 'add', $self->{user}, "--new-user-password=$self->{password}");
	$self->etcdctl('user', 'grant-role', $self->{user}, 'snowflake_rw');
	$self->etcdctl('auth', 'enable');
	$self->{auth_enabled} = 1;
	return;
}

# The key's {value, lease (decimal), create_revision} or undef.
sub get_key
{
	my ($self, $key) = @_;
	my $r = json_decode($self->etcdctl('get', $key, '-w', 'json'));
	my $kv = $r->{kvs} && $r->{kvs}[0] or return undef;
	return {
		value => MIME::Base64::decode_base64($kv->{value} // ''),
		lease => defined $kv->{lease} ? "$kv->{lease}" : undef,
		create_revision => "$kv->{create_revision}",
	};
}

# { N => { lease => decimal, value => decoded JSON or raw string } } for
# every <prefix>/nodes/<N> key.
sub node_keys
{
	my ($self, $prefix) = @_;
	$prefix //= $self->{prefix};
	my $r = json_decode($self->etcdctl('get', "$prefix/nodes/", '--prefix', '-w', 'json'));
	my %keys;
	for my $kv (@{ $r->{kvs} // [] })
	{
		my $key = MIME::Base64::decode_base64($kv->{key});
		next unless $key =~ m{/nodes/(\d+)$};
		my $raw = MIME::Base64::decode_base64($kv->{value} // '');
		my $value = eval { json_decode($raw) } // $raw;
		# from 1024 up the key has six digits (<prefix>/nodes/001024)
		$keys{ $1 + 0 } = { lease => defined $kv->{lease} ? "$kv->{lease}" : undef, value => $value };
	}
	return \%keys;
}

# The etcd mark of node $n in ms, or undef.
# The mark of node id $n in Unix ms (the value is "<ms> <etcd cluster id>").
sub mark
{
	my ($self, $n, $prefix) = @_;
	my $kv = $self->get_key(($prefix // $self->{prefix}) . "/marks/$n");
	return undef unless $kv;
	my ($ms) = $kv->{value} =~ /^(\d+)(?: \d*)?$/;
	return $ms // $kv->{value};
}

sub lease_ttl_left
{
	my ($self, $lease) = @_;
	my $out = $self->etcdctl('lease', 'timetolive', sprintf('%x', $lease), '-w', 'json');
	return json_decode($out)->{ttl};
}

# POST a JSON body to /v3/... of the first live member (plain http
# clusters only); the decoded answer, or dies.
sub http
{
	my ($self, $path, $body) = @_;
	die 'http() is for plain http clusters' if $self->{tls};
	my ($i) = $self->live_members;
	my $res = HTTP::Tiny->new(timeout => 15)->post($self->endpoint($i) . $path,
		{ content => JSON::PP->new->encode($body), headers => { 'content-type' => 'application/json' } });
	die "POST $path: $res->{status} $res->{content}" unless $res->{success};
	return json_decode($res->{content});
}

# Put many keys (hash key => value) at once, in transactions of 100 puts,
# optionally attached to a lease (decimal id).
sub put_many
{
	my ($self, $kv, $lease) = @_;
	my @keys = sort keys %$kv;
	while (my @batch = splice(@keys, 0, 100))
	{
		my @ops = map {
			{ request_put => {
				key => MIME::Base64::encode_base64($_, ''),
				value => MIME::Base64::encode_base64($kv->{$_}, ''),
				($lease ? (lease => "$lease") : ()) } }
		} @batch;
		my $r = $self->http('/v3/kv/txn', { success => \@ops });
		die 'bulk put failed' unless $r->{succeeded};
	}
	return;
}

########################################################################
# snowflake servers in etcd mode

# A new initialised server with snowflake preloaded in etcd mode against
# $etcd (an EtcdTest or an endpoints string).  Options: ttl (3), prefix,
# timeout (ms), endpoints (override), tls_client (1: cacert+cert+key;
# 'ca': only the CA), auth (1: the cluster's user and password), conf
# (extra lines), source ('etcd').
sub etcd_snowflake_node
{
	my ($name, $etcd, %opt) = @_;
	my $endpoints = $opt{endpoints} // (ref $etcd ? $etcd->endpoints : $etcd);
	my $prefix = $opt{prefix} // (ref $etcd ? $etcd->prefix : '/snowflake');
	my $conf = "snowflake.node_source = '" . ($opt{source} // 'etcd') . "'\n"
	  . "snowflake.etcd_endpoints = '$endpoints'\n"
	  . "snowflake.etcd_prefix = '$prefix'\n"
	  . 'snowflake.etcd_lease_ttl = ' . ($opt{ttl} // 3) . "\n"
	  . 'snowflake.etcd_timeout = ' . ($opt{timeout} // 1000) . "\n"
	  . "log_min_messages = info\n";
	if (ref $etcd && $etcd->tls && ($opt{tls_client} // 1))
	{
		$conf .= "snowflake.etcd_cacert = '" . $etcd->cacert . "'\n";
		$conf .= "snowflake.etcd_cert = '" . $etcd->client_cert . "'\n"
		  . "snowflake.etcd_key = '" . $etcd->client_key . "'\n"
		  unless ($opt{tls_client} // 1) eq 'ca';
	}
	if (ref $etcd && $etcd->auth && ($opt{auth} // 1))
	{
		$conf .= "snowflake.etcd_username = '" . $etcd->user . "'\n"
		  . "snowflake.etcd_password = '" . ($opt{password} // $etcd->password) . "'\n";
	}
	return snowflake_node($name, $conf . ($opt{conf} // ''));
}

# Start and wait for state 'ready'.
sub start_ready
{
	my ($node) = @_;
	$node->start;
	wait_until_ready($node);
	return;
}

# The DBA creates the extension in snowflake.database; suites that look at
# servers without waiting for them to be ready create it here.
sub ensure_extension
{
	my ($node) = @_;
	for my $try (1 .. 5)
	{
		my ($rc, $out, $err) = $node->psql('postgres', 'CREATE EXTENSION IF NOT EXISTS snowflake');
		return if $rc == 0;
		usleep(200_000);
	}
	die 'could not create the extension in ' . $node->name;
}

sub has_extension
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_extension WHERE extname = 'snowflake'}) == 1;
}

# snowflake_status() as a hash (all values as text, NULL as undef).
sub status
{
	my ($node) = @_;
	my $out = $node->safe_psql('postgres',
		'SELECT row_to_json(s) FROM (SELECT *, lease_id::text AS lease_text FROM snowflake_status()) s');
	return json_decode($out);
}


sub wait_for_state
{
	my ($node, $state, $seconds) = @_;
	return wait_for(
		sub {
			my ($rc, $out) = $node->psql('postgres', 'SELECT state FROM snowflake_status()');
			return $rc == 0 && $out eq $state;
		},
		$seconds);
}

# pids of the server's snowflake background worker(s): from
# pg_stat_activity, else from ps (children of the postmaster).
sub snowflake_worker_pids
{
	my ($node) = @_;
	my $out = $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type ILIKE '%snowflake%' ORDER BY pid});
	my @pids = grep { /^\d+$/ } split /\n/, $out;
	return @pids if @pids;
	my $pm = $node->{_pid};
	IPC::Run::run([ 'ps', '-o', 'pid=,args=', '--ppid', $pm ], '>', \my $ps);
	return map { /^\s*(\d+)/ ? $1 : () } grep { /snowflake/i } split /\n/, $ps;
}

# (rc, id-or-empty, stderr) of one snowflake_nextval() with VERBOSITY
# verbose (so stderr has the SQLSTATE) and the given wait_timeout.
sub nextval_result
{
	my ($node, $wait_timeout) = @_;
	my ($rc, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nSET snowflake.wait_timeout = " . ($wait_timeout // 100)
		  . ";\nSELECT snowflake_nextval()");
	return ($rc, $out, $err);
}

# Copy table $table (column id bigint, optionally run int) of every server
# into table all_ids(server text, id bigint, run int) on $into:
# server-side COPY through a file.
sub gather_ids
{
	my ($into, $table, @nodes) = @_;
	$into->safe_psql('postgres',
		'CREATE TABLE IF NOT EXISTS all_ids (server text NOT NULL, id bigint NOT NULL, run int NOT NULL DEFAULT 0)');
	for my $node (@nodes)
	{
		my $file = $node->basedir . "/$table.copy";
		my $has_run = $node->safe_psql('postgres',
			"SELECT count(*) FROM pg_attribute WHERE attrelid = '$table'::regclass AND attname = 'run'");
		my $run = $has_run ? 'run' : '0';
		$node->safe_psql('postgres', "COPY (SELECT '" . $node->name . "', id, $run FROM $table) TO '$file'");
		$into->safe_psql('postgres', "COPY all_ids (server, id, run) FROM '$file'");
	}
	return;
}

# Pairs of servers whose IDs under one node id interleave: each server's
# IDs under a node id in one run (a phase of the test) span [min, max];
# two servers' spans must not overlap.  "server/server node N" strings,
# empty if none.
sub overlapping_tenures
{
	my ($node) = @_;
	my $out = $node->safe_psql('postgres', q{
		WITH t AS (SELECT server, run, snowflake_node(id) AS n, min(id) AS lo, max(id) AS hi
			FROM all_ids GROUP BY 1, 2, 3)
		SELECT DISTINCT a.server || '/' || b.server || ' node ' || a.n FROM t a JOIN t b
		ON a.n = b.n AND a.server < b.server AND a.lo <= b.hi AND b.lo <= a.hi});
	return $out;
}

########################################################################
# the hostile server

# Start test/lib/hostile_etcd.pl on a free port with $mode (see the
# script); returns { port, pid, modefile, endpoint, log }.
sub start_hostile_etcd
{
	my ($mode) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir('hostile');
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $h = {
		port => $port,
		modefile => "$dir/mode",
		pidfile => "$dir/pid",
		log => "$dir/hostile.log",
		endpoint => "http://127.0.0.1:$port",
	};
	set_hostile_mode($h, $mode);
	my $script = File::Basename::dirname(__FILE__) . '/hostile_etcd.pl';
	$h->{pid} = spawn($h->{log}, $^X, $script, '--port', $port,
		'--mode-file', $h->{modefile}, '--pid-file', $h->{pidfile});
	wait_for(sub { -s $h->{pidfile} }, 30) or die 'the hostile server did not start';
	return $h;
}

# Modes: "KIND" for every path, or "path=KIND ... *=KIND".
sub set_hostile_mode
{
	my ($h, $mode) = @_;
	replace_file($h->{modefile}, "$mode\n");
	return;
}

########################################################################
# background clients, keep-alives, a wiped member

# Run @cmd in the background (see spawn: own process group, output
# appended to $log, killed at the end of the test if still running).  %env:
# extra environment for it only.  Returns the pid.
sub spawn_process
{
	my ($log, $env, @cmd) = @_;
	local %ENV = (%ENV, %{ $env // {} });
	return spawn($log, @cmd);
}

# Wait up to $seconds for a process started here to exit by itself; its
# exit status ($?), or undef if it still runs (then it is left running).
sub wait_process
{
	my ($pid, $seconds) = @_;
	my $deadline = time() + ($seconds // $PostgreSQL::Test::Utils::timeout_default);
	while (time() < $deadline)
	{
		my $r = waitpid($pid, POSIX::WNOHANG());
		if ($r == $pid)
		{
			delete $started{$pid};
			return $?;
		}
		usleep(20_000);
	}
	return undef;
}

# Wait (up to $seconds) until snowflake_status().lease_expires_at of $node
# changes to a new non-NULL value, that is until a keep-alive (or a new
# lease) has just succeeded; polled inside the server every 5 ms.  Returns
# true if seen.
sub wait_for_keepalive
{
	my ($node, $seconds) = @_;
	my $ms = int(1000 * ($seconds // 30));
	my ($rc, $out, $err) = $node->psql('postgres', "SET statement_timeout = $ms;\n" . q{
		DO $$
		DECLARE
			first timestamptz := (SELECT lease_expires_at FROM snowflake_status());
			cur timestamptz;
		BEGIN
			LOOP
				PERFORM pg_sleep(0.005);
				cur := (SELECT lease_expires_at FROM snowflake_status());
				EXIT WHEN cur IS NOT NULL AND cur IS DISTINCT FROM first;
			END LOOP;
		END $$;});
	return $rc == 0;
}

# kill -9 member $i, remove its data directory and start it again, empty,
# on the same ports and with the same flags; waits until it is healthy.
sub wipe_member
{
	my ($self, $i) = @_;
	my $m = $self->{members}[$i];
	$self->kill_member($i);
	File::Path::rmtree($m->{data_dir});
	die "could not remove $m->{data_dir}" if -e $m->{data_dir};
	$self->start_member($i);
	$self->wait_healthy;
	return;
}

# The cluster id (decimal string) the first live member reports.
sub cluster_id
{
	my ($self) = @_;
	my $st = json_decode($self->etcdctl('endpoint', 'status', '-w', 'json'));
	return "$st->[0]{Status}{header}{cluster_id}";
}

1;
