# A streaming standby is in recovery: it must not issue IDs, since with the
# primary's settings it would issue them under the primary's node id.  Once
# promoted, it issues IDs.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test/lib';
use SnowflakeTest;

my $primary = snowflake_node('primary', "snowflake.node_id = 11\n");
$primary->append_conf('postgresql.conf', "wal_level = replica\nmax_wal_senders = 4\n");
$primary->start;
wait_until_ready($primary);
my $before = $primary->safe_psql('postgres', 'SELECT snowflake_nextval()');

$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);

my ($ret, $out, $err) = $standby->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT snowflake_nextval()");
isnt($ret, 0, 'a standby refuses to issue IDs');
like($err, qr/25006: cannot issue snowflake IDs during recovery/,
	'with a read-only error');
is($standby->safe_psql('postgres', "SELECT snowflake_node($before)"), 11,
	'decoding works on the standby');

# The primary's mark reaches the standby by replication.
$before = $primary->safe_psql('postgres',
	'SELECT max(x) FROM (SELECT snowflake_nextval() AS x FROM generate_series(1, 10000)) s');
$primary->wait_for_catchup($standby);
my $mark = $standby->safe_psql('postgres',
	'SELECT high_water FROM snowflake_high_water WHERE node_id = 11');
is($standby->safe_psql('postgres', "SELECT '$mark' >= snowflake_timestamp($before)"), 't',
	'the standby holds a mark at or above the primary\'s last ID');

$primary->stop('immediate');
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()')
  or die 'standby did not leave recovery';
my $after = $standby->safe_psql('postgres', 'SELECT snowflake_nextval()');
ok($after > $before, 'after promotion it issues IDs above all the primary issued');
is($standby->safe_psql('postgres', "SELECT snowflake_timestamp($after) > '$mark'"), 't',
	'above the replicated mark');

$standby->stop;
done_testing();
