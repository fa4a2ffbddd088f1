/*-------------------------------------------------------------------------
 *
 * settings.c
 *	  Defines and validates every snowflake.* configuration parameter.
 *
 * All settings live here so that their names, ranges and checks can be read
 * in one place.  Check hooks explain what is wrong in the setting's own
 * terms.  A value rejected while the library is preloaded is remembered (see
 * snowflake_rejected_setting) so that the server issues no IDs under a
 * default the operator did not choose.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <limits.h>

#include "miscadmin.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "layout.h"
#include "settings.h"


int			snowflake_node_id = -1;
int			snowflake_node_source = SNOWFLAKE_NODE_SOURCE_GUC;
TimestampTz snowflake_epoch = 0;
int			snowflake_max_clock_rollback = 1000;
int			snowflake_wait_timeout = 5000;
int			snowflake_reserve = 1000;
char	   *snowflake_database = NULL;
char	   *snowflake_etcd_endpoints = NULL;
char	   *snowflake_etcd_prefix = NULL;
int			snowflake_etcd_lease_ttl = 10;
int			snowflake_etcd_timeout = 1000;
char	   *snowflake_etcd_cacert = NULL;
char	   *snowflake_etcd_cert = NULL;
char	   *snowflake_etcd_key = NULL;
char	   *snowflake_etcd_username = NULL;
char	   *snowflake_etcd_password = NULL;
const char *snowflake_rejected_setting = NULL;

static char *settings_epoch_text = NULL;
static char *settings_layout_text = NULL;

/* The epoch of the layout's preset, or NULL: see settings_apply_layout(). */
static const char *settings_layout_epoch = NULL;
static char *settings_node_source_text = NULL;

const char *
settings_node_source_name(int source)
{
	return source == SNOWFLAKE_NODE_SOURCE_ETCD ? "etcd" : "guc";
}

/*
 * A rejected value from the configuration file, seen while preloading, must
 * not silently fall back to the default; note which setting it was.
 */
static void
settings_note_rejection(const char *name, GucSource source)
{
	if (process_shared_preload_libraries_in_progress &&
		source > PGC_S_DEFAULT && snowflake_rejected_setting == NULL)
		snowflake_rejected_setting = name;
}

/*
 * Parse an epoch with PostgreSQL's own date/time parser.  Text without a
 * time zone is read as UTC, never in the server's TimeZone, so that changing
 * TimeZone cannot move the epoch.  Words such as "now" or "today" are
 * refused: the epoch must mean the same instant at every start.
 */
static bool
settings_parse_epoch(const char *text, TimestampTz *result)
{
	char		workbuf[MAXDATELEN + MAXDATEFIELDS];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nfields;
	int			dtype;
	int			tz = 0;
	struct pg_tm tm;
	fsec_t		fsec;
	const char *p = text;

	while (isspace((unsigned char) *p))
		p++;
	if (!isdigit((unsigned char) *p))
		return false;

	if (ParseDateTime(text, workbuf, sizeof(workbuf), field, ftype,
					  MAXDATEFIELDS, &nfields) != 0)
		return false;
	if (DecodeDateTime(field, ftype, nfields, &dtype, &tm, &fsec, NULL) != 0)
	{
		/* Not valid without a zone: perhaps it names one. */
		if (ParseDateTime(text, workbuf, sizeof(workbuf), field, ftype,
						  MAXDATEFIELDS, &nfields) != 0 ||
			DecodeDateTime(field, ftype, nfields, &dtype, &tm, &fsec,
						   &tz) != 0)
			return false;
	}
	if (dtype != DTK_DATE)
		return false;
	return tm2timestamp(&tm, fsec, &tz, result) == 0;
}

/*
 * The date/time parser raises an error rather than returning one for some
 * input (an unknown time zone name).  A check hook must never raise: in the
 * postmaster, on reload, that would shut the server down.  So trap it.
 */
static bool
settings_parse_epoch_safely(const char *text, TimestampTz *result,
							char **parse_error)
{
	MemoryContext context = CurrentMemoryContext;
	volatile bool parsed = false;

	*parse_error = NULL;
	PG_TRY();
	{
		parsed = settings_parse_epoch(text, result);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		FlushErrorState();
		*parse_error = edata->message;
	}
	PG_END_TRY();
	return parsed;
}

/*
 * Only the form of the epoch is checked here, not how it relates to the
 * clock: a clock that is wrong at start-up must not keep the server from
 * starting.  The generator reports a clock outside the epoch's range when
 * it is asked for an ID.
 */
static bool
settings_check_epoch(char **newval, void **extra, GucSource source)
{
	TimestampTz epoch;
	TimestampTz *parsed;
	char	   *parse_error;

	if (*newval == NULL ||
		!settings_parse_epoch_safely(*newval, &epoch, &parse_error))
	{
		if (parse_error)
			GUC_check_errdetail("%s.", parse_error);
		else
			GUC_check_errdetail("snowflake.epoch must be a date and time such as \"%s\"; "
								"text without a time zone is read as UTC.",
								SNOWFLAKE_DEFAULT_EPOCH);
		settings_note_rejection("snowflake.epoch", source);
		return false;
	}

	parsed = malloc(sizeof(TimestampTz));
	if (parsed == NULL)
		return false;
	*parsed = epoch;
	*extra = parsed;
	return true;
}

static void
settings_assign_epoch(const char *newval, void *extra)
{
	snowflake_epoch = *(TimestampTz *) extra;
}

/*
 * A string setting rather than an enum: PostgreSQL rejects an unknown enum
 * value before any check hook of ours runs, and would quietly fall back to
 * guc, issuing IDs under snowflake.node_id.  Here the check is ours, so a
 * typo is noted and no ID is issued.
 */
static bool
settings_check_node_source(char **newval, void **extra, GucSource source)
{
	int		   *parsed;
	int			value;

	if (*newval != NULL && pg_strcasecmp(*newval, "guc") == 0)
		value = SNOWFLAKE_NODE_SOURCE_GUC;
	else if (*newval != NULL && pg_strcasecmp(*newval, "etcd") == 0)
		value = SNOWFLAKE_NODE_SOURCE_ETCD;
	else
	{
		GUC_check_errdetail("snowflake.node_source must be \"guc\" or \"etcd\"; got \"%s\".",
							*newval ? *newval : "");
		settings_note_rejection("snowflake.node_source", source);
		return false;
	}

	/* SHOW gives the canonical name, whatever the case typed. */
	if (strcmp(*newval, settings_node_source_name(value)) != 0)
	{
		char	   *canonical = strdup(settings_node_source_name(value));

		if (canonical == NULL)
			return false;
		free(*newval);
		*newval = canonical;
	}

	parsed = malloc(sizeof(int));
	if (parsed == NULL)
		return false;
	*parsed = value;
	*extra = parsed;
	return true;
}

static void
settings_assign_node_source(const char *newval, void *extra)
{
	snowflake_node_source = *(int *) extra;
}

/*
 * Each endpoint must be an http:// or https:// URL with a host; anything
 * else would only fail later, in the worker, far from the setting's name.
 */
static bool
settings_check_etcd_endpoints(char **newval, void **extra, GucSource source)
{
	const char *p = *newval ? *newval : "";

	while (*p != '\0')
	{
		const char *end = strchr(p, ',');
		size_t		len = end ? (size_t) (end - p) : strlen(p);
		size_t		scheme;

		while (len > 0 && isspace((unsigned char) *p))
			p++, len--;
		while (len > 0 && isspace((unsigned char) p[len - 1]))
			len--;

		scheme = (len >= 7 && pg_strncasecmp(p, "http://", 7) == 0) ? 7 :
			(len >= 8 && pg_strncasecmp(p, "https://", 8) == 0) ? 8 : 0;
		if (scheme == 0 || len == scheme || p[scheme] == '/')
		{
			GUC_check_errdetail("Each etcd endpoint must be a URL such as "
								"\"http://127.0.0.1:2379\"; got \"%.*s\".",
								(int) len, p);
			settings_note_rejection("snowflake.etcd_endpoints", source);
			return false;
		}
		if (end == NULL)
			break;
		p = end + 1;
	}
	return true;
}

/* Keys are <prefix>/nodes/<N>: the prefix is an absolute, slash-free-ended path. */
static bool
settings_check_etcd_prefix(char **newval, void **extra, GucSource source)
{
	const char *prefix = *newval ? *newval : "";
	size_t		len = strlen(prefix);

	if (len < 2 || prefix[0] != '/' || prefix[len - 1] == '/' || len > 200)
	{
		GUC_check_errdetail("snowflake.etcd_prefix must start with \"/\", not end with "
							"\"/\", and be 2 to 200 bytes long, such as \"/snowflake\".");
		settings_note_rejection("snowflake.etcd_prefix", source);
		return false;
	}
	return true;
}

/*
 * snowflake.layout: a preset name or the custom form, checked by layout.c.
 * SHOW gives a preset's name, or the custom form in its canonical spelling.
 */
typedef struct SettingsLayout
{
	SnowflakeLayout layout;
	const char *epoch;
} SettingsLayout;

static bool
settings_check_layout(char **newval, void **extra, GucSource source)
{
	SettingsLayout parsed;
	SettingsLayout *result;
	char	   *problem;

	if (!layout_parse(*newval, &parsed.layout, &parsed.epoch, &problem))
	{
		GUC_check_errdetail("snowflake.layout: %s.", problem);
		GUC_check_errhint("Use a preset (snowflake, twitter, instagram, sonyflake) or "
						  "fields such as \"time 41, node 10, sequence 12, unit 1ms\".");
		settings_note_rejection("snowflake.layout", source);
		return false;
	}
	if (parsed.epoch == NULL && pg_strcasecmp(*newval, "snowflake") != 0 &&
		strcmp(*newval, parsed.layout.text) != 0)
	{
		char	   *canonical = strdup(parsed.layout.text);

		if (canonical == NULL)
			return false;
		free(*newval);
		*newval = canonical;
	}
	result = malloc(sizeof(SettingsLayout));
	if (result == NULL)
		return false;
	*result = parsed;
	*extra = result;
	return true;
}

static void
settings_assign_layout(const char *newval, void *extra)
{
	snowflake_layout = ((SettingsLayout *) extra)->layout;
	settings_layout_epoch = ((SettingsLayout *) extra)->epoch;
}

/*
 * A preset with an epoch of its own (twitter, instagram, sonyflake) brings
 * it as snowflake.epoch's default: an epoch set in the configuration still
 * wins, since PostgreSQL lets a configured value override a default
 * computed at start (PGC_S_DYNAMIC_DEFAULT).  A node id the layout has no
 * room for is refused.
 */
static void
settings_apply_layout(void)
{
	if (settings_layout_epoch != NULL && process_shared_preload_libraries_in_progress)
		SetConfigOption("snowflake.epoch", settings_layout_epoch,
						PGC_POSTMASTER, PGC_S_DYNAMIC_DEFAULT);
	if (snowflake_node_id > snowflake_layout.max_node &&
		snowflake_rejected_setting == NULL)
	{
		ereport(WARNING,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("snowflake.node_id %d does not fit snowflake.layout",
					   snowflake_node_id),
				errdetail("Layout \"%s\" has node ids 0 to %d.",
						  snowflake_layout.text, snowflake_layout.max_node));
		if (process_shared_preload_libraries_in_progress)
			snowflake_rejected_setting = "snowflake.node_id";
	}
}

/*
 * A number setting that PostgreSQL rejects in postgresql.conf (out of its
 * range, a unit it does not know) only draws a WARNING, and the default
 * applies: for these settings that would be a server that is not configured
 * the way the operator wrote.  PostgreSQL checks range and unit before any
 * check hook, so the text the file gave is taken, while it is still a
 * placeholder, and judged again once the setting is defined.
 */
typedef struct SettingsConfiguredInt
{
	const char *name;
	int			flags;
	int			min;
	int			max;
	char	   *text;			/* as postgresql.conf gave it, or NULL */
} SettingsConfiguredInt;

#define SETTINGS_MAX_MS			(3600 * 1000)
#define SETTINGS_MIN_RESERVE	10
#define SETTINGS_MIN_TTL		2
#define SETTINGS_MAX_TTL		3600
#define SETTINGS_MIN_TIMEOUT	10
#define SETTINGS_MAX_TIMEOUT	60000

static SettingsConfiguredInt settings_checked_ints[] = {
	{"snowflake.max_clock_rollback", GUC_UNIT_MS, 0, SETTINGS_MAX_MS, NULL},
	{"snowflake.reserve", GUC_UNIT_MS, SETTINGS_MIN_RESERVE, SETTINGS_MAX_MS, NULL},
	{"snowflake.etcd_lease_ttl", GUC_UNIT_S, SETTINGS_MIN_TTL, SETTINGS_MAX_TTL, NULL},
	{"snowflake.etcd_timeout", GUC_UNIT_MS, SETTINGS_MIN_TIMEOUT, SETTINGS_MAX_TIMEOUT, NULL},
};

static void
settings_note_configured_ints(void)
{
	int			i;

	for (i = 0; i < lengthof(settings_checked_ints); i++)
	{
		const char *text = GetConfigOption(settings_checked_ints[i].name, true, false);

		settings_checked_ints[i].text = text ? pstrdup(text) : NULL;
	}
}

static void
settings_judge_configured_ints(void)
{
	int			i;

	for (i = 0; i < lengthof(settings_checked_ints); i++)
	{
		SettingsConfiguredInt *setting = &settings_checked_ints[i];
		int			value;

		if (setting->text == NULL || snowflake_rejected_setting != NULL)
			continue;
		if (!parse_int(setting->text, &value, setting->flags, NULL) ||
			value < setting->min || value > setting->max)
			snowflake_rejected_setting = setting->name;
	}
}

bool
settings_etcd_in_use(void)
{
	return snowflake_node_source == SNOWFLAKE_NODE_SOURCE_ETCD ||
		(snowflake_etcd_endpoints != NULL && snowflake_etcd_endpoints[0] != '\0');
}

void
SettingsInit(void)
{
	settings_note_configured_ints();

	DefineCustomStringVariable("snowflake.layout",
							   "Bit layout of IDs: a preset or time, node and sequence "
							   "bits with a time unit.",
							   "Presets: snowflake, twitter, instagram, sonyflake. "
							   "Fixed for the life of a data directory.",
							   &settings_layout_text,
							   "snowflake",
							   PGC_POSTMASTER, 0,
							   settings_check_layout, settings_assign_layout,
							   NULL);

	DefineCustomIntVariable("snowflake.node_id",
							"Node id put in every ID this server issues "
							"(0..1023 in the default layout).",
							"-1 means unset: no IDs are issued until it is set. "
							"Used when snowflake.node_source is guc.",
							&snowflake_node_id,
							-1, -1, SNOWFLAKE_NODE_LIMIT - 1,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("snowflake.node_source",
							   "Where the node id comes from: guc or etcd.",
							   "guc: snowflake.node_id; etcd: leased from etcd.",
							   &settings_node_source_text,
							   "guc",
							   PGC_POSTMASTER, 0,
							   settings_check_node_source,
							   settings_assign_node_source, NULL);

	DefineCustomStringVariable("snowflake.epoch",
							   "Start of the time field of IDs.",
							   "Fixed for the life of a data directory.",
							   &settings_epoch_text,
							   SNOWFLAKE_DEFAULT_EPOCH,
							   PGC_POSTMASTER, 0,
							   settings_check_epoch, settings_assign_epoch,
							   NULL);

	DefineCustomIntVariable("snowflake.max_clock_rollback",
							"Largest backward clock step that is waited out "
							"rather than reported as an error.",
							NULL,
							&snowflake_max_clock_rollback,
							1000, 0, SETTINGS_MAX_MS,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("snowflake.reserve",
							"How far ahead of the clock the persisted "
							"high-water mark is reserved.",
							"IDs are issued only up to a mark already committed "
							"to the high-water table.",
							&snowflake_reserve,
							1000, SETTINGS_MIN_RESERVE, SETTINGS_MAX_MS,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("snowflake.database",
							   "Database whose snowflake extension holds the "
							   "high-water mark.",
							   "Run CREATE EXTENSION snowflake there first; it must "
							   "be owned by a superuser.",
							   &snowflake_database,
							   "postgres",
							   PGC_POSTMASTER, 0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("snowflake.wait_timeout",
							"How long snowflake_nextval() waits for a node id, "
							"a reservation or the clock before raising an error.",
							NULL,
							&snowflake_wait_timeout,
							5000, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("snowflake.etcd_endpoints",
							   "Comma-separated etcd URLs (http:// or https://).",
							   "With snowflake.node_source = etcd the node id is leased "
							   "from etcd; with guc the configured node id is checked "
							   "against other servers there.",
							   &snowflake_etcd_endpoints,
							   "",
							   PGC_POSTMASTER, 0,
							   settings_check_etcd_endpoints, NULL, NULL);

	DefineCustomStringVariable("snowflake.etcd_prefix",
							   "Prefix of the etcd keys for node ids and their marks.",
							   "Servers that share a prefix share its node ids, epoch and layout.",
							   &snowflake_etcd_prefix,
							   "/snowflake",
							   PGC_POSTMASTER, 0,
							   settings_check_etcd_prefix, NULL, NULL);

	DefineCustomIntVariable("snowflake.etcd_lease_ttl",
							"Time to live of the etcd lease that holds the node id.",
							"IDs stop once the lease may have expired; a dead "
							"server's node id is free after this long.",
							&snowflake_etcd_lease_ttl,
							10, SETTINGS_MIN_TTL, SETTINGS_MAX_TTL,
							PGC_POSTMASTER, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("snowflake.etcd_timeout",
							"Time limit of one request to one etcd endpoint.",
							NULL,
							&snowflake_etcd_timeout,
							1000, SETTINGS_MIN_TIMEOUT, SETTINGS_MAX_TIMEOUT,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("snowflake.etcd_cacert",
							   "File of CA certificates that verify etcd's server certificate.",
							   NULL, &snowflake_etcd_cacert, "",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);

	DefineCustomStringVariable("snowflake.etcd_cert",
							   "Client certificate file presented to etcd.",
							   NULL, &snowflake_etcd_cert, "",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);

	DefineCustomStringVariable("snowflake.etcd_key",
							   "Private key file of snowflake.etcd_cert.",
							   NULL, &snowflake_etcd_key, "",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);

	DefineCustomStringVariable("snowflake.etcd_username",
							   "User name for etcd authentication; empty for none.",
							   NULL, &snowflake_etcd_username, "",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);

	DefineCustomStringVariable("snowflake.etcd_password",
							   "Password of snowflake.etcd_username.",
							   NULL, &snowflake_etcd_password, "",
							   PGC_POSTMASTER,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   NULL, NULL, NULL);

	settings_judge_configured_ints();
	settings_apply_layout();

	/*
	 * etcd mode without an endpoint has nowhere to lease a node id from:
	 * refuse to issue rather than guess.
	 */
	if (snowflake_node_source == SNOWFLAKE_NODE_SOURCE_ETCD &&
		snowflake_etcd_endpoints[0] == '\0' && snowflake_rejected_setting == NULL)
	{
		ereport(WARNING,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("snowflake.node_source = etcd needs snowflake.etcd_endpoints"),
				errhint("Set snowflake.etcd_endpoints to the etcd URLs, or use "
						"snowflake.node_source = guc with snowflake.node_id."));
		snowflake_rejected_setting = "snowflake.etcd_endpoints";
	}

	MarkGUCPrefixReserved("snowflake");
}
