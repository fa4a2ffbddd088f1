# Helpers shared by the TAP suites in test/t: servers preloaded with
# snowflake, and servers whose clock the test can move, with libfaketime
# (client backends only) or with our own shim (every process of the server).
package SnowflakeTest;

use strict;
use warnings;

use Exporter 'import';
use Fcntl qw(O_WRONLY O_CREAT);
use File::Basename ();
use File::Temp ();
use IPC::Run ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes ();

our @EXPORT = qw(snowflake_node start_with_movable_clock set_clock_offset wait_until_ready
  start_with_server_clock set_server_clock query poll_until replace_file
  readme_blocks run_readme_sql);

# A new, initialised server with snowflake preloaded and the given extra
# postgresql.conf lines; further arguments go to init() (allows_streaming
# => 'logical' for a publisher).
sub snowflake_node
{
	my ($name, $conf, %init) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%init);
	$node->append_conf('postgresql.conf',
		"shared_preload_libraries = 'snowflake'\n" . ($conf // ''));
	return $node;
}

# The marks live in the extension's table in snowflake.database
# (postgres), which the DBA creates: create it if missing, then wait for
# the generator to be ready.
sub wait_until_ready
{
	my ($node) = @_;
	$node->safe_psql('postgres', 'CREATE EXTENSION IF NOT EXISTS snowflake');
	$node->poll_query_until('postgres',
		q{SELECT state = 'ready' FROM snowflake_status()})
	  or die 'the generator did not become ready';
	return;
}

# The output of $sql on $node, in database $db (default postgres); dies on
# an error.
sub query
{
	my ($node, $sql, $db) = @_;
	return $node->safe_psql($db // 'postgres', $sql);
}

# Poll $sql on $node in $db every 100 ms until it returns 't', for at most
# $seconds (default: PostgreSQL::Test's timeout); errors are retried.
# Returns whether it did.  For a condition the test asserts with a shorter
# deadline of its own than poll_query_until's.
sub poll_until
{
	my ($node, $db, $sql, $seconds) = @_;
	my $until = Time::HiRes::time() + ($seconds // $PostgreSQL::Test::Utils::timeout_default);
	while (1)
	{
		my ($ret, $out) = $node->psql($db, $sql);
		return 1 if $ret == 0 && $out eq 't';
		return 0 if Time::HiRes::time() > $until;
		Time::HiRes::usleep(100_000);
	}
}

# Replace $file by one holding $text: written beside it, then renamed over
# it, so that a reader sees the old content or the new, never half.
sub replace_file
{
	my ($file, $text) = @_;
	open(my $fh, '>', "$file.tmp") or die "cannot write $file.tmp: $!";
	print $fh $text or die "cannot write $file.tmp: $!";
	close($fh) or die "cannot write $file.tmp: $!";
	rename("$file.tmp", $file) or die "cannot rename $file.tmp to $file: $!";
	return;
}

sub libfaketime
{
	my @found = glob('/usr/lib/*/faketime/libfaketimeMT.so.1');
	die "libfaketime not found: install Debian's faketime package" unless @found;
	return $found[0];
}

# Start $node with a clock offset read from a file at every clock read, so
# set_clock_offset() steps the running server's clock.  Monotonic time stays
# real.  Returns the file's path.
sub start_with_movable_clock
{
	my ($node, $offset) = @_;
	my $file = $node->basedir . '/clock_offset';
	set_clock_offset($file, $offset // '+0');
	local $ENV{LD_PRELOAD} = libfaketime();
	local $ENV{FAKETIME_TIMESTAMP_FILE} = $file;
	local $ENV{FAKETIME_NO_CACHE} = '1';
	local $ENV{FAKETIME_DONT_FAKE_MONOTONIC} = '1';

	# Right after a kill -9 the old postmaster may not be gone yet.
	for my $try (1 .. 20)
	{
		return $file if $node->start(fail_ok => 1);
		# start() took the stale pid file for a running server: it is not.
		$node->{_pid} = undef;
		sleep 1;
	}
	die 'could not start ' . $node->name;
}

# Offsets are seconds with a sign ("-5", "+0", "-0.3"): an unsigned 0 is a
# parse error for libfaketime.
sub set_clock_offset
{
	my ($file, $offset) = @_;
	die "clock offset needs a sign: $offset" unless $offset =~ /^[+-]/;
	replace_file($file, "$offset\n");
	return;
}

# test/clock_shim.c, compiled once per test script.  libfaketime leaves the
# processes the postmaster forks from its SIGCHLD handler (our worker among
# them) on the real clock; the shim moves every process of the server.
my $clock_shim;

sub clock_shim
{
	return $clock_shim if defined $clock_shim;
	my $source = File::Basename::dirname(__FILE__) . '/../clock_shim.c';
	die "clock shim source not found: $source" unless -f $source;
	my $lib = PostgreSQL::Test::Utils::tempdir('clock_shim') . '/clock_shim.so';
	PostgreSQL::Test::Utils::system_or_bail('gcc', '-shared', '-fPIC', '-O2',
		'-Wall', '-Werror', '-o', $lib, $source, '-ldl');
	$clock_shim = $lib;
	return $lib;
}

sub server_clock_file
{
	my ($node) = @_;
	return $node->basedir . '/server_clock_offset';
}

# The shim maps the file and reads it at every clock call, so the 8 bytes
# are rewritten in place: a rename would leave running processes on the old
# inode, and a truncation would make them fault on the mapping.
sub write_server_clock
{
	my ($file, $flags, $offset_seconds) = @_;
	my $bytes = pack('q<', sprintf('%.0f', $offset_seconds * 1_000_000));
	sysopen(my $fh, $file, $flags) or die "cannot open $file: $!";
	my $written = syswrite($fh, $bytes, 8, 0);
	die "cannot write $file: " . ($! // 'short write')
	  unless defined $written && $written == 8;
	close($fh) or die "cannot close $file: $!";
	return;
}

# Start $node with every one of its processes (postmaster, backends,
# auxiliary processes, background workers) seeing CLOCK_REALTIME, its
# _COARSE variant, gettimeofday() and time() shifted by $offset_seconds
# (a float: -4, 0.5).  Monotonic time stays real.  Only this server gets the
# shim: a restart without this function runs on the real clock.
sub start_with_server_clock
{
	my ($node, $offset_seconds) = @_;
	my $file = server_clock_file($node);
	write_server_clock($file, O_WRONLY | O_CREAT, $offset_seconds // 0);
	local $ENV{LD_PRELOAD} = clock_shim();
	local $ENV{SNOWFLAKE_CLOCK_FILE} = $file;

	# Right after a kill -9 the old postmaster may not be gone yet.
	for my $try (1 .. 20)
	{
		return if $node->start(fail_ok => 1);
		# start() took the stale pid file for a running server: it is not.
		$node->{_pid} = undef;
		sleep 1;
	}
	die 'could not start ' . $node->name;
}

# Step the clock of a server started by start_with_server_clock(): every
# process sees the new offset at its next clock read.
sub set_server_clock
{
	my ($node, $offset_seconds) = @_;
	my $file = server_clock_file($node);
	die "$file missing: start the server with start_with_server_clock()"
	  unless -f $file;
	write_server_clock($file, O_WRONLY, $offset_seconds);
	return;
}

# readme_blocks(RECIPE): the text of every fenced block of README.md whose
# info string is "<language> RECIPE" (```sql pglogical), in README order.
# These are the recipes that need servers of their own; test/readme.sh
# skips them and checks that a TAP suite names each.  Fences count only at
# the start of a line, as in test/readme.sh.
sub readme_blocks
{
	my ($recipe) = @_;
	my $readme = File::Basename::dirname(__FILE__) . '/../../README.md';
	open(my $fh, '<', $readme) or die "cannot read $readme: $!";
	my (@blocks, $inside, $mine);
	while (my $line = <$fh>)
	{
		if (!$inside)
		{
			next unless $line =~ /^```(\S*)(?:[ \t]+(\S+))?/;
			$inside = 1;
			$mine = defined $2 && $2 eq $recipe;
			push @blocks, '' if $mine;
		}
		elsif ($line =~ /^```[ \t]*$/)
		{
			$inside = 0;
			$mine = 0;
		}
		elsif ($mine)
		{
			$blocks[-1] .= $line;
		}
	}
	close($fh);
	die "README.md has no block of recipe $recipe" unless @blocks;
	return @blocks;
}

# run_readme_sql(NODE, SQL, VARS, FLAGS): SQL (a README block, verbatim)
# through psql -X -v ON_ERROR_STOP=1 in database postgres of NODE, each
# key of the hash VARS given as a psql variable, FLAGS (an array ref, for
# example ['-At']) added.  Returns the output; dies with the block and
# psql's error if it fails.
sub run_readme_sql
{
	my ($node, $sql, $vars, $flags) = @_;
	my @cmd = ('psql', '-X', '-v', 'ON_ERROR_STOP=1', @{ $flags // [] },
		'-d', $node->connstr('postgres'), '-f', '-');
	push @cmd, '-v', "$_=$vars->{$_}" for sort keys %{ $vars // {} };
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '<', \$sql, '>', \$out, '2>', \$err)
	  or die "README block failed on " . $node->name . ":\n$sql\n$err";
	return $out;
}

1;
