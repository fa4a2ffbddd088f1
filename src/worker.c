/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The background worker: reads this node's high-water mark at start,
 *	  holds the generator back until the clock has passed it, and keeps a
 *	  reservation committed ahead of the IDs being issued.
 *
 * The generator never issues an ID in a millisecond past reserved_until,
 * and the worker raises reserved_until only after the mark table and this
 * data directory's mark file (mark_file.c) hold at least as much, so after a
 * crash both know an upper bound of every ID issued.  The worker renews the
 * reservation, to now + snowflake.reserve, when issuing comes within half a
 * reserve of it or a backend asks; an idle server writes nothing.  At
 * shutdown it closes the generator and records the exact last issued
 * millisecond, so a clean restart issues at once.  Backends never write the
 * marks; the worker never makes IDs.
 *
 * The worker runs as a superuser in snowflake.database, so it trusts
 * nothing there that a non-superuser controls: it pins its own session
 * settings whatever ALTER DATABASE or ALTER ROLE set, connects even when
 * the database refuses connections, and works only while the database, the
 * extension's schema and the mark table belong to superusers (mark_store.c
 * checks before every transaction).  It never creates the extension; until
 * the marks have such a home it issues nothing and says what to run.
 *
 * With etcd (snowflake.node_source = etcd, or etcd_endpoints set) the worker
 * first holds a node id there (node_lease.c), proves each round that the
 * claim is still its own, and keeps the node's mark in etcd ahead of the
 * reservation by one to two lease TTLs, so that an etcd outage shorter than
 * the fence does not stop IDs.  A node id whose mark is too far ahead of
 * this clock is given back for another (node migration); one whose history
 * etcd cannot prove is used only after waiting out any unknown holder.  When
 * the lease is lost the generator is closed (fenced) until the worker holds
 * a node id again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "etcd_client.h"
#include "generator.h"
#include "layout.h"
#include "mark_file.h"
#include "mark_store.h"
#include "node_lease.h"
#include "settings.h"
#include "shared_state.h"
#include "worker.h"

PGDLLEXPORT void snowflake_worker_main(Datum arg);

/* How long the worker waits before retrying a failed read, in ms. */
#define WORKER_RETRY_MS 1000

/* Distinct problems remembered as logged; the oldest is forgotten first. */
#define WORKER_LOGGED_MAX 32

static MemoryContext worker_context = NULL;

/* Node ids come from etcd, or the configured one is checked there. */
static bool worker_uses_etcd = false;

/* The node id being served, -1 when none; whether it was given back. */
static int	worker_node = -1;
static bool worker_gave_back = false;

/* The mark the worker's last reservation left in the table, -1: none. */
static int64 worker_own_mark = -1;

/*
 * The problems logged and not yet over: each is logged once, however often
 * it comes back, until the step that failed succeeds (step NULL: until the
 * generator is ready again), even when two problems alternate.
 */
typedef struct WorkerProblem
{
	const char *step;
	char		message[SNOWFLAKE_LAST_ERROR_LEN];
} WorkerProblem;

static WorkerProblem worker_problems[WORKER_LOGGED_MAX];
static int	worker_problem_count = 0;

/*
 * Per node id, the clock (ms since the epoch) it must reach before this
 * server tries that node id again: its mark was too far ahead.
 */
static int64 worker_skip_until[SNOWFLAKE_NODE_LIMIT];

/*
 * shared_state_foreign_marks() as of the last read of the table: when it
 * has moved, the next read waits for the table's writers.
 */
static uint32 worker_foreign_marks_read = 0;

static void worker_report_message(const char *message, const char *detail,
								  const char *hint);
static void worker_refuse_message(SnowflakePhase phase, const char *message,
								  const char *hint);
static void worker_refuse_for_good(void);

/*
 * Report a problem (worker_report) or publish why IDs are refused
 * (worker_refuse): the message is a format string and its arguments, so
 * that grep and translation find it where it is raised.
 */
#define worker_report(detail, hint, fmt, ...) \
	worker_report_message(psprintf(_(fmt), __VA_ARGS__), (detail), (hint))
#define worker_refuse(phase, hint, fmt, ...) \
	worker_refuse_message((phase), psprintf(_(fmt), __VA_ARGS__), (hint))

void
WorkerRegister(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* A server in recovery cannot write a mark; it issues no IDs either. */
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	strlcpy(worker.bgw_library_name, "snowflake", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "snowflake_worker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "snowflake high-water worker", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "snowflake high-water worker", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

static void
worker_detach(int code, Datum arg)
{
	shared_state_set_worker_latch(NULL);
}

/* True the first time message comes up in its episode; remembers it. */
static bool
worker_first_in_episode(const char *step, const char *message)
{
	int			i;

	for (i = 0; i < worker_problem_count; i++)
		if (strncmp(worker_problems[i].message, message, SNOWFLAKE_LAST_ERROR_LEN - 1) == 0)
			return false;
	if (worker_problem_count == WORKER_LOGGED_MAX)
	{
		memmove(&worker_problems[0], &worker_problems[1],
				sizeof(WorkerProblem) * (WORKER_LOGGED_MAX - 1));
		worker_problem_count--;
	}
	worker_problems[worker_problem_count].step = step;
	strlcpy(worker_problems[worker_problem_count].message, message,
			SNOWFLAKE_LAST_ERROR_LEN);
	worker_problem_count++;
	return true;
}

/*
 * The episode of the problems of step (NULL: those reported outside a
 * step) is over.  last_error says what is wrong now, so it is cleared when
 * it was one of them, and the log says the problem is gone.
 */
static void
worker_problems_over(const char *step)
{
	char		last_error[SNOWFLAKE_LAST_ERROR_LEN];
	int			i = 0;

	shared_state_get_last_error(last_error);
	while (i < worker_problem_count)
	{
		WorkerProblem *problem = &worker_problems[i];

		if (step == NULL ? problem->step != NULL :
			problem->step == NULL || strcmp(problem->step, step) != 0)
		{
			i++;
			continue;
		}
		ereport(LOG,
				errmsg("snowflake worker: over: %s", problem->message));
		if (strcmp(last_error, problem->message) == 0)
			shared_state_set_last_error("");
		memmove(&worker_problems[i], &worker_problems[i + 1],
				sizeof(WorkerProblem) * (worker_problem_count - i - 1));
		worker_problem_count--;
	}
}

/*
 * IDs flow again (one was issued since): an error a backend left in
 * last_error (a wait that timed out, a clock step) is no longer what is
 * wrong now.  The worker's own problems still pending stay.
 */
static void
worker_forget_backend_error(void)
{
	char		last_error[SNOWFLAKE_LAST_ERROR_LEN];
	int			i;

	shared_state_get_last_error(last_error);
	if (last_error[0] == '\0' || !shared_state_ids_moved_on())
		return;
	for (i = 0; i < worker_problem_count; i++)
		if (strcmp(worker_problems[i].message, last_error) == 0)
			return;
	shared_state_set_last_error("");
}

/* A problem the worker cannot fix itself: log once, keep for status. */
static void
worker_report_message(const char *message, const char *detail, const char *hint)
{
	if (worker_first_in_episode(NULL, message))
		ereport(WARNING,
				errmsg_internal("%s", message),
				detail ? errdetail_internal("%s", detail) : 0,
				hint ? errhint("%s", hint) : 0);
	shared_state_set_last_error(message);
}


/*
 * The calls the worker makes on the homes of the marks (the table, the mark
 * file, etcd) and on its etcd lease, each run by worker_run() with its
 * errors caught.  Inputs and outputs are typed per call.
 */
typedef enum WorkerCall
{
	WORKER_TABLE_READ,			/* node -> out.table_read */
	WORKER_TABLE_WRITE,			/* node, millis, own_millis -> out.table_write */
	WORKER_TABLE_CHECK,			/* -> out.refusal */
	WORKER_FILE_READ,			/* node -> out.file */
	WORKER_FILE_WRITE,			/* node, millis */
	WORKER_ETCD_READ,			/* node -> out.etcd */
	WORKER_ETCD_RAISE,			/* node, millis */
	WORKER_ETCD_SETTLE,			/* node, millis */
	WORKER_LEASE_GRANT,
	WORKER_LEASE_KEEPALIVE,		/* -> out.lease_kept */
	WORKER_LEASE_REVOKE,
	WORKER_PREFIX_CHECK,		/* -> out.prefix */
	WORKER_NODE_CLAIM,			/* claim (in and out) */
	WORKER_NODE_RELEASE			/* node */
} WorkerCall;

/* The mark file's record of one node id. */
typedef struct WorkerFileMark
{
	int64		millis;			/* ms since the epoch; 0 for none */
	int64		etcd_revision;	/* of the etcd mark this server wrote last */
	bool		epoch_changed;	/* written under another epoch or layout */
	TimestampTz other_epoch;
	const char *other_layout;
} WorkerFileMark;

typedef struct WorkerStep
{
	WorkerCall	call;
	int			node;
	int64		millis;			/* the mark to write, ms since the epoch */
	int64		own_millis;		/* the worker's own last mark; -1: none */
	NodeClaim  *claim;
	union
	{
		MarkStoreRead table_read;
		MarkStoreWrite table_write;
		MarkStoreRefusal refusal;
		WorkerFileMark file;
		NodeLeaseMark etcd;
		bool		lease_kept;
		MarkStoreRefusal prefix;	/* message NULL: epoch and layout agree */
	}			out;
} WorkerStep;

static void
worker_do(WorkerStep *step)
{
	switch (step->call)
	{
		case WORKER_TABLE_READ:
			{
				uint32		foreign = shared_state_foreign_marks();

				mark_store_read(step->node, foreign != worker_foreign_marks_read,
								&step->out.table_read);
				/* Read: those rows are in it, or were never committed. */
				if (step->out.table_read.refusal.message == NULL)
					worker_foreign_marks_read = foreign;
			}
			break;
		case WORKER_TABLE_WRITE:
			mark_store_write(step->node, step->millis, step->own_millis,
							 &step->out.table_write);
			break;
		case WORKER_TABLE_CHECK:
			mark_store_check(&step->out.refusal);
			break;
		case WORKER_FILE_READ:
			step->out.file.epoch_changed =
				mark_file_other_epoch(&step->out.file.other_epoch,
									  &step->out.file.other_layout);
			step->out.file.millis = mark_file_read(step->node,
												   &step->out.file.etcd_revision);
			break;
		case WORKER_FILE_WRITE:
			/* with the revision of the etcd mark last written: etcd first */
			mark_file_write(step->node, step->millis,
							worker_uses_etcd ? node_lease_mark_revision(step->node) : 0);
			break;
		case WORKER_ETCD_READ:
			node_lease_read_mark(step->node, &step->out.etcd);
			break;
		case WORKER_ETCD_RAISE:
			node_lease_raise_mark(step->node, step->millis);
			break;
		case WORKER_ETCD_SETTLE:
			node_lease_settle_mark(step->node, step->millis);
			break;
		case WORKER_LEASE_GRANT:
			node_lease_grant();
			break;
		case WORKER_LEASE_KEEPALIVE:
			step->out.lease_kept = node_lease_keepalive();
			break;
		case WORKER_LEASE_REVOKE:
			node_lease_revoke();
			break;
		case WORKER_PREFIX_CHECK:
			step->out.prefix.message = node_lease_check_prefix(&step->out.prefix.hint);
			break;
		case WORKER_NODE_CLAIM:
			node_lease_claim(step->claim);
			break;
		case WORKER_NODE_RELEASE:
			node_lease_release(step->node);
			break;
	}
}

/*
 * Run one call that uses the database, the mark file or etcd; on error,
 * report it, clean up the transaction and return false.  This is the
 * worker's one place that catches errors.
 */
static bool
worker_run(WorkerStep *step, const char *what)
{
	MemoryContext context = worker_context;
	volatile bool ok = true;

	PG_TRY();
	{
		worker_do(step);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		char	   *message;

		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		/* The abort leaves TopMemoryContext current: not for the message. */
		MemoryContextSwitchTo(context);
		pgstat_report_activity(STATE_IDLE, NULL);
		message = psprintf("could not %s: %s", what, edata->message);

		if (worker_first_in_episode(what, message))
			ereport(WARNING,
					errmsg("snowflake worker could not %s: %s", what, edata->message),
					edata->detail ? errdetail("%s", edata->detail) : 0);
		shared_state_set_last_error(message);
		pfree(message);
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	/* A transaction leaves TopMemoryContext current: come back here. */
	MemoryContextSwitchTo(worker_context);
	if (ok)
		worker_problems_over(what);
	return ok;
}

/* A call with no input but the node id (perhaps none). */
static bool
worker_run_on(WorkerCall call, int node, WorkerStep *step, const char *what)
{
	memset(step, 0, sizeof(*step));
	step->call = call;
	step->node = node;
	step->own_millis = -1;
	return worker_run(step, what);
}

/* A call that writes millis as node's mark. */
static bool
worker_run_write(WorkerCall call, int node, int64 millis, WorkerStep *step,
				 const char *what)
{
	memset(step, 0, sizeof(*step));
	step->call = call;
	step->node = node;
	step->millis = millis;
	step->own_millis = -1;
	return worker_run(step, what);
}

/*
 * Whatever ALTER DATABASE or ALTER ROLE set for this database, the worker's
 * queries run the same way: nothing the database's settings say may
 * redirect them (search_path), make them fail (read-only, timeouts) or
 * skip what they rely on.
 */
static void
worker_pin_session_settings(void)
{
	static const char *const pinned[][2] = {
		{"search_path", "pg_catalog, pg_temp"},
		{"default_transaction_read_only", "off"},
		{"default_transaction_isolation", "read committed"},
		{"default_transaction_deferrable", "off"},
		{"statement_timeout", "0"},
		{"idle_in_transaction_session_timeout", "0"},
		{"session_replication_role", "origin"},
		/* a caught error must stay an error, not end the worker */
		{"exit_on_error", "off"},
		/* A reservation counts only once it is durable. */
		{"synchronous_commit", "on"},
	};
	int			i;

	for (i = 0; i < lengthof(pinned); i++)
		SetConfigOption(pinned[i][0], pinned[i][1], PGC_SUSET, PGC_S_OVERRIDE);
	/* Never hang on a lock: fail, report, and try again at the next round. */
	SetConfigOption("lock_timeout", psprintf("%d", Max(snowflake_reserve / 2, 100)),
					PGC_SUSET, PGC_S_OVERRIDE);
}

/* Publish why IDs are refused, with the phase that refuses them. */
static void
worker_refuse_message(SnowflakePhase phase, const char *message, const char *hint)
{
	worker_report_message(message, NULL, hint);
	shared_state_set_refusal(message, hint);
	shared_state_set_phase(phase);
	pg_atomic_fetch_add_u32(&snowflake_shared->marks_checks, 1);
	ConditionVariableBroadcast(&snowflake_shared->progress_cv);
}

/*
 * Whether a database of that name exists, read from a connection to no
 * database.  A heap scan of pg_database, as the autovacuum launcher does:
 * get_database_oid() scans the index on datname, and opening that index
 * reads pg_class, which fails with no database selected until some
 * backend has written the shared relcache init file (on a server no
 * client has connected to yet, every check would end in a FATAL error).
 */
static bool
worker_database_exists(const char *name)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	bool		found = false;

	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (!found &&
		   HeapTupleIsValid(tuple = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tuple);

		found = strcmp(NameStr(db->datname), name) == 0;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * The last start died connecting to snowflake.database: look for it from
 * a connection to no database (shared catalogs only), and say what is wrong
 * until it exists or the server shuts down.  The caller then exits, to be
 * started again and connect to it.  This keeps a missing database from
 * becoming a loop of FATAL errors.
 */
static void
worker_wait_for_database(void)
{
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	while (!ShutdownRequestPending)
	{
		bool		exists;

		StartTransactionCommand();
		(void) GetTransactionSnapshot();
		exists = worker_database_exists(snowflake_database);
		CommitTransactionCommand();
		MemoryContextSwitchTo(worker_context);
		if (exists)
		{
			pg_atomic_write_u32(&snowflake_shared->connect_attempts, 0);
			return;
		}
		worker_refuse(SNOWFLAKE_PHASE_MARKS_UNAVAILABLE,
					  "Create that database, or set snowflake.database to the database "
					  "that holds the snowflake extension and restart the server.",
					  "database \"%s\" (snowflake.database) does not exist",
					  snowflake_database);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 WORKER_RETRY_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * The marks interface: worker_read_marks(), worker_raise_marks() and
 * worker_settle_marks() are the only functions that know which homes hold
 * the marks (the table and the mark file always, etcd in etcd mode) and in
 * which order they are written.  Every call on a home is its own
 * worker_run(), so that one home failing never keeps another from being
 * written.
 */

/*
 * Settle node's marks at the last issued millisecond, with the generator
 * closed, so that the next holder of the node id (often this server,
 * restarting) issues at once.  A mark honoured since the last reopen but
 * not yet reopened above stays; rows above our own reservation were written
 * by others.
 */
static void
worker_settle_marks(int node, int64 last_millis)
{
	int64		millis = Max(last_millis, shared_state_node_floor(node));
	WorkerStep	step;

	memset(&step, 0, sizeof(step));
	step.call = WORKER_TABLE_WRITE;
	step.node = node;
	step.millis = millis;
	step.own_millis = worker_own_mark;
	if (worker_run(&step, "record the last issued timestamp") &&
		step.out.table_write.refusal.message == NULL)
		shared_state_set_high_water(step.out.table_write.merged_millis);
	/* etcd first: the file records the revision of the settled mark. */
	if (worker_uses_etcd && node_lease_held())
		(void) worker_run_write(WORKER_ETCD_SETTLE, node, millis, &step,
								"record the last issued timestamp in etcd");
	(void) worker_run_write(WORKER_FILE_WRITE, node, millis, &step,
							"record the last issued timestamp in snowflake.marks");
}

/* Give the etcd lease back, freeing the node id at once. */
static void
worker_revoke_lease(void)
{
	WorkerStep	step;

	(void) worker_run_on(WORKER_LEASE_REVOKE, -1, &step, "revoke the etcd lease");
}

/*
 * At shutdown: close the generator, so that no ID follows the one recorded,
 * and, if the worker was serving (settle), record the exact last issued
 * millisecond as the mark.
 */
static void
worker_close(bool settle)
{
	/*
	 * The mark is about to drop to the exact last millisecond: so must the
	 * reservation, and nothing is issued until a worker reads it again.
	 */
	uint64		last_id = shared_state_close(SNOWFLAKE_PHASE_STARTING,
											 SNOWFLAKE_CLOSE_KEEP_NODE |
											 SNOWFLAKE_CLOSE_AT_LAST_ID);
	int64		last_millis = snowflake_millis((int64) last_id);

	if (settle && last_millis > 0)
		worker_settle_marks(worker_node, last_millis);
	/* Frees the node id at once for the next server. */
	if (worker_uses_etcd)
		worker_revoke_lease();
}

/*
 * etcd: renew the lease and prove the claim when due.  Returns false once
 * either is lost or may have expired; then nothing more may be issued under
 * the node id.
 */
static bool
worker_tend_lease(void)
{
	WorkerStep	step;
	bool		lost = false;

	if (!worker_uses_etcd)
		return true;
	if (!node_lease_held())
		return false;
	if (node_lease_ms_until_keepalive() == 0)
	{
		if (!worker_run_on(WORKER_LEASE_KEEPALIVE, -1, &step, "renew the etcd lease"))
			node_lease_keepalive_failed();
		else
			lost = !step.out.lease_kept;
	}
	if (lost || shared_state_fenced(&snowflake_shared->fence_deadline))
	{
		node_lease_lost();
		return false;
	}
	return true;
}

/*
 * Sleep up to timeout_ms (-1: no limit), waking for keep-alives; handle
 * reloads; then free what the last round allocated.  Returns false when
 * the server shuts down (the caller returns, up to the main loop, which
 * closes) or the etcd lease is lost.
 */
static bool
worker_sleep(long timeout_ms)
{
	int64		keepalive_ms = worker_uses_etcd ? node_lease_ms_until_keepalive() : -1;

	if (keepalive_ms >= 0 && (timeout_ms < 0 || keepalive_ms < timeout_ms))
		timeout_ms = keepalive_ms;
	(void) WaitLatch(MyLatch,
					 WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | (timeout_ms >= 0 ? WL_TIMEOUT : 0),
					 timeout_ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
	if (ShutdownRequestPending)
		return false;
	MemoryContextReset(worker_context);
	return worker_tend_lease();
}

/*
 * How far ahead of the clock a reservation goes.  In etcd mode the worker
 * may be held in one round with etcd (a keep-alive and the key read back,
 * or raising the etcd mark) for as long as two requests may take when etcd
 * hangs (restarting, no leader, paused): the reservation must outlast that,
 * or callers would wait on a table write that is not late at all.
 */
static int64
worker_reservation_ahead(void)
{
	return (int64) snowflake_reserve +
		(worker_uses_etcd ? 2 * etcd_longest_request_ms() : 0);
}

/* Raise the etcd mark of the node served to at least millis. */
static bool
worker_raise_etcd_mark(int64 millis)
{
	WorkerStep	step;

	return worker_run_write(WORKER_ETCD_RAISE, worker_node, millis, &step,
							"raise the high-water mark in etcd");
}

/*
 * Commit a mark of target_millis, in the table and the mark file, then let
 * the generator issue up to it.  In etcd mode the etcd mark must cover it
 * too; it is kept one to two TTLs ahead, so most reservations need no etcd
 * round trip and an etcd outage shorter than the fence does not stop them.
 */
static bool
worker_raise_marks(int64 target_millis)
{
	WorkerStep	step;
	MarkStoreWrite *write = &step.out.table_write;
	int64		ttl_ms = (int64) snowflake_etcd_lease_ttl * 1000;
	TimestampTz started = GetCurrentTimestamp();
	bool		covered = !worker_uses_etcd ||
	node_lease_mark_covers(worker_node, target_millis);

	/*
	 * etcd must cover the target before the table may hold it.  When it
	 * already does, the table goes first and the etcd mark is raised after,
	 * if its lead runs short: a slow etcd then holds up only that raise.
	 */
	if (!covered && !worker_raise_etcd_mark(target_millis + 2 * ttl_ms) &&
		!node_lease_mark_covers(worker_node, target_millis))
		goto failed;
	if (!worker_run_write(WORKER_TABLE_WRITE, worker_node, target_millis, &step,
						  "reserve the high-water mark"))
		goto failed;
	if (write->refusal.message != NULL)
	{
		/* The marks lost their safe home: stop until it is back. */
		(void) shared_state_close(SNOWFLAKE_PHASE_MARKS_UNAVAILABLE,
								  SNOWFLAKE_CLOSE_REOPEN);
		worker_refuse(SNOWFLAKE_PHASE_MARKS_UNAVAILABLE, write->refusal.hint,
					  "%s", write->refusal.message);
		goto failed;
	}
	/* A higher row came in without the trigger noticing: honour it. */
	if (write->merged_millis > target_millis &&
		shared_state_honour_mark(worker_node, true, write->merged_millis))
		goto failed;
	worker_own_mark = write->merged_millis;
	if (!worker_run_write(WORKER_FILE_WRITE, worker_node, target_millis, &step,
						  "reserve the high-water mark in snowflake.marks"))
		goto failed;

	shared_state_publish_reservation(target_millis,
									 (uint64) (GetCurrentTimestamp() - started));
	worker_forget_backend_error();

	/*
	 * Covered: raise the etcd mark now, after the table, if its lead is
	 * short.
	 */
	if (covered && worker_uses_etcd &&
		!node_lease_mark_covers(worker_node, target_millis + ttl_ms))
		(void) worker_raise_etcd_mark(target_millis + 2 * ttl_ms);
	return true;

failed:
	shared_state_reservation_failed();
	return false;
}

/*
 * etcd: hold a lease and a node id, the configured one or the lowest free
 * one.  Loops until it has one; meanwhile backends wait (fenced) or, when
 * etcd answered that none is available, are told why at once.  Returns -1
 * when the server shuts down first.
 */
static int
worker_acquire_node(void)
{
	bool		prefix_checked = false;

	if (!worker_uses_etcd)
		return snowflake_node_id;

	while (!ShutdownRequestPending)
	{
		NodeClaim	claim;
		WorkerStep	step;
		uint64		claim_started;
		int64		answers_before;
		int64		bytes_before;
		int64		answers;
		int64		bytes;

		if (!node_lease_held() &&
			!worker_run_on(WORKER_LEASE_GRANT, -1, &step, "lease a node id from etcd"))
		{
			shared_state_set_phase(SNOWFLAKE_PHASE_FENCED);
			(void) worker_sleep(WORKER_RETRY_MS);
			continue;
		}

		/*
		 * Before a claim: the prefix's servers make IDs of our epoch and
		 * layout.
		 */
		if (!prefix_checked &&
			!worker_run_on(WORKER_PREFIX_CHECK, -1, &step,
						   "check the epoch and layout recorded under the etcd prefix"))
		{
			shared_state_set_phase(SNOWFLAKE_PHASE_FENCED);
			(void) worker_sleep(WORKER_RETRY_MS);
			continue;
		}
		if (!prefix_checked && step.out.prefix.message != NULL)
		{
			worker_refuse(SNOWFLAKE_PHASE_EPOCH_CHANGED, step.out.prefix.hint,
						  "%s", step.out.prefix.message);
			worker_refuse_for_good();
			return -1;
		}
		prefix_checked = true;

		claim.wanted = snowflake_node_source == SNOWFLAKE_NODE_SOURCE_GUC ?
			snowflake_node_id : -1;
		claim.skip_until = worker_skip_until;
		claim.now_millis = generator_clock_millis();
		memset(&step, 0, sizeof(step));
		step.call = WORKER_NODE_CLAIM;
		step.claim = &claim;
		claim_started = shared_state_monotonic_micros();
		etcd_traffic(&answers_before, &bytes_before);
		if (!worker_run(&step, "claim a node id in etcd"))
			shared_state_set_phase(SNOWFLAKE_PHASE_FENCED);
		else if (claim.node >= 0)
		{
			TimestampTz expires;

			etcd_traffic(&answers, &bytes);
			ereport(LOG,
					errmsg("snowflake worker holds node id %d under etcd lease " INT64_FORMAT,
						   claim.node, shared_state_get_lease(&expires)),
					errdetail("The claim took %.1f ms, %lld etcd requests and %lld bytes of answers.",
							  (shared_state_monotonic_micros() - claim_started) / 1000.0,
							  (long long) (answers - answers_before),
							  (long long) (bytes - bytes_before)));
			return claim.node;
		}
		else
		{
			/* node_lease.c composed the problem: pass it on as it is */
			worker_report("The snowflake worker tries again every second.", NULL,
						  "%s", claim.problem);
			shared_state_set_refusal(claim.problem, NULL);
			shared_state_set_phase(SNOWFLAKE_PHASE_NODE_ID_UNAVAILABLE);
		}
		(void) worker_sleep(WORKER_RETRY_MS);
	}
	return -1;
}

/*
 * The refusal is published (worker_refuse) and stands for good: IDs made
 * now could repeat or sort apart from others.  Issue nothing, ever; return
 * only when the server shuts down.
 */
static void
worker_refuse_for_good(void)
{
	/* The node id is of no use here: free it for other servers. */
	if (worker_uses_etcd)
		worker_revoke_lease();
	while (!ShutdownRequestPending)
		(void) worker_sleep(-1);
}

/* The marks were written under another epoch or layout. */
static void
worker_refuse_changed_epoch(TimestampTz other_epoch, const char *other_layout,
							const char *holder)
{
	if (other_layout != NULL && strcmp(other_layout, snowflake_layout.text) != 0)
		worker_refuse(SNOWFLAKE_PHASE_EPOCH_CHANGED,
					  "Set snowflake.layout back and restart the server. No IDs are issued.",
					  "snowflake.layout was changed: %s holds "
					  "marks written under layout \"%s\", but the server runs with \"%s\"",
					  holder, other_layout, snowflake_layout.text);
	else
		worker_refuse(SNOWFLAKE_PHASE_EPOCH_CHANGED,
					  "Set snowflake.epoch back and restart the server. No IDs are issued.",
					  "snowflake.epoch was changed: %s holds "
					  "marks written under epoch %s, but the server runs with %s",
					  holder, pstrdup(timestamptz_to_str(other_epoch)),
					  pstrdup(timestamptz_to_str(snowflake_epoch)));
	worker_refuse_for_good();
}

/*
 * etcd mode: the clock is too far behind the mark of the node id just
 * claimed.  Give it back and remember not to take it again before the clock
 * gets close to its mark.
 */
static void
worker_migrate_from(int node, int64 mark_millis, int64 behind)
{
	ereport(LOG,
			errmsg("snowflake worker gives back node id %d: the clock is %lld ms behind "
				   "its high-water mark", node, (long long) behind),
			errdetail("It claims another node id whose mark is below the clock."));
	worker_skip_until[node] = mark_millis - snowflake_reserve - snowflake_max_clock_rollback;
	pg_atomic_fetch_add_u64(&snowflake_shared->node_migrations, 1);
	worker_gave_back = true;
	{
		WorkerStep	step;

		(void) worker_run_on(WORKER_NODE_RELEASE, node, &step,
							 "give back a node id in etcd");
	}
}

/*
 * Nothing proves who held the node id since this server did (another
 * server held it, it is new to this server, or etcd lost data): an earlier
 * holder may not know yet that its claim is gone.  It stops at the latest
 * at its fence, which started before our claim; wait that long, and the
 * clock difference the fleet tolerates, from the claim.
 */
static bool
worker_wait_out_unknown_holder(int node)
{
	uint64		until = node_lease_claim_time() +
	(uint64) (node_lease_fence_window_ms() + snowflake_max_clock_rollback) * 1000;

	ereport(LOG,
			errmsg("snowflake worker waits %lld ms before issuing under node id %d: "
				   "its mark in etcd is not the one this server wrote last",
				   (long long) (until - Min(until, shared_state_monotonic_micros())) / 1000,
				   node),
			errdetail("Another server may have held node id %d and, if etcd lost data "
					  "(keys deleted, data wiped or restored from a snapshot), may go on "
					  "issuing until its fence.",
					  node));
	shared_state_set_phase(SNOWFLAKE_PHASE_WAITING_FOR_CLOCK);
	for (;;)
	{
		uint64		now = shared_state_monotonic_micros();

		if (now >= until)
			return true;
		if (!worker_sleep(Min((long) ((until - now) / 1000) + 1, WORKER_RETRY_MS)) ||
			shared_state_reopen_wanted())
			return false;
	}
}

/* The marks of one node id, from every home that keeps them. */
typedef struct WorkerMarks
{
	int64		table_millis;	/* the higher of the table and the mark file */
	int64		etcd_millis;	/* the etcd mark; 0: none, or no etcd */

	/*
	 * The etcd mark is this server's own last write of it, found unchanged:
	 * nobody else issued under the node id since.
	 */
	bool		own_etcd_mark;
} WorkerMarks;

/*
 * Read node's marks from every home, retrying each until it answers.
 * Returns false to start over (the etcd lease was lost meanwhile).
 */
static bool
worker_read_marks(int node, WorkerMarks *marks)
{
	WorkerStep	table;
	WorkerStep	file;
	WorkerStep	etcd;

	for (;;)
	{
		if (worker_run_on(WORKER_TABLE_READ, node, &table, "read the high-water mark"))
		{
			if (table.out.table_read.refusal.message == NULL)
				break;
			worker_refuse(SNOWFLAKE_PHASE_MARKS_UNAVAILABLE,
						  table.out.table_read.refusal.hint,
						  "%s", table.out.table_read.refusal.message);
		}
		if (!worker_sleep(WORKER_RETRY_MS))
			return false;
	}
	pg_atomic_fetch_add_u32(&snowflake_shared->marks_checks, 1);
	shared_state_set_phase(SNOWFLAKE_PHASE_STARTING);
	/* Marks honoured from here on are in what is read next, or reopen again. */
	shared_state_clear_reopen();

	if (table.out.table_read.epoch_changed)
	{
		worker_refuse_changed_epoch(table.out.table_read.other_epoch,
									table.out.table_read.other_layout,
									"the high-water table");
		return false;
	}

	while (!worker_run_on(WORKER_FILE_READ, node, &file,
						  "read the high-water mark in snowflake.marks"))
		if (!worker_sleep(WORKER_RETRY_MS))
			return false;
	if (file.out.file.epoch_changed)
	{
		worker_refuse_changed_epoch(file.out.file.other_epoch,
									file.out.file.other_layout,
									"the mark file snowflake.marks");
		return false;
	}
	marks->table_millis = Max(table.out.table_read.found ?
							  table.out.table_read.mark_millis : 0,
							  file.out.file.millis);

	marks->etcd_millis = 0;
	marks->own_etcd_mark = false;
	if (!worker_uses_etcd)
		return true;
	while (!worker_run_on(WORKER_ETCD_READ, node, &etcd,
						  "read the high-water mark in etcd"))
		if (!worker_sleep(WORKER_RETRY_MS))
			return false;
	marks->etcd_millis = etcd.out.etcd.millis;

	/*
	 * The etcd mark runs one to two TTLs ahead of the IDs.  When it is our
	 * own last write, found unchanged, nobody else issued under the node id
	 * and the table and the mark file bound our IDs closer: a crash restart
	 * that gets its node id back waits for those, not for the etcd lead.
	 */
	marks->own_etcd_mark = etcd.out.etcd.trusted && etcd.out.etcd.revision > 0 &&
		etcd.out.etcd.revision == file.out.file.etcd_revision;
	return true;
}

/* How far ahead of the IDs the etcd mark may run. */
static int64
worker_etcd_lead_ms(void)
{
	return worker_uses_etcd ? (int64) snowflake_etcd_lease_ttl * 2000 : 0;
}

/*
 * etcd mode with node ids from etcd: a node id whose marks are too far
 * ahead of this clock is given back for another.  Returns whether it was.
 */
static bool
worker_migrate_if_far_ahead(int node, const WorkerMarks *marks, int64 tolerated)
{
	int64		now;

	if (!worker_uses_etcd || snowflake_node_source != SNOWFLAKE_NODE_SOURCE_ETCD)
		return false;
	now = generator_clock_millis();
	if (marks->table_millis - now > tolerated ||
		marks->etcd_millis - now > tolerated + worker_etcd_lead_ms())
	{
		int64		mark_millis = Max(marks->table_millis, marks->etcd_millis);

		worker_migrate_from(node, mark_millis, mark_millis - now);
		return true;
	}
	return false;
}

/* How worker_wait_for_clock() ended. */
typedef enum WorkerClockWait
{
	WORKER_CLOCK_PASSED,		/* the clock is past the floor */
	WORKER_CLOCK_OUT_OF_RANGE,	/* outside the epoch's range: callers told */
	WORKER_CLOCK_START_OVER		/* lease lost or a mark to honour */
} WorkerClockWait;

/*
 * Hold the generator until the clock has passed base, the floor it was
 * opened at: after a crash the marks are ahead by up to the reservation
 * (and the etcd mark by up to its lead), which is waited out; further is a
 * clock that went back, refused at once.
 */
static WorkerClockWait
worker_wait_for_clock(int node, int64 base, const WorkerMarks *marks,
					  int64 tolerated)
{
	int64		etcd_lead = worker_etcd_lead_ms();

	for (;;)
	{
		int64		now = generator_clock_millis();
		int64		behind = base - now;

		/*
		 * A clock outside the epoch's range: the generator reports it to
		 * every caller, and asks for a reservation once the clock is right.
		 */
		if (now < 0 || now > snowflake_layout.max_millis)
			return WORKER_CLOCK_OUT_OF_RANGE;
		if (behind < 0)
			return WORKER_CLOCK_PASSED;
		shared_state_set_clock_behind(behind);

		if (Max(marks->table_millis, shared_state_node_floor(node)) - now > tolerated ||
			(!marks->own_etcd_mark && marks->etcd_millis - now > tolerated + etcd_lead))
		{
			if (pg_atomic_read_u32(&snowflake_shared->phase) != SNOWFLAKE_PHASE_CLOCK_BEHIND)
				worker_report(psprintf("IDs of node %d were reserved up to %s; that is more "
									   "than snowflake.reserve + snowflake.max_clock_rollback "
									   "(%lld ms) behind. No IDs are issued until the clock "
									   "passes the mark.",
									   node,
									   timestamptz_to_str(snowflake_millis_to_timestamp(snowflake_epoch,
																						base)),
									   (long long) tolerated),
							  NULL,
							  "the clock is %lld ms behind the high-water mark of node %d",
							  (long long) behind, node);
			shared_state_set_phase(SNOWFLAKE_PHASE_CLOCK_BEHIND);
		}
		else
			shared_state_set_phase(SNOWFLAKE_PHASE_WAITING_FOR_CLOCK);
		if (!worker_sleep(Min(behind + 1, WORKER_RETRY_MS)) ||
			shared_state_reopen_wanted())
			return WORKER_CLOCK_START_OVER;
	}
}

/*
 * The clock has passed the floor: make the first reservation, never below
 * the floor even if the clock stepped back meanwhile, then issue.
 */
static bool
worker_first_reservation(int64 base)
{
	/* Callers wait for the reservation. */
	shared_state_set_phase(SNOWFLAKE_PHASE_WAITING_FOR_CLOCK);
	while (!worker_raise_marks(Max(generator_clock_millis() + worker_reservation_ahead(), base)))
		if (!worker_sleep(WORKER_RETRY_MS) || shared_state_reopen_wanted())
			return false;
	shared_state_set_phase(SNOWFLAKE_PHASE_READY);
	worker_problems_over(NULL);
	return true;
}

/*
 * Read the node's marks, hold the generator above them until the clock has
 * passed them, then make the first reservation.  Returns false to start
 * over: the etcd lease was lost, the node id given back, or a mark above
 * the last ID was written meanwhile.
 */
static bool
worker_open(int node)
{
	WorkerMarks marks;
	int64		base;

	/* Marks further ahead of the clock than this: a clock that went back. */
	int64		tolerated = worker_reservation_ahead() + snowflake_max_clock_rollback;

	shared_state_set_phase(SNOWFLAKE_PHASE_STARTING);
	if (!worker_read_marks(node, &marks) ||
		worker_migrate_if_far_ahead(node, &marks, tolerated))
		return false;

	base = shared_state_open(node, Max(marks.table_millis,
									   marks.own_etcd_mark ? 0 : marks.etcd_millis));
	worker_own_mark = -1;

	/*
	 * In etcd mode only our own last write of the etcd mark, found unchanged,
	 * proves that nobody issued under the node id since; anything else
	 * (another server held it, a node id new to this server, etcd's data
	 * lost) is waited out.
	 */
	if (worker_uses_etcd && !marks.own_etcd_mark &&
		!worker_wait_out_unknown_holder(node))
		return false;

	switch (worker_wait_for_clock(node, base, &marks, tolerated))
	{
		case WORKER_CLOCK_OUT_OF_RANGE:
			shared_state_set_phase(SNOWFLAKE_PHASE_READY);
			return true;
		case WORKER_CLOCK_START_OVER:
			return false;
		case WORKER_CLOCK_PASSED:
			break;
	}
	return worker_first_reservation(base);
}

/*
 * Keep the reservation ahead of the IDs; returns when the lease is lost or
 * the generator must be reopened above a mark written by someone else.
 */
static void
worker_serve(void)
{
	TimestampTz home_checked_at = GetCurrentTimestamp();

	for (;;)
	{
		int64		reserved;
		int64		last_millis;
		bool		wanted;

		if (!worker_sleep(Max(snowflake_reserve / 4, 1)) ||
			shared_state_reopen_wanted())
			return;

		/* Idle too, the home of the marks must stay safe: look every second. */
		if (GetCurrentTimestamp() - home_checked_at > WORKER_RETRY_MS * 1000)
		{
			WorkerStep	step;
			MarkStoreRefusal *refusal = &step.out.refusal;

			home_checked_at = GetCurrentTimestamp();
			if (worker_run_on(WORKER_TABLE_CHECK, -1, &step, "check the high-water table") &&
				refusal->message != NULL)
			{
				(void) shared_state_close(SNOWFLAKE_PHASE_MARKS_UNAVAILABLE, 0);
				worker_refuse(SNOWFLAKE_PHASE_MARKS_UNAVAILABLE, refusal->hint,
							  "%s", refusal->message);
				return;
			}
		}

		reserved = (int64) pg_atomic_read_u64(&snowflake_shared->reserved_until);
		last_millis = shared_state_last_issued_millis();
		wanted = pg_atomic_exchange_u32(&snowflake_shared->reservation_wanted, 0) != 0;

		/*
		 * Idle: the last ID is far below the reservation; write nothing.
		 * Otherwise renew while at least half a reserve and the longest etcd
		 * round are left.
		 */
		if (wanted || last_millis + snowflake_reserve / 2 +
			(worker_reservation_ahead() - snowflake_reserve) >= reserved)
		{
			int64		target = generator_clock_millis() + worker_reservation_ahead();

			if (target > reserved)
				(void) worker_raise_marks(target);
		}
	}
}

/*
 * The etcd lease is lost or may have expired: another server may hold the
 * node id by now.  Close the generator until a node id is held again.
 */
static void
worker_fence(int node)
{
	(void) shared_state_close(SNOWFLAKE_PHASE_FENCED, 0);
	worker_report(NULL, NULL,
				  "the etcd lease on node id %d expired, could not be renewed "
				  "in time, or etcd lost the claim; no IDs are issued until the "
				  "worker holds a node id again", node);
}

void
snowflake_worker_main(Datum arg)
{
	bool		served = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	worker_context = AllocSetContextCreate(TopMemoryContext,
										   "snowflake worker",
										   ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(worker_context);
	snowflake_in_worker = true;

	/* A restarted worker reads the mark again before anything is issued. */
	shared_state_set_phase(SNOWFLAKE_PHASE_STARTING);
	shared_state_set_worker_latch(MyLatch);
	before_shmem_exit(worker_detach, 0);

	/* Exit code 1 below: restarted, unless the server is shutting down. */
	if (pg_atomic_fetch_add_u32(&snowflake_shared->connect_attempts, 1) > 0)
	{
		worker_wait_for_database();
		proc_exit(1);
	}
	/* ALLOW_CONNECTIONS false on the database must not stop the marks. */
	BackgroundWorkerInitializeConnection(snowflake_database, NULL,
										 BGWORKER_BYPASS_ALLOWCONN);
	pg_atomic_write_u32(&snowflake_shared->connect_attempts, 0);
	worker_pin_session_settings();

	worker_uses_etcd = settings_etcd_in_use();
	if (worker_uses_etcd)
	{
		TimestampTz expires;

		/*
		 * A worker that restarted without a server restart left a lease
		 * behind: fence until there is a new one (which drops the fence
		 * first), and revoke the old one before the next grant.
		 */
		node_lease_revoke_later(shared_state_get_lease(&expires));
		(void) shared_state_close(SNOWFLAKE_PHASE_STARTING, 0);
		etcd_client_open();
	}

	/*
	 * Every wait below returns once shutdown is requested, up to here: the
	 * loop then ends, and the worker closes the generator and exits.
	 */
	while (!ShutdownRequestPending)
	{
		if (worker_node < 0)
		{
			worker_gave_back = false;
			worker_node = worker_acquire_node();
			if (worker_node < 0)
				break;
		}
		if (worker_open(worker_node))
		{
			worker_serve();
			/* Shut down while serving: the marks settle at the last ID. */
			if (ShutdownRequestPending)
			{
				served = true;
				break;
			}
		}
		if (ShutdownRequestPending)
			break;
		if (worker_uses_etcd && !node_lease_held())
		{
			worker_fence(worker_node);
			worker_node = -1;
		}
		else if (worker_gave_back)
			worker_node = -1;
	}

	worker_close(served);
	proc_exit(1);
}
