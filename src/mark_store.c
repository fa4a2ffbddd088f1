/*-------------------------------------------------------------------------
 *
 * mark_store.c
 *	  Reads and writes the high-water marks in the extension's table, over
 *	  SPI, for the background worker.
 *
 * The table is <extension schema>.snowflake_high_water in
 * snowflake.database: per node id, the epoch and layout a mark was written
 * under and the mark itself, an absolute timestamp at or above every timestamp the
 * node has put in an ID.  A node may have several rows (a restore adds
 * one): its mark is the highest, and every write merges them into one.
 *
 * The worker runs as a superuser, so nothing a non-superuser controls may
 * steer it.  Before each transaction this file checks, from the catalogs
 * and not by SQL, that the database, the extension's schema and the table
 * belong to superusers; if not, it touches nothing and says why.  Every
 * operator and function in its SQL is schema-qualified (the worker also
 * pins its own search_path).  The extension is never created here: a plain
 * CREATE EXTENSION must work in every database, this one included.  Each
 * call is one transaction of its own; callers run in the worker and catch
 * errors.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "layout.h"
#include "mark_store.h"
#include "settings.h"

static char *mark_store_check_home(MarkStoreRefusal *refusal);

/*
 * Whether the table has the layout column (extension 1.3 on): before
 * ALTER EXTENSION UPDATE every row is of the original layout, and a server
 * of another layout cannot record its own.
 */
static bool mark_store_has_layout = true;

/* The mark table, as mark_store_check_home() last found it. */
static Oid	mark_store_table = InvalidOid;

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

/* The schema of an extension (PostgreSQL 15 keeps its own lookup private). */
static Oid
mark_store_extension_schema(Oid extension)
{
	Relation	catalog;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	Oid			schema = InvalidOid;

	catalog = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extension));
	scan = systable_beginscan(catalog, ExtensionOidIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
		schema = ((Form_pg_extension) GETSTRUCT(tuple))->extnamespace;
	systable_endscan(scan);
	table_close(catalog, AccessShareLock);
	return schema;
}

static char *
mark_store_role_name(Oid role)
{
	char	   *name = GetUserNameFromId(role, true);

	return name ? name : psprintf("%u", role);
}

/*
 * The qualified name of the mark table, or NULL with *refusal filled in
 * when the marks have no home a non-superuser cannot touch (in caller's
 * memory context: SPI's goes at the end of the transaction).
 */
static char *
mark_store_locate(MarkStoreRefusal *refusal, MemoryContext caller)
{
	char	   *table;
	MemoryContext spi = MemoryContextSwitchTo(caller);

	table = mark_store_check_home(refusal);
	MemoryContextSwitchTo(spi);
	return table ? pstrdup(table) : NULL;
}

static char *
mark_store_check_home(MarkStoreRefusal *refusal)
{
	HeapTuple	tuple;
	Oid			database_owner;
	Oid			extension;
	Oid			schema;
	Oid			schema_owner;
	Oid			table;
	char	   *schema_name;

	refusal->message = NULL;
	refusal->hint = NULL;

	tuple = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(MyDatabaseId));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for database %u", MyDatabaseId);
	database_owner = ((Form_pg_database) GETSTRUCT(tuple))->datdba;
	ReleaseSysCache(tuple);
	if (!superuser_arg(database_owner))
	{
		refusal->message = psprintf("database \"%s\" (snowflake.database) is owned by role "
									"\"%s\", who is not a superuser",
									snowflake_database, mark_store_role_name(database_owner));
		refusal->hint = psprintf("The owner of the database that holds the high-water marks "
								 "could remove them. Give it to a superuser: ALTER DATABASE %s "
								 "OWNER TO %s;",
								 quote_identifier(snowflake_database),
								 quote_identifier(mark_store_role_name(BOOTSTRAP_SUPERUSERID)));
		return NULL;
	}

	extension = get_extension_oid("snowflake", true);
	if (!OidIsValid(extension))
	{
		refusal->message = psprintf("the snowflake extension is not installed in database "
									"\"%s\" (snowflake.database)", snowflake_database);
		refusal->hint = psprintf("Run CREATE EXTENSION snowflake in database \"%s\": its "
								 "table holds the high-water marks.", snowflake_database);
		return NULL;
	}

	schema = mark_store_extension_schema(extension);
	tuple = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(schema));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for schema %u", schema);
	schema_owner = ((Form_pg_namespace) GETSTRUCT(tuple))->nspowner;
	schema_name = pstrdup(NameStr(((Form_pg_namespace) GETSTRUCT(tuple))->nspname));
	ReleaseSysCache(tuple);
	/* pg_database_owner stands for the database's owner, a superuser here. */
	if (schema_owner != ROLE_PG_DATABASE_OWNER && !superuser_arg(schema_owner))
	{
		refusal->message = psprintf("schema \"%s\" of the snowflake extension in database \"%s\" "
									"is owned by role \"%s\", who is not a superuser",
									schema_name, snowflake_database,
									mark_store_role_name(schema_owner));
		refusal->hint = psprintf("Its owner could drop the high-water marks. Give the schema "
								 "to a superuser: ALTER SCHEMA %s OWNER TO %s;",
								 quote_identifier(schema_name),
								 quote_identifier(mark_store_role_name(BOOTSTRAP_SUPERUSERID)));
		return NULL;
	}

	table = get_relname_relid("snowflake_high_water", schema);
	if (!OidIsValid(table) || get_rel_relkind(table) != RELKIND_RELATION)
	{
		refusal->message = psprintf("table %s.snowflake_high_water of the snowflake extension "
									"is missing in database \"%s\"",
									quote_identifier(schema_name), snowflake_database);
		refusal->hint = psprintf("Reinstall the extension in database \"%s\": DROP EXTENSION "
								 "snowflake; CREATE EXTENSION snowflake;", snowflake_database);
		return NULL;
	}
	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(table));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", table);
	if (!superuser_arg(((Form_pg_class) GETSTRUCT(tuple))->relowner))
	{
		Oid			owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;

		ReleaseSysCache(tuple);
		refusal->message = psprintf("table %s.snowflake_high_water in database \"%s\" is owned "
									"by role \"%s\", who is not a superuser",
									quote_identifier(schema_name), snowflake_database,
									mark_store_role_name(owner));
		refusal->hint = psprintf("Give it back to a superuser: ALTER TABLE "
								 "%s.snowflake_high_water OWNER TO %s;",
								 quote_identifier(schema_name),
								 quote_identifier(mark_store_role_name(BOOTSTRAP_SUPERUSERID)));
		return NULL;
	}
	ReleaseSysCache(tuple);

	mark_store_table = table;
	mark_store_has_layout = get_attnum(table, "layout") != InvalidAttrNumber;
	if (!mark_store_has_layout && strcmp(snowflake_layout.text, SNOWFLAKE_ORIGINAL_LAYOUT) != 0)
	{
		refusal->message = psprintf("the snowflake extension in database \"%s\" is older "
									"than 1.3 and cannot record snowflake.layout \"%s\"",
									snowflake_database, snowflake_layout.text);
		refusal->hint = psprintf("Run ALTER EXTENSION snowflake UPDATE in database \"%s\".",
								 snowflake_database);
		return NULL;
	}

	return psprintf("%s.snowflake_high_water", quote_identifier(schema_name));
}

/*
 * Only look whether the marks still have a safe home (no SPI, no write):
 * the worker does so while idle, so that a change of owner shows in the
 * state before a caller needs a reservation.
 */
void
mark_store_check(MarkStoreRefusal *refusal)
{
	MemoryContext caller = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) mark_store_locate(refusal, caller);
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller);
}

/* A timestamp of the table in ms since the epoch, rounded up. */
static int64
mark_store_millis(TimestampTz mark, int node, const char *table)
{
	/* A restored or edited row may hold anything: it must fit the layout. */
	if (TIMESTAMP_NOT_FINITE(mark) ||
		mark > snowflake_millis_to_timestamp(snowflake_epoch, snowflake_layout.max_millis))
		ereport(ERROR,
				errcode(ERRCODE_DATA_CORRUPTED),
				errmsg("the high-water mark of node %d in %s is %s, beyond the range "
					   "of IDs of snowflake.epoch",
					   node, table, timestamptz_to_str(mark)),
				errhint("Correct or delete that row."));
	/* Round up: the mark must stay at or above what it covered. */
	return Max((mark - snowflake_epoch + 999) / 1000, 0);
}

void
mark_store_read(int node, bool wait_for_writers, MarkStoreRead *result)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *table;
	Oid			types[3] = {INT4OID, TIMESTAMPTZOID, TEXTOID};
	Datum		values[3];
	bool		isnull;
	Datum		mark;

	result->found = false;
	result->epoch_changed = false;
	result->other_layout = NULL;
	mark_store_begin("snowflake: reading the high-water mark");
	table = mark_store_locate(&result->refusal, caller);
	if (table == NULL)
	{
		mark_store_commit();
		return;
	}

	/*
	 * A row the trigger found of another epoch or layout may belong to a
	 * transaction still open: read only once the table's writers are done
	 * (SHARE conflicts with their ROW EXCLUSIVE), with a snapshot taken after
	 * them, or the read would miss it and let IDs go on.
	 */
	if (wait_for_writers)
	{
		if (!ConditionalLockRelationOid(mark_store_table, ShareLock))
			ereport(ERROR,
					errcode(ERRCODE_LOCK_NOT_AVAILABLE),
					errmsg("a transaction is still writing %s, which was given a mark "
						   "of another snowflake.epoch or snowflake.layout", table),
					errdetail("No ID is issued until it ends; if it commits, the server "
							  "refuses to issue."));
		PopActiveSnapshot();
		PushActiveSnapshot(GetTransactionSnapshot());
	}

	values[0] = Int32GetDatum(node);
	values[1] = TimestampTzGetDatum(snowflake_epoch);
	values[2] = CStringGetTextDatum(snowflake_layout.text);

	/* Rows without the layout column are of the original layout. */
	if (SPI_execute_with_args(psprintf("SELECT epoch, %s FROM %s "
									   "WHERE epoch OPERATOR(pg_catalog.<>) $1 "
									   "OR %s OPERATOR(pg_catalog.<>) $2 LIMIT 1",
									   mark_store_has_layout ? "layout" :
									   "'" SNOWFLAKE_ORIGINAL_LAYOUT "'::pg_catalog.text",
									   table,
									   mark_store_has_layout ? "layout" :
									   "'" SNOWFLAKE_ORIGINAL_LAYOUT "'::pg_catalog.text"),
							  2, &types[1], &values[1], NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read %s", table);
	if (SPI_processed > 0)
	{
		MemoryContext spi = MemoryContextSwitchTo(caller);

		result->epoch_changed = true;
		result->other_epoch = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
																SPI_tuptable->tupdesc,
																1, &isnull));
		result->other_layout = SPI_getvalue(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 2);
		MemoryContextSwitchTo(spi);
	}

	if (SPI_execute_with_args(psprintf("SELECT pg_catalog.max(high_water) FROM %s "
									   "WHERE node_id OPERATOR(pg_catalog.=) $1",
									   table),
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not read %s", table);
	mark = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
	{
		result->found = true;
		result->mark_millis = mark_store_millis(DatumGetTimestampTz(mark),
												node, table);
	}
	mark_store_commit();
}

/*
 * Record the node's mark (see mark_store.h).  Returns only once it is
 * committed (the worker runs with synchronous_commit on).
 */
void
mark_store_write(int node, int64 mark_millis, int64 own_millis,
				 MarkStoreWrite *result)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *table;
	Oid			types[5] = {INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID};
	Datum		values[5];
	bool		isnull;

	mark_store_begin("snowflake: reserving the high-water mark");
	table = mark_store_locate(&result->refusal, caller);
	if (table == NULL)
	{
		mark_store_commit();
		return;
	}
	values[0] = Int32GetDatum(node);
	values[1] = TimestampTzGetDatum(snowflake_epoch);
	values[2] = TimestampTzGetDatum(snowflake_millis_to_timestamp(snowflake_epoch,
																  mark_millis));
	values[3] = TimestampTzGetDatum(snowflake_millis_to_timestamp(snowflake_epoch,
																  own_millis));
	values[4] = CStringGetTextDatum(snowflake_layout.text);
	/* Only rows of this epoch and layout merge (the read refuses others). */
	if (SPI_execute_with_args(psprintf("WITH merged AS ("
									   " DELETE FROM %s"
									   " WHERE node_id OPERATOR(pg_catalog.=) $1"
									   " AND epoch OPERATOR(pg_catalog.=) $2%s"
									   " RETURNING high_water) "
									   "INSERT INTO %s (node_id, epoch, high_water%s) "
									   "SELECT $1, $2, pg_catalog.max(candidate)%s FROM ("
									   " SELECT $3 AS candidate"
									   " UNION ALL SELECT high_water FROM merged"
									   " WHERE $4 IS NULL"
									   " OR high_water OPERATOR(pg_catalog.<>) $4) AS c "
									   "RETURNING high_water",
									   table,
									   mark_store_has_layout ?
									   " AND layout OPERATOR(pg_catalog.=) $5" : "",
									   table,
									   mark_store_has_layout ? ", layout" : "",
									   mark_store_has_layout ? ", $5" : ""),
							  mark_store_has_layout ? 5 : 4, types, values,
							  own_millis < 0 ? "   n " : NULL,
							  false, 0) != SPI_OK_INSERT_RETURNING ||
		SPI_processed != 1)
		elog(ERROR, "could not write %s", table);
	result->merged_millis =
		mark_store_millis(DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
															SPI_tuptable->tupdesc,
															1, &isnull)),
						  node, table);
	mark_store_commit();
}

/*
 * Whether relid is the mark table of the extension in snowflake.database,
 * for the trigger that honours marks written by others: the same table in
 * any other database holds nothing this server reads.
 */
bool
mark_store_is_mark_table(Oid relid)
{
	char	   *database = get_database_name(MyDatabaseId);
	Oid			extension;

	if (database == NULL || strcmp(database, snowflake_database) != 0)
		return false;
	extension = get_extension_oid("snowflake", true);
	return OidIsValid(extension) &&
		get_relname_relid("snowflake_high_water",
						  mark_store_extension_schema(extension)) == relid;
}
