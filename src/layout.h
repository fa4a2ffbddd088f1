/*-------------------------------------------------------------------------
 *
 * layout.h
 *	  The bit layout of a snowflake ID, in one place.
 *
 * An ID is a positive int64: bit 63 is zero, bits 62..22 hold the
 * milliseconds since the epoch, bits 21..12 the node id and bits 11..0 the
 * sequence within that millisecond.  The generator and the SQL decode and
 * compose functions both use these helpers, so the layout cannot drift
 * between the code that makes IDs and the code that reads them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNOWFLAKE_LAYOUT_H
#define SNOWFLAKE_LAYOUT_H

#include "datatype/timestamp.h"

#define SNOWFLAKE_SEQUENCE_BITS		12
#define SNOWFLAKE_NODE_BITS			10
#define SNOWFLAKE_TIMESTAMP_BITS	41

#define SNOWFLAKE_NODE_SHIFT		SNOWFLAKE_SEQUENCE_BITS
#define SNOWFLAKE_TIMESTAMP_SHIFT	(SNOWFLAKE_SEQUENCE_BITS + SNOWFLAKE_NODE_BITS)

#define SNOWFLAKE_MAX_SEQUENCE		((1 << SNOWFLAKE_SEQUENCE_BITS) - 1)	/* 4095 */
#define SNOWFLAKE_MAX_NODE			((1 << SNOWFLAKE_NODE_BITS) - 1)	/* 1023 */
#define SNOWFLAKE_MAX_MILLIS		((INT64CONST(1) << SNOWFLAKE_TIMESTAMP_BITS) - 1)
#define SNOWFLAKE_IDS_PER_MILLI		(SNOWFLAKE_MAX_SEQUENCE + 1)

static inline int64
snowflake_compose(int64 millis, int node, int sequence)
{
	return (millis << SNOWFLAKE_TIMESTAMP_SHIFT) |
		((int64) node << SNOWFLAKE_NODE_SHIFT) |
		(int64) sequence;
}

static inline int64
snowflake_millis(int64 id)
{
	return id >> SNOWFLAKE_TIMESTAMP_SHIFT;
}

static inline int
snowflake_node_of(int64 id)
{
	return (int) ((id >> SNOWFLAKE_NODE_SHIFT) & SNOWFLAKE_MAX_NODE);
}

static inline int
snowflake_sequence_of(int64 id)
{
	return (int) (id & SNOWFLAKE_MAX_SEQUENCE);
}

/*
 * In memory a mark, like an ID's timestamp, is milliseconds since the epoch
 * (snowflake.epoch, a TimestampTz).  These two convert at the edges: to a
 * timestamp (the mark table, messages, status), and to milliseconds since
 * the Unix epoch (the mark file and etcd keep marks that way, so that they
 * do not depend on the epoch): unix_millis = millis + the offset below.
 */
#define SNOWFLAKE_UNIX_TO_POSTGRES_MICROS \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY)

static inline TimestampTz
snowflake_millis_to_timestamp(TimestampTz epoch, int64 millis)
{
	return epoch + millis * 1000;
}

/* Milliseconds from the Unix epoch (1970-01-01 UTC) to epoch. */
static inline int64
snowflake_epoch_unix_millis(TimestampTz epoch)
{
	return epoch / 1000 + SNOWFLAKE_UNIX_TO_POSTGRES_MICROS / 1000;
}

#endif							/* SNOWFLAKE_LAYOUT_H */
