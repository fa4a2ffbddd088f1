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

/* What the table says about one node (node is the input). */
typedef struct MarkStoreRead
{
	int			node;
	MarkStoreRefusal refusal;
	bool		found;			/* the node has a mark */
	int64		mark_millis;	/* the highest of its rows, ms since the epoch */
	bool		epoch_changed;	/* some mark was written under another epoch */
	TimestampTz other_epoch;	/* that epoch, when epoch_changed */
} MarkStoreRead;

/*
 * Set the node's mark to mark_millis, merging its rows into one.  A row
 * above keep_above is kept (the mark never drops below it): 0 keeps every
 * row, so the mark only rises; at shutdown it is the reservation, so that
 * only the worker's own reservation comes down to the last issued ID.
 */
typedef struct MarkStoreWrite
{
	int			node;
	int64		mark_millis;	/* ms since snowflake.epoch */
	int64		keep_above;
	MarkStoreRefusal refusal;
	int64		merged_millis;	/* out: the mark now in the table */
} MarkStoreWrite;

/* Each is one transaction; the argument is a MarkStoreRead/Write. */
extern void mark_store_read(void *read);
extern void mark_store_write(void *write);

extern bool mark_store_is_mark_table(Oid relid);

#endif							/* SNOWFLAKE_MARK_STORE_H */
