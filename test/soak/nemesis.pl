# The nemesis soak: many faults at random, then a check of the whole history.
#
# Starts a three-member etcd cluster and four servers: two leasing their node
# id from etcd, one with a hand-set node id checked against etcd, one in plain
# GUC mode.  Clients on every server insert rows keyed by
# DEFAULT snowflake_nextval() and by snowflake_nextval_batch() and log every
# ID they are handed, with the monotonic time before the call and after its
# answer.  Meanwhile a fault starts every one to three seconds (see @FAULTS),
# several at once on different layers.  At the end every fault is undone,
# each server must issue again, and the history is checked:
#
#   - no ID was issued twice, across all servers' rows and all clients' logs;
#   - every ID a client saw committed is in its server's table;
#   - per node id, an ID whose call started after another call had returned
#     is above every ID of that call (across servers, when a node id moved).
#
# It prints one summary line and exits non-zero on any violation, printing
# the seed and the fault log needed to replay it.  Run it through
# scripts/soak.sh, which builds and installs the extension first.
#
# --layout NAME runs every server with that snowflake.layout (a preset or
# the custom form) and decodes the IDs with it; --layout random picks one
# of @LAYOUTS below from the seed, so the seed alone replays it.
use strict;
use warnings;

use DBI;
use File::Basename ();
use Getopt::Long;
use POSIX ();
use Time::HiRes qw(usleep clock_gettime CLOCK_MONOTONIC);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib File::Basename::dirname(__FILE__) . '/../lib';
use SnowflakeTest;
use EtcdTest;

my %opt = (
	seconds => 60, seed => 'random', ttl => 3, clients => 2, pace => 0, report => '',
	layout => 'snowflake');
GetOptions(\%opt, 'seconds=i', 'seed=s', 'ttl=i', 'clients=i', 'pace=f', 'report=s', 'layout=s')
  or die "usage: nemesis.pl [--seconds N] [--seed N|random] [--layout NAME|random] [--ttl S] [--clients N] [--pace MS] [--report FILE]\n";
my $seed = $opt{seed} eq 'random' ? random_seed() : $opt{seed};
die "the seed must be a number: $seed\n" unless $seed =~ /^\d+$/;
my $ttl = $opt{ttl};

# What --layout random picks from: the presets other than the default, and
# custom layouts with fewer node bits and zero low bits, with 14 sequence
# bits, and with seconds.
my @LAYOUTS = (
	'twitter', 'instagram', 'sonyflake',
	'time 41, node 5, sequence 12, zero 6, unit 1ms',
	'time 41, node 8, sequence 14, unit 1ms',
	'time 32, node 11, sequence 21, unit 1s');
my $layout = $opt{layout} eq 'random' ? $LAYOUTS[ $seed % @LAYOUTS ] : $opt{layout};
die "the layout must not contain a quote: $layout\n" if $layout =~ /'/;
my $replay = "bash scripts/soak.sh --seconds $opt{seconds} --seed $seed --layout '$layout'";
diag("soak seed $seed, layout '$layout', $opt{seconds} s of faults (replay: $replay)");

sub random_seed
{
	open(my $fh, '<', '/dev/urandom') or die "cannot read /dev/urandom: $!";
	read($fh, my $bytes, 4) == 4 or die 'short read from /dev/urandom';
	return unpack('L', $bytes) % 1_000_000_000;
}

sub now_us { return int(clock_gettime(CLOCK_MONOTONIC) * 1_000_000); }
our $t_start = now_us();

########################################################################
# Processes we kill.  pg_ctl leaves the postmaster to its parent's parent;
# as a subreaper, this script becomes the parent of every postmaster (and of
# the backends a killed postmaster leaves behind), so it can reap them: a
# zombie keeps its pid, and a new postmaster takes a zombie's pid in the
# lock file for a running server.

sub become_subreaper
{
	my %prctl = (x86_64 => 157, aarch64 => 167);
	my $nr = $prctl{ (POSIX::uname())[4] };
	my $PR_SET_CHILD_SUBREAPER = 36;
	die 'no prctl system call number for this machine' unless $nr;
	syscall($nr, $PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
	  or die "prctl(PR_SET_CHILD_SUBREAPER): $!";
	return;
}

# (comm, state, ppid) of a process, or () if it is gone.
sub proc_stat
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/stat") or return ();
	my $line = <$fh> // return ();
	return $line =~ /^\d+ \((.*)\) (\S) (\d+)/s ? ($1, $2, $3) : ();
}

sub children_of
{
	my ($parent) = @_;
	opendir(my $dh, '/proc') or die "cannot list /proc: $!";
	my @pids;
	for my $pid (grep { /^\d+$/ } readdir $dh)
	{
		my (undef, undef, $ppid) = proc_stat($pid);
		push @pids, $pid if defined $ppid && $ppid == $parent;
	}
	return @pids;
}

# Reap the PostgreSQL processes that died as our children (not the clients
# or the programs IPC::Run waits for itself).
sub reap_postgres_zombies
{
	for my $pid (children_of($$))
	{
		my ($comm, $state) = proc_stat($pid);
		waitpid($pid, POSIX::WNOHANG())
		  if defined $state && $state eq 'Z' && $comm =~ /^(postgres|postmaster)$/;
	}
	return;
}

########################################################################
# The fleet

my @fault_log;    # { kind, target, affects => [names], start, end, detail }
my @timeline;     # [due_us, code]: actions scheduled by faults
my $etcd_busy = 0;

sub later
{
	my ($seconds, $code) = @_;
	push @timeline, [ now_us() + int($seconds * 1_000_000), $code ];
	return;
}

sub log_line
{
	my ($fmt, @args) = @_;
	my $line = sprintf("[%7.2f] $fmt", (now_us() - $main::t_start) / 1e6, @args);
	print STDERR "$line\n" if $ENV{SOAK_VERBOSE};
	return $line;
}

sub begin_fault
{
	my ($kind, $target, $affects, $detail) = @_;
	my $f = {
		kind => $kind, target => $target, affects => $affects,
		start => now_us(), end => undef, detail => $detail,
	};
	push @fault_log, $f;
	$f->{line} = log_line('%-18s %-9s %s', $kind, $target, $detail);
	return $f;
}

sub end_fault
{
	my ($f) = @_;
	$f->{end} //= now_us();
	return;
}

become_subreaper();

my $etcd = EtcdTest->new(members => 3);
my $quiet = "log_statement = none\nlog_min_messages = info\nmax_connections = 40\n"
  . "snowflake.layout = '$layout'\n";
my @servers = (
	{ name => 'lease_a', kind => 'etcd' },
	{ name => 'lease_b', kind => 'etcd' },
	{ name => 'checked', kind => 'checked' },
	{ name => 'guc', kind => 'guc' },
);

# The layout as the first server reads it (snowflake_layout()): the fields
# the checker decodes IDs with, and the node ids there are.  The hand-set
# node ids must fit: 7 for the server checked against etcd, and for the one
# in GUC mode 900, or the highest node id of a layout with fewer.  The
# etcd-leased servers claim the lowest free ids, far below either.
my %layout;
my %node_id;

for my $s (@servers)
{
	$s->{node} =
	    $s->{kind} eq 'etcd' ? etcd_snowflake_node($s->{name}, $etcd, ttl => $ttl, conf => $quiet)
	  : $s->{kind} eq 'checked'
	  ? etcd_snowflake_node($s->{name}, $etcd, ttl => $ttl, source => 'guc',
		conf => "snowflake.node_id = $node_id{checked}\n$quiet")
	  : snowflake_node($s->{name}, "snowflake.node_id = $node_id{guc}\n$quiet");
	$s->{offset} = 0;
	$s->{busy} = {};
	start_server($s) or die "$s->{name} did not start with snowflake.layout = '$layout'";
	wait_until_ready($s->{node});
	$s->{node}->safe_psql('postgres',
		'CREATE TABLE soak_rows (id bigint NOT NULL DEFAULT snowflake_nextval(), client int NOT NULL)');
	next if %layout;

	my @row = split /\|/, $s->{node}->safe_psql('postgres', q{
		SELECT fields, node_bits, sequence_bits, zero_bits, node_ids,
			round(extract(epoch FROM unit) * 1000), round(extract(epoch FROM epoch) * 1000)
		FROM snowflake_layout()});
	@layout{qw(fields node_bits sequence_bits zero_bits node_ids unit_ms epoch_unix_ms)} = @row;
	# Sonyflake's order: the sequence above the node.
	$layout{node_low} = $layout{fields} =~ /sequence \d+, node/ ? 1 : 0;
	die "layout '$layout' has $layout{node_ids} node ids; the soak needs at least 16\n"
	  if $layout{node_ids} < 16;
	%node_id = (checked => 7, guc => $layout{node_ids} > 900 ? 900 : $layout{node_ids} - 1);
	diag("layout fields: $layout{fields}; node ids: checked $node_id{checked}, guc $node_id{guc}");
}
my @etcd_servers = map { $_->{name} } grep { $_->{kind} ne 'guc' } @servers;

sub start_server
{
	my ($s) = @_;
	reap_postgres_zombies();
	my $ok = eval { start_with_server_clock($s->{node}, $s->{offset}); 1 };
	$s->{down} = !$ok;
	log_line('start of %s failed: %s', $s->{name}, $@) unless $ok;
	return $ok;
}

sub postmaster_pid
{
	my ($s) = @_;
	return $s->{down} ? undef : $s->{node}{_pid};
}

sub signal_server
{
	my ($s, $signal) = @_;
	my $pm = postmaster_pid($s) or return;
	kill $signal, $pm if $signal eq 'STOP';
	kill $signal, children_of($pm);
	kill $signal, $pm if $signal ne 'STOP';
	return;
}

sub worker_pid
{
	my ($s) = @_;
	my $pm = postmaster_pid($s) or return undef;
	for my $pid (children_of($pm))
	{
		open(my $fh, '<', "/proc/$pid/cmdline") or next;
		my $cmd = <$fh> // '';
		return $pid if $cmd =~ /snowflake/;
	}
	return undef;
}

# kill -9 of the postmaster and every child of it, all reaped.
sub kill_server
{
	my ($s) = @_;
	my $pm = postmaster_pid($s) or return;
	kill 'STOP', $pm;
	my @pids = ($pm, children_of($pm));
	kill 'KILL', @pids;
	my $deadline = now_us() + 10_000_000;
	while (grep { my @st = proc_stat($_); @st && $st[1] ne 'X' } @pids)
	{
		reap_postgres_zombies();
		last if now_us() > $deadline;
		usleep(10_000);
	}
	$s->{node}{_pid} = undef;
	$s->{down} = 1;
	return;
}

sub up_servers { return grep { !$_->{down} } @servers; }

sub random_element { return $_[ int(rand(@_)) ]; }
sub uniform { my ($lo, $hi) = @_; return $lo + rand($hi - $lo); }

# Servers whose $layer is free (and that run, unless $may_be_down).
sub free_servers
{
	my ($layer, $may_be_down) = @_;
	return grep { !$_->{busy}{$layer} && ($may_be_down || !$_->{down}) } @servers;
}

########################################################################
# The faults: [kind, weight, code].  A fault occupies a layer of its target
# (a server's processes, its clock, its mark table; etcd) until it is
# undone, so faults on different layers and targets overlap.

sub affects_of
{
	my ($s) = @_;
	return [ $s->{name} ];
}

my @FAULTS = (
	[ 'pg_kill9', 3, sub {
		my ($s) = random_element(free_servers('process')) or return;
		$s->{busy}{process} = 1;
		my $down_for = uniform(0.2, 2);
		my $f = begin_fault('pg_kill9', $s->{name}, affects_of($s), sprintf('down %.1f s', $down_for));
		kill_server($s);
		my $restart;
		$restart = sub {
			if (start_server($s)) { end_fault($f); $s->{busy}{process} = 0; }
			else { later(1, $restart); }
		};
		later($down_for, $restart);
	} ],
	[ 'pg_restart', 2, sub {
		my ($s) = random_element(free_servers('process')) or return;
		my $f = begin_fault('pg_restart', $s->{name}, affects_of($s), 'fast shutdown, start');
		eval { $s->{node}->stop('fast'); 1 } or log_line('stop of %s failed: %s', $s->{name}, $@);
		$s->{node}{_pid} = undef;
		$s->{down} = 1;
		start_server($s) or later(1, sub { start_server($s) });
		end_fault($f);
	} ],
	[ 'worker_stop', 2, sub {
		my ($s) = random_element(free_servers('process')) or return;
		my $pid = worker_pid($s) or return;
		my $for = uniform(0.3, 1.5) * $ttl;
		$s->{busy}{process} = 1;
		my $f = begin_fault('worker_stop', $s->{name}, affects_of($s), sprintf('SIGSTOP %.1f s', $for));
		kill 'STOP', $pid;
		later($for, sub { kill 'CONT', $pid; end_fault($f); $s->{busy}{process} = 0; });
	} ],
	[ 'server_stop', 2, sub {
		my ($s) = random_element(free_servers('process')) or return;
		my $for = uniform(0.3, 1.5) * $ttl;
		$s->{busy}{process} = 1;
		my $f = begin_fault('server_stop', $s->{name}, affects_of($s), sprintf('SIGSTOP %.1f s', $for));
		signal_server($s, 'STOP');
		later($for, sub { signal_server($s, 'CONT'); end_fault($f); $s->{busy}{process} = 0; });
	} ],
	[ 'clock_step', 3, sub {
		my ($s) = random_element(free_servers('clock', 1)) or return;
		my $step = uniform(0.3, 5) * (rand() < 0.5 ? -1 : 1);
		my $hold = uniform(1, 4);
		$s->{busy}{clock} = 1;
		my $f = begin_fault('clock_step', $s->{name}, affects_of($s),
			sprintf('%+.2f s for %.1f s', $step, $hold));
		set_offset($s, $step);
		later($hold, sub { set_offset($s, 0); end_fault($f); $s->{busy}{clock} = 0; });
	} ],
	[ 'clock_drift', 1, sub {
		my ($s) = random_element(free_servers('clock', 1)) or return;
		my $rate = uniform(0.05, 0.2) * (rand() < 0.5 ? -1 : 1);
		my $for = uniform(3, 8);
		$s->{busy}{clock} = 1;
		my $f = begin_fault('clock_drift', $s->{name}, affects_of($s),
			sprintf('%+.0f%% for %.1f s, then back', 100 * $rate, $for));
		my ($last, $turn) = (now_us(), now_us() + $for * 1e6);
		my $tick;
		$tick = sub {
			my $now = now_us();
			my $dt = ($now - $last) / 1e6;
			$last = $now;
			my $offset = $s->{offset} + ($now < $turn ? $rate : -$rate) * $dt;
			if ($now >= $turn && ($offset <=> 0) != ($rate <=> 0))
			{
				set_offset($s, 0);
				end_fault($f);
				$s->{busy}{clock} = 0;
				return;
			}
			set_offset($s, $offset);
			later(0.1, $tick);
		};
		later(0.1, $tick);
	} ],
	[ 'etcd_kill9', 2, sub {
		return if $etcd_busy;
		my $i = int(rand($etcd->members));
		etcd_member_down('etcd_kill9', $i, uniform(1, 4));
	} ],
	[ 'etcd_stop', 2, sub {
		return if $etcd_busy;
		my $i = int(rand($etcd->members));
		my $for = uniform(1, 1.5 * $ttl);
		$etcd_busy = 1;
		my $f = begin_fault('etcd_stop', "etcd m$i", [@etcd_servers], sprintf('SIGSTOP %.1f s', $for));
		$etcd->pause_member($i);
		later($for, sub { $etcd->resume_member($i); end_fault($f); $etcd_busy = 0; });
	} ],
	[ 'etcd_leader_kill9', 2, sub {
		return if $etcd_busy;
		my $i = eval { $etcd->leader };
		return unless defined $i;
		etcd_member_down('etcd_leader_kill9', $i, uniform(1, 3));
	} ],
	[ 'table_lock', 2, sub {
		my ($s) = random_element(free_servers('table')) or return;
		my $for = uniform(0.5, 3);
		$s->{busy}{table} = 1;
		my $f = begin_fault('table_lock', $s->{name}, affects_of($s), sprintf('%.1f s', $for));
		my $pid = spawn_process($s->{node}->basedir . '/table_lock.log', {},
			'psql', '-X', '-q', '-h', $s->{node}->host, '-p', $s->{node}->port, '-d', 'postgres', '-c',
			'BEGIN; LOCK TABLE snowflake_high_water IN ACCESS EXCLUSIVE MODE; '
			  . sprintf('SELECT pg_sleep(%.2f); COMMIT;', $for));
		my $wait;
		$wait = sub {
			if (defined wait_process($pid, 0.05)) { end_fault($f); $s->{busy}{table} = 0; }
			else { later(0.2, $wait); }
		};
		later($for, $wait);
	} ],
	[ 'reload', 1, sub {
		my ($s) = random_element(free_servers('process')) or return;
		my $reserve = random_element(100, 300, 1000, 2500);
		my $rollback = random_element(0, 200, 1000, 3000);
		my $f = begin_fault('reload', $s->{name}, affects_of($s),
			"reserve $reserve, max_clock_rollback $rollback");
		$s->{node}->psql('postgres',
			"ALTER SYSTEM SET snowflake.reserve = $reserve; "
			  . "ALTER SYSTEM SET snowflake.max_clock_rollback = $rollback; SELECT pg_reload_conf()");
		end_fault($f);
	} ],
);

sub set_offset
{
	my ($s, $offset) = @_;
	$s->{offset} = $offset;
	set_server_clock($s->{node}, $offset);
	return;
}

sub etcd_member_down
{
	my ($kind, $i, $for) = @_;
	$etcd_busy = 1;
	my $f = begin_fault($kind, "etcd m$i", [@etcd_servers], sprintf('down %.1f s', $for));
	$etcd->kill_member($i);
	later($for, sub { $etcd->start_member($i); end_fault($f); $etcd_busy = 0; });
	return;
}

########################################################################
# Clients: forked processes, one connection each, logging every ID handed
# to them as "server,client,call,t0,t1,committed,id" (times in monotonic
# microseconds) and every failed call as "server,client,call,t0,t1,sqlstate".

my $run_dir = PostgreSQL::Test::Utils::tempdir('soak');
my $stop_file = "$run_dir/stop";
my @clients;

sub client_main
{
	my ($s, $no) = @_;
	srand($seed * 100 + $no);
	my $name = $s->{name};
	open(my $ids, '>>', "$run_dir/ids.$no.csv") or die "cannot write: $!";
	open(my $errors, '>>', "$run_dir/errors.$no.csv") or die "cannot write: $!";
	$ids->autoflush(1);
	$errors->autoflush(1);
	my $dsn = 'dbi:Pg:dbname=postgres;host=' . $s->{node}->host . ';port=' . $s->{node}->port;
	my ($dbh, $call) = (undef, 0);
	while (!-e $stop_file)
	{
		$dbh //= eval {
			my $h = DBI->connect($dsn, '', '', { AutoCommit => 1, RaiseError => 1, PrintError => 0 });
			$h->do('SET snowflake.wait_timeout = 3000');
			$h->do('SET statement_timeout = 20000');
			$h;
		};
		unless ($dbh)
		{
			usleep(100_000);
			next;
		}
		usleep(rand(2000 * $opt{pace})) if $opt{pace} > 0;
		$call++;
		my $shape = rand();
		my @seen;
		my $committed = 0;
		my $t0 = now_us();
		my $ok = eval {
			if ($shape < 0.6)
			{
				@seen = @{ $dbh->selectcol_arrayref(
						'INSERT INTO soak_rows (client) VALUES (?) RETURNING id', undef, $no) };
			}
			elsif ($shape < 0.8)
			{
				@seen = @{ $dbh->selectcol_arrayref(
						'INSERT INTO soak_rows (id, client) SELECT id, ? FROM snowflake_nextval_batch(?) AS id RETURNING id',
						undef, $no, 2 + int(rand(19))) };
			}
			else
			{
				$dbh->begin_work;
				for (1 .. 2 + int(rand(4)))
				{
					push @seen, @{ $dbh->selectcol_arrayref(
							'INSERT INTO soak_rows (client) VALUES (?) RETURNING id', undef, $no) };
				}
				$dbh->commit;
			}
			$committed = 1;
			1;
		};
		my $t1 = now_us();
		print $ids "$name,$no,$call,$t0,$t1,$committed,$_\n" for @seen;
		next if $ok;
		my $state = $DBI::state || 'none';
		print $errors "$name,$no,$call,$t0,$t1,$state\n";
		if (!$dbh->ping)
		{
			$dbh = undef;
		}
		elsif (!$dbh->{AutoCommit})
		{
			eval { $dbh->rollback };
		}
	}
	return;
}

my $wall_start_ms = int(Time::HiRes::time() * 1000);
for my $s (@servers)
{
	for (1 .. $opt{clients})
	{
		my $no = @clients + 1;
		my $pid = fork();
		die "fork: $!" unless defined $pid;
		if ($pid == 0)
		{
			eval { client_main($s, $no) };
			print STDERR "client $no: $@" if $@;
			POSIX::_exit(0);    # not the END blocks, which stop the servers
		}
		push @clients, $pid;
	}
}

########################################################################
# The run

srand($seed);
$t_start = now_us();
my $t_faults_end = $t_start + $opt{seconds} * 1_000_000;
my $next_fault = $t_start + 1_000_000;
my $total_weight = 0;
$total_weight += $_->[1] for @FAULTS;

while (now_us() < $t_faults_end)
{
	run_due_actions();
	if (now_us() >= $next_fault)
	{
		my $pick = rand($total_weight);
		for my $fault (@FAULTS)
		{
			$pick -= $fault->[1];
			next if $pick >= 0;
			$fault->[2]->();
			last;
		}
		$next_fault = now_us() + int(uniform(1, 3) * 1_000_000);
	}
	reap_postgres_zombies();
	usleep(50_000);
}
my $t_end = now_us();

sub run_due_actions
{
	my $now = now_us();
	my @due = sort { $a->[0] <=> $b->[0] } grep { $_->[0] <= $now } @timeline;
	@timeline = grep { $_->[0] > $now } @timeline;
	$_->[1]->() for @due;
	return;
}

# Undo every fault: the scheduled undo actions run early (a drift runs
# until its clock is back), then every server must issue again.
my $undo_deadline = now_us() + 60_000_000;
while (grep { !defined $_->{end} } @fault_log)
{
	if (now_us() > $undo_deadline)
	{
		fail('every fault is undone within 60 s');
		diag('not undone: ' . join('; ', map { $_->{line} } grep { !defined $_->{end} } @fault_log));
		last;
	}
	$_->[0] = 0 for @timeline;
	run_due_actions();
	reap_postgres_zombies();
	usleep(50_000);
}
$etcd->start_all;
for my $s (@servers)
{
	set_offset($s, 0);
	start_server($s) if $s->{down};
}
my %recovered;
for my $s (@servers)
{
	$recovered{ $s->{name} } = $s->{node}->poll_query_until('postgres',
		q{SELECT snowflake_nextval() IS NOT NULL}, 't');
}
my $t_recovered = now_us();

open(my $stop, '>', $stop_file) or die "cannot write $stop_file: $!";
close($stop);
waitpid($_, 0) for @clients;
my $wall_end_ms = int(Time::HiRes::time() * 1000);

########################################################################
# The history, checked on a server of its own

my $checker = PostgreSQL::Test::Cluster->new('checker');
$checker->init;
$checker->append_conf('postgresql.conf', "log_statement = none\nwork_mem = '256MB'\n");
$checker->start;
$checker->safe_psql('postgres', q{
	CREATE TABLE seen (server text, client int, call int, t0 bigint, t1 bigint, committed bool, id bigint);
	CREATE TABLE failed (server text, client int, call int, t0 bigint, t1 bigint, sqlstate text);
	CREATE TABLE rows (server text, id bigint);
	CREATE TABLE faults (no int, kind text, target text, affects text[], t_start bigint, t_end bigint);});
for my $file (glob("$run_dir/ids.*.csv"))
{
	$checker->safe_psql('postgres', "COPY seen FROM '$file' (FORMAT csv)");
}
for my $file (glob("$run_dir/errors.*.csv"))
{
	$checker->safe_psql('postgres', "COPY failed FROM '$file' (FORMAT csv)");
}
for my $s (@servers)
{
	my $file = $s->{node}->basedir . '/soak_rows.copy';
	$s->{node}->safe_psql('postgres',
		"COPY (SELECT '$s->{name}', id FROM soak_rows) TO '$file'");
	$checker->safe_psql('postgres', "COPY rows FROM '$file'");
}
{
	my $no = 0;
	my $copy = join('', map {
			join("\t", ++$no, $_->{kind}, $_->{target}, '{' . join(',', @{ $_->{affects} }) . '}',
				$_->{start}, $_->{end}) . "\n"
	} @fault_log);
	my $file = "$run_dir/faults.copy";
	PostgreSQL::Test::Utils::append_to_file($file, $copy);
	$checker->safe_psql('postgres', "COPY faults FROM '$file'") if $copy ne '';
}

sub check
{
	my ($sql) = @_;
	return $checker->safe_psql('postgres', $sql);
}

check('ANALYZE');    # hash joins and sorts: no index pays for itself

# Issued IDs: a row and a client's sighting of one issuance share server and
# ID, so each (server, ID) counts as the larger of its rows and sightings.
check(q{
	CREATE TABLE issued AS
	SELECT id, sum(greatest(n_rows, n_seen)) AS times, array_agg(server) AS servers
	FROM (SELECT server, id, max(n_rows) AS n_rows, max(n_seen) AS n_seen
		FROM (SELECT server, id, count(*) AS n_rows, 0 AS n_seen FROM rows GROUP BY 1, 2
			UNION ALL
			SELECT server, id, 0, count(*) FROM seen GROUP BY 1, 2) u
		GROUP BY 1, 2) per_server
	GROUP BY id});
my $ids_checked = check('SELECT count(*) FROM issued');
my $duplicates = check('SELECT count(*) FROM issued WHERE times > 1');
my $duplicate_list = check(q{SELECT id || ' issued ' || times || ' times on ' || servers::text
	FROM issued WHERE times > 1 ORDER BY id LIMIT 10});

my $lost = check(q{SELECT count(*) FROM seen s WHERE committed
	AND NOT EXISTS (SELECT 1 FROM rows r WHERE r.server = s.server AND r.id = s.id)});

# Every ID's time, decoded with the layout (the first millisecond of its
# unit, since the epoch), lies within the clients' run by the real clock,
# give or take the clock faults (steps up to 5 s, drift up to 1.6 s) and a
# margin: a layout read the wrong way would be off by far more.
my $time_shift = $layout{zero_bits} + $layout{node_bits} + $layout{sequence_bits};
my $id_unix_ms = "$layout{epoch_unix_ms} + (id >> $time_shift) * $layout{unit_ms}";
my ($time_lo, $time_hi) = ($wall_start_ms - 10_000 - $layout{unit_ms}, $wall_end_ms + 10_000);
my $off_time = check(qq{SELECT count(*) FROM issued WHERE $id_unix_ms NOT BETWEEN $time_lo AND $time_hi});
my $off_time_list = check(qq{SELECT id || ' decodes to ' || to_timestamp(($id_unix_ms) / 1000.0)
	FROM issued WHERE $id_unix_ms NOT BETWEEN $time_lo AND $time_hi ORDER BY id LIMIT 10});

# Real-time order per node id: events "call starts" (k = 0) and "call
# returned" (k = 1) in time order; at each start, the highest ID of the
# calls already returned under that node id must be below the call's IDs.
my $node_shift = $layout{zero_bits} + ($layout{node_low} ? 0 : $layout{sequence_bits});
my $node_expr = "(id >> $node_shift) & ((1 << $layout{node_bits}) - 1)";
check(qq{
	CREATE TABLE calls AS
	SELECT server, client, call, $node_expr AS node, min(t0) AS t0, min(t1) AS t1,
		min(id) AS lo, max(id) AS hi, bool_and(committed) AS committed
	FROM seen GROUP BY 1, 2, 3, 4});
my $order_sql = q{
	WITH ev AS (
		SELECT node, t0 AS t, 0 AS k, lo, hi, server, client, call FROM calls
		UNION ALL
		SELECT node, t1, 1, lo, hi, server, client, call FROM calls),
	run AS (
		SELECT ev.*, max(CASE WHEN k = 1 THEN hi END) OVER (PARTITION BY node ORDER BY t, k
			ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS earlier_max
		FROM ev)
	SELECT %s FROM run WHERE k = 0 AND lo <= earlier_max %s};
my $out_of_order = check(sprintf($order_sql, 'count(*)', ''));
my $order_list = check(sprintf($order_sql,
		q{'node ' || node || ': ' || server || ' client ' || client || ' call ' || call
		  || ' got ' || lo || ' after ' || earlier_max || ' was issued'}, 'ORDER BY t LIMIT 10'));

# Availability: the share of server-seconds of the fault phase in which a
# server committed an insert; the longest stretch without a commit that
# overlaps a fault, per kind.
my $seconds = ($t_end - $t_start) / 1e6;
my $span = "t1 >= $t_start AND t1 < $t_end";
my %availability;
for my $group ([ 'all', [ map { $_->{name} } @servers ] ],
	[ 'etcd-leased', [ map { $_->{name} } grep { $_->{kind} eq 'etcd' } @servers ] ])
{
	my ($label, $names) = @$group;
	my $list = join(',', map { "'$_'" } @$names);
	my $busy = check(qq{SELECT count(DISTINCT (server, (t1 - $t_start) / 1000000)) FROM calls
		WHERE committed AND $span AND server IN ($list)});
	$availability{$label} = 100 * $busy / (@$names * int($seconds));
}
check(qq{
	CREATE TABLE gaps AS
	SELECT * FROM (
		SELECT server, t1 AS g_start,
			coalesce(lead(t1) OVER (PARTITION BY server ORDER BY t1), $t_recovered) AS g_end
		FROM (SELECT DISTINCT server, t1 FROM calls WHERE committed
			UNION SELECT name, $t_start FROM unnest(ARRAY[@{[ join(',', map { "'$_->{name}'" } @servers) ]}]) AS name) c) g
	WHERE g_end - g_start > 50000});    # only stretches over 50 ms: few, so the join below is cheap
my $per_kind = check(q{
	SELECT f.kind, count(DISTINCT f.no), coalesce(round(max(g.g_end - g.g_start) / 1e6, 2)::text, '< 0.05')
	FROM faults f LEFT JOIN gaps g ON g.server = ANY (f.affects)
		AND g.g_start <= f.t_end AND g.g_end >= f.t_start
	GROUP BY f.kind ORDER BY f.kind});
my $failures = check(q{SELECT coalesce(string_agg(sqlstate || ' ' || n, ', '), 'none')
	FROM (SELECT sqlstate, count(*) AS n FROM failed GROUP BY 1 ORDER BY 2 DESC) f});

my %kinds;
$kinds{ $_->{kind} }++ for @fault_log;
my $fault_summary = join(', ', map { "$_ $kinds{$_}" } sort keys %kinds) || 'none';
my $not_recovered = join(', ', grep { !$recovered{$_} } sort keys %recovered);
my $summary = sprintf(
	'soak seed %s, layout \'%s\', %d s: %s IDs checked, %d faults (%s), duplicates %s, lost %s, out of order %s, '
	  . 'availability %.1f%% (etcd-leased %.1f%%)%s',
	$seed, $layout, $seconds, $ids_checked, scalar(@fault_log), $fault_summary, $duplicates, $lost,
	$out_of_order, $availability{all}, $availability{'etcd-leased'},
	$not_recovered ? ", not issuing after the faults: $not_recovered" : '');

diag($summary);
diag("failed calls by SQLSTATE: $failures");
diag("longest stretch without a commit on an affected server, per fault kind (kind|faults|seconds):\n$per_kind");

if ($opt{report})
{
	open(my $fh, '>', $opt{report}) or die "cannot write $opt{report}: $!";
	print $fh "$summary\n\nfaults|count|longest stretch without a commit (s)\n$per_kind\n";
	print $fh "\nfailed calls by SQLSTATE: $failures\n";
	close($fh);
}

is($duplicates, 0, 'no ID issued twice') or diag($duplicate_list);
is($lost, 0, 'every ID a client saw committed is in its server\'s table');
is($out_of_order, 0, 'per node id, IDs follow the real-time order of the calls')
  or diag($order_list);
is($not_recovered, '', 'every server issues again once the faults are undone');
is($off_time, 0, "every ID's time, decoded with the layout, lies within the run")
  or diag("run from " . localtime($wall_start_ms / 1000) . " to " . localtime($wall_end_ms / 1000)
	  . ":\n$off_time_list");

# The faults kill whole servers, the postmaster first, so a process that
# died of a signal under a running postmaster, a failed assertion or a
# PANIC is the server's own crash (restart_after_crash is off in these
# servers: a crash stops the server, and a later fault could hide that).
my @crashes;
for my $s (@servers)
{
	my $log = PostgreSQL::Test::Utils::slurp_file($s->{node}->logfile);
	push @crashes, map { "$s->{name}: $_" }
	  grep { /terminated by signal|^TRAP:|PANIC:/ } split /\n/, $log;
}
is(scalar(@crashes), 0, 'no server process crashed') or diag(join("\n", @crashes[0 .. ($#crashes < 9 ? $#crashes : 9)]));
ok($ids_checked > 0, 'the clients were handed IDs');

if (!Test::More->builder->is_passing)
{
	diag("replay: $replay");
	diag("fault log:\n" . join("\n", map { $_->{line} } @fault_log));
}

done_testing();
