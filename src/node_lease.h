/*-------------------------------------------------------------------------
 *
 * node_lease.h
 *	  Holding a node id in etcd: lease, claim, keep-alive, fence, release,
 *	  and the node id's high-water mark kept in etcd.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNOWFLAKE_NODE_LEASE_H
#define SNOWFLAKE_NODE_LEASE_H

#include "layout.h"

typedef struct NodeClaim
{
	int			wanted;			/* the configured node id, or -1 for any */
	const int64 *skip_until;	/* per node id: skipped before this clock ms */
	int64		now_millis;		/* the clock, ms since the epoch */
	int			node;			/* out: the node id now held, or -1 */
	char	   *problem;		/* out: why none is held */
} NodeClaim;

/* A node id's mark in etcd, as read. */
typedef struct NodeLeaseMark
{
	int64		millis;			/* ms since snowflake.epoch; 0 for none */
	int64		revision;		/* its mod_revision, 0 for none */
	bool		trusted;		/* under this etcd cluster, no loss seen */
} NodeLeaseMark;

/* The worker's steps with etcd: each raises an error on failure. */
extern void node_lease_grant(void);
extern bool node_lease_keepalive(void);
extern void node_lease_revoke(void);
extern char *node_lease_check_prefix(char **hint);
extern void node_lease_claim(NodeClaim *claim);
extern void node_lease_release(int node);
extern void node_lease_read_mark(int node, NodeLeaseMark *mark);
extern void node_lease_raise_mark(int node, int64 millis);
extern void node_lease_settle_mark(int node, int64 last_millis);

extern bool node_lease_held(void);
extern void node_lease_lost(void);
extern void node_lease_revoke_later(int64 lease_id);
extern void node_lease_keepalive_failed(void);
extern int64 node_lease_ms_until_keepalive(void);
extern int64 node_lease_fence_window_ms(void);
extern uint64 node_lease_claim_time(void);
extern bool node_lease_mark_covers(int node, int64 millis);
extern int64 node_lease_mark_revision(int node);

#endif							/* SNOWFLAKE_NODE_LEASE_H */
