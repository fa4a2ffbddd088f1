# Many sessions at once: 16 pgbench clients inserting rows keyed by the
# DEFAULT while 4 more take IDs in batches.  Afterwards no ID appears twice,
# every session's IDs are strictly increasing in the order it took them, and
# the status counts every ID.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test/lib';
use SnowflakeTest;

my $node = snowflake_node('concurrency', "snowflake.node_id = 42\nmax_connections = 50\n");
$node->start;

wait_until_ready($node);
$node->safe_psql('postgres', q{
	-- no primary key: a duplicate must be counted, not refused
	CREATE TABLE keys (
		id bigint NOT NULL DEFAULT snowflake_nextval(),
		pid int NOT NULL DEFAULT pg_backend_pid(),
		ord bigserial);
});

my $dir = PostgreSQL::Test::Utils::tempdir;
open(my $fh, '>', "$dir/insert.sql") or die;
print $fh "INSERT INTO keys DEFAULT VALUES;\n";
close($fh);
open($fh, '>', "$dir/batch.sql") or die;
print $fh "INSERT INTO keys (id, pid, ord)\n"
  . "SELECT b, pg_backend_pid(), nextval('keys_ord_seq')\n"
  . "FROM snowflake_nextval_batch(500) WITH ORDINALITY AS t(b, o) ORDER BY o;\n";
close($fh);

my @connect = ('-h', $node->host, '-p', $node->port, 'postgres');
my ($out1, $err1, $out2, $err2) = ('', '', '', '');
my $inserters = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '16', '-j', '2', '-t', '500', '-f', "$dir/insert.sql", @connect ],
	'>', \$out1, '2>', \$err1);
my $batchers = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '4', '-j', '1', '-t', '50', '-f', "$dir/batch.sql", @connect ],
	'>', \$out2, '2>', \$err2);
ok($inserters->finish, 'single-row inserters finished without error') or diag($err1);
ok($batchers->finish, 'batch callers finished without error') or diag($err2);

my $expected = 16 * 500 + 4 * 50 * 500;
is($node->safe_psql('postgres', 'SELECT count(*) FROM keys'), $expected,
	'every insert made its rows');
is($node->safe_psql('postgres', 'SELECT count(*) - count(DISTINCT id) FROM keys'), 0,
	'no ID appears twice');
is($node->safe_psql('postgres', 'SELECT count(DISTINCT pid) FROM keys'), 20,
	'rows came from 20 sessions');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM (
		SELECT id, lag(id) OVER (PARTITION BY pid ORDER BY ord) AS prev FROM keys) s
	WHERE id <= prev}),
	0,
	"each session's IDs strictly increase in the order it took them");
is($node->safe_psql('postgres', 'SELECT count(*) FROM keys WHERE snowflake_node(id) <> 42'),
	0, 'every ID carries node id 42');
is($node->safe_psql('postgres', 'SELECT ids_generated FROM snowflake_status()'),
	$expected, 'status counts every ID issued');
is($node->safe_psql('postgres', 'SELECT state FROM snowflake_status()'), 'ready',
	'status is ready');

$node->stop;
done_testing();
