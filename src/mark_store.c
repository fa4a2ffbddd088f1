/*-------------------------------------------------------------------------
 *
 * mark_store.c
 *	  Reads and writes the high-water marks in the extension's table, over
 *	  SPI, for the background worker.
 *
 * The table is <extension schema>.snowflake_high_water, one row per node id:
 * the epoch the mark was written under and the mark itself, an absolute
 * timestamp at or above every timestamp the node has put in an ID.  Each
 * call is one transaction of its own.  If the extension does not exist in
 * snowflake.database yet, it is created there first (and the log says so),
 * so that the mark has a home before the first ID.  Callers run in the
 * worker and catch errors.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "layout.h"
#include "mark_store.h"
#include "settings.h"

static void
mark_store_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
mark_store_commit(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* The table's qualified name, creating the extension if it is missing. */
static char *
mark_store_table(void)
{
	const char *find_schema =
		"SELECT pg_catalog.quote_ident(n.nspname) "
		"FROM pg_catalog.pg_extension e "
		"JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace "
		"WHERE e.extname = 'snowflake'";
	bool		isnull;

	if (SPI_execute(find_schema, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look up extension snowflake");
	if (SPI_processed == 0)
	{
		if (SPI_execute("CREATE EXTENSION IF NOT EXISTS snowflake", false, 0) !=
			SPI_OK_UTILITY)
			elog(ERROR, "could not create extension snowflake");
		ereport(LOG,
				errmsg("snowflake created extension \"snowflake\" in database \"%s\" "
					   "to hold the high-water mark",
					   snowflake_database));
		CommandCounterIncrement();
		if (SPI_execute(find_schema, false, 1) != SPI_OK_SELECT || SPI_processed == 0)
			elog(ERROR, "could not look up extension snowflake");
	}
	return psprintf("%s.snowflake_high_water",
					TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc,
													  1, &isnull)));
}

/*
 * Make sure the table exists (creating the extension if need be) before the
 * worker has a node id, so that snowflake_status() can say why there is none.
 */
void
mark_store_prepare(void *unused)
{
	mark_store_begin("snowflake: preparing the high-water table");
	(void) mark_store_table();
	mark_store_commit();
}

void
mark_store_read(void *read)
{
	MarkStoreRead *result = (MarkStoreRead *) read;
	int			node = result->node;
	char	   *table;
	Oid			types[2] = {INT4OID, TIMESTAMPTZOID};
	Datum		values[2];
	bool		isnull;

	result->found = false;
	result->epoch_changed = false;
	mark_store_begin("snowflake: reading the high-water mark");
	table = mark_store_table();

	values[0] = Int32GetDatum(node);
	values[1] = TimestampTzGetDatum(snowflake_epoch);

	if (SPI_execute_with_args(psprintf("SELECT epoch FROM %s WHERE epoch <> $1 LIMIT 1",
									   table),
							  1, &types[1], &values[1], NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read %s", table);
	if (SPI_processed > 0)
	{
		result->epoch_changed = true;
		result->other_epoch = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
																SPI_tuptable->tupdesc,
																1, &isnull));
	}

	if (SPI_execute_with_args(psprintf("SELECT high_water FROM %s WHERE node_id = $1",
									   table),
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read %s", table);
	if (SPI_processed > 0)
	{
		TimestampTz mark = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
															 SPI_tuptable->tupdesc,
															 1, &isnull));

		/* A restored or edited row may hold anything: it must fit the layout. */
		if (TIMESTAMP_NOT_FINITE(mark) ||
			mark > snowflake_epoch + SNOWFLAKE_MAX_MILLIS * 1000)
			ereport(ERROR,
					errcode(ERRCODE_DATA_CORRUPTED),
					errmsg("the high-water mark of node %d in %s is %s, beyond the range "
						   "of IDs of snowflake.epoch",
						   result->node, table, timestamptz_to_str(mark)),
					errhint("Correct or delete that row."));
		result->found = true;
		/* Round up: the mark must stay at or above what it covered. */
		result->mark_millis = Max((mark - snowflake_epoch + 999) / 1000, 0);
	}
	mark_store_commit();
}

/*
 * Record the node's mark.  Returns only once it is committed (the worker
 * runs with synchronous_commit on).
 */
void
mark_store_write(void *write)
{
	int			node = ((MarkStoreWrite *) write)->node;
	int64		mark_millis = ((MarkStoreWrite *) write)->mark_millis;
	char	   *table;
	Oid			types[3] = {INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		values[3];

	mark_store_begin("snowflake: reserving the high-water mark");
	table = mark_store_table();
	values[0] = Int32GetDatum(node);
	values[1] = TimestampTzGetDatum(snowflake_epoch);
	values[2] = TimestampTzGetDatum(snowflake_epoch + mark_millis * 1000);
	if (SPI_execute_with_args(psprintf("INSERT INTO %s AS m (node_id, epoch, high_water) "
									   "VALUES ($1, $2, $3) ON CONFLICT (node_id) DO UPDATE "
									   "SET epoch = excluded.epoch, "
									   "high_water = excluded.high_water, "
									   "updated_at = pg_catalog.now()",
									   table),
							  3, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not write %s", table);
	mark_store_commit();
}
