/*-------------------------------------------------------------------------
 *
 * node_lease.c
 *	  Holding a node id in etcd: lease, claim, keep-alive, fence, release,
 *	  and the node id's high-water mark kept in etcd.
 *
 * The worker first checks that <prefix>/layout, written by the first server
 * under the prefix, records this server's epoch and layout.  It grants a
 * lease of snowflake.etcd_lease_ttl and claims a node id by creating
 * <prefix>/nodes/<N> (six digits from 1024 up) attached to it, only if the
 * key does not exist.  Whoever holds that key may issue IDs under N.  A
 * keep-alive proves only that the lease lives, not that the key is still
 * ours (etcd may have lost it: keys deleted by hand, data wiped, a snapshot
 * restored), so every round, every TTL/4, renews the lease and then reads
 * the key back.  Only
 * when both succeed does the fence (shared fence_deadline) move, to when
 * the lease may expire as seen from this machine's monotonic clock: the time
 * the keep-alive was sent plus the TTL etcd granted, minus a tenth for
 * safety.  Backends check the fence themselves, so a worker that is
 * stopped, slow or cut off from etcd cannot stretch the life of a node id
 * beyond its lease, and a holder whose key vanished stops within one round.
 *
 * <prefix>/marks/<N> (no lease, so it outlives every holder) keeps N's
 * high-water mark: milliseconds since the Unix epoch, and etcd's cluster_id
 * when it was written.  It is raised, by compare-and-swap on its revision,
 * before the generator may issue up to it: whoever claims N next, on any
 * machine, starts above it.  Every write is guarded by <prefix>/nodes/<N>
 * still being attached to our lease, so only the holder of N ever writes
 * N's mark.  The one time it comes down is a clean shutdown, to the exact
 * last issued millisecond.  Only a mark this server wrote itself, found at
 * the very revision it recorded (mark_file.c), under the same cluster_id,
 * with etcd's revision never seen going back, proves that nobody held N
 * since: otherwise the worker waits out the longest time an unknown holder
 * could still be issuing (node_lease_fence_window_ms) before its first ID.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "access/xlog.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "postmaster/postmaster.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "etcd_client.h"
#include "layout.h"
#include "node_lease.h"
#include "settings.h"
#include "shared_state.h"

/* How many times a mark update that lost a race is tried again. */
#define NODE_LEASE_MARK_TRIES	5

static int64 node_lease_id = 0;
static int64 node_lease_stale_id = 0;	/* lost; revoked before the next grant */
static uint64 node_lease_keepalive_due = 0; /* monotonic us */
static int	node_lease_ttl = 0;

/* etcd's revision went back (a restore) since the last read of a mark. */
static bool node_lease_data_lost = false;

/* The node id held under the lease, -1 for none, and when it was claimed. */
static int	node_lease_node = -1;
static uint64 node_lease_claimed_at = 0;	/* monotonic us */

/* The last mark of a node this server wrote or read, for compare-and-swap. */
static int	node_mark_cached_node = -1;
static int64 node_mark_cached_revision = 0;
static int64 node_mark_cached_millis = 0;

/*
 * Node ids below this, the only ones before layouts had more than 10 node
 * bits, keep their decimal key <prefix>/nodes/<N>; those from it up have
 * six digits, <prefix>/nodes/001024 on.  etcd sorts keys as strings, so
 * only the six-digit keys sort in numeric order ("10" comes before "9"):
 * a claim counts those by ranges instead of listing them.
 */
#define NODE_LEASE_DECIMAL_NODES	1024

/* Blocks of node ids counted in one request while looking for a free one. */
#define NODE_LEASE_SEARCH_BLOCKS	16

static char *
node_lease_node_key(int node)
{
	return psprintf(node < NODE_LEASE_DECIMAL_NODES ? "%s/nodes/%d" : "%s/nodes/%06d",
					snowflake_etcd_prefix, node);
}

static char *
node_lease_mark_key(int node)
{
	return psprintf("%s/marks/%d", snowflake_etcd_prefix, node);
}

/* The value of a node id's key: which server holds it. */
static char *
node_lease_holder_value(void)
{
	char		host[256];
	StringInfoData value;

	if (gethostname(host, sizeof(host)) != 0)
		strlcpy(host, "unknown", sizeof(host));
	host[sizeof(host) - 1] = '\0';

	initStringInfo(&value);
	appendStringInfoString(&value, "{\"host\":");
	escape_json(&value, host);
	appendStringInfo(&value, ",\"port\":%d,\"system_identifier\":\"" UINT64_FORMAT "\"}",
					 PostPortNumber, GetSystemIdentifier());
	return value.data;
}

/* Move the fence to what a lease of ttl seconds, renewed at sent_at, allows. */
static void
node_lease_extend(uint64 sent_at, TimestampTz sent_wall, int ttl)
{
	uint64		ttl_us = (uint64) ttl * USECS_PER_SEC;

	node_lease_ttl = ttl;
	pg_atomic_write_u64(&snowflake_shared->fence_deadline,
						sent_at + ttl_us - ttl_us / 10);
	node_lease_keepalive_due = sent_at + ttl_us / 4;
	shared_state_set_lease(node_lease_id, sent_wall + (int64) ttl_us);
}

bool
node_lease_held(void)
{
	return node_lease_id != 0;
}

/*
 * The lease is gone, or may be: fence at once.  It is revoked before the
 * next grant in case etcd still has it, so that its node id frees sooner.
 */
void
node_lease_lost(void)
{
	pg_atomic_write_u64(&snowflake_shared->fence_deadline, 0);
	if (node_lease_id != 0)
		node_lease_stale_id = node_lease_id;
	node_lease_id = 0;
	node_lease_node = -1;
	shared_state_set_lease(0, 0);
}

/*
 * A lease this process did not grant (an earlier worker's), to revoke
 * before granting one; meanwhile fenced, as after a lost lease.
 */
void
node_lease_revoke_later(int64 lease_id)
{
	node_lease_lost();
	node_lease_stale_id = lease_id;
}

void
node_lease_keepalive_failed(void)
{
	/*
	 * Try again soon: from a round due at TTL/4, the fence (at TTL - TTL/10)
	 * leaves room for several more tries of this spacing.
	 */
	node_lease_keepalive_due = shared_state_monotonic_micros() +
		(uint64) node_lease_ttl * USECS_PER_SEC / 15;
}

/*
 * The longest a holder of a node id may go on issuing after its last proof
 * that the key was its own: the fence's distance.  A claimer that cannot
 * tell who held the node id before waits this long.
 */
int64
node_lease_fence_window_ms(void)
{
	int64		ttl_ms = (int64) Max(node_lease_ttl, snowflake_etcd_lease_ttl) * 1000;

	return ttl_ms - ttl_ms / 10;
}

uint64
node_lease_claim_time(void)
{
	return node_lease_claimed_at;
}

int64
node_lease_ms_until_keepalive(void)
{
	uint64		now = shared_state_monotonic_micros();

	if (node_lease_id == 0)
		return -1;
	return now >= node_lease_keepalive_due ? 0 :
		(int64) (node_lease_keepalive_due - now) / 1000 + 1;
}

void
node_lease_grant(void)
{
	uint64		sent_at;
	TimestampTz sent_wall;
	int			granted;
	int64		lease_id;

	if (node_lease_stale_id != 0)
	{
		etcd_lease_revoke(node_lease_stale_id);
		node_lease_stale_id = 0;
	}
	sent_at = shared_state_monotonic_micros();
	sent_wall = GetCurrentTimestamp();
	lease_id = etcd_lease_grant(snowflake_etcd_lease_ttl, &granted);
	node_lease_id = lease_id;
	node_lease_extend(sent_at, sent_wall, granted);
}

/*
 * One round of proof: the lease lives, and the node id's key is still
 * attached to it.  Returns false when either is not so (lost); an error
 * (etcd not answering) leaves the fence where it was.
 */
bool
node_lease_keepalive(void)
{
	uint64		sent_at = shared_state_monotonic_micros();
	TimestampTz sent_wall = GetCurrentTimestamp();
	int			ttl = etcd_lease_keepalive(node_lease_id);

	if (ttl == 0)
		return false;
	if (etcd_take_revision_regression())
	{
		node_lease_data_lost = true;
		ereport(WARNING,
				errmsg("etcd's revision went back: its data was restored from a snapshot "
					   "or lost"),
				errdetail("No more IDs are issued under node id %d until it is claimed "
						  "again and any other holder has been waited out.",
						  node_lease_node));
		return false;
	}
	if (node_lease_node >= 0)
	{
		EtcdKeyValue kv;

		etcd_get(node_lease_node_key(node_lease_node), &kv);
		if (etcd_take_revision_regression())
		{
			node_lease_data_lost = true;
			return false;
		}
		if (!kv.found || kv.lease != node_lease_id)
		{
			ereport(WARNING,
					errmsg("the etcd key %s is gone or no longer attached to this "
						   "server's lease", node_lease_node_key(node_lease_node)),
					errdetail("etcd lost the claim (keys deleted, data wiped or "
							  "restored); no more IDs are issued under node id %d.",
							  node_lease_node));
			return false;
		}
	}
	node_lease_extend(sent_at, sent_wall, ttl);
	return true;
}

void
node_lease_revoke(void)
{
	int64		lease_id = node_lease_id ? node_lease_id : node_lease_stale_id;

	node_lease_lost();
	node_lease_stale_id = 0;
	if (lease_id != 0)
		etcd_lease_revoke(lease_id);
}

/* Node id n of its key (node_lease_node_key), or -1 for any other key. */
static int
node_lease_node_of_key(const char *key)
{
	char	   *nodes_prefix = psprintf("%s/nodes/", snowflake_etcd_prefix);
	const char *digits = key + strlen(nodes_prefix);
	int			node;

	if (strncmp(key, nodes_prefix, strlen(nodes_prefix)) != 0 || *digits == '\0' ||
		strlen(digits) > 6 || strspn(digits, "0123456789") != strlen(digits))
		return -1;
	node = atoi(digits);
	return node <= snowflake_layout.max_node &&
		strcmp(key, node_lease_node_key(node)) == 0 ? node : -1;
}

static void
node_lease_hold(NodeClaim *claim, int node)
{
	claim->node = node;
	node_lease_node = node;
	node_lease_claimed_at = shared_state_monotonic_micros();
}

/*
 * Try to claim node: false if it is skipped (counted in *skipped) or held
 * by another server.  A key already attached to our own lease is ours: an
 * earlier claim whose answer was lost.
 */
static bool
node_lease_try(NodeClaim *claim, int node, const char *value, int *skipped)
{
	EtcdKeyValue holder;

	if (claim->now_millis < claim->skip_until[node])
	{
		(*skipped)++;
		return false;
	}
	if (etcd_create_if_absent(node_lease_node_key(node), value, node_lease_id, &holder) ||
		(holder.found && holder.lease == node_lease_id))
	{
		node_lease_hold(claim, node);
		return true;
	}
	return false;
}

/*
 * The keys of node ids below 1024: one range for 0 and one for the keys
 * that start with 1 to 9, since the six-digit keys, which all start with 0,
 * sort between them.
 */
static void
node_lease_decimal_ranges(char **keys, char **ends)
{
	keys[0] = psprintf("%s/nodes/0", snowflake_etcd_prefix);
	ends[0] = psprintf("%s/nodes/00", snowflake_etcd_prefix);
	keys[1] = psprintf("%s/nodes/1", snowflake_etcd_prefix);
	ends[1] = psprintf("%s/nodes/:", snowflake_etcd_prefix);	/* '9' + 1 */
}

/*
 * The lowest node id in [lo, hi), all six-digit ones, that no key holds,
 * or -1: the keys of a block of such ids are one range, so each round
 * counts NODE_LEASE_SEARCH_BLOCKS blocks in one request and goes into the
 * first that is not full.  Four rounds cover 64,512 ids.
 */
static int
node_lease_lowest_unheld(int lo, int hi)
{
	char	   *keys[NODE_LEASE_SEARCH_BLOCKS];
	char	   *ends[NODE_LEASE_SEARCH_BLOCKS];
	int64		counts[NODE_LEASE_SEARCH_BLOCKS];

	Assert(lo >= NODE_LEASE_DECIMAL_NODES);
	while (lo < hi)
	{
		int			size = (hi - lo + NODE_LEASE_SEARCH_BLOCKS - 1) / NODE_LEASE_SEARCH_BLOCKS;
		int			blocks = (hi - lo + size - 1) / size;
		int			i;

		for (i = 0; i < blocks; i++)
		{
			keys[i] = node_lease_node_key(lo + i * size);
			ends[i] = node_lease_node_key(Min(lo + (i + 1) * size, hi));
		}
		etcd_count_keys(blocks, keys, ends, counts);
		for (i = 0; i < blocks; i++)
			if (counts[i] < Min(lo + (i + 1) * size, hi) - (lo + i * size))
				break;
		if (i == blocks)
			return -1;
		if (size == 1)
			return lo + i;
		hi = Min(lo + (i + 1) * size, hi);
		lo += i * size;
	}
	return -1;
}

/*
 * Claim claim->wanted, or else the lowest free node id not skipped.  Below
 * 1024 the keys are listed (at most 1024, about 130 kB of answer); from
 * 1024 up free ones are found by counting, so that a claim costs a few small
 * requests however many of the 65,536 node ids are held.
 */
void
node_lease_claim(NodeClaim *claim)
{
	char	   *value = node_lease_holder_value();
	EtcdKeyValue holder;
	bool		wide = snowflake_layout.max_node >= NODE_LEASE_DECIMAL_NODES;
	int			decimal_end = Min(snowflake_layout.max_node + 1, NODE_LEASE_DECIMAL_NODES);
	char	   *keys[2];
	char	   *ends[2];
	int			skipped = 0;
	ListCell   *cell;
	int			node;

	claim->node = -1;
	claim->problem = NULL;
	node_lease_node = -1;
	if (etcd_take_revision_regression())
		node_lease_data_lost = true;

	if (claim->wanted >= 0)
	{
		if (etcd_create_if_absent(node_lease_node_key(claim->wanted), value, node_lease_id, &holder) ||
			(holder.found && holder.lease == node_lease_id))
			node_lease_hold(claim, claim->wanted);
		else
			claim->problem = psprintf("snowflake node id %d is held by another server: %s",
									  claim->wanted,
									  holder.found ? etcd_printable(holder.value, 160) :
									  "(released meanwhile)");
		return;
	}

	/*
	 * A key on our lease, of an earlier claim whose answer was lost, is ours
	 * (below 1024 the listing shows it too).
	 */
	if (wide)
		foreach(cell, etcd_lease_keys(node_lease_id))
	{
		node = node_lease_node_of_key(lfirst(cell));
		if (node >= 0 && claim->now_millis >= claim->skip_until[node])
		{
			node_lease_hold(claim, node);
			return;
		}
	}

	node_lease_decimal_ranges(keys, ends);
	if (wide)
	{
		int64		counts[2];

		etcd_count_keys(2, keys, ends, counts);
		if (counts[0] + counts[1] >= NODE_LEASE_DECIMAL_NODES)
			decimal_end = 0;	/* all held: nothing to list */
	}
	if (decimal_end > 0)
	{
		bool		taken[NODE_LEASE_DECIMAL_NODES] = {false};

		foreach(cell, list_concat(etcd_list_keys(keys[0], ends[0]),
								  etcd_list_keys(keys[1], ends[1])))
		{
			EtcdKeyValue *kv = lfirst(cell);

			node = node_lease_node_of_key(kv->key);
			if (node < 0 || node >= decimal_end || taken[node])
				continue;
			if (kv->lease == node_lease_id && claim->now_millis >= claim->skip_until[node])
			{
				node_lease_hold(claim, node);
				return;
			}
			taken[node] = true;
		}
		for (node = 0; node < decimal_end; node++)
			if (!taken[node] && node_lease_try(claim, node, value, &skipped))
				return;
	}

	/* A try lost to another claimer, or skipped: look again above it. */
	for (node = NODE_LEASE_DECIMAL_NODES; wide && node <= snowflake_layout.max_node; node++)
	{
		node = node_lease_lowest_unheld(node, snowflake_layout.max_node + 1);
		if (node < 0 || node_lease_try(claim, node, value, &skipped))
			break;
	}
	if (claim->node >= 0)
		return;

	if (skipped == 0)
		claim->problem = psprintf("no free snowflake node id: all %d node ids under %s/nodes/ "
								  "are held by other servers",
								  snowflake_layout.max_node + 1, snowflake_etcd_prefix);
	else
		claim->problem = psprintf("no free snowflake node id: %d node ids under %s/nodes/ are "
								  "held, and the high-water marks of the other %d are too far "
								  "ahead of this server's clock",
								  snowflake_layout.max_node + 1 - skipped,
								  snowflake_etcd_prefix, skipped);
}

/* A timestamp in UTC, whatever the server's TimeZone: 2024-01-01 00:00:00+00. */
static char *
node_lease_utc_text(TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;
	char		text[MAXDATELEN + 1];

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				errmsg("timestamp out of range"));
	tm.tm_isdst = 0;			/* UTC, and say so: +00 */
	EncodeDateTime(&tm, fsec, true, 0, NULL, USE_ISO_DATES, text);
	return pstrdup(text);
}

/*
 * The servers under one prefix must make IDs of one epoch and layout, or
 * their IDs could repeat each other's or sort apart.  The first server to
 * use the prefix records its own in <prefix>/layout (with no lease: it
 * outlives every server); every later one compares before it claims a node
 * id.  Returns NULL when they agree, else the refusal, naming both.
 */
char *
node_lease_check_prefix(char **hint)
{
	char	   *key = psprintf("%s/layout", snowflake_etcd_prefix);
	char	   *ours = psprintf("epoch %s, layout %s", node_lease_utc_text(snowflake_epoch),
								snowflake_layout.text);
	EtcdKeyValue record;

	if (etcd_create_if_absent(key, ours, 0, &record) || !record.found ||
		strcmp(record.value, ours) == 0)
		return NULL;
	*hint = psprintf("Every server under one etcd prefix needs the same snowflake.epoch and "
					 "snowflake.layout: set this server's as %s says and restart it, or give "
					 "it another snowflake.etcd_prefix.", key);
	return psprintf("the etcd prefix %s is for IDs of %s, but this server makes IDs of %s",
					snowflake_etcd_prefix, etcd_printable(record.value, 120), ours);
}

/*
 * Give a node id back (its key), keeping the lease for another claim.  Only
 * while the key is still ours: it may have gone with a lapsed lease and been
 * claimed by another server since.
 */
void
node_lease_release(int node)
{
	node_lease_node = -1;
	(void) etcd_guarded_delete(node_lease_node_key(node), node_lease_id);
}

/*
 * A mark as etcd holds it: decimal milliseconds since the Unix epoch, then
 * a space and the cluster_id it was written under (older marks have none).
 * *proven says whether that is the cluster answering now.
 */
static int64
node_lease_parse_mark(int node, const char *value, bool *proven)
{
	const char *p;
	const char *cluster = strchr(value, ' ');
	size_t		digits = cluster ? (size_t) (cluster - value) : strlen(value);
	int64		unix_millis = 0;

	if (digits == 0 || digits > 15)
		goto bad;
	for (p = value; p < value + digits; p++)
	{
		if (*p < '0' || *p > '9')
			goto bad;
		unix_millis = unix_millis * 10 + (*p - '0');
	}
	*proven = cluster != NULL && etcd_cluster_id()[0] != '\0' &&
		strcmp(cluster + 1, etcd_cluster_id()) == 0;
	/* A mark past the layout's range would overflow into the node bits. */
	if (unix_millis - snowflake_epoch_unix_millis(snowflake_epoch) > snowflake_layout.max_millis)
		goto bad;
	return Max(unix_millis - snowflake_epoch_unix_millis(snowflake_epoch), 0);

bad:
	etcd_count_error();
	ereport(ERROR,
			errcode(ERRCODE_DATA_CORRUPTED),
			errmsg("the etcd key %s holds \"%s\", not a high-water mark of this epoch",
				   node_lease_mark_key(node), etcd_printable(value, 40)),
			errhint("It must be milliseconds since 1970-01-01 UTC, optionally followed by "
					"a space and etcd's cluster id. Correct or delete it with etcdctl once "
					"no server holds node id %d.", node));
	pg_unreachable();
}

static bool
node_lease_cache_mark(int node, const EtcdKeyValue *kv)
{
	bool		proven = false;

	node_mark_cached_node = node;
	node_mark_cached_revision = kv->found ? kv->mod_revision : 0;
	node_mark_cached_millis = kv->found ? node_lease_parse_mark(node, kv->value, &proven) : 0;
	return proven;
}

void
node_lease_read_mark(int node, NodeLeaseMark *mark)
{
	EtcdKeyValue kv;

	etcd_get(node_lease_mark_key(node), &kv);
	if (etcd_take_revision_regression())
		node_lease_data_lost = true;
	mark->trusted = node_lease_cache_mark(node, &kv) && !node_lease_data_lost;
	node_lease_data_lost = false;
	mark->millis = node_mark_cached_millis;
	mark->revision = node_mark_cached_revision;
}

/* The etcd revision of node's mark as last written or read; 0: unknown. */
int64
node_lease_mark_revision(int node)
{
	return node_mark_cached_node == node ? node_mark_cached_revision : 0;
}

/* Whether node's mark in etcd, as last written or read, is at least millis. */
bool
node_lease_mark_covers(int node, int64 millis)
{
	return node_mark_cached_node == node && node_mark_cached_millis >= millis;
}

/*
 * Write the node's mark in etcd as the holder of the node id: only while
 * <prefix>/nodes/<N> is attached to this lease, and at the revision last
 * seen.  Returns false if the mark changed meanwhile (the cache then holds
 * it); raises if the node id is no longer ours, after fencing.
 */
static bool
node_lease_write_mark(int node, int64 millis)
{
	EtcdKeyValue current;

	switch (etcd_guarded_put(node_lease_node_key(node), node_lease_id, node_lease_mark_key(node),
							 psprintf(INT64_FORMAT " %s", millis + snowflake_epoch_unix_millis(snowflake_epoch),
									  etcd_cluster_id()),
							 node_mark_cached_revision, &current))
	{
		case ETCD_WRITTEN:
			node_mark_cached_revision = current.mod_revision;
			node_mark_cached_millis = millis;
			return true;
		case ETCD_CHANGED:
			(void) node_lease_cache_mark(node, &current);
			return false;
		case ETCD_GUARD_LOST:
			break;
	}
	node_lease_lost();
	ereport(ERROR,
			errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			errmsg("the etcd key %s is no longer attached to this server's lease",
				   node_lease_node_key(node)),
			errdetail("No more IDs are issued under node id %d.", node));
	pg_unreachable();
}

/*
 * Raise the node's mark in etcd to at least millis.  A mark already there
 * was written by a holder of the node id (writes are guarded), this one or
 * one before it, so it covers the reservation.
 */
void
node_lease_raise_mark(int node, int64 millis)
{
	int			tries;

	if (node_mark_cached_node != node)
	{
		NodeLeaseMark current;

		node_lease_read_mark(node, &current);
	}

	for (tries = 0; tries < NODE_LEASE_MARK_TRIES; tries++)
	{
		if (node_mark_cached_millis >= millis)
			return;
		if (node_lease_write_mark(node, millis))
			return;
	}
	ereport(ERROR,
			errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			errmsg("could not raise the etcd key %s: it kept changing",
				   node_lease_mark_key(node)));
}

/*
 * At clean shutdown, with the generator closed: bring the mark down to the
 * exact last issued millisecond, still at or above every ID of the node
 * id, so that the next holder (often this server, restarting) issues at
 * once instead of waiting out the reservation.
 */
void
node_lease_settle_mark(int node, int64 last_millis)
{
	if (node_mark_cached_node == node &&
		node_mark_cached_millis > last_millis)
		(void) node_lease_write_mark(node, last_millis);
}
