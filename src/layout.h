/*-------------------------------------------------------------------------
 *
 * layout.h
 *	  The bit layout of a snowflake ID, in one place.
 *
 * An ID is a positive int64 made of, from the top: a time field (units of
 * 1 ms, 10 ms or 1 s since the epoch), then the node id and the sequence
 * within the unit in either order, then optionally some zero bits.  The
 * layout is the server's snowflake.layout, fixed for the life of a data
 * directory like the epoch; the default is 41 bits of ms | 10-bit node |
 * 12-bit sequence.  The generator and the SQL decode and compose functions
 * both use these helpers, so the layout cannot drift between the code that
 * makes IDs and the code that reads them.
 *
 * The generator does not keep IDs but words: time << (node + sequence bits)
 * | node << sequence bits | sequence, whatever the layout's order and zero
 * bits.  Consecutive IDs are then consecutive words, which is what one
 * compare-and-swap moves; snowflake_id_of_word() makes the ID a caller
 * sees.  For the default layout the two are the same number.
 *
 * Marks and reservations are kept in milliseconds since the epoch, whatever
 * the unit: the mark of a word is the first millisecond of its unit.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNOWFLAKE_LAYOUT_H
#define SNOWFLAKE_LAYOUT_H

#include "datatype/timestamp.h"

/* The most node ids a layout may have (16 bits), and so etcd's limit too. */
#define SNOWFLAKE_MAX_NODE_BITS		16
#define SNOWFLAKE_NODE_LIMIT		(1 << SNOWFLAKE_MAX_NODE_BITS)
#define SNOWFLAKE_MAX_SEQUENCE_BITS 22

/* Longest canonical layout text, as SHOW and the mark table keep it. */
#define SNOWFLAKE_LAYOUT_TEXT_LEN	64

typedef struct SnowflakeLayout
{
	/* As configured */
	int			time_bits;		/* of which usable: see max_tick */
	int			node_bits;
	int			sequence_bits;
	int			zero_bits;		/* always 0 at the bottom of an ID */
	bool		node_low;		/* node below sequence (Sonyflake) */
	int			unit_ms;		/* 1, 10 or 1000 */

	/* Derived by layout_derive() */
	int64		unit_micros;
	int			tick_shift;		/* of the time field in a word */
	int64		max_tick;		/* bit 63 stays 0; see layout.c */
	int			max_node;
	int			max_sequence;
	int			ids_per_tick;
	int64		max_millis;		/* first ms of the last unit */
	char		text[SNOWFLAKE_LAYOUT_TEXT_LEN];	/* canonical form */
} SnowflakeLayout;

/* The server's layout, set once at start from snowflake.layout. */
extern SnowflakeLayout snowflake_layout;

/* Words of the server's layout (see above). */
static inline int64
snowflake_compose(int64 millis, int node, int sequence)
{
	const SnowflakeLayout *layout = &snowflake_layout;

	return ((millis / layout->unit_ms) << layout->tick_shift) |
		((int64) node << layout->sequence_bits) | (int64) sequence;
}

static inline int64
snowflake_tick_of(int64 word)
{
	return word >> snowflake_layout.tick_shift;
}

/* The first millisecond of the word's unit, since the epoch. */
static inline int64
snowflake_millis(int64 word)
{
	return snowflake_tick_of(word) * snowflake_layout.unit_ms;
}

static inline int
snowflake_node_of(int64 word)
{
	return (int) ((word >> snowflake_layout.sequence_bits) &
				  snowflake_layout.max_node);
}

static inline int
snowflake_sequence_of(int64 word)
{
	return (int) (word & snowflake_layout.max_sequence);
}

/* The ID of a word, in the layout's order and with its zero bits. */
static inline int64
layout_id_of_word(const SnowflakeLayout *layout, int64 word)
{
	if (likely(!layout->node_low))
		return word << layout->zero_bits;
	return (((word >> layout->tick_shift) << layout->tick_shift) |
			((word & layout->max_sequence) << layout->node_bits) |
			((word >> layout->sequence_bits) & layout->max_node)) << layout->zero_bits;
}

static inline int64
snowflake_id_of_word(int64 word)
{
	return layout_id_of_word(&snowflake_layout, word);
}

/* The fields of an ID (any bits set in its zero bits are ignored). */
static inline void
layout_split_id(const SnowflakeLayout *layout, int64 id,
				int64 *tick, int *node, int *sequence)
{
	int64		bits = id >> layout->zero_bits;

	*tick = bits >> layout->tick_shift;
	if (layout->node_low)
	{
		*node = (int) (bits & layout->max_node);
		*sequence = (int) ((bits >> layout->node_bits) & layout->max_sequence);
	}
	else
	{
		*node = (int) ((bits >> layout->sequence_bits) & layout->max_node);
		*sequence = (int) (bits & layout->max_sequence);
	}
}

/* An ID of the fields, each already in range. */
static inline int64
layout_make_id(const SnowflakeLayout *layout, int64 tick, int node,
			   int sequence)
{
	return layout_id_of_word(layout, (tick << layout->tick_shift) |
							 ((int64) node << layout->sequence_bits) | sequence);
}

/*
 * Parse a layout: a preset name or the custom form (see layout.c).  On
 * failure returns false with *problem saying which rule is broken; never
 * raises.  *epoch_text is the preset's own epoch, or NULL (custom layouts,
 * and the default, whose epoch is snowflake.epoch's default).
 */
extern bool layout_parse(const char *text, SnowflakeLayout *layout,
						 const char **epoch_text, char **problem);

/* What a layout covers: years from the epoch, for messages and docs. */
extern double layout_years(const SnowflakeLayout *layout);

/* The canonical text of the layout IDs had before snowflake.layout. */
#define SNOWFLAKE_ORIGINAL_LAYOUT	"time 41, node 10, sequence 12, unit 1ms"

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
