# snowflake.layout on real servers.
#
# (1) Each preset (snowflake, twitter, instagram, sonyflake) and two custom
# layouts (6 zero bits with an explicit epoch; a 1 s unit), each on a server
# of its own with a node id at or near the layout's largest, under
# concurrent clients taking single IDs and batches: no ID twice, each
# session's IDs strictly increasing, the node id in every ID, the STABLE
# decoders agreeing with the IMMUTABLE ones given the epoch and layout this
# test expects, every timestamp a whole unit from the epoch, never after the
# clock read right after the call and less than a unit before the clock
# read before it, every unit filled from sequence 0 without a gap, order by
# id the same as order by (timestamp, sequence), the zero bits zero.
# (2) A 1 s unit across restarts (the whole-server clock shim moves the
# clock): a clean stop records the first millisecond of the last second; a
# restart within that second waits for the next; the clock behind the mark
# by less than reserve + max_clock_rollback is waited out, by more refused
# (55000) until the clock passes the mark; a crash restart issues above.
# With 16 IDs a second and 3 sessions, the 17th ID of a second waits for
# the next one.
# (3) A changed layout, and a preset with another epoch, are refused naming
# both (22023), by the mark table and by the mark file alone; set back, or
# spelt out as fields, IDs continue above every earlier one.
# (4) Invalid layouts and node ids that do not fit are refused at start,
# naming the setting and the rule; a preset's epoch is snowflake.epoch's
# default and an explicit one wins; SHOW gives the canonical custom form.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();
use lib 'test/lib';
use SnowflakeTest;

my $started = Time::HiRes::time();

# The layouts, with what the test expects of each written out here rather
# than read from the server: epoch, unit, zero bits.
my @layouts = (
	{
		name => 'snowflake',
		layout => 'snowflake',
		epoch => '2024-01-01 00:00:00+00',
		node => 1023,
		unit_ms => 1,
		zero_bits => 0,
	},
	{
		name => 'twitter',
		layout => 'twitter',
		epoch => '2010-11-04 01:42:54.657+00',
		node => 1000,
		unit_ms => 1,
		zero_bits => 0,
	},
	{
		name => 'instagram',
		layout => 'instagram',
		epoch => '2011-08-24 21:07:01.721+00',
		node => 8191,
		unit_ms => 1,
		zero_bits => 0,
	},
	{
		name => 'sonyflake',
		layout => 'sonyflake',
		epoch => '2014-09-01 00:00:00+00',
		node => 65535,
		unit_ms => 10,
		zero_bits => 0,
	},
	{
		# 64 bits in all: 40 usable bits of ms, from an explicit epoch.
		name => 'zero',
		layout => 'time 41, node 5, sequence 12, zero 6, unit 1ms',
		epoch => '2020-01-01 00:00:00+00',
		conf => "snowflake.epoch = '2020-01-01 00:00:00+00'\n",
		node => 31,
		unit_ms => 1,
		zero_bits => 6,
	},
	{
		name => 'seconds',
		layout => 'time 32, node 11, sequence 20, unit 1s',
		epoch => '2024-01-01 00:00:00+00',
		node => 2047,
		unit_ms => 1000,
		zero_bits => 0,
		# Part 2 moves this server's clock: the shim moves every process.
		shim => 1,
		conf => "snowflake.reserve = 1000\nsnowflake.max_clock_rollback = 5000\n",
	},
);
my %spec = map { $_->{name} => $_ } @layouts;

# Each ID with the clock read just before and just after the call that made
# it, the session and the order the session took it in (call * 10^6 + its
# place in a batch).
my $setup_sql = q{
	CREATE TABLE ids (
		id bigint NOT NULL, pid int NOT NULL, ord bigint NOT NULL,
		before timestamptz NOT NULL, after timestamptz NOT NULL, tag text NOT NULL);
	CREATE SEQUENCE calls;
	CREATE FUNCTION take_one(tag text DEFAULT 'load') RETURNS bigint
	LANGUAGE plpgsql AS $$
	DECLARE
		b timestamptz;
		i bigint;
		a timestamptz;
	BEGIN
		b := clock_timestamp();
		i := snowflake_nextval();
		a := clock_timestamp();
		INSERT INTO ids VALUES (i, pg_backend_pid(), nextval('calls') * 1000000, b, a, tag);
		RETURN i;
	END $$;
	CREATE FUNCTION take_batch(n int, tag text DEFAULT 'load') RETURNS void
	LANGUAGE plpgsql AS $$
	DECLARE
		b timestamptz;
		got bigint[];
		a timestamptz;
		call bigint;
	BEGIN
		b := clock_timestamp();
		got := ARRAY(SELECT x FROM snowflake_nextval_batch(n) WITH ORDINALITY t(x, o) ORDER BY o);
		a := clock_timestamp();
		call := nextval('calls');
		INSERT INTO ids SELECT x, pg_backend_pid(), call * 1000000 + o, b, a, tag
		FROM unnest(got) WITH ORDINALITY u(x, o);
	END $$;
};

# A server preloading snowflake with the given postgresql.conf lines.  One
# initdb for all: each server starts from a copy of its data directory.
my $template;
sub layout_node
{
	my ($name, $conf) = @_;
	if (!defined $template)
	{
		$template = PostgreSQL::Test::Cluster->new('layout_template');
		$template->init;
		rename($template->data_dir, $template->backup_dir . '/initdb')
		  or die "cannot move the template's data directory: $!";
	}
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init_from_backup($template, 'initdb');
	$node->append_conf('postgresql.conf', "shared_preload_libraries = 'snowflake'\n$conf");
	return $node;
}

sub conf_of
{
	my ($spec) = @_;
	return "snowflake.layout = '$spec->{layout}'\nsnowflake.node_id = $spec->{node}\n"
	  . "timezone = 'UTC'\n" . ($spec->{conf} // '');
}

sub start_node
{
	my ($node, $spec) = @_;
	if ($spec->{shim})
	{
		start_with_server_clock($node, 0);
	}
	else
	{
		$node->start;
	}
	return;
}

# Restart $node after appending $conf (later lines win); returns the log
# offset of the new start.
sub restart_with
{
	my ($node, $spec, $conf) = @_;
	$node->stop('fast') if defined $node->{_pid};
	$node->append_conf('postgresql.conf', $conf) if defined $conf;
	my $offset = -s $node->logfile;
	start_node($node, $spec);
	return $offset;
}

sub nextval_error
{
	my ($node) = @_;
	my ($ret, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nSELECT snowflake_nextval()");
	return $ret == 0 ? '' : $err;
}

# The decoded fields of the rows of ids matching $where, by the IMMUTABLE
# decoders with the layout and epoch this test expects.
sub decoded
{
	my ($spec, $where) = @_;
	my ($e, $l) = ($spec->{epoch}, $spec->{layout});
	return qq{(SELECT *, snowflake_timestamp(id, '$e', '$l') AS ts,
		snowflake_sequence(id, '$l') AS seq, snowflake_node(id, '$l') AS nd
		FROM ids WHERE $where) d};
}

# The checks of part (1) on the rows matching $where (a session is a pid
# within one tag), in one psql call: the rows are decoded once into d.
sub check_ids
{
	my ($node, $spec, $where, $what) = @_;
	my ($e, $l, $n) = ($spec->{epoch}, $spec->{layout}, $spec->{node});
	my $unit = "interval '$spec->{unit_ms} ms'";
	my @checks = (
		'no ID appears twice' => 'SELECT count(*) - count(DISTINCT id) FROM d',
		"each session's IDs strictly increase in the order it took them" => q{
			SELECT count(*) FROM (SELECT id, lag(id) OVER (PARTITION BY tag, pid ORDER BY ord) AS prev
				FROM d) s WHERE id <= prev},
		"every ID carries node id $n" =>
		  "SELECT count(*) FROM d WHERE nd <> $n OR snowflake_node(id) <> $n",
		'the STABLE decoders agree with the IMMUTABLE ones given epoch and layout' => qq{
			SELECT count(*) FROM d WHERE snowflake_timestamp(id) IS DISTINCT FROM ts
				OR snowflake_sequence(id) <> seq
				OR snowflake_decode(id) IS DISTINCT FROM snowflake_decode(id, '$e', '$l')},
		'no timestamp is after the clock read right after its ID was made' =>
		  'SELECT count(*) FROM d WHERE ts > after',
		'no timestamp is a unit or more before the clock read before the call' =>
		  "SELECT count(*) FROM d WHERE ts <= before - $unit",
		"every timestamp is a whole unit ($spec->{unit_ms} ms) from the epoch" => qq{
			SELECT count(*) FROM d
			WHERE (extract(epoch FROM ts - timestamptz '$e') * 1000) % $spec->{unit_ms} <> 0},
		"the low $spec->{zero_bits} bits are zero" =>
		  'SELECT count(*) FROM d WHERE id % ' . (2**$spec->{zero_bits}) . ' <> 0',
		'each ID is composed again from its fields' => qq{
			SELECT count(*) FROM d WHERE snowflake_from_timestamp(ts, nd, seq, '$e', '$l') <> id},
		'order by id is order by (timestamp, sequence)' => q{
			SELECT count(*) FROM (SELECT row_number() OVER (ORDER BY id) AS by_id,
				row_number() OVER (ORDER BY ts, seq) AS by_time FROM d) s
			WHERE by_id <> by_time},
		'each unit is filled from sequence 0 without a gap' => q{
			SELECT count(*) FROM (SELECT ts, min(seq) AS low, max(seq) AS high, count(*) AS n
				FROM d GROUP BY ts) u WHERE low <> 0 OR high <> n - 1});
	my (@names, @queries);
	while (my ($name, $sql) = splice(@checks, 0, 2))
	{
		push @names, $name;
		push @queries, "($sql)";
	}
	my @counts = split /\|/,
	  query($node, 'CREATE TEMP TABLE d AS SELECT * FROM ' . decoded($spec, $where) . ";\n"
		  . 'SELECT ' . join(', ', @queries));
	is($counts[$_] // 'missing', 0, "$what: $names[$_]") for 0 .. $#names;
	return;
}

my $dir = PostgreSQL::Test::Utils::tempdir;
sub script
{
	my ($name, $sql) = @_;
	open(my $fh, '>', "$dir/$name") or die "cannot write $dir/$name: $!";
	print $fh $sql;
	close($fh) or die;
	return "$dir/$name";
}
my $one = script('one.sql', "SELECT take_one();\n");
my $batch = script('batch.sql', "SELECT take_batch(500);\n");
my ($single_clients, $single_calls, $batch_clients, $batch_calls) = (3, 300, 2, 20);

# (1) A server per layout, started one after the other, then readied and
# loaded all at once.
my %node;
for my $spec (@layouts)
{
	my $node = layout_node("layout_$spec->{name}", conf_of($spec));
	start_node($node, $spec);
	$node{ $spec->{name} } = $node;
}
query($_, "CREATE EXTENSION snowflake;\n$setup_sql") for values %node;
wait_until_ready($_) for values %node;
diag(sprintf('%d servers ready after %.1f s', scalar(@layouts), Time::HiRes::time() - $started));

my %load;
my $load_started = Time::HiRes::time();
for my $spec (@layouts)
{
	my $node = $node{ $spec->{name} };
	my @connect = ('-h', $node->host, '-p', $node->port, 'postgres');
	my %run = (out => '', err => '', bout => '', berr => '');
	$run{single} = IPC::Run::start(
		[ 'pgbench', '-n', '-c', $single_clients, '-t', $single_calls, '-f', $one, @connect ],
		'>', \$run{out}, '2>', \$run{err});
	$run{batch} = IPC::Run::start(
		[ 'pgbench', '-n', '-c', $batch_clients, '-t', $batch_calls, '-f', $batch, @connect ],
		'>', \$run{bout}, '2>', \$run{berr});
	$load{ $spec->{name} } = \%run;
}
my $expected = $single_clients * $single_calls + $batch_clients * $batch_calls * 500;
for my $spec (@layouts)
{
	my ($name, $run) = ($spec->{name}, $load{ $spec->{name} });
	ok($run->{single}->finish, "$name: single-ID clients finished without error")
	  or diag($run->{err});
	ok($run->{batch}->finish, "$name: batch clients finished without error")
	  or diag($run->{berr});
}
diag(sprintf('load of %d IDs on each of %d servers at once: %.1f s',
		$expected, scalar(@layouts), Time::HiRes::time() - $load_started));

for my $spec (@layouts)
{
	my ($name, $node) = ($spec->{name}, $node{ $spec->{name} });
	is(query($node, 'SELECT count(*) FROM ids'), $expected, "$name: every call made its IDs");
	is(query($node, 'SELECT count(DISTINCT pid) FROM ids'),
		$single_clients + $batch_clients, "$name: IDs came from every session");
	check_ids($node, $spec, 'true', $name);
	is(query($node, 'SELECT ids_generated FROM snowflake_status()'), $expected,
		"$name: status counts every ID issued");
	diag("$name: "
		  . query($node, q{SELECT 'units ' || count(*) || ', most IDs in one unit ' || max(n)
			FROM (SELECT count(*) AS n FROM ids GROUP BY snowflake_timestamp(id)) u}));
}
for my $name (grep { $_ ne 'snowflake' && $_ ne 'seconds' } keys %node)
{
	$node{$name}->stop;
}

# (2) A 1 s unit across restarts, on the 'seconds' server ('time 32, node
# 11, sequence 20, unit 1s'; reserve 1 s, max_clock_rollback 5 s).
my $sec = $node{seconds};
my $ss = $spec{seconds};

# Take $count IDs (default 1) one call each with tag $tag, waiting up to
# 30 s for the clock; returns psql's result.
sub take
{
	my ($node, $tag, $count) = @_;
	return $node->psql('postgres',
		"SET snowflake.wait_timeout = '30s';\nSELECT count(take_one('$tag')) FROM generate_series(1, "
		  . ($count // 1) . ')');
}

# The rows of $tag: above every ID of the other tags, in a later unit than
# all of them, and never ahead of the clock.
sub above_earlier
{
	my ($node, $spec, $tag, $what) = @_;
	my $rows = decoded($spec, "tag = '$tag'");
	my $old = decoded($spec, "tag <> '$tag'");
	cmp_ok(query($node, "SELECT count(*) FROM ids WHERE tag = '$tag'"), '>', 0,
		"$what: IDs were issued");
	is(query($node, "SELECT count(*) FROM $rows WHERE id <= (SELECT max(id) FROM ids WHERE tag <> '$tag')"),
		0, "$what: every ID is above every earlier one");
	is(query($node, "SELECT count(*) FROM $rows WHERE ts <= (SELECT max(ts) FROM $old)"),
		0, "$what: and in a later unit than any of them");
	is(query($node, "SELECT count(*) FROM $rows WHERE ts > after"), 0,
		"$what: no timestamp is after the clock read right after its ID");
	return;
}

# The mark of node $n in snowflake.marks, in seconds since 1970.
sub mark_in_file
{
	my ($node, $n) = @_;
	my $text = slurp_file($node->data_dir . '/snowflake.marks');
	$text =~ /^$n (\d+) /m or die "no mark of node $n in snowflake.marks:\n$text";
	return $1 / 1000;
}

sub last_second
{
	my ($node, $spec) = @_;
	return query($node, 'SELECT extract(epoch FROM max(ts)) FROM ' . decoded($spec, 'true'));
}

# A clean restart within the second of the last ID (the restarted server's
# clock is set to 0.2 s into it): it does not continue that second, but
# waits for the next.
my ($ret, $out, $err) = take($sec, 'before_restart', 3);
is($ret, 0, '1 s unit: IDs right before a restart') or diag($err);
my $last = last_second($sec, $ss);
$sec->stop('fast');
my $mark = mark_in_file($sec, 2047);
cmp_ok($mark, '==', $last, 'a clean stop records the first millisecond of the last ID\'s second');
start_with_server_clock($sec, $mark + 0.2 - Time::HiRes::time());
($ret, $out, $err) = take($sec, 'clean_restart', 3);
is($ret, 0, '1 s unit: a clean restart issues IDs') or diag($err);
above_earlier($sec, $ss, 'clean_restart', '1 s unit, clean restart');
diag(sprintf('the restarted server\'s first call began %.2f s into the last second before it',
		query($sec, q{SELECT extract(epoch FROM min(before)) FROM ids WHERE tag = 'clean_restart'}) - $last));

# Restarted with the clock 4 s behind the mark, less than reserve +
# max_clock_rollback (6 s): the first call waits, then issues above.
$last = last_second($sec, $ss);
$sec->stop('fast');
$mark = mark_in_file($sec, 2047);
cmp_ok($mark, '==', $last, 'the mark is again the first millisecond of the last second');
start_with_server_clock($sec, $mark - Time::HiRes::time() - 4);
($ret, $out, $err) = take($sec, 'behind_within');
is($ret, 0, '4 s behind the mark: nextval waits, then issues') or diag($err);
cmp_ok(query($sec, q{SELECT extract(epoch FROM before) FROM ids WHERE tag = 'behind_within'}),
	'<', $mark, 'the call began with the clock behind the mark');
above_earlier($sec, $ss, 'behind_within', '4 s behind the mark');

# Restarted 20 s behind: refused at once, and resumes once the clock passes.
$sec->stop('fast');
$mark = mark_in_file($sec, 2047);
start_with_server_clock($sec, $mark - Time::HiRes::time() - 20);
ok(poll_until($sec, 'postgres', q{SELECT state = 'clock_behind' FROM snowflake_status()}, 30),
	'20 s behind the mark: status says clock_behind');
$err = nextval_error($sec);
like($err, qr/55000: the clock is \d+ ms behind the high-water mark of node 2047/,
	'nextval refuses with SQLSTATE 55000, naming the node');
my ($behind) = $err =~ /the clock is (\d+) ms behind/;
ok(defined $behind && $behind > 6000, 'the gap reported is more than reserve + max_clock_rollback')
  or diag($err);
my $offset_now = $mark - Time::HiRes::time() + 1;
set_server_clock($sec, $offset_now);
ok(poll_until($sec, 'postgres', q{SELECT state = 'ready' FROM snowflake_status()}, 30),
	'once the clock passes the mark, the server is ready again');
($ret, $out, $err) = take($sec, 'behind_far', 3);
is($ret, 0, 'and issues') or diag($err);
above_earlier($sec, $ss, 'behind_far', '20 s behind, then the clock passed');

# A crash: the mark left is the reservation, at or above the last ID's
# second; the restarted server waits for it and issues above.
($ret, $out, $err) = take($sec, 'before_crash', 3);
is($ret, 0, '1 s unit: IDs before a crash') or diag($err);
$last = last_second($sec, $ss);
$sec->kill9;
cmp_ok(mark_in_file($sec, 2047), '>=', $last, 'after a crash the mark is at or above the last ID\'s second');
start_with_server_clock($sec, $offset_now);
($ret, $out, $err) = take($sec, 'after_crash', 3);
is($ret, 0, '1 s unit: the server restarted after a crash issues') or diag($err);
above_earlier($sec, $ss, 'after_crash', '1 s unit, after a crash');
is(query($sec, 'SELECT count(*) - count(DISTINCT id) FROM ids'), 0,
	'1 s unit: no ID repeats across the restarts');
$sec->stop;

# 16 IDs a second ('time 32, node 11, sequence 4, unit 1s'), 3 sessions
# taking 16 each at once: 48 IDs take at least three seconds, the seconds
# between the first and the last each get exactly 16, and a call that finds
# its second full waits for the next one rather than issuing ahead of the
# clock.
my $l4 = 'time 32, node 11, sequence 4, unit 1s';
my $bs = {
	name => 'burst',
	layout => $l4,
	epoch => '2024-01-01 00:00:00+00',
	node => 2047,
	unit_ms => 1000,
	zero_bits => 0
};
my $burst = layout_node('layout_burst', conf_of($bs));
$burst->start;
query($burst, "CREATE EXTENSION snowflake;\n$setup_sql");
wait_until_ready($burst);
my $burst_started = Time::HiRes::time();
my ($bout, $berr) = ('', '');
ok( IPC::Run::run(
		[
			'pgbench', '-n', '-c', '3', '-t', '16', '-f', $one,
			'-h', $burst->host, '-p', $burst->port, 'postgres'
		],
		'>', \$bout, '2>', \$berr),
	'16 IDs a second: 3 sessions took 16 IDs each') or diag($berr);
is(query($burst, 'SELECT count(DISTINCT pid) || \' \' || count(*) FROM ids'), '3 48',
	'16 IDs a second: 48 IDs from 3 sessions');
diag(sprintf('48 IDs at 16 a second took %.1f s', Time::HiRes::time() - $burst_started));
my $seconds = decoded($bs, "tag = 'load'");
cmp_ok(query($burst, "SELECT count(DISTINCT ts) FROM $seconds"), '>=', 3,
	'48 IDs span at least three seconds');
is( query(
		$burst, qq{SELECT count(*) FROM (SELECT ts, count(*) AS n FROM $seconds GROUP BY ts) s
		WHERE ts > (SELECT min(ts) FROM $seconds) AND ts < (SELECT max(ts) FROM $seconds) AND n <> 16}),
	0,
	'every second between the first and the last has all 16 IDs');
cmp_ok(query($burst, "SELECT count(*) FROM $seconds WHERE before < ts"), '>', 0,
	'calls that found their second full got an ID of a second that began after they were made');
# A batch larger than a second holds is taken a second at a time.
query($burst, "SELECT take_batch(20, 'batch')");
cmp_ok(query($burst, 'SELECT count(DISTINCT ts) FROM ' . decoded($bs, "tag = 'batch'")), '>=', 2,
	'a batch of 20 IDs at 16 a second spans at least two seconds');
check_ids($burst, $bs, 'true', '16 IDs a second');
cmp_ok(query($burst, 'SELECT sequence_exhaustions FROM snowflake_status()'), '>', 0,
	'status counts the full seconds');

# (3) A changed layout: the table names the layout the marks were written
# under, and so does the mark file when the table has no rows left.
my $l20 = 'time 32, node 11, sequence 20, unit 1s';
my $offset = restart_with($burst, $bs, "snowflake.layout = '$l20'\n");
ok(poll_until($burst, 'postgres', q{SELECT state = 'error' FROM snowflake_status()}, 30),
	'a changed layout: status says error');
my $changed = qr/snowflake.layout was changed: the high-water table holds marks written under layout "\Q$l4\E", but the server runs with "\Q$l20\E"/;
like(query($burst, 'SELECT last_error FROM snowflake_status()'), $changed,
	'last_error names the layout of the marks and the configured one');
$err = nextval_error($burst);
like($err, qr/22023: $changed/, 'nextval refuses with SQLSTATE 22023, naming both layouts');
ok($burst->log_contains($changed, $offset), 'the log says so too');

# The rows removed by a superuser, on a server issuing nothing (no node id).
restart_with($burst, $bs, "snowflake.layout = '$l4'\nsnowflake.node_id = -1\n");
query($burst, 'DELETE FROM snowflake_high_water');
$offset = restart_with($burst, $bs, "snowflake.layout = '$l20'\nsnowflake.node_id = 2047\n");
ok(poll_until($burst, 'postgres', q{SELECT state = 'error' FROM snowflake_status()}, 30),
	'with the table emptied: a changed layout is still refused');
my $file_changed = qr/snowflake.layout was changed: the mark file snowflake.marks holds marks written under layout "\Q$l4\E", but the server runs with "\Q$l20\E"/;
like(query($burst, 'SELECT last_error FROM snowflake_status()'), $file_changed,
	'by the mark file, naming both layouts');
like(nextval_error($burst), qr/22023: $file_changed/, 'and nextval refuses');

# Set back: IDs continue above every earlier one (the mark file's mark).
restart_with($burst, $bs, "snowflake.layout = '$l4'\n");
($ret, $out, $err) = take($burst, 'set_back', 3);
is($ret, 0, 'the layout set back: IDs are issued again') or diag($err);
above_earlier($burst, $bs, 'set_back', 'layout set back');
$burst->stop;

# A preset with another epoch: twitter has the bits of snowflake.
my $sf = $node{snowflake};
my $sfs = $spec{snowflake};
$offset = restart_with($sf, $sfs, "snowflake.layout = 'twitter'\n");
ok(poll_until($sf, 'postgres', q{SELECT state = 'error' FROM snowflake_status()}, 30),
	'snowflake preset, then twitter: status says error');
my $epoch_changed = qr/snowflake.epoch was changed: the high-water table holds marks written under epoch 2024-01-01 00:00:00\+00, but the server runs with 2010-11-04 01:42:54.657\+00/;
like(query($sf, 'SELECT last_error FROM snowflake_status()'), $epoch_changed,
	'last_error names both epochs');
like(nextval_error($sf), qr/22023: $epoch_changed/, 'nextval refuses with SQLSTATE 22023');
# The same layout and epoch spelt out is no change.
restart_with($sf, $sfs,
	"snowflake.layout = 'time 41, node 10, sequence 12, unit 1ms'\nsnowflake.epoch = '2024-01-01 00:00:00+00'\n");
($ret, $out, $err) = take($sf, 'spelt_out', 3);
is($ret, 0, 'the snowflake preset spelt out as fields, with its epoch, issues') or diag($err);
above_earlier($sf, $sfs, 'spelt_out', 'the preset spelt out');
$sf->stop;

# (4) Settings at start, on a server of its own.
my $set = layout_node('layout_settings', "timezone = 'UTC'\nsnowflake.node_id = 1\n");
my $sets = { shim => 0 };
for my $case (
	[ 'time 20, node 10, sequence 12', qr/the time field covers [\d.]+ years, less than the 10 a layout must cover/ ],
	[ 'time 41, node 17, sequence 5', qr/node must have 1 to 16 bits, not 17/ ],
	[ 'time 45, node 10, sequence 12', qr/the fields take 67 bits, more than the 64 of an ID/ ],
	[ 'sequence 12, time 41, node 10', qr/time must be the first field: IDs sort by time/ ],
	[ 'unit 2ms', qr/unit must be 1ms, 10ms or 1s, not "2ms"/ ])
{
	my ($bad, $rule) = @$case;
	$offset = restart_with($set, $sets, "snowflake.layout = '$bad'\n");
	query($set, 'CREATE EXTENSION IF NOT EXISTS snowflake');
	ok($set->log_contains(qr/WARNING:  invalid value for parameter "snowflake.layout": "\Q$bad\E"/, $offset),
		"layout '$bad': the log has a WARNING naming the setting");
	ok($set->log_contains(qr/DETAIL:  snowflake.layout: $rule/, $offset),
		"layout '$bad': and the rule broken");
	like(nextval_error($set),
		qr/22023: snowflake is not issuing IDs because the configured value of snowflake.layout was rejected at server start/,
		"layout '$bad': nextval refuses, naming snowflake.layout");
	is(query($set, 'SELECT state FROM snowflake_status()'), 'error', "layout '$bad': status says error");
}
($ret, $out, $err) = $set->psql('postgres', 'SELECT snowflake_timestamp(0)');
like($err, qr/the configured value of snowflake.layout was rejected at server start/,
	'decoding by the server\'s layout refuses too');
is(query($set, q{SELECT snowflake_timestamp(8388608, '2024-01-01+00', 'instagram')}),
	'2024-01-01 00:00:00.001+00', 'decoding with an explicit layout still works');

for my $case ([ 'snowflake', 2000, 1023 ], [ 'instagram', 8192, 8191 ], [ $l4, 2048, 2047 ])
{
	my ($layout, $n, $max) = @$case;
	$offset = restart_with($set, $sets, "snowflake.layout = '$layout'\nsnowflake.node_id = $n\n");
	ok($set->log_contains(qr/WARNING:  snowflake.node_id $n does not fit snowflake.layout/, $offset),
		"node id $n with layout '$layout': the log has a WARNING naming snowflake.node_id");
	ok($set->log_contains(qr/DETAIL:  Layout "[^"]+" has node ids 0 to $max\./, $offset),
		"and the layout's node ids");
	like(nextval_error($set),
		qr/22023: snowflake is not issuing IDs because the configured value of snowflake.node_id was rejected/,
		"node id $n with layout '$layout': nextval refuses, naming snowflake.node_id");
}

# A preset's epoch is the default; an explicit one wins.  No node id: these
# start no generator, which would record the layout.
for my $case (
	[ 'sonyflake', '', '2014-09-01 00:00:00+00' ],
	[ 'instagram', '', '2011-08-24 21:07:01.721+00' ],
	[ 'twitter', '', '2010-11-04 01:42:54.657+00' ],
	[ 'snowflake', '', '2024-01-01 00:00:00+00' ],
	[ 'sonyflake', "snowflake.epoch = '2020-06-01 00:00:00+00'\n", '2020-06-01 00:00:00+00' ])
{
	my ($layout, $epoch_conf, $epoch) = @$case;
	restart_with($set, $sets, "snowflake.layout = '$layout'\nsnowflake.node_id = -1\n$epoch_conf");
	my $how = $epoch_conf ? 'with an explicit epoch' : 'without snowflake.epoch';
	is(query($set, 'SHOW snowflake.epoch'), $epoch, "$layout $how: SHOW snowflake.epoch gives $epoch");
	is(query($set, 'SELECT snowflake_timestamp(0)'), $epoch, "$layout $how: IDs count from $epoch");
	# Remove the explicit epoch for the next case.
	$set->append_conf('postgresql.conf', "snowflake.epoch = '2024-01-01 00:00:00+00'\n") if $epoch_conf;
}

# The custom form is shown in its canonical spelling.
restart_with($set, $sets, "snowflake.layout = ' TIME 41 ,Node 5, sequence 12,zero 6'\n");
is(query($set, 'SHOW snowflake.layout'), 'time 41, node 5, sequence 12, zero 6, unit 1ms',
	'SHOW gives a custom layout in its canonical form');
$set->stop;

ok(!$_->log_contains(qr/server process .* was terminated by signal|TRAP:|PANIC:/),
	$_->name . ': no server process crashed')
  for (values(%node), $burst, $set);
diag(sprintf('024_layouts took %.1f s', Time::HiRes::time() - $started));
done_testing();
