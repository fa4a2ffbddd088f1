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

/* What the table says about one node (node is the input). */
typedef struct MarkStoreRead
{
	int			node;
	bool		found;			/* the node has a mark */
	int64		mark_millis;	/* its mark, ms since snowflake.epoch */
	bool		epoch_changed;	/* some mark was written under another epoch */
	TimestampTz other_epoch;	/* that epoch, when epoch_changed */
} MarkStoreRead;

typedef struct MarkStoreWrite
{
	int			node;
	int64		mark_millis;	/* ms since snowflake.epoch */
} MarkStoreWrite;

/* Each is one transaction; the argument is a MarkStoreRead/Write. */
extern void mark_store_prepare(void *unused);
extern void mark_store_read(void *read);
extern void mark_store_write(void *write);

#endif							/* SNOWFLAKE_MARK_STORE_H */
