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

$primary->stop('immediate');
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()')
  or die 'standby did not leave recovery';
my $after = $standby->safe_psql('postgres', 'SELECT snowflake_nextval()');
ok($after > $before, 'after promotion it issues IDs, after the primary\'s');

$standby->stop;
done_testing();
