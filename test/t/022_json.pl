# psql and JSON, the README recipe run as written: a decoded ID in psql's
# expanded mode and as JSON shows what the README's comments say, and IDs
# handed to JavaScript as text (id::text) reach Node.js exactly, where the
# same IDs as JSON numbers do not.
use strict;
use warnings;

use IPC::Run ();
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test/lib';
use SnowflakeTest;

my ($decode, $js_number, $table, $query, $js_client) = readme_blocks('json');
my $node_js = '/usr/bin/node';
$node_js = 'node' unless -x $node_js;

my $node = snowflake_node('json', "snowflake.node_id = 9\n");
$node->start;
wait_until_ready($node);
local $ENV{PGTZ} = 'UTC';

# node_run(INPUT, ARGS...): Node.js with INPUT on standard input.
sub node_run
{
	my ($input, @args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ $node_js, @args ], '<', \$input, '>', \$out, '2>', \$err)
	  or die "node @args failed: $err";
	return $out;
}

# Every "-- " comment line of the decode block is a line of psql's output,
# in that order.
my @expected = map { s/\s+$//r } map { /^-- (.*)$/ ? $1 : () } split /\n/, $decode;
my @output = map { s/\s+$//r } split /\n/, run_readme_sql($node, $decode);
my $at = 0;
my @missing;
for my $line (@expected)
{
	$at++ while $at < @output && $output[$at] ne $line;
	if ($at < @output) { $at++ } else { push @missing, $line; $at = 0 }
}
ok(@expected >= 6, 'the decode block shows its output');
is_deeply(\@missing, [], 'psql prints what the README shows, for \gx and to_jsonb')
  or diag(join("\n", @output));

# The README's example of a JSON number losing its last digits.
my ($shown) = $js_number =~ m{//\s*(\d+)};
my ($written) = $js_number =~ /"id":\s*(\d+)/;
my $parsed = node_run('', '-p', $js_number);
chomp $parsed;
is($parsed, $shown, 'Node.js parses the JSON number as the README says');
isnt($parsed, $written, 'which is not the number written');

# Tickets: the README's two, and 500 more made in a few milliseconds, so
# that many IDs have sequences other than multiples of 64.
run_readme_sql($node, $table);
$node->safe_psql('postgres',
	q{INSERT INTO tickets (title) SELECT 'ticket ' || n FROM generate_series(1, 500) n});
my @ids = split /\n/, $node->safe_psql('postgres', 'SELECT id::text FROM tickets ORDER BY id');
my @titles = split /\n/, $node->safe_psql('postgres', 'SELECT title FROM tickets ORDER BY id');

# The README's query and its Node.js client: every ID exact.
my $json = run_readme_sql($node, $query, {}, ['-At']);
my @client = split /\n/, node_run($json, '-e', $js_client);
is(scalar(@client), scalar(@ids), 'the client read every row');
is_deeply([ map { (split / /, $_, 2)[0] } @client ], \@ids,
	'every ID reaches JavaScript exactly, as text read with BigInt()');
is_deeply([ map { (split / /, $_, 2)[1] } @client ], \@titles, 'with its row');

# The same IDs as JSON numbers: JSON.parse() keeps only those that a double
# holds, the multiples of its spacing at that size (2^(bits - 53)).
my $numbers = $node->safe_psql('postgres', 'SELECT json_agg(id ORDER BY id) FROM tickets');
my @as_numbers = split /\n/, node_run($numbers, '-e',
	q{for (const x of JSON.parse(require('fs').readFileSync(0, 'utf8'))) console.log(BigInt(x).toString())});
my ($lost, $representable) = (0, 0);
my @wrong;
for my $i (0 .. $#ids)
{
	my $id = $ids[$i] + 0;
	my $bits = 0;
	$bits++ while ($id >> $bits) > 0;
	my $exact = $bits <= 53 || $id % (1 << ($bits - 53)) == 0;
	$representable++ if $exact;
	$lost++ if $as_numbers[$i] ne $ids[$i];
	push @wrong, $ids[$i] if $exact != ($as_numbers[$i] eq $ids[$i]);
}
cmp_ok($lost, '>', 0, "as JSON numbers, $lost of " . scalar(@ids) . ' IDs arrive changed');
is_deeply(\@wrong, [], 'exactly those a double cannot hold');
cmp_ok(2**53, '<', $ids[0], 'the IDs are above 2^53');

$node->stop;
done_testing();
