# Keys of other generators, read and continued (README: "Moving from
# Instagram's next_id() or Sonyflake"), the README's blocks run as written.
#
# Instagram: a next_id() written here the way Instagram described theirs (a
# PL/pgSQL function: milliseconds since 2011-08-24 21:07:01.721 UTC << 23 |
# shard id << 10 | nextval() % 1024) makes keys on shards 5 and 8191; each
# decodes to the millisecond it was made, its shard and the sequence value
# it took, with the IMMUTABLE snowflake_decode(id, epoch, 'instagram') and
# with the STABLE snowflake_decode(id) of a server with snowflake.layout =
# 'instagram'.  That server, node id 5, converts a table of shard 5: every
# new key is above every old one and the keys sort as they were made.  A
# server left on the default layout refuses the table, and so does the
# right one for a key made by a next_id() whose clock ran 30 s ahead.
#
# Sonyflake: the npm package "sonyflake" (installed from test/interop/ with
# npm ci) composes Sonyflake's bits; the package counts 1 ms units, so for
# Sonyflake's layout it is given the time and epoch in 10 ms units.  Its own
# decompose() and snowflake_decode(id, '2014-09-01+00', 'sonyflake') agree on
# every key, and with the time, machine id and sequence asked for; keys from
# its nextId() as it ships decode in the custom layout 'time 39, sequence 8,
# node 16, unit 1ms'.  A server with snowflake.layout = 'sonyflake', node id
# = the machine id, converts a table of Sonyflake keys of three machines
# made over 500 days; one with a later epoch refuses it, and so does the
# right one for a key 30 s ahead.
use strict;
use warnings;

use File::Copy ();
use IPC::Run ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test/lib';
use SnowflakeTest;

my ($insta_epoch, $insta_conf, $insta_check, $insta_convert) = readme_blocks('instagram');
my ($sony_conf, $sony_check, $sony_convert) = readme_blocks('sonyflake');
my ($shard) = $insta_conf =~ /^snowflake\.node_id\s*=\s*(\d+)/m;
my ($machine) = $sony_conf =~ /^snowflake\.node_id\s*=\s*(\d+)/m;
like($insta_conf, qr/^snowflake\.layout = 'instagram'/m, 'the Instagram configuration sets the layout');
like($sony_conf, qr/^snowflake\.layout = 'sonyflake'/m, 'the Sonyflake configuration sets the layout');
ok(defined $shard && defined $machine, "node ids from the README: shard $shard, machine $machine");
local $ENV{PGTZ} = 'UTC';

# The servers, all started first so that their generators get ready side
# by side: the two the README configures; one left on the default layout;
# one with the sonyflake layout but an epoch a year after Sonyflake's; and
# a plain PostgreSQL whose backends' clock runs 30 s ahead, where an old
# next_id() makes a key in the future.
my $insta = snowflake_node('instagram', $insta_conf);
my $sony = snowflake_node('sonyflake', $sony_conf);
my $default_layout = snowflake_node('default_layout', "snowflake.node_id = $shard\n");
my $later_epoch = snowflake_node('later_epoch',
	"snowflake.layout = 'sonyflake'\nsnowflake.node_id = $machine\n"
	  . "snowflake.epoch = '2015-09-01 00:00:00+00'\n");
my $ahead = PostgreSQL::Test::Cluster->new('clock_ahead');
$ahead->init;
$_->start for ($insta, $sony, $default_layout, $later_epoch);
start_with_movable_clock($ahead, '+30');
wait_until_ready($_) for ($insta, $sony, $default_layout, $later_epoch);

sub sql_error
{
	my ($node, $sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	return $ret == 0 ? '' : $err;
}

sub refused_like
{
	my ($table) = @_;
	return qr/55000: column "id" of table (?:public\.)?\Q$table\E holds values up to \d+, at or above the snowflake ID of now/;
}

# ---------------------------------------------------------------------------
# Instagram

# next_id() of one shard, in Instagram's shape: a schema per logical shard,
# its sequence, and the key composed from the clock in milliseconds since
# Instagram's epoch (1314220021721 ms since 1970), the shard id and the
# sequence value modulo 1024.
sub instagram_shard
{
	my ($id) = @_;
	return qq{
		CREATE SCHEMA shard$id;
		CREATE SEQUENCE shard$id.table_id_seq;
		CREATE FUNCTION shard$id.next_id(OUT result bigint) LANGUAGE plpgsql AS \$fn\$
		DECLARE
			our_epoch  bigint := 1314220021721;
			shard_id   int := $id;
			seq_id     bigint;
			now_millis bigint;
		BEGIN
			seq_id := nextval('shard$id.table_id_seq') % 1024;
			now_millis := floor(extract(epoch FROM clock_timestamp()) * 1000);
			result := ((now_millis - our_epoch) << 23) | (shard_id << 10) | seq_id;
		END
		\$fn\$;
	};
}

# Keys made one at a time, each with the clock read just before and just
# after next_id() and the sequence value it took: the key's millisecond is
# between the two, and its sequence is that value modulo 1024.  The
# sequence starts near 1023 so that it wraps to 0.
$insta->safe_psql('postgres', instagram_shard($shard) . instagram_shard(8191) . q{
	CREATE TABLE made (id bigint, shard int, seq bigint, before timestamptz, after timestamptz);
});
for my $s ($shard, 8191)
{
	$insta->safe_psql('postgres', qq{
		SELECT setval('shard$s.table_id_seq', 1000);
		DO \$\$
		DECLARE
			b timestamptz;
			i bigint;
		BEGIN
			FOR n IN 1 .. 1500 LOOP
				b := clock_timestamp();
				i := shard$s.next_id();
				INSERT INTO made VALUES (i, $s, currval('shard$s.table_id_seq') % 1024, b, clock_timestamp());
			END LOOP;
		END
		\$\$;
	});
}
is( $insta->safe_psql('postgres', q{
		SELECT count(*) || ' ' || count(DISTINCT id) || ' ' || bool_or(seq = 1023) || ' ' || bool_or(seq = 0)
		       || ' ' || (count(*) FILTER (WHERE date_trunc('milliseconds', before) = date_trunc('milliseconds', after)) > 100)
		FROM made}),
	'3000 3000 true true true',
	'next_id() made 3000 distinct keys, sequences wrapping from 1023 to 0, most within one millisecond');
my $exact = q{
	d.ts BETWEEN date_trunc('milliseconds', made.before) AND made.after
	AND d.ts = date_trunc('milliseconds', d.ts)
	AND d.node = made.shard AND d.seq = made.seq};
is( $insta->safe_psql('postgres', qq{
		SELECT count(*) FROM made, snowflake_decode(id, '2011-08-24 21:07:01.721+00', 'instagram') d
		WHERE $exact}),
	'3000',
	"snowflake_decode(id, Instagram's epoch, 'instagram') reads each key's millisecond, shard and sequence");
is( $insta->safe_psql('postgres', qq{
		SELECT count(*) FROM made, snowflake_decode(id) d WHERE $exact}),
	'3000', "so does snowflake_decode(id) on a server with snowflake.layout = 'instagram'");
is( $insta->safe_psql('postgres', q{
		SELECT count(*) FROM made
		WHERE snowflake_timestamp(id) = (snowflake_decode(id)).ts
		  AND snowflake_node(id) = shard AND snowflake_sequence(id) = seq
		  AND snowflake_node(id, 'instagram') = shard AND snowflake_sequence(id, 'instagram') = seq
		  AND snowflake_from_timestamp((snowflake_decode(id)).ts, shard, seq::int) = id}),
	'3000', 'and snowflake_timestamp/node/sequence, which compose the same keys back');

# The README: Instagram's our_epoch as a timestamp is the preset's epoch.
# Every "-- " line of the block is a line of psql's output, in that order.
my @epoch_out = map { s/\s+$//r } split /\n/, run_readme_sql($insta, $insta_epoch);
my @epoch_shown = map { /^-- (.*)$/ ? $1 =~ s/\s+$//r : () } split /\n/, $insta_epoch;
my $at = 0;
for my $line (@epoch_shown)
{
	$at++ while $at < @epoch_out && $epoch_out[$at] ne $line;
	last if $at++ >= @epoch_out;
}
ok(@epoch_shown == 3 && $at <= @epoch_out, "the README's our_epoch query prints what it shows")
  or diag(join("\n", @epoch_out));
is( $insta->safe_psql('postgres',
		q{SELECT current_setting('snowflake.epoch')::timestamptz = to_timestamp(1314220021721 / 1000.0)}),
	't', "and snowflake.layout = 'instagram' defaults snowflake.epoch to it");

# A shard-5 table filled by next_id(); made_at is when each row was made.
# 1000 rows, their sequence values 1 to 1000 modulo 1024: within a
# millisecond where the sequence wraps to 0, next_id()'s keys are not in the
# order they were made.
$insta->safe_psql('postgres', qq{
	CREATE TABLE shard$shard.photos (id bigint PRIMARY KEY DEFAULT shard$shard.next_id(),
		caption text, made_at timestamptz DEFAULT clock_timestamp());
	SELECT setval('shard$shard.table_id_seq', 1024 * 10);
	INSERT INTO shard$shard.photos (caption) SELECT 'made by next_id()' FROM generate_series(1, 1000);
});
my $old_photos = $insta->safe_psql('postgres',
	"SELECT string_agg(format('(%s, %L)', id, caption), ', ') FROM shard$shard.photos");

# A server left on the default layout reads the keys decades ahead, and
# refuses to convert them.
$default_layout->safe_psql('postgres', qq{
	CREATE TABLE photos (id bigint PRIMARY KEY, caption text);
	INSERT INTO photos VALUES $old_photos;
});
is( $default_layout->safe_psql('postgres',
		q{SELECT snowflake_timestamp(max(id)) > now() + interval '10 years' FROM photos}),
	't', 'read in the default layout, the newest Instagram key seems decades ahead');
like(sql_error($default_layout, q{SELECT snowflake_convert_column('photos', 'id')}),
	refused_like('photos'), 'on the default layout, snowflake_convert_column refuses the table');
is( $default_layout->safe_psql('postgres',
		q{SELECT count(*) FROM pg_attrdef WHERE adrelid = 'photos'::regclass}),
	'0', 'and leaves the column without a default');

# A next_id() on a server whose clock runs 30 s ahead: its key is refused
# by the right server until removed.
my $ahead_key = $ahead->safe_psql('postgres', instagram_shard(7) . 'SELECT shard7.next_id()');
is( $insta->safe_psql('postgres', qq{
		SELECT snowflake_timestamp($ahead_key) BETWEEN now() + interval '20 s' AND now() + interval '40 s'}),
	't', "the old clock's key is 30 s ahead");
$insta->safe_psql('postgres', qq{
	CREATE TABLE ahead (id bigint PRIMARY KEY, caption text);
	INSERT INTO ahead VALUES ($ahead_key, 'clock ahead'), (shard$shard.next_id(), 'now');
});
like(sql_error($insta, q{SELECT snowflake_convert_column('ahead', 'id')}),
	refused_like('ahead'), 'a next_id() key 30 s ahead makes snowflake_convert_column refuse');
$insta->safe_psql('postgres', q{DELETE FROM ahead WHERE caption = 'clock ahead'});
is($insta->psql('postgres', q{SELECT snowflake_convert_column('ahead', 'id')}),
	0, 'without it, the table is accepted');

# The README's check and conversion, then 3000 more rows.
my ($ts, $node, $seq) = split /\|/, run_readme_sql($insta, $insta_check, {}, ['-At']);
is($node, $shard, "the README's check of the newest key shows its shard");
is( $insta->safe_psql('postgres', qq{
		SELECT '$ts'::timestamptz BETWEEN made_at - interval '2 ms' AND made_at
		FROM shard$shard.photos ORDER BY id DESC LIMIT 1}),
	't', 'and the time it was made');
my $converted_at = $insta->safe_psql('postgres', 'SELECT clock_timestamp()');
run_readme_sql($insta, $insta_convert);
is( $insta->safe_psql('postgres', qq{
		SELECT count(*) FROM pg_proc WHERE proname = 'next_id'
		  AND pronamespace = 'shard$shard'::regnamespace}),
	'0', 'the README drops next_id() after converting');
$insta->safe_psql('postgres', qq{
	INSERT INTO shard$shard.photos (caption) SELECT 'made by snowflake_nextval()' FROM generate_series(1, 2999);
});

# migrated(NODE, TABLE, COLUMN, LABEL, OLD, NEW, NODE_ID, CONVERTED_AT):
# the checks of a converted table whose COLUMN tells rows made by the old
# generator (OLD) from the 3000 made by ours (NEW): every new key distinct
# from and above every old one, made on NODE_ID at the time it decodes to,
# and sorted by key, the rows in the order they were made (made_at).
sub migrated
{
	my ($n, $table, $col, $label, $old, $new, $node_id, $at) = @_;
	is( $n->safe_psql('postgres', qq{
			SELECT count(*) FILTER (WHERE $col = '$new') || ' ' ||
			       count(DISTINCT id) || ' ' ||
			       (min(id) FILTER (WHERE $col = '$new') > max(id) FILTER (WHERE $col = '$old')) || ' ' ||
			       bool_and(snowflake_node(id) = $node_id) FILTER (WHERE $col = '$new')
			FROM $table}),
		'3000 ' . $n->safe_psql('postgres', "SELECT count(*) FROM $table") . ' true true',
		"$label: 3000 new keys on node $node_id, distinct from and above every old key");
	is( $n->safe_psql('postgres', qq{
			SELECT count(*) FROM (
				SELECT $col AS made_by, lag($col) OVER (ORDER BY id) AS before FROM $table) s
			WHERE made_by = '$old' AND before = '$new'}),
		'0', "$label: sorted by key, every old row comes before every new one");
	is( $n->safe_psql('postgres', qq{
			SELECT count(*) FROM (
				SELECT made_at, lag(made_at) OVER (ORDER BY id) AS before FROM $table) s
			WHERE made_at < before}),
		'0', "$label: sorted by key, the rows are in the order they were made");
	is( $n->safe_psql('postgres', qq{
			SELECT bool_and(snowflake_timestamp(id) BETWEEN '$at'::timestamptz - interval '10 ms' AND clock_timestamp())
			FROM $table WHERE $col = '$new'}),
		't', "$label: the new keys decode to the time they were made");
	return;
}
migrated($insta, "shard$shard.photos", 'caption', 'Instagram', 'made by next_id()',
	'made by snowflake_nextval()', $shard, $converted_at);

# ---------------------------------------------------------------------------
# Sonyflake

my $node_js = -x '/usr/bin/node' ? '/usr/bin/node' : 'node';
my $npm_dir = PostgreSQL::Test::Utils::tempdir('interop_npm');
File::Copy::copy("test/interop/$_", "$npm_dir/$_") or die "cannot copy test/interop/$_: $!"
  for qw(package.json package-lock.json);
my ($npm_out, $npm_err) = ('', '');
my $npm_ok = IPC::Run::run(
	[ 'npm', 'ci', '--prefix', $npm_dir, '--ignore-scripts', '--no-audit', '--no-fund',
		'--cache', "$npm_dir/cache" ],
	'>', \$npm_out, '2>', \$npm_err);
ok($npm_ok, 'npm ci installs test/interop/package-lock.json') or diag($npm_err);
die 'the Sonyflake reference could not be installed' unless $npm_ok;
my $pkg = slurp_file("$npm_dir/node_modules/sonyflake/package.json");
like($pkg, qr/"version":\s*"1\./, 'the npm package sonyflake is version 1.x');

# sonyflake_ids(MODE, MACHINE, COUNT, INPUT): rows of
# test/interop/sonyflake_ids.js, as SQL VALUES with the kind and machine.
sub sonyflake_ids
{
	my ($mode, $id, $count, $input) = @_;
	my ($out, $err) = ('', '');
	local $ENV{NODE_PATH} = "$npm_dir/node_modules";
	IPC::Run::run([ $node_js, 'test/interop/sonyflake_ids.js', $mode, $id, $count // 0 ],
		'<', \($input // ''), '>', \$out, '2>', \$err)
	  or die "sonyflake_ids.js $mode $id failed: $err";
	my @rows = map {
		my @f = split /\t/;
		die "bad line from sonyflake_ids.js: $_" unless @f == 7;
		$f[3] = 'NULL' if $f[3] eq '\N';
		"('$mode', $id, " . join(', ', @f) . ')';
	} split /\n/, $out;
	return join(",\n", @rows);
}

# Keys from the clock on machines 0 and the README's; keys at the edges of
# each field (the start time itself, sequence 255, machine 65535); keys of
# nextId() as the package ships it.
my $edges = join("\n", map { "$_ 255\n$_ 0" } (1409529600000, 1409529600019,
	time() * 1000 - 86_400_000, 1700000000123));
$sony->safe_psql('postgres', q{
	CREATE TABLE sony (kind text, machine int, id bigint, from_ms bigint, to_ms bigint, seq int,
		lib_ms bigint, lib_machine int, lib_seq int);
	CREATE FUNCTION ms_ts(bigint) RETURNS timestamptz IMMUTABLE LANGUAGE sql
		AS $$ SELECT timestamptz 'epoch' + $1 * interval '1 millisecond' $$;
	INSERT INTO sony VALUES } . join(",\n",
		sonyflake_ids('clock', $machine, 3000), sonyflake_ids('clock', 0, 300),
		sonyflake_ids('compose', 65535, 0, $edges), sonyflake_ids('compose', 4131, 0, $edges),
		sonyflake_ids('shipped', 7, 300)));
is( $sony->safe_psql('postgres', q{
		SELECT count(*) || ' ' || count(DISTINCT id) || ' ' || max(seq) || ' ' || max(machine)
		FROM sony WHERE kind <> 'shipped'}),
	'3316 3316 255 65535',
	'3316 distinct Sonyflake keys, sequences up to 255, machine ids up to 65535');
is( $sony->safe_psql('postgres', q{
		SELECT count(*) FROM sony
		WHERE kind <> 'shipped' AND lib_ms = from_ms AND lib_machine = machine AND lib_seq = seq}),
	'3316', "the package's decompose() reads back the time, machine id and sequence asked for");
my $sony_exact = q{
	d.ts = ms_ts(sony.lib_ms) AND d.node = sony.lib_machine AND d.seq = sony.lib_seq};
is( $sony->safe_psql('postgres', qq{
		SELECT count(*) FROM sony, snowflake_decode(id, '2014-09-01+00', 'sonyflake') d
		WHERE kind <> 'shipped' AND $sony_exact}),
	'3316', "snowflake_decode(id, '2014-09-01+00', 'sonyflake') reads each key as decompose() does");
is( $sony->safe_psql('postgres', qq{
		SELECT count(*) FROM sony, snowflake_decode(id) d WHERE kind <> 'shipped' AND $sony_exact}),
	'3316', "so does snowflake_decode(id) on a server with snowflake.layout = 'sonyflake'");
is( $sony->safe_psql('postgres', q{
		SELECT count(*) FROM sony
		WHERE kind <> 'shipped'
		  AND snowflake_from_timestamp(ms_ts(lib_ms), lib_machine, lib_seq) = id
		  AND snowflake_from_timestamp(ms_ts(lib_ms), lib_machine, lib_seq, '2014-09-01+00', 'sonyflake') = id}),
	'3316', 'and snowflake_from_timestamp() composes the same keys');
is( $sony->safe_psql('postgres', qq{
		SELECT count(*) FROM sony,
		     snowflake_decode(id, '2014-09-01+00', 'time 39, sequence 8, node 16, unit 1ms') d
		WHERE kind = 'shipped' AND $sony_exact
		  AND d.ts BETWEEN ms_ts(from_ms) AND ms_ts(to_ms)}),
	'300', "the package's own nextId() keys (1 ms units) decode in 'time 39, sequence 8, node 16, unit 1ms'");
is( $sony->safe_psql('postgres', q{
		SELECT min(snowflake_timestamp(id, '2014-09-01+00', 'sonyflake')) > now() + interval '100 years'
		FROM sony WHERE kind = 'shipped'}),
	't', 'read as Sonyflake keys, they seem more than a century ahead');

# A table of Sonyflake keys: three machines every 7 hours over 500 days,
# then the clock's keys of machine 4131 and last of the README's machine;
# made_at is the start of each key's unit.
my $history = join("\n", map { (time() - 60 - $_ * 25_200) * 1000 + $_ % 1000 . ' ' . $_ % 256 }
	  reverse 1 .. 1714);
my $old_events = join(",\n", sonyflake_ids('compose', 7, 0, $history),
	sonyflake_ids('compose', 4131, 0, $history), sonyflake_ids('compose', $machine, 0, $history),
	sonyflake_ids('clock', 4131, 500), sonyflake_ids('clock', $machine, 2000));
my $events = qq{
	CREATE TABLE events (id bigint PRIMARY KEY, body text, made_at timestamptz DEFAULT clock_timestamp());
	INSERT INTO events (id, body, made_at)
	SELECT id, 'made by Sonyflake', timestamptz 'epoch' + from_ms * interval '1 ms'
	FROM (VALUES $old_events) AS k(kind, machine, id, from_ms, to_ms, seq, lib_ms, lib_machine, lib_seq);
};
$sony->safe_psql('postgres', $events);
$later_epoch->safe_psql('postgres', $events);
is($sony->safe_psql('postgres', 'SELECT count(*) FROM events'),
	3 * 1714 + 2500, 'the Sonyflake table holds 7642 keys');

# A server with an epoch a year after Sonyflake's reads the last year's
# keys in its future, and refuses the table.
is( $later_epoch->safe_psql('postgres',
		q{SELECT snowflake_timestamp(max(id)) > now() + interval '360 days' FROM events}),
	't', 'under an epoch a year later, the newest Sonyflake key seems a year ahead');
like(sql_error($later_epoch, q{SELECT snowflake_convert_column('events', 'id')}),
	refused_like('events'), 'under a later epoch, snowflake_convert_column refuses the table');

# A Sonyflake whose clock ran 30 s ahead: refused until removed.
my ($ahead_id) = sonyflake_ids('compose', $machine, 0, (time() + 30) * 1000 . " 0") =~ /^\('compose', \d+, (\d+),/;
$sony->safe_psql('postgres', qq{
	CREATE TABLE events_ahead (id bigint PRIMARY KEY, body text);
	INSERT INTO events_ahead VALUES ($ahead_id, 'clock ahead'), ((SELECT max(id) FROM events), 'now');
});
like(sql_error($sony, q{SELECT snowflake_convert_column('events_ahead', 'id')}),
	refused_like('events_ahead'), 'a Sonyflake key 30 s ahead makes snowflake_convert_column refuse');
$sony->safe_psql('postgres', q{DELETE FROM events_ahead WHERE body = 'clock ahead'});
is($sony->psql('postgres', q{SELECT snowflake_convert_column('events_ahead', 'id')}),
	0, 'without it, the table is accepted');

# The README's check and conversion, then 2999 more rows.
($ts, $node, $seq) = split /\|/, run_readme_sql($sony, $sony_check, {}, ['-At']);
is($node, $machine, "the README's check of the newest Sonyflake key shows its machine id");
is( $sony->safe_psql('postgres', qq{
		SELECT '$ts'::timestamptz = max(made_at) FROM events}),
	't', 'and the time it was made');
$converted_at = $sony->safe_psql('postgres', 'SELECT clock_timestamp()');
run_readme_sql($sony, $sony_convert);
$sony->safe_psql('postgres', q{
	INSERT INTO events (body) SELECT 'made by snowflake_nextval()' FROM generate_series(1, 2999);
});
migrated($sony, 'events', 'body', 'Sonyflake', 'made by Sonyflake', 'made by snowflake_nextval()',
	$machine, $converted_at);

$_->stop for ($insta, $sony, $default_layout, $later_epoch, $ahead);
done_testing();
