# etcd fleets beyond 1024 servers, and one epoch and layout per prefix.
# 5,000 node ids are held by another lease (decimal keys below 1024,
# six-digit keys from 1024 up); a server with snowflake.layout =
# 'sonyflake' (16 node bits) claims 5000, the lowest free one, without
# listing the keys, and issues IDs under it.  The first server records its
# epoch and layout in <prefix>/layout; a server under the same prefix with
# another layout (etcd mode) or another epoch (a hand-set node id checked
# in etcd) refuses to issue, naming both; one with the same epoch written
# another way, in another time zone, works.  The record, deleted, is
# written again by the next server to claim.  With the default 10-bit
# layout, 1024 held keys leave no node id free: ids from 1024 up are never
# taken.
use strict;
use warnings;

use MIME::Base64 qw(encode_base64);
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test/lib';
use SnowflakeTest;
use EtcdTest;

my $etcd = EtcdTest->new(members => 1);
my $prefix = $etcd->prefix;
my %conf = (ttl => 3);
my $sonyflake = 'time 39, sequence 8, node 16, unit 10ms';
my $instagram = 'time 41, node 13, sequence 10, unit 1ms';
my $held_value = '{"host":"preclaimed","port":1,"system_identifier":"1"}';

# How many keys start with $p.
sub count_keys
{
	my ($p) = @_;
	my $end = substr($p, 0, -1) . chr(ord(substr($p, -1)) + 1);
	return $etcd->http('/v3/kv/range',
		{ key => encode_base64($p, ''), range_end => encode_base64($end, ''), count_only => JSON::PP::true })
	  ->{count} // 0;
}

sub key_of { my ($n) = @_; return $n < 1024 ? "$prefix/nodes/$n" : sprintf("$prefix/nodes/%06d", $n); }

# 5,000 node ids held by another lease, as 5,000 servers would hold them.
my $other = $etcd->http('/v3/lease/grant', { TTL => 600 })->{ID};
$etcd->put_many({ map { (key_of($_) => $held_value) } 0 .. 4999 }, $other);
is(count_keys("$prefix/nodes/"), 5000, '5,000 node ids are held');

# Server A: 16 node bits; the lowest free node id is 5000.
my $wide = etcd_snowflake_node('wide', $etcd, %conf, conf => "snowflake.layout = 'sonyflake'\n");
start_ready($wide);
my $st = status($wide);
is($st->{node_id}, 5000, 'with 16 node bits and ids 0..4999 held, the server claims 5000');
my $key = $etcd->get_key("$prefix/nodes/005000");
ok(defined $key && $key->{lease} eq $st->{lease_text}, "as $prefix/nodes/005000, under its own lease");
is(query($wide, 'SELECT count(*) FROM (SELECT snowflake_node(snowflake_nextval()) AS n
	FROM generate_series(1, 1000)) s WHERE n = 5000'), 1000, 'its IDs carry node id 5000');
my ($ms, $requests, $bytes) =
  slurp_file($wide->logfile) =~ /The claim took ([\d.]+) ms, (\d+) etcd requests and (\d+) bytes/;
diag "claim of node id 5000 with 5,000 ids held: $ms ms, $requests etcd requests, $bytes bytes of answers";
ok(defined $bytes && $bytes < 64 * 1024,
	'the claim did not list the 5,000 keys (' . ($bytes // '?') . ' bytes of answers)');
my $record = $etcd->get_key("$prefix/layout");
is($record && $record->{value}, "epoch 2014-09-01 00:00:00+00, layout $sonyflake",
	"the first server records its epoch and layout in $prefix/layout");
ok($record && !defined $record->{lease}, 'with no lease: it outlives every server');

# B: another layout (and the preset's own epoch), node id from etcd.  C: another epoch, a hand-set node
# id checked in etcd.  D: the same epoch and layout, the epoch written
# with another offset and the server in another time zone.
my $other_layout = etcd_snowflake_node('other_layout', $etcd, %conf,
	conf => "snowflake.layout = 'instagram'\n");
my $other_epoch = etcd_snowflake_node('other_epoch', $etcd, %conf, source => 'guc',
	conf => "snowflake.layout = 'sonyflake'\nsnowflake.epoch = '2020-01-01'\nsnowflake.node_id = 7000\n");
my $same = etcd_snowflake_node('same', $etcd, %conf,
	conf => "snowflake.layout = 'sonyflake'\nsnowflake.epoch = '2014-09-01 09:00:00+09'\n"
	  . "timezone = 'Asia/Tokyo'\nlog_timezone = 'Asia/Tokyo'\n");
$_->start for ($other_layout, $other_epoch, $same);
ensure_extension($_) for ($other_layout, $other_epoch);

for my $case (
	[ $other_layout, "epoch 2014-09-01 00:00:00+00, layout $sonyflake",
		"epoch 2011-08-24 21:07:01.721+00, layout $instagram" ],
	[ $other_epoch, "epoch 2014-09-01 00:00:00+00, layout $sonyflake",
		"epoch 2020-01-01 00:00:00+00, layout $sonyflake" ])
{
	my ($node, $recorded, $own) = @$case;
	my $name = $node->name;
	ok(wait_for_state($node, 'error', 60), "$name: state error");
	my ($rc, $out, $err) = nextval_result($node, 10000);
	isnt($rc, 0, "$name: snowflake_nextval() refuses");
	like($err, qr/22023/, "$name: with SQLSTATE 22023");
	like($err, qr/\Q$prefix is for IDs of $recorded, but this server makes IDs of $own\E/,
		"$name: naming what $prefix records and its own");
	like($err, qr/HINT:.*snowflake\.etcd_prefix/, "$name: the hint says what to do");
	like(status($node)->{last_error} // '', qr/\Q$own\E/, "$name: last_error says it too");
	is(status($node)->{node_id}, undef, "$name: no node id");
}
ok(!grep({ ref $_->{value} eq 'HASH' && $_->{value}{port} =~ /^(?:${\ $other_layout->port}|${\ $other_epoch->port})$/ }
		values %{ $etcd->node_keys }), 'the refusing servers hold no key');
wait_until_ready($same);
is(status($same)->{node_id}, 5001, 'the same epoch written another way, in another time zone: node id 5001');
is(query($same, 'SELECT snowflake_node(snowflake_nextval())'), 5001, 'and it issues');

# The record deleted (as when etcd lost its data): the next server to claim
# writes it again, with its own values.
$same->stop('fast');
$etcd->etcdctl('del', "$prefix/layout");
start_ready($same);
is($etcd->get_key("$prefix/layout")->{value}, "epoch 2014-09-01 00:00:00+00, layout $sonyflake",
	'a deleted record is written again by the next server to claim');

# The default layout, 10 node bits: with 0..1023 held under its prefix it
# finds no free node id, though 1024 and up are free.
my $narrow_prefix = '/snowflake10';
$etcd->put_many({ map { ("$narrow_prefix/nodes/$_" => $held_value) } 0 .. 1023 }, $other);
my $narrow = etcd_snowflake_node('narrow', $etcd, %conf, prefix => $narrow_prefix);
$narrow->start;
ensure_extension($narrow);
ok(wait_for_state($narrow, 'no_node_id', 60), 'default layout, 1024 ids held: state no_node_id');
my ($rc, $out, $err) = nextval_result($narrow, 10000);
like($err, qr/55000.*no free snowflake node id: all 1024 node ids under \Q$narrow_prefix\E\/nodes\/ are held/,
	'55000: no free node id, all 1024 held');
is(count_keys("$narrow_prefix/nodes/"), 1024, 'and it took no id beyond 1023');

for my $node ($wide, $other_layout, $other_epoch, $same, $narrow)
{
	ok(!$node->log_contains(qr/terminated by signal|server process .* was terminated/),
		$node->name . ': no server process crashed');
	$node->stop('fast');
}
ok(!defined $etcd->get_key("$prefix/nodes/005000"), 'the clean stops free the six-digit keys too');
done_testing();
