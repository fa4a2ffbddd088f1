/*-------------------------------------------------------------------------
 *
 * layout.c
 *	  Reads a layout: a preset name or the custom form, with its rules.
 *
 * The custom form lists the fields from the top bit down, each with its
 * width, and the time unit:
 *
 *	  time 41, node 10, sequence 12, unit 1ms
 *	  time 39, sequence 8, node 16, unit 10ms	(Sonyflake's order)
 *	  time 41, node 5, sequence 12, zero 6, unit 1ms
 *
 * time comes first (IDs sort by time), node and sequence follow in either
 * order, zero (bits always 0) last; unit is 1ms, 10ms or 1s and defaults
 * to 1ms.  The fields may take all 64 bits: bit 63 is the sign and stays 0,
 * so the time field then has one bit fewer to count with (Instagram's
 * 41-bit time counts 40 bits of ms in a positive bigint).  A layout must
 * cover at least 10 years from its epoch, and have at most 65,536 node ids;
 * a time field counts at most about 146,000 years, however wide.
 *
 * Parsing never raises: the setting's check hook and the SQL functions
 * report a problem each in their own way.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "lib/stringinfo.h"

#include "layout.h"

SnowflakeLayout snowflake_layout;

#define LAYOUT_MIN_YEARS	10
#define LAYOUT_MS_PER_YEAR	(365.25 * 86400.0 * 1000.0)

/*
 * The longest a time field counts, in microseconds: about 146,000 years.
 * Timestamps end in 294276 AD, so a wider field could not be read anyway.
 * Capped, the field's end in ms and in microseconds fits an int64, and so
 * does the epoch plus that for any epoch before the year 148,000.
 */
#define LAYOUT_MAX_SPAN_MICROS	(INT64CONST(1) << 62)

typedef struct LayoutPreset
{
	const char *name;
	const char *fields;
	const char *epoch;			/* NULL: snowflake.epoch's default */
} LayoutPreset;

static const LayoutPreset layout_presets[] = {
	{"snowflake", SNOWFLAKE_ORIGINAL_LAYOUT, NULL},
	{"twitter", SNOWFLAKE_ORIGINAL_LAYOUT, "2010-11-04 01:42:54.657+00"},
	{"instagram", "time 41, node 13, sequence 10, unit 1ms",
	"2011-08-24 21:07:01.721+00"},
	{"sonyflake", "time 39, sequence 8, node 16, unit 10ms",
	"2014-09-01 00:00:00+00"},
};

double
layout_years(const SnowflakeLayout *layout)
{
	return (double) (layout->max_tick + 1) * layout->unit_ms / LAYOUT_MS_PER_YEAR;
}

/* Fill in what follows from the configured widths, and check the rules. */
static bool
layout_derive(SnowflakeLayout *layout, char **problem)
{
	int			total = layout->time_bits + layout->node_bits +
	layout->sequence_bits + layout->zero_bits;
	int			usable_time_bits;

	if (layout->node_bits < 1 || layout->node_bits > SNOWFLAKE_MAX_NODE_BITS)
	{
		*problem = psprintf("node must have 1 to %d bits, not %d",
							SNOWFLAKE_MAX_NODE_BITS, layout->node_bits);
		return false;
	}
	if (layout->sequence_bits < 1 || layout->sequence_bits > SNOWFLAKE_MAX_SEQUENCE_BITS)
	{
		*problem = psprintf("sequence must have 1 to %d bits, not %d",
							SNOWFLAKE_MAX_SEQUENCE_BITS, layout->sequence_bits);
		return false;
	}
	if (layout->time_bits < 1)
	{
		*problem = psprintf("time must have at least 1 bit, not %d",
							layout->time_bits);
		return false;
	}
	if (total > 64)
	{
		*problem = psprintf("the fields take %d bits, more than the 64 of an ID",
							total);
		return false;
	}

	/* Bit 63 is the sign: a 64-bit layout counts time with one bit fewer. */
	usable_time_bits = Min(layout->time_bits, 63 - (total - layout->time_bits));
	layout->unit_micros = (int64) layout->unit_ms * 1000;
	layout->tick_shift = layout->node_bits + layout->sequence_bits;
	layout->max_tick = Min((INT64CONST(1) << usable_time_bits) - 1,
						   LAYOUT_MAX_SPAN_MICROS / layout->unit_micros);
	layout->max_node = (1 << layout->node_bits) - 1;
	layout->max_sequence = (1 << layout->sequence_bits) - 1;
	layout->ids_per_tick = layout->max_sequence + 1;
	layout->max_millis = layout->max_tick * layout->unit_ms;

	if (layout_years(layout) < LAYOUT_MIN_YEARS)
	{
		*problem = psprintf("the time field covers %.1f years, less than the %d "
							"a layout must cover",
							layout_years(layout), LAYOUT_MIN_YEARS);
		return false;
	}

	snprintf(layout->text, sizeof(layout->text),
			 "time %d, %s %d, %s %d%s, unit %s",
			 layout->time_bits,
			 layout->node_low ? "sequence" : "node",
			 layout->node_low ? layout->sequence_bits : layout->node_bits,
			 layout->node_low ? "node" : "sequence",
			 layout->node_low ? layout->node_bits : layout->sequence_bits,
			 layout->zero_bits > 0 ? psprintf(", zero %d", layout->zero_bits) : "",
			 layout->unit_ms == 1 ? "1ms" : layout->unit_ms == 10 ? "10ms" : "1s");
	return true;
}

/* One "name value" item of the custom form; false when it is not one. */
static bool
layout_read_item(const char *item, int len, char *name, size_t name_size,
				 char *value, size_t value_size)
{
	int			i = 0;
	int			n;

	while (i < len && isspace((unsigned char) item[i]))
		i++;
	for (n = 0; i < len && isalpha((unsigned char) item[i]); i++)
	{
		if (n + 1 >= name_size)
			return false;
		name[n++] = tolower((unsigned char) item[i]);
	}
	name[n] = '\0';
	while (i < len && isspace((unsigned char) item[i]))
		i++;
	for (n = 0; i < len && isalnum((unsigned char) item[i]); i++)
	{
		if (n + 1 >= value_size)
			return false;
		value[n++] = tolower((unsigned char) item[i]);
	}
	value[n] = '\0';
	while (i < len && isspace((unsigned char) item[i]))
		i++;
	return i == len && name[0] != '\0' && value[0] != '\0';
}

static bool
layout_read_bits(const char *name, const char *value, int *bits, char **problem)
{
	char	   *end;
	long		parsed = strtol(value, &end, 10);

	if (*end != '\0' || parsed < 0 || parsed > 64)
	{
		*problem = psprintf("%s must be a number of bits, not \"%s\"", name, value);
		return false;
	}
	*bits = (int) parsed;
	return true;
}

static bool
layout_parse_fields(const char *text, SnowflakeLayout *layout, char **problem)
{
	const char *p = text;
	int			position = 0;	/* fields read so far, unit aside */
	bool		seen_time = false,
				seen_node = false,
				seen_sequence = false,
				seen_zero = false,
				seen_unit = false;
	char		name[16];
	char		value[16];

	memset(layout, 0, sizeof(*layout));
	layout->unit_ms = 1;
	for (;;)
	{
		const char *end = strchr(p, ',');
		int			len = end ? (int) (end - p) : (int) strlen(p);

		if (!layout_read_item(p, len, name, sizeof(name), value, sizeof(value)))
		{
			*problem = psprintf("\"%.*s\" is neither a preset (snowflake, twitter, "
								"instagram, sonyflake) nor a field such as \"node 10\"",
								len, p);
			return false;
		}
		if (strcmp(name, "unit") == 0)
		{
			if (seen_unit)
				goto twice;
			seen_unit = true;
			if (strcmp(value, "1ms") == 0)
				layout->unit_ms = 1;
			else if (strcmp(value, "10ms") == 0)
				layout->unit_ms = 10;
			else if (strcmp(value, "1s") == 0)
				layout->unit_ms = 1000;
			else
			{
				*problem = psprintf("unit must be 1ms, 10ms or 1s, not \"%s\"", value);
				return false;
			}
		}
		else if (seen_zero && strcmp(name, "zero") == 0)
			goto twice;
		else if (seen_zero)
		{
			*problem = pstrdup("zero comes after time, node and sequence: "
							   "it is the lowest bits");
			return false;
		}
		else if (strcmp(name, "time") == 0)
		{
			if (seen_time)
				goto twice;
			if (position != 0)
			{
				*problem = pstrdup("time must be the first field: IDs sort by time");
				return false;
			}
			seen_time = true;
			if (!layout_read_bits(name, value, &layout->time_bits, problem))
				return false;
			position++;
		}
		else if (strcmp(name, "node") == 0 || strcmp(name, "sequence") == 0)
		{
			bool		is_node = name[0] == 'n';

			if (is_node ? seen_node : seen_sequence)
				goto twice;
			if (!seen_time)
			{
				*problem = pstrdup("time must be the first field: IDs sort by time");
				return false;
			}
			if (is_node)
				seen_node = true;
			else
				seen_sequence = true;
			/* The second of the two is the lower one. */
			if (is_node && seen_sequence)
				layout->node_low = true;
			if (!layout_read_bits(name, value,
								  is_node ? &layout->node_bits : &layout->sequence_bits,
								  problem))
				return false;
			position++;
		}
		else if (strcmp(name, "zero") == 0)
		{
			if (!seen_node || !seen_sequence)
			{
				*problem = pstrdup("zero comes after time, node and sequence: "
								   "it is the lowest bits");
				return false;
			}
			seen_zero = true;
			if (!layout_read_bits(name, value, &layout->zero_bits, problem))
				return false;
		}
		else
		{
			*problem = psprintf("\"%s\" is not a field: the fields are time, node, "
								"sequence, zero and unit", name);
			return false;
		}
		if (end == NULL)
			break;
		p = end + 1;
	}
	if (!seen_time || !seen_node || !seen_sequence)
	{
		*problem = pstrdup("a layout needs a time, a node and a sequence field, "
						   "such as \"time 41, node 10, sequence 12, unit 1ms\"");
		return false;
	}
	return layout_derive(layout, problem);

twice:
	*problem = psprintf("field \"%s\" is given twice", name);
	return false;
}

bool
layout_parse(const char *text, SnowflakeLayout *layout,
			 const char **epoch_text, char **problem)
{
	int			i;

	*epoch_text = NULL;
	*problem = NULL;
	if (text == NULL)
		text = "";
	for (i = 0; i < lengthof(layout_presets); i++)
	{
		if (pg_strcasecmp(text, layout_presets[i].name) == 0)
		{
			if (!layout_parse_fields(layout_presets[i].fields, layout, problem))
				return false;
			*epoch_text = layout_presets[i].epoch;
			return true;
		}
	}
	return layout_parse_fields(text, layout, problem);
}
