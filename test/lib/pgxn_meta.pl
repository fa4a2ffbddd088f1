#!/usr/bin/perl
# Checks a META.json against the rules of the PGXN meta spec 1.0.0
# (https://pgxn.org/spec/): the required keys, the type and form of every
# key the spec defines, no keys it does not define (apart from x_ custom
# keys), and, with --dist DIR, that the files it names are in DIR.
#
#   perl test/lib/pgxn_meta.pl [--dist DIR] META.json
#
# Prints one line per rule broken, naming the key ("provides.snowflake.file:
# ..."), and exits 1 if any; prints "META.json: valid PGXN meta spec 1.0.0"
# and exits 0 otherwise.  Only Perl's core modules are used.
use strict;
use warnings;

use B ();
use JSON::PP ();

my $dist;
if (@ARGV && $ARGV[0] eq '--dist')
{
	shift @ARGV;
	$dist = shift @ARGV;
}
die "usage: $0 [--dist DIR] META.json\n" unless @ARGV == 1;
my $file = $ARGV[0];

my @errors;
sub fail { push @errors, join('', @_); return 0; }

# JSON types, told apart by how JSON::PP stored the value (a JSON string
# is a Perl string, a JSON number a Perl number), before anything
# stringifies it.
sub is_string
{
	my ($v) = @_;
	return 0 if !defined $v || ref $v;
	my $flags = B::svref_2object(\$v)->FLAGS;
	return ($flags & B::SVp_POK) && !($flags & (B::SVp_IOK | B::SVp_NOK));
}
sub is_number
{
	my ($v) = @_;
	return 0 if !defined $v || ref $v;
	my $flags = B::svref_2object(\$v)->FLAGS;
	return ($flags & (B::SVp_IOK | B::SVp_NOK)) ? 1 : 0;
}
sub is_object { return ref($_[0]) eq 'HASH'; }
sub is_array { return ref($_[0]) eq 'ARRAY'; }

my $semver = qr/^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)
	(?:-(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*)?
	(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?$/x;
my @licenses = qw(agpl_3 apache_1_1 apache_2_0 artistic_1 artistic_2 bsd
  freebsd gfdl_1_2 gfdl_1_3 gpl_1 gpl_2 gpl_3 lgpl_2_1 lgpl_3_0 mit
  mozilla_1_0 mozilla_1_1 openssl perl_5 postgresql qpl_1_0 ssleay sun zlib
  open_source restricted unrestricted unknown);
my %license = map { $_ => 1 } @licenses;

sub custom_key { return $_[0] =~ /^[xX]_./; }

# An object whose keys are among @allowed (or x_ custom keys).
sub keys_among
{
	my ($where, $obj, @allowed) = @_;
	my %ok = map { $_ => 1 } @allowed;
	for my $k (sort keys %$obj)
	{
		fail("$where: unknown key \"$k\" (spec 1.0.0 allows ",
			join(', ', @allowed), " and x_ custom keys)")
		  unless $ok{$k} || custom_key($k);
	}
	return;
}

sub check_nonempty_string
{
	my ($where, $v) = @_;
	return fail("$where: must be a string") unless is_string($v);
	return fail("$where: must not be empty") unless length $v;
	return 1;
}

# A term: at least two characters, none of them a slash, a backslash,
# a space or a control character.
sub check_term
{
	my ($where, $v) = @_;
	return fail("$where: must be a string") unless is_string($v);
	return fail("$where: \"$v\" is not a term (2 or more characters, no /, \\, space or control character)")
	  unless $v =~ /^[^\/\\\s[:cntrl:]]{2,}$/;
	return 1;
}

sub check_version
{
	my ($where, $v) = @_;
	return fail("$where: must be a string") unless is_string($v);
	return fail("$where: \"$v\" is not a semantic version (like 1.2.0)")
	  unless $v =~ $semver;
	return 1;
}

# A version range: the number 0 (any version), or comma-separated
# versions, each optionally after ==, !=, <, <=, > or >=.
sub check_version_range
{
	my ($where, $v) = @_;
	return 1 if is_number($v) && $v == 0;
	return fail("$where: must be a string or the number 0") unless is_string($v);
	return 1 if $v eq '0';
	for my $part (split /,/, $v, -1)
	{
		(my $version = $part) =~ s/^\s*(?:[=!]=|[<>]=?)?\s*//;
		return fail("$where: \"$v\" is not a version range (like \">= 15.0.0, < 16.0.0\")")
		  unless $version =~ $semver;
	}
	return 1;
}

sub check_uri
{
	my ($where, $v) = @_;
	return fail("$where: must be a string") unless is_string($v);
	return fail("$where: \"$v\" is not a URI")
	  unless $v =~ /^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$/;
	return 1;
}

# A path in the distribution, relative, with Unix separators.
sub check_path
{
	my ($where, $v) = @_;
	return fail("$where: must be a string") unless is_string($v);
	return fail("$where: \"$v\" is not a relative Unix path in the distribution")
	  if length($v) < 2 || $v =~ m{^/} || $v =~ /\\/ || grep { $_ eq '..' } split m{/}, $v;
	return fail("$where: \"$v\" is not in the distribution ($dist)")
	  if defined $dist && !-f "$dist/$v";
	return 1;
}

sub check_maintainer
{
	my ($where, $v) = @_;
	return check_nonempty_string($where, $v) unless is_array($v);
	return fail("$where: must list at least one maintainer") unless @$v;
	my %seen;
	for my $i (0 .. $#$v)
	{
		check_nonempty_string("$where\[$i]", $v->[$i]) or next;
		fail("$where\[$i]: \"$v->[$i]\" is listed twice") if $seen{ $v->[$i] }++;
	}
	return 1;
}

sub check_license
{
	my ($where, $v) = @_;
	my @names = @licenses[ 0 .. 4 ];
	if (is_object($v))
	{
		return fail("$where: must name at least one license") unless %$v;
		check_uri("$where.$_", $v->{$_}) for sort keys %$v;
		return 1;
	}
	my @list = is_array($v) ? @$v : ($v);
	return fail("$where: must name at least one license") unless @list;
	my %seen;
	for my $l (@list)
	{
		if (!is_string($l) || !$license{$l})
		{
			fail("$where: ", (is_string($l) ? "\"$l\"" : 'a value that is not a string'),
				" is not a license name of the spec (",
				join(', ', @names), ', ...) nor an object of name => URL');
		}
		elsif ($seen{$l}++)
		{
			fail("$where: \"$l\" is listed twice");
		}
	}
	return 1;
}

sub check_provides
{
	my ($where, $v) = @_;
	return fail("$where: must be an object") unless is_object($v);
	return fail("$where: must name at least one extension") unless %$v;
	for my $name (sort keys %$v)
	{
		my $ext = $v->{$name};
		my $at = "$where.$name";
		check_term("$where (extension name)", $name);
		unless (is_object($ext))
		{
			fail("$at: must be an object");
			next;
		}
		keys_among($at, $ext, qw(file version abstract docfile docpath));
		for my $required (qw(file version))
		{
			fail("$at: \"$required\" is required") unless exists $ext->{$required};
		}
		check_path("$at.file", $ext->{file}) if exists $ext->{file};
		check_version("$at.version", $ext->{version}) if exists $ext->{version};
		check_nonempty_string("$at.abstract", $ext->{abstract}) if exists $ext->{abstract};
		check_path("$at.docfile", $ext->{docfile}) if exists $ext->{docfile};
		check_nonempty_string("$at.docpath", $ext->{docpath}) if exists $ext->{docpath};
	}
	return 1;
}

sub check_meta_spec
{
	my ($where, $v) = @_;
	return fail("$where: must be an object") unless is_object($v);
	keys_among($where, $v, qw(version url));
	if (!exists $v->{version})
	{
		fail("$where.version: is required");
	}
	elsif (!is_string($v->{version}) || $v->{version} !~ /^1\.0\.\d+$/)
	{
		fail("$where.version: must be a string 1.0.x for this spec");
	}
	if (exists $v->{url}
		&& !(is_string($v->{url}) && $v->{url} =~ m{^https?://pgxn\.org/meta/spec\.txt$}))
	{
		fail("$where.url: must be https://pgxn.org/meta/spec.txt");
	}
	return 1;
}

sub check_tags
{
	my ($where, $v) = @_;
	return fail("$where: must be an array") unless is_array($v);
	return fail("$where: must hold at least one tag") unless @$v;
	my %seen;
	for my $i (0 .. $#$v)
	{
		my $tag = $v->[$i];
		if (!is_string($tag))
		{
			fail("$where\[$i]: must be a string");
		}
		elsif (length($tag) < 2 || length($tag) > 255 || $tag =~ /[\/\\[:cntrl:]]/)
		{
			fail("$where\[$i]: \"$tag\" is not a tag (2 to 255 characters, no /, \\ or control character)");
		}
		elsif ($seen{ lc $tag }++)
		{
			fail("$where\[$i]: \"$tag\" is listed twice");
		}
	}
	return 1;
}

sub check_prereqs
{
	my ($where, $v) = @_;
	return fail("$where: must be an object") unless is_object($v);
	my @phases = qw(configure build test runtime develop);
	my @relations = qw(requires recommends suggests conflicts);
	keys_among($where, $v, @phases);
	fail("$where: must hold at least one of ", join(', ', @phases))
	  unless grep { exists $v->{$_} } @phases;
	for my $phase (grep { exists $v->{$_} } @phases)
	{
		my $p = $v->{$phase};
		unless (is_object($p))
		{
			fail("$where.$phase: must be an object");
			next;
		}
		keys_among("$where.$phase", $p, @relations);
		fail("$where.$phase: must hold at least one of ", join(', ', @relations))
		  unless grep { exists $p->{$_} } @relations;
		for my $rel (grep { exists $p->{$_} } @relations)
		{
			my $r = $p->{$rel};
			my $at = "$where.$phase.$rel";
			unless (is_object($r) && %$r)
			{
				fail("$at: must be an object naming at least one prerequisite");
				next;
			}
			for my $name (sort keys %$r)
			{
				check_term("$at (prerequisite name)", $name);
				check_version_range("$at.$name", $r->{$name});
			}
		}
	}
	return 1;
}

sub check_resources
{
	my ($where, $v) = @_;
	return fail("$where: must be an object") unless is_object($v);
	keys_among($where, $v, qw(homepage bugtracker repository));
	fail("$where: must hold at least one of homepage, bugtracker, repository")
	  unless grep { exists $v->{$_} } qw(homepage bugtracker repository);
	check_uri("$where.homepage", $v->{homepage}) if exists $v->{homepage};
	if (exists $v->{bugtracker})
	{
		my $b = $v->{bugtracker};
		if (!is_object($b))
		{
			fail("$where.bugtracker: must be an object");
		}
		else
		{
			keys_among("$where.bugtracker", $b, qw(web mailto));
			fail("$where.bugtracker: must hold web or mailto")
			  unless exists $b->{web} || exists $b->{mailto};
			check_uri("$where.bugtracker.web", $b->{web}) if exists $b->{web};
			fail("$where.bugtracker.mailto: must be an email address")
			  if exists $b->{mailto}
			  && !(is_string($b->{mailto}) && $b->{mailto} =~ /^[^@\s]+@[^@\s]+\.[^@\s]+$/);
		}
	}
	if (exists $v->{repository})
	{
		my $r = $v->{repository};
		if (!is_object($r))
		{
			fail("$where.repository: must be an object");
		}
		else
		{
			keys_among("$where.repository", $r, qw(url web type));
			fail("$where.repository: must hold url and type, or web")
			  unless (exists $r->{url} && exists $r->{type}) || exists $r->{web};
			check_uri("$where.repository.url", $r->{url}) if exists $r->{url};
			check_uri("$where.repository.web", $r->{web}) if exists $r->{web};
			fail("$where.repository.type: must be a lower-case word like git")
			  if exists $r->{type} && !(is_string($r->{type}) && $r->{type} =~ /^[a-z]+$/);
		}
	}
	return 1;
}

sub check_no_index
{
	my ($where, $v) = @_;
	return fail("$where: must be an object") unless is_object($v);
	keys_among($where, $v, qw(file directory));
	fail("$where: must hold file or directory")
	  unless exists $v->{file} || exists $v->{directory};
	for my $k (grep { exists $v->{$_} } qw(file directory))
	{
		my @paths = is_array($v->{$k}) ? @{ $v->{$k} } : ($v->{$k});
		fail("$where.$k: must name at least one path") unless @paths;
		for my $p (@paths)
		{
			# Not required to exist: a file not to index may be built later.
			my $saved = $dist;
			$dist = undef;
			check_path("$where.$k", $p);
			$dist = $saved;
		}
	}
	return 1;
}

open(my $fh, '<:raw', $file) or die "cannot read $file: $!\n";
my $text = do { local $/; <$fh> };
close($fh);
my $meta = eval { JSON::PP->new->utf8->decode($text) };
if (!defined $meta)
{
	(my $why = $@) =~ s/\s+$//;
	print "$file: not valid JSON: $why\n";
	exit 1;
}
unless (is_object($meta))
{
	print "$file: the top level must be a JSON object\n";
	exit 1;
}

my %checks = (
	name => \&check_term,
	version => \&check_version,
	abstract => \&check_nonempty_string,
	maintainer => \&check_maintainer,
	license => \&check_license,
	provides => \&check_provides,
	'meta-spec' => \&check_meta_spec,
	description => \&check_nonempty_string,
	generated_by => \&check_nonempty_string,
	tags => \&check_tags,
	no_index => \&check_no_index,
	prereqs => \&check_prereqs,
	release_status => sub {
		my ($where, $v) = @_;
		return 1 if is_string($v) && $v =~ /^(stable|testing|unstable)$/;
		return fail("$where: must be stable, testing or unstable");
	},
	resources => \&check_resources,
);
my @required = qw(name version abstract maintainer license provides meta-spec);

for my $k (@required)
{
	fail("$k: is required by the spec") unless exists $meta->{$k};
}
keys_among('top level', $meta, sort keys %checks);
for my $k (sort keys %checks)
{
	$checks{$k}->($k, $meta->{$k}) if exists $meta->{$k};
}

if (@errors)
{
	print "$file: $_\n" for @errors;
	exit 1;
}
print "$file: valid PGXN meta spec 1.0.0\n";
exit 0;
