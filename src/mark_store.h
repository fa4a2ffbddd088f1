/*-------------------------------------------------------------------------
 *
 * mark_store.h
 *	  The persisted high-water marks, in the extension's table.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNOWFLAKE_MARK_STORE_H
#define SNOWFLAKE_MARK_STORE_H

#include "datatype/timestamp.h"

/*
 * Set by every call when the marks have no safe home: snowflake.database,
 * the extension's schema or its table is owned by a non-superuser, or the
 * extension is not installed there.  Nothing was read or written then.
 */
typedef struct MarkStoreRefusal
{
	char	   *message;		/* NULL when the home is safe */
	char	   *hint;
} MarkStoreRefusal;

/* What the table says about one node. */
typedef struct MarkStoreRead
{
	MarkStoreRefusal refusal;
	bool		found;			/* the node has a mark */
	int64		mark_millis;	/* the highest of its rows, ms since the epoch */
	bool		epoch_changed;	/* some mark: another epoch or layout */
	TimestampTz other_epoch;	/* that mark's epoch, when epoch_changed */
	char	   *other_layout;	/* and its layout */
} MarkStoreRead;

/* What a write of the node's mark came to. */
typedef struct MarkStoreWrite
{
	MarkStoreRefusal refusal;
	int64		merged_millis;	/* the mark now in the table */
} MarkStoreWrite;

/*
 * Each is one transaction and raises an error on failure.
 *
 * mark_store_write() sets the node's mark to mark_millis (ms since
 * snowflake.epoch), merging its rows into one: the mark becomes the highest
 * of mark_millis and the rows, so it only rises; except that at shutdown
 * the row holding own_millis, the worker's own last reservation, may come
 * down to the last issued ID (own_millis < 0: none).
 */
extern void mark_store_read(int node, bool wait_for_writers, MarkStoreRead *result);
extern void mark_store_write(int node, int64 mark_millis, int64 own_millis,
							 MarkStoreWrite *result);
extern void mark_store_check(MarkStoreRefusal *refusal);

extern bool mark_store_is_mark_table(Oid relid);

#endif							/* SNOWFLAKE_MARK_STORE_H */
