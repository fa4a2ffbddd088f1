# Helpers shared by the TAP suites in test/t: servers preloaded with
# snowflake, and servers whose clock the test can move with libfaketime.
package SnowflakeTest;

use strict;
use warnings;

use Exporter 'import';
use File::Temp ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

our @EXPORT = qw(snowflake_node start_with_movable_clock set_clock_offset wait_until_ready);

# A new, initialised server with snowflake preloaded and the given extra
# postgresql.conf lines.
sub snowflake_node
{
	my ($name, $conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
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
# parse error for libfaketime.  Written by rename so no reader sees half.
sub set_clock_offset
{
	my ($file, $offset) = @_;
	die "clock offset needs a sign: $offset" unless $offset =~ /^[+-]/;
	open(my $fh, '>', "$file.tmp") or die "cannot write $file.tmp: $!";
	print $fh "$offset\n";
	close($fh);
	rename("$file.tmp", $file) or die "cannot rename to $file: $!";
	return;
}

1;
