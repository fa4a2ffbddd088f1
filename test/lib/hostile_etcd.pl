#!/usr/bin/perl
# A loopback HTTP/1.1 server that answers etcd's /v3/... POSTs with hostile
# responses, to check that snowflake treats them as errors: no crash, no
# hang, no node id.  Core Perl only.
#
#   hostile_etcd.pl --port P --mode-file F [--pid-file F]
#
# The mode file is read at every request: either one KIND for every path,
# or space-separated "path=KIND" with "*=KIND" as the default, e.g.
# "/v3/lease/grant=ok *=garbage".  KINDs:
#   ok            plausible etcd answers (grant, keepalive, txn won, a node
#                 id's key attached to the granted lease, other ranges
#                 empty, put, revoke...): a "working" etcd, to combine with
#                 a hostile KIND on one path
#   garbage       binary noise, NUL bytes included, as application/json
#   html          an HTML error page with status 200
#   wrong_types   valid JSON, every expected field of the wrong type
#   huge_numbers  int64 fields far out of range, as strings and numbers
#   bad_values    lease id 0 / negative / non-numeric, TTL 0 or negative
#   missing       only a header: every field the call needs is absent
#   truncated     Content-Length larger than what is sent, then close
#   bad_json      complete but syntactically broken JSON
#   oversized     a 64 MiB body (a "valid" answer padded), streamed
#   hang          reads the request, never answers, keeps the connection
#   drip          headers, then one byte of body every 200 ms, forever
#   empty         status 200, empty body
#   close         closes the connection without answering
#   http500       status 500 with a text body
#   error_object  status 200 with a streaming-style etcd error object
#   deep          JSON nested 100000 levels deep
use strict;
use warnings;

use Getopt::Long;
use IO::Socket::INET;
use MIME::Base64;
use POSIX ();

my ($port, $mode_file, $pid_file);
GetOptions('port=i' => \$port, 'mode-file=s' => \$mode_file, 'pid-file=s' => \$pid_file)
  or die "usage: $0 --port P --mode-file F [--pid-file F]\n";
die "--port and --mode-file are required\n" unless $port && $mode_file;

$SIG{PIPE} = 'IGNORE';
$SIG{CHLD} = 'IGNORE';    # children are reaped by the kernel

my $listen = IO::Socket::INET->new(
	LocalAddr => '127.0.0.1',
	LocalPort => $port,
	Proto => 'tcp',
	Listen => 64,
	ReuseAddr => 1) or die "cannot listen on 127.0.0.1:$port: $!\n";

if ($pid_file)
{
	open(my $fh, '>', "$pid_file.tmp") or die;
	print $fh "$$\n";
	close($fh);
	rename("$pid_file.tmp", $pid_file) or die;
}
$| = 1;
print "hostile etcd listening on 127.0.0.1:$port, pid $$\n";

my $header = '"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","revision":"7","raft_term":"2"}';

while (1)
{
	my $client = $listen->accept or next;
	my $pid = fork();
	if (!defined $pid) { close($client); next; }
	if ($pid == 0)
	{
		close($listen);
		serve($client);
		POSIX::_exit(0);
	}
	close($client);
}

sub mode_for
{
	my ($path) = @_;
	open(my $fh, '<', $mode_file) or return 'garbage';
	my $spec = do { local $/; <$fh> } // '';
	close($fh);
	my %map;
	my @tokens = split ' ', $spec;
	return $tokens[0] if @tokens == 1 && $tokens[0] !~ /=/;
	for (@tokens) { my ($p, $k) = split /=/, $_, 2; $map{$p} = $k; }
	return $map{$path} // $map{'*'} // 'garbage';
}

# Read one request (headers and Content-Length body); returns (path, body)
# or () at end of connection.
sub read_request
{
	my ($sock) = @_;
	my $buf = '';
	while ($buf !~ /\r\n\r\n/)
	{
		my $n = sysread($sock, $buf, 65536, length $buf);
		return () unless $n;
	}
	my ($head, $rest) = split /\r\n\r\n/, $buf, 2;
	my ($method, $path) = $head =~ m{^(\S+)\s+(\S+)};
	my ($len) = $head =~ /^content-length:\s*(\d+)/im;
	$len //= 0;
	while (length $rest < $len)
	{
		my $n = sysread($sock, $rest, 65536, length $rest);
		last unless $n;
	}
	return ($path // '/', $rest);
}

sub send_all
{
	my ($sock, $data) = @_;
	while (length $data)
	{
		my $n = syswrite($sock, $data);
		return 0 unless defined $n && $n > 0;
		substr($data, 0, $n, '');
	}
	return 1;
}

sub respond
{
	my ($sock, $status, $type, $body) = @_;
	my $reason = $status == 200 ? 'OK' : 'Internal Server Error';
	return send_all($sock,
		"HTTP/1.1 $status $reason\r\nContent-Type: $type\r\nContent-Length: "
		  . length($body) . "\r\n\r\n$body");
}

# Plausible answers of a working etcd, by path.
sub ok_body
{
	my ($path, $req) = @_;
	my ($ttl) = $req =~ /"TTL"\s*:\s*"?(\d+)/;
	$ttl //= 10;
	my ($id) = $req =~ /"ID"\s*:\s*"?(\d+)/;
	$id //= '7587869497536512345';
	return qq({$header,"ID":"7587869497536512345","TTL":"$ttl"}) if $path =~ m{/lease/grant$};
	return qq({"result":{$header,"ID":"$id","TTL":"$ttl"}}\n) if $path =~ m{/lease/keepalive$};
	return qq({$header,"ID":"$id","TTL":"$ttl","grantedTTL":"$ttl"}) if $path =~ m{/lease/timetolive$};
	return qq({$header,"succeeded":true,"responses":[{"response_put":{$header}}]}) if $path =~ m{/kv/txn$};
	return qq({$header,"deleted":"1"}) if $path =~ m{/kv/deleterange$};
	return qq({"token":"hostile.token.1"}) if $path =~ m{/auth/authenticate$};
	# A node id's key, read back to prove the claim: it is attached to the
	# one lease this fake grants (every claim "wins").
	if ($path =~ m{/kv/range$} && $req =~ /"key"\s*:\s*"([A-Za-z0-9+\/=]+)"/)
	{
		my ($key64) = ($1);
		return qq({$header,"kvs":[{"key":"$key64","create_revision":"5","mod_revision":"5",)
		  . qq("version":"1","lease":"7587869497536512345"}],"count":"1"})
		  if decode_base64($key64) =~ m{/nodes/\d+$};
	}
	return qq({$header});    # range (no key), put, revoke
}

sub serve
{
	my ($sock) = @_;
	while (1)
	{
		my ($path, $req) = read_request($sock);
		return unless defined $path;
		my $kind = mode_for($path);
		print "request $path -> $kind\n";
		if ($kind eq 'ok')
		{
			respond($sock, 200, 'application/json', ok_body($path, $req)) or return;
		}
		elsif ($kind eq 'garbage')
		{
			my $noise = join('', map { chr(int(rand(256))) } 1 .. 300);
			respond($sock, 200, 'application/json', "\x00\xff\xfe{\"ID\":\x00$noise") or return;
		}
		elsif ($kind eq 'html')
		{
			respond($sock, 200, 'text/html',
				"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>"
				  . "<body><h1>Bad Gateway</h1><p>nginx</p></body></html>\n") or return;
		}
		elsif ($kind eq 'wrong_types')
		{
			respond($sock, 200, 'application/json',
				'{"header":"h","ID":["7587869497536512345"],"TTL":{"s":3},"result":"alive",'
				  . '"succeeded":"true","responses":{"response_put":1},"kvs":{"key":"a"},'
				  . '"count":[1],"token":{"t":1},"deleted":true,"grantedTTL":null}') or return;
		}
		elsif ($kind eq 'huge_numbers')
		{
			my $big = '9' x 400;
			respond($sock, 200, 'application/json',
				qq({"header":{"revision":"$big","raft_term":1e999},"ID":"$big","TTL":"184467440737095516160",)
				  . qq("result":{"ID":-$big,"TTL":1e400},"succeeded":true,"responses":[{"response_range":)
				  . qq({"kvs":[{"key":"eA==","create_revision":"$big","lease":"$big","value":"eA=="}],"count":"$big"}}],)
				  . qq("kvs":[{"key":"eA==","create_revision":"$big","value":"OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk="}],"count":"$big"})
			) or return;
		}
		elsif ($kind eq 'bad_values')
		{
			respond($sock, 200, 'application/json',
				qq({$header,"ID":"-12","TTL":"0","result":{$header,"ID":"abc","TTL":"-5"},)
				  . qq("succeeded":true,"responses":[]}) ) or return;
		}
		elsif ($kind eq 'missing')
		{
			respond($sock, 200, 'application/json', "{$header}") or return;
		}
		elsif ($kind eq 'truncated')
		{
			send_all($sock, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
				  . qq({$header,"ID":"75878694975)) ;
			return;
		}
		elsif ($kind eq 'bad_json')
		{
			respond($sock, 200, 'application/json', qq({$header,"ID":"7587869497536512345","TTL":"3",,}}]))
			  or return;
		}
		elsif ($kind eq 'oversized')
		{
			my $size = 64 * 1024 * 1024;
			my $open = '{"padding":"';
			my $close = '",' . substr(ok_body($path, $req), 1);
			my $pad = $size - length($open) - length($close);
			send_all($sock, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: $size\r\n\r\n$open")
			  or return;
			my $chunk = 'a' x 65536;
			while ($pad > 0)
			{
				my $piece = $pad >= 65536 ? $chunk : 'a' x $pad;
				send_all($sock, $piece) or return;
				$pad -= length $piece;
			}
			send_all($sock, $close) or return;
		}
		elsif ($kind eq 'hang')
		{
			# Never answer; wait for the client to give up.
			my $buf;
			while (sysread($sock, $buf, 65536)) { }
			return;
		}
		elsif ($kind eq 'drip')
		{
			send_all($sock, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{")
			  or return;
			while (1)
			{
				select(undef, undef, undef, 0.2);
				send_all($sock, ' ') or return;
			}
		}
		elsif ($kind eq 'empty')
		{
			respond($sock, 200, 'application/json', '') or return;
		}
		elsif ($kind eq 'close')
		{
			return;
		}
		elsif ($kind eq 'http500')
		{
			respond($sock, 500, 'text/plain', "internal error: the database is on fire\n") or return;
		}
		elsif ($kind eq 'error_object')
		{
			respond($sock, 200, 'application/json',
				'{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}')
			  or return;
		}
		elsif ($kind eq 'deep')
		{
			respond($sock, 200, 'application/json', ('[' x 100000) . (']' x 100000)) or return;
		}
		else
		{
			respond($sock, 500, 'text/plain', "unknown hostile mode $kind\n") or return;
		}
	}
}
