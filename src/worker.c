/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The background worker: reads this node's high-water mark at start,
 *	  holds the generator back until the clock has passed it, and keeps a
 *	  reservation committed ahead of the IDs being issued.
 *
 * The generator never issues an ID in a millisecond past reserved_until,
 * and the worker raises reserved_until only after the mark table holds at
 * least as much, so after a crash the table knows an upper bound of every
 * ID issued.  The worker renews the reservation, to now + snowflake.reserve,
 * when issuing comes within half a reserve of it or a backend asks; an idle
 * server writes nothing.  At shutdown it closes the generator and records
 * the exact last issued millisecond, so a clean restart issues at once.
 * Backends never write the table; the worker never makes IDs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "generator.h"
#include "layout.h"
#include "mark_store.h"
#include "settings.h"
#include "shared_state.h"
#include "worker.h"

PGDLLEXPORT void snowflake_worker_main(Datum arg);

/* How long the worker waits before retrying a failed read, in ms. */
#define WORKER_RETRY_MS 1000

static MemoryContext worker_context = NULL;

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

/*
 * Run one step that uses the database; on error, log it, keep it for
 * snowflake_status().last_error, clean up the transaction and return false.
 */
static bool
worker_run(void (*step) (void *), void *arg, const char *what)
{
	MemoryContext context = worker_context;
	volatile bool ok = true;

	PG_TRY();
	{
		step(arg);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		char	   *message;

		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);
		message = psprintf("could not %s: %s", what, edata->message);
		ereport(WARNING,
				errmsg("snowflake worker %s", message),
				edata->detail ? errdetail("%s", edata->detail) : 0);
		shared_state_set_last_error(message);
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	/* A transaction leaves TopMemoryContext current: come back here. */
	MemoryContextSwitchTo(worker_context);
	return ok;
}

/*
 * At shutdown: close the generator, so that no ID follows the one recorded,
 * and record the exact last issued millisecond as the mark.
 */
static void
worker_close_and_exit(bool was_ready)
{
	uint64		last_id = pg_atomic_fetch_or_u64(&snowflake_shared->last_id,
												 SNOWFLAKE_CLOSED_BIT);
	int64		last_millis = snowflake_millis((int64) (last_id & ~SNOWFLAKE_CLOSED_BIT));

	/*
	 * The mark is about to drop to the exact last millisecond: so must the
	 * reservation, and nothing is issued until a worker reads it again.
	 */
	pg_atomic_write_u64(&snowflake_shared->reserved_until, last_millis);
	shared_state_set_phase(SNOWFLAKE_PHASE_STARTING);

	if (was_ready && last_millis > 0)
	{
		MarkStoreWrite write = {snowflake_node_id, last_millis};

		if (worker_run(mark_store_write, &write,
					   "record the last issued timestamp"))
			pg_atomic_write_u64(&snowflake_shared->high_water, last_millis);
	}
	/* Exit code 1: restarted if this was not a server shutdown. */
	proc_exit(1);
}

/* Sleep up to timeout_ms; handle reloads; leave on shutdown. */
static void
worker_sleep(long timeout_ms, bool was_ready)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 timeout_ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
	if (ShutdownRequestPending)
		worker_close_and_exit(was_ready);
	MemoryContextReset(worker_context);
}

/* Commit a mark of target_millis, then let the generator issue up to it. */
static bool
worker_reserve(int64 target_millis)
{
	MarkStoreWrite write = {snowflake_node_id, target_millis};
	TimestampTz started = GetCurrentTimestamp();

	if (!worker_run(mark_store_write, &write,
					"reserve the high-water mark"))
		return false;
	pg_atomic_write_u64(&snowflake_shared->reservation_latency_us,
						(uint64) (GetCurrentTimestamp() - started));
	pg_atomic_write_u64(&snowflake_shared->high_water, target_millis);
	if (target_millis > (int64) pg_atomic_read_u64(&snowflake_shared->reserved_until))
		pg_atomic_write_u64(&snowflake_shared->reserved_until, target_millis);
	ConditionVariableBroadcast(&snowflake_shared->progress_cv);
	return true;
}

/*
 * Read the mark, hold the generator above it until the clock has passed it,
 * then make the first reservation.
 */
static void
worker_open(void)
{
	MarkStoreRead mark = {.node = snowflake_node_id};
	int64		base;

	while (!worker_run(mark_store_read, &mark,
					   "read the high-water mark"))
		worker_sleep(WORKER_RETRY_MS, false);

	if (mark.epoch_changed)
	{
		char	   *message = psprintf("snowflake.epoch was changed: the high-water table holds "
									   "marks written under epoch %s, but the server runs with %s",
									   pstrdup(timestamptz_to_str(mark.other_epoch)),
									   pstrdup(timestamptz_to_str(snowflake_epoch)));

		ereport(WARNING, errmsg("%s", message),
				errhint("Set snowflake.epoch back and restart the server. No IDs are issued."));
		shared_state_set_last_error(message);
		shared_state_set_phase(SNOWFLAKE_PHASE_EPOCH_CHANGED);
		for (;;)
			worker_sleep(-1, false);
	}

	base = shared_state_restart_above(mark.found ? mark.mark_millis : 0,
									  snowflake_node_id);
	pg_atomic_write_u64(&snowflake_shared->high_water, base);

	for (;;)
	{
		int64		now = generator_clock_millis();
		int64		behind = base - now;
		int64		tolerated = (int64) snowflake_reserve + snowflake_max_clock_rollback;

		/*
		 * A clock outside the epoch's range: the generator reports it to
		 * every caller, and asks for a reservation once the clock is right.
		 */
		if (now < 0 || now > SNOWFLAKE_MAX_MILLIS)
		{
			shared_state_set_phase(SNOWFLAKE_PHASE_READY);
			return;
		}
		if (behind < 0)
			break;
		snowflake_shared->clock_behind_by = behind;
		if (behind > tolerated)
		{
			if (pg_atomic_read_u32(&snowflake_shared->phase) != SNOWFLAKE_PHASE_CLOCK_BEHIND)
			{
				char	   *message = psprintf("the clock is %lld ms behind the high-water mark of node %d",
											   (long long) behind, snowflake_node_id);

				ereport(WARNING,
						errmsg("%s", message),
						errdetail("IDs of node %d were reserved up to %s; that is more than "
								  "snowflake.reserve + snowflake.max_clock_rollback (%lld ms) "
								  "behind. No IDs are issued until the clock passes the mark.",
								  snowflake_node_id,
								  timestamptz_to_str(snowflake_epoch + base * 1000),
								  (long long) tolerated));
				shared_state_set_last_error(message);
			}
			shared_state_set_phase(SNOWFLAKE_PHASE_CLOCK_BEHIND);
		}
		else
			shared_state_set_phase(SNOWFLAKE_PHASE_WAITING_FOR_CLOCK);
		worker_sleep(Min(behind + 1, WORKER_RETRY_MS), false);
	}

	/* The clock has passed the mark: callers wait for the reservation. */
	shared_state_set_phase(SNOWFLAKE_PHASE_WAITING_FOR_CLOCK);
	while (!worker_reserve(generator_clock_millis() + snowflake_reserve))
		worker_sleep(WORKER_RETRY_MS, false);
	shared_state_set_phase(SNOWFLAKE_PHASE_READY);
}

void
snowflake_worker_main(Datum arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	worker_context = AllocSetContextCreate(TopMemoryContext,
										   "snowflake worker",
										   ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(worker_context);

	/* A restarted worker reads the mark again before anything is issued. */
	shared_state_set_phase(SNOWFLAKE_PHASE_STARTING);
	shared_state_set_worker_latch(MyLatch);
	before_shmem_exit(worker_detach, 0);

	BackgroundWorkerInitializeConnection(snowflake_database, NULL, 0);
	/* A reservation counts only once it is durable. */
	SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_OVERRIDE);
	/* Never hang on a lock: fail, report, and try again at the next round. */
	SetConfigOption("lock_timeout", psprintf("%d", Max(snowflake_reserve / 2, 100)),
					PGC_SUSET, PGC_S_OVERRIDE);

	worker_open();

	for (;;)
	{
		int64		reserved;
		int64		last_millis;
		bool		wanted;

		worker_sleep(Max(snowflake_reserve / 4, 1), true);

		reserved = (int64) pg_atomic_read_u64(&snowflake_shared->reserved_until);
		last_millis = snowflake_millis((int64) (pg_atomic_read_u64(&snowflake_shared->last_id) &
												~SNOWFLAKE_CLOSED_BIT));
		wanted = pg_atomic_exchange_u32(&snowflake_shared->reservation_wanted, 0) != 0;

		/* Idle: the last ID is far below the reservation; write nothing. */
		if (wanted || last_millis + snowflake_reserve / 2 >= reserved)
		{
			int64		target = generator_clock_millis() + snowflake_reserve;

			if (target > reserved)
				(void) worker_reserve(target);
		}
	}
}
