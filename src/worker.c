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
 * With etcd (snowflake.node_source = etcd, or etcd_endpoints set) the worker
 * first holds a node id there (node_lease.c), keeps its lease alive while it
 * serves, and also raises the node's mark in etcd before each reservation.
 * A node id whose mark is too far ahead of this clock is given back for
 * another (node migration).  When the lease is lost the generator is closed
 * (fenced) until the worker holds a node id again.
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

#include "etcd_client.h"
#include "generator.h"
#include "layout.h"
#include "mark_store.h"
#include "node_lease.h"
#include "settings.h"
#include "shared_state.h"
#include "worker.h"

PGDLLEXPORT void snowflake_worker_main(Datum arg);

/* How long the worker waits before retrying a failed read, in ms. */
#define WORKER_RETRY_MS 1000

static MemoryContext worker_context = NULL;

/* Node ids come from etcd, or the configured one is checked there. */
static bool worker_uses_etcd = false;

/* The node id being served, -1 when none. */
static int	worker_node = -1;

/* The last warning logged, so that an error repeated each round logs once. */
static char worker_logged[SNOWFLAKE_LAST_ERROR_LEN];

/*
 * Per node id, the clock (ms since the epoch) it must reach before this
 * server tries that node id again: its mark was too far ahead.
 */
static int64 worker_skip_until[SNOWFLAKE_MAX_NODE + 1];

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
		if (strncmp(message, worker_logged, SNOWFLAKE_LAST_ERROR_LEN - 1) != 0)
		{
			ereport(WARNING,
					errmsg("snowflake worker %s", message),
					edata->detail ? errdetail("%s", edata->detail) : 0,
					errhint("Repeats of this error are counted in snowflake_status(), "
							"not logged."));
			strlcpy(worker_logged, message, SNOWFLAKE_LAST_ERROR_LEN);
		}
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
		MarkStoreWrite write = {worker_node, last_millis};
		NodeMark	etcd_mark = {worker_node, last_millis};

		if (worker_run(mark_store_write, &write,
					   "record the last issued timestamp"))
			pg_atomic_write_u64(&snowflake_shared->high_water, last_millis);
		if (worker_uses_etcd && node_lease_held())
			(void) worker_run(node_lease_settle_mark, &etcd_mark,
							  "record the last issued timestamp in etcd");
	}
	/* Frees the node id at once for the next server. */
	if (worker_uses_etcd)
		(void) worker_run(node_lease_revoke, NULL, "revoke the etcd lease");
	/* Exit code 1: restarted if this was not a server shutdown. */
	proc_exit(1);
}

/*
 * etcd: renew the lease when due.  Returns false once it is lost or may have
 * expired; then nothing more may be issued under its node id.
 */
static bool
worker_tend_lease(void)
{
	bool		lost = false;

	if (!worker_uses_etcd)
		return true;
	if (!node_lease_held())
		return false;
	if (node_lease_ms_until_keepalive() == 0)
	{
		if (!worker_run(node_lease_keepalive, &lost, "renew the etcd lease"))
			node_lease_keepalive_failed();
		else
			worker_logged[0] = '\0';
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
 * reloads; leave on shutdown.  Returns false when the etcd lease is lost.
 */
static bool
worker_sleep(long timeout_ms, bool was_ready)
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
		worker_close_and_exit(was_ready);
	MemoryContextReset(worker_context);
	return worker_tend_lease();
}

/* Commit a mark of target_millis, then let the generator issue up to it. */
static bool
worker_reserve(int64 target_millis)
{
	MarkStoreWrite write = {worker_node, target_millis};
	NodeMark	etcd_mark = {worker_node, target_millis};
	TimestampTz started = GetCurrentTimestamp();

	if (worker_uses_etcd &&
		!worker_run(node_lease_raise_mark, &etcd_mark,
					"reserve the high-water mark in etcd"))
		return false;
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
 * etcd: hold a lease and a node id, the configured one or the lowest free
 * one.  Loops until it has one; meanwhile backends wait (fenced) or, when
 * etcd answered that none is available, are told why at once.
 */
static int
worker_acquire_node(void)
{
	if (!worker_uses_etcd)
		return snowflake_node_id;

	for (;;)
	{
		NodeClaim	claim;

		if (!node_lease_held() &&
			!worker_run(node_lease_grant, NULL, "lease a node id from etcd"))
		{
			shared_state_set_phase(SNOWFLAKE_PHASE_FENCED);
			(void) worker_sleep(WORKER_RETRY_MS, false);
			continue;
		}

		claim.wanted = snowflake_node_source == SNOWFLAKE_NODE_SOURCE_GUC ?
			snowflake_node_id : -1;
		claim.skip_until = worker_skip_until;
		claim.now_millis = generator_clock_millis();
		if (!worker_run(node_lease_claim, &claim, "claim a node id in etcd"))
			shared_state_set_phase(SNOWFLAKE_PHASE_FENCED);
		else if (claim.node >= 0)
		{
			TimestampTz expires;

			ereport(LOG,
					errmsg("snowflake worker holds node id %d under etcd lease " INT64_FORMAT,
						   claim.node, shared_state_get_lease(&expires)));
			worker_logged[0] = '\0';
			return claim.node;
		}
		else
		{
			if (strncmp(claim.problem, worker_logged, SNOWFLAKE_LAST_ERROR_LEN - 1) != 0)
			{
				ereport(WARNING, errmsg("%s", claim.problem),
						errdetail("The snowflake worker tries again every second."));
				strlcpy(worker_logged, claim.problem, SNOWFLAKE_LAST_ERROR_LEN);
			}
			shared_state_set_node_problem(claim.problem);
			shared_state_set_last_error(claim.problem);
			shared_state_set_phase(SNOWFLAKE_PHASE_NODE_ID_UNAVAILABLE);
		}
		(void) worker_sleep(WORKER_RETRY_MS, false);
	}
}

/* The marks were written under another epoch: issue nothing, ever. */
static void pg_attribute_noreturn()
worker_refuse_changed_epoch(TimestampTz other_epoch)
{
	char	   *message = psprintf("snowflake.epoch was changed: the high-water table holds "
								   "marks written under epoch %s, but the server runs with %s",
								   pstrdup(timestamptz_to_str(other_epoch)),
								   pstrdup(timestamptz_to_str(snowflake_epoch)));

	ereport(WARNING, errmsg("%s", message),
			errhint("Set snowflake.epoch back and restart the server. No IDs are issued."));
	shared_state_set_last_error(message);
	shared_state_set_phase(SNOWFLAKE_PHASE_EPOCH_CHANGED);
	/* The node id is of no use here: free it for other servers. */
	if (worker_uses_etcd)
		(void) worker_run(node_lease_revoke, NULL, "revoke the etcd lease");
	for (;;)
		(void) worker_sleep(-1, false);
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
	(void) worker_run(node_lease_release, &node, "give back a node id in etcd");
}

/*
 * Read the node's marks, hold the generator above them until the clock has
 * passed them, then make the first reservation.  Returns false when the
 * etcd lease is lost meanwhile, or the node id was given back.
 */
static bool
worker_open(int node)
{
	MarkStoreRead mark = {.node = node};
	NodeMark	etcd_mark = {.node = node};
	int64		base;

	shared_state_set_phase(SNOWFLAKE_PHASE_STARTING);
	while (!worker_run(mark_store_read, &mark,
					   "read the high-water mark"))
		if (!worker_sleep(WORKER_RETRY_MS, false))
			return false;

	if (mark.epoch_changed)
		worker_refuse_changed_epoch(mark.other_epoch);

	if (worker_uses_etcd)
	{
		while (!worker_run(node_lease_read_mark, &etcd_mark,
						   "read the high-water mark in etcd"))
			if (!worker_sleep(WORKER_RETRY_MS, false))
				return false;
		if (snowflake_node_source == SNOWFLAKE_NODE_SOURCE_ETCD)
		{
			int64		behind = Max(etcd_mark.millis, mark.found ? mark.mark_millis : 0) -
				generator_clock_millis();

			if (behind > (int64) snowflake_reserve + snowflake_max_clock_rollback)
			{
				worker_migrate_from(node, behind + generator_clock_millis(), behind);
				return false;
			}
		}
	}

	base = shared_state_restart_above(Max(mark.found ? mark.mark_millis : 0,
										  etcd_mark.millis),
									  node);
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
			return true;
		}
		if (behind < 0)
			break;
		snowflake_shared->clock_behind_by = behind;
		if (behind > tolerated)
		{
			if (pg_atomic_read_u32(&snowflake_shared->phase) != SNOWFLAKE_PHASE_CLOCK_BEHIND)
			{
				char	   *message = psprintf("the clock is %lld ms behind the high-water mark of node %d",
											   (long long) behind, node);

				ereport(WARNING,
						errmsg("%s", message),
						errdetail("IDs of node %d were reserved up to %s; that is more than "
								  "snowflake.reserve + snowflake.max_clock_rollback (%lld ms) "
								  "behind. No IDs are issued until the clock passes the mark.",
								  node,
								  timestamptz_to_str(snowflake_epoch + base * 1000),
								  (long long) tolerated));
				shared_state_set_last_error(message);
			}
			shared_state_set_phase(SNOWFLAKE_PHASE_CLOCK_BEHIND);
		}
		else
			shared_state_set_phase(SNOWFLAKE_PHASE_WAITING_FOR_CLOCK);
		if (!worker_sleep(Min(behind + 1, WORKER_RETRY_MS), false))
			return false;
	}

	/* The clock has passed the mark: callers wait for the reservation. */
	shared_state_set_phase(SNOWFLAKE_PHASE_WAITING_FOR_CLOCK);
	while (!worker_reserve(generator_clock_millis() + snowflake_reserve))
		if (!worker_sleep(WORKER_RETRY_MS, false))
			return false;
	shared_state_set_phase(SNOWFLAKE_PHASE_READY);
	return true;
}

/* Keep the reservation ahead of the IDs; returns when the lease is lost. */
static void
worker_serve(void)
{
	for (;;)
	{
		int64		reserved;
		int64		last_millis;
		bool		wanted;

		if (!worker_sleep(Max(snowflake_reserve / 4, 1), true))
			return;

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

/*
 * The etcd lease is lost or may have expired: another server may hold the
 * node id by now.  Close the generator until a node id is held again.
 */
static void
worker_fence(int node)
{
	char	   *message = psprintf("the etcd lease on node id %d expired or could not be "
								   "renewed in time; no IDs are issued until the worker "
								   "holds a node id again", node);

	shared_state_close(SNOWFLAKE_PHASE_FENCED);
	ereport(WARNING, errmsg("%s", message));
	shared_state_set_last_error(message);
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

	(void) worker_run(mark_store_prepare, NULL, "prepare the high-water table");

	worker_uses_etcd = settings_etcd_in_use();
	if (worker_uses_etcd)
	{
		TimestampTz expires;

		/*
		 * A worker that restarted without a server restart left a lease
		 * behind: fence until there is a new one, and revoke the old one.
		 */
		pg_atomic_write_u64(&snowflake_shared->fence_deadline, 0);
		shared_state_close(SNOWFLAKE_PHASE_STARTING);
		node_lease_forget(shared_state_get_lease(&expires));
		etcd_client_open();
	}

	for (;;)
	{
		worker_node = worker_acquire_node();
		if (worker_open(worker_node))
			worker_serve();
		if (worker_uses_etcd && !node_lease_held())
			worker_fence(worker_node);
		worker_node = -1;
	}
}
