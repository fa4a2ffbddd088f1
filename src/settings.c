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

/* Fixed for the life of a data directory; 41 bits of ms reach 2093. */
#define SNOWFLAKE_DEFAULT_EPOCH "2024-01-01 00:00:00+00"

int			snowflake_node_id = -1;
int			snowflake_node_source = SNOWFLAKE_NODE_SOURCE_GUC;
TimestampTz snowflake_epoch = 0;
int			snowflake_max_clock_rollback = 1000;
int			snowflake_wait_timeout = 5000;
int			snowflake_reserve = 1000;
char	   *snowflake_database = NULL;
const char *snowflake_rejected_setting = NULL;

static char *settings_epoch_text = NULL;

static const struct config_enum_entry settings_node_source_options[] = {
	{"guc", SNOWFLAKE_NODE_SOURCE_GUC, false},
	{"etcd", SNOWFLAKE_NODE_SOURCE_ETCD, false},
	{NULL, 0, false}
};

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

static bool
settings_check_node_source(int *newval, void **extra, GucSource source)
{
	if (*newval == SNOWFLAKE_NODE_SOURCE_ETCD)
	{
		GUC_check_errdetail("snowflake.node_source = etcd is not available in this version of snowflake.");
		GUC_check_errhint("Use snowflake.node_source = guc and set snowflake.node_id.");
		settings_note_rejection("snowflake.node_source", source);
		return false;
	}
	return true;
}

void
SettingsInit(void)
{
	DefineCustomIntVariable("snowflake.node_id",
							"Node id (0..1023) put in every ID this server issues.",
							"-1 means unset: no IDs are issued until it is set. "
							"Used when snowflake.node_source is guc.",
							&snowflake_node_id,
							-1, -1, SNOWFLAKE_MAX_NODE,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);

	DefineCustomEnumVariable("snowflake.node_source",
							 "Where the node id comes from.",
							 NULL,
							 &snowflake_node_source,
							 SNOWFLAKE_NODE_SOURCE_GUC,
							 settings_node_source_options,
							 PGC_POSTMASTER, 0,
							 settings_check_node_source, NULL, NULL);

	DefineCustomStringVariable("snowflake.epoch",
							   "Start of the 41-bit millisecond clock of IDs.",
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
							1000, 0, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("snowflake.reserve",
							"How far ahead of the clock the persisted "
							"high-water mark is reserved.",
							"IDs are issued only up to a mark already committed "
							"to the high-water table.",
							&snowflake_reserve,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("snowflake.database",
							   "Database whose snowflake extension holds the "
							   "high-water mark.",
							   "The background worker creates the extension there "
							   "if it is missing.",
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

	MarkGUCPrefixReserved("snowflake");
}
