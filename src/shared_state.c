/*-------------------------------------------------------------------------
 *
 * shared_state.c
 *	  Allocates and initialises the generator's shared memory.
 *
 * One SnowflakeShared struct per server, requested and created with the
 * PostgreSQL 15 hooks (shmem_request_hook, shmem_startup_hook).  Its initial
 * contents come from the settings: the node id goes into the bits of
 * last_id, and the phase says whether IDs may be issued at all.  Also here:
 * the small helpers that read and update the bookkeeping fields.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "layout.h"
#include "settings.h"
#include "shared_state.h"

SnowflakeShared *snowflake_shared = NULL;
bool		snowflake_in_worker = false;

static shmem_request_hook_type shared_state_prev_request_hook = NULL;
static shmem_startup_hook_type shared_state_prev_startup_hook = NULL;

static void
shared_state_request(void)
{
	if (shared_state_prev_request_hook)
		shared_state_prev_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(SnowflakeShared)));
}

/* READY comes later, from the worker, once it has read the mark. */
static SnowflakePhase
shared_state_initial_phase(void)
{
	if (snowflake_rejected_setting != NULL)
		return SNOWFLAKE_PHASE_SETTINGS_REJECTED;
	if (snowflake_node_source == SNOWFLAKE_NODE_SOURCE_GUC && snowflake_node_id < 0)
		return SNOWFLAKE_PHASE_NO_NODE_ID;
	return SNOWFLAKE_PHASE_STARTING;
}

static void
shared_state_startup(void)
{
	bool		found;

	if (shared_state_prev_startup_hook)
		shared_state_prev_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	snowflake_shared = ShmemInitStruct("snowflake",
									   sizeof(SnowflakeShared), &found);
	if (!found)
	{
		SnowflakeShared *shared = snowflake_shared;
		int			node = Max(snowflake_node_id, 0);

		/*
		 * Millisecond 0 is in the past for any valid epoch, so the first ID
		 * starts a fresh millisecond.  Its sequence 0 is not an issued ID.
		 */
		pg_atomic_init_u64(&shared->last_id, snowflake_compose(0, node, 0));
		pg_atomic_init_u64(&shared->uncounted_ids, 1);
		pg_atomic_init_u32(&shared->phase, shared_state_initial_phase());
		pg_atomic_init_u64(&shared->reserved_until, 0);
		pg_atomic_init_u64(&shared->high_water, 0);
		pg_atomic_init_u64(&shared->reservation_latency_us, 0);
		pg_atomic_init_u32(&shared->reservation_wanted, 0);
		pg_atomic_init_u64(&shared->reservation_wanted_since, 0);
		ConditionVariableInit(&shared->progress_cv);
		shared->worker_latch = NULL;
		shared->clock_behind_by = 0;
		pg_atomic_init_u64(&shared->ids_in_finished_millis, 0);
		pg_atomic_init_u64(&shared->sequence_exhaustions, 0);
		pg_atomic_init_u64(&shared->clock_rollbacks, 0);
		pg_atomic_init_u64(&shared->exhaustion_counted_at, 0);
		pg_atomic_init_u64(&shared->rollback_counted_at, 0);
		pg_atomic_init_u32(&shared->current_node,
						   snowflake_node_source == SNOWFLAKE_NODE_SOURCE_GUC &&
						   snowflake_node_id >= 0 ?
						   (uint32) snowflake_node_id : SNOWFLAKE_NO_NODE);
		pg_atomic_init_u64(&shared->fence_deadline, SNOWFLAKE_NO_FENCE);
		pg_atomic_init_u64(&shared->placeholder_id,
						   (uint64) snowflake_compose(0, node, 0));
		pg_atomic_init_u64(&shared->previous_last_millis, 0);
		for (int i = 0; i < SNOWFLAKE_NODE_LIMIT; i++)
			pg_atomic_init_u64(&shared->honour_floor[i], 0);
		pg_atomic_init_u32(&shared->reopen_wanted, 0);
		pg_atomic_init_u32(&shared->foreign_marks, 0);
		pg_atomic_init_u32(&shared->reservation_failing, 0);
		pg_atomic_init_u64(&shared->backend_error_at_id, 0);
		pg_atomic_init_u32(&shared->connect_attempts, 0);
		pg_atomic_init_u32(&shared->marks_checks, 0);
		pg_atomic_init_u64(&shared->node_migrations, 0);
		pg_atomic_init_u64(&shared->etcd_errors, 0);
		pg_atomic_init_u64(&shared->etcd_latency_us, 0);
		SpinLockInit(&shared->status_lock);
		shared->last_error[0] = '\0';
		shared->refusal[0] = '\0';
		shared->refusal_hint[0] = '\0';
		shared->lease_id = 0;
		shared->lease_expires_at = 0;
		if (snowflake_rejected_setting != NULL)
			snprintf(shared->last_error, SNOWFLAKE_LAST_ERROR_LEN,
					 "the configured value of %s was rejected at server start",
					 snowflake_rejected_setting);
	}
	LWLockRelease(AddinShmemInitLock);
}

void
SharedStateInit(void)
{
	shared_state_prev_request_hook = shmem_request_hook;
	shmem_request_hook = shared_state_request;
	shared_state_prev_startup_hook = shmem_startup_hook;
	shmem_startup_hook = shared_state_startup;
}

/* snowflake_shared is NULL: the library was loaded without preloading. */
void
shared_state_report_not_preloaded(const char *hint)
{
	ereport(ERROR,
			errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			errmsg("snowflake must be loaded via shared_preload_libraries"),
			errhint("%s", hint));
}

void
shared_state_set_last_error(const char *message)
{
	SpinLockAcquire(&snowflake_shared->status_lock);
	strlcpy(snowflake_shared->last_error, message, SNOWFLAKE_LAST_ERROR_LEN);
	SpinLockRelease(&snowflake_shared->status_lock);
}

/* An error a backend met, kept until an ID is issued after it. */
void
shared_state_set_backend_error(const char *message)
{
	pg_atomic_write_u64(&snowflake_shared->backend_error_at_id,
						pg_atomic_read_u64(&snowflake_shared->last_id) & ~SNOWFLAKE_CLOSED_BIT);
	shared_state_set_last_error(message);
}

/* Whether an ID was issued since a backend last reported an error. */
bool
shared_state_ids_moved_on(void)
{
	return (pg_atomic_read_u64(&snowflake_shared->last_id) & ~SNOWFLAKE_CLOSED_BIT) !=
		pg_atomic_read_u64(&snowflake_shared->backend_error_at_id);
}

void
shared_state_get_last_error(char *buf)
{
	SpinLockAcquire(&snowflake_shared->status_lock);
	memcpy(buf, snowflake_shared->last_error, SNOWFLAKE_LAST_ERROR_LEN);
	SpinLockRelease(&snowflake_shared->status_lock);
}

/* Why the current phase refuses IDs, and what to do about it. */
void
shared_state_set_refusal(const char *message, const char *hint)
{
	SpinLockAcquire(&snowflake_shared->status_lock);
	strlcpy(snowflake_shared->refusal, message, SNOWFLAKE_LAST_ERROR_LEN);
	strlcpy(snowflake_shared->refusal_hint, hint ? hint : "", SNOWFLAKE_LAST_ERROR_LEN);
	SpinLockRelease(&snowflake_shared->status_lock);
}

void
shared_state_get_refusal(char *message, char *hint)
{
	SpinLockAcquire(&snowflake_shared->status_lock);
	memcpy(message, snowflake_shared->refusal, SNOWFLAKE_LAST_ERROR_LEN);
	memcpy(hint, snowflake_shared->refusal_hint, SNOWFLAKE_LAST_ERROR_LEN);
	SpinLockRelease(&snowflake_shared->status_lock);
}

void
shared_state_set_lease(int64 lease_id, TimestampTz expires_at)
{
	SpinLockAcquire(&snowflake_shared->status_lock);
	snowflake_shared->lease_id = lease_id;
	snowflake_shared->lease_expires_at = expires_at;
	SpinLockRelease(&snowflake_shared->status_lock);
}

int64
shared_state_get_lease(TimestampTz *expires_at)
{
	int64		lease_id;

	SpinLockAcquire(&snowflake_shared->status_lock);
	lease_id = snowflake_shared->lease_id;
	*expires_at = snowflake_shared->lease_expires_at;
	SpinLockRelease(&snowflake_shared->status_lock);
	return lease_id;
}

/* Publish a new phase and wake everyone waiting for progress. */
void
shared_state_set_phase(SnowflakePhase phase)
{
	pg_atomic_write_u32(&snowflake_shared->phase, phase);
	pg_memory_barrier();
	ConditionVariableBroadcast(&snowflake_shared->progress_cv);
}

/*
 * last_id moved from old_id to new_id, a floor with a full sequence that no
 * ID carries.  Keep ids_generated right (the IDs of the old value's
 * millisecond are done; the new value's sequence stands for none, whether
 * in the same millisecond or a later one), and remember what status shows
 * as the last timestamp until a real ID follows.
 */
static void
shared_state_note_floor(uint64 old_id, uint64 new_id)
{
	SnowflakeShared *shared = snowflake_shared;
	uint64		old = old_id & ~SNOWFLAKE_CLOSED_BIT;

	pg_atomic_fetch_add_u64(&shared->ids_in_finished_millis,
							snowflake_sequence_of((int64) old) + 1);
	pg_atomic_fetch_add_u64(&shared->uncounted_ids, snowflake_layout.ids_per_tick);
	if (old != pg_atomic_read_u64(&shared->placeholder_id))
		pg_atomic_write_u64(&shared->previous_last_millis,
							(uint64) snowflake_millis((int64) old));
	pg_atomic_write_u64(&shared->placeholder_id, new_id & ~SNOWFLAKE_CLOSED_BIT);
}

/*
 * Make the next ID fall in a millisecond after both mark_millis and every ID
 * already issued (a restarted worker finds IDs of this run in shared
 * memory), and reopen a generator closed by a worker that stopped.  Returns
 * that floor.
 */
static int64
shared_state_restart_above(int64 mark_millis, int node)
{
	SnowflakeShared *shared = snowflake_shared;
	uint64		old_id = pg_atomic_read_u64(&shared->last_id);
	uint64		new_id;
	int64		floor_millis;

	/*
	 * Nothing new is issued while last_id moves: a backend that reads the new
	 * last_id must not pair it with the old reservation (of another node id,
	 * perhaps).
	 */
	pg_atomic_write_u64(&shared->reserved_until, 0);
	pg_memory_barrier();

	/*
	 * A compare-and-swap, not a plain write: a backend that passed its phase
	 * check before the worker restarted may still be issuing.
	 */
	for (;;)
	{
		uint64		last_id = old_id & ~SNOWFLAKE_CLOSED_BIT;
		int64		last_millis = snowflake_millis((int64) last_id);

		if (mark_millis < last_millis &&
			snowflake_node_of((int64) last_id) == node)
		{
			floor_millis = last_millis;
			new_id = last_id;
		}
		else
		{
			/*
			 * Under another node id the next ID must still be above every ID
			 * this server issued, so that IDs keep rising: start after the
			 * later of the mark and the last millisecond.  A mark in the last
			 * millisecond itself may be another server's (a restored one):
			 * that millisecond is not continued either.
			 */
			floor_millis = Max(mark_millis, last_millis);
			new_id = (uint64) snowflake_compose(floor_millis, node,
												snowflake_layout.max_sequence);
		}
		if (new_id == old_id ||
			pg_atomic_compare_exchange_u64(&shared->last_id, &old_id, new_id))
			break;
	}

	if (new_id != (old_id & ~SNOWFLAKE_CLOSED_BIT))
		shared_state_note_floor(old_id, new_id);

	/* Nothing above the floor until the worker commits a reservation. */
	pg_atomic_write_u64(&shared->reserved_until, floor_millis);
	pg_atomic_write_u32(&shared->current_node, (uint32) node);
	return floor_millis;
}

/*
 * Stop issuing at once, whatever backends are doing: no new millisecond may
 * start, and the CLOSED bit makes every compare-and-swap on last_id fail
 * until shared_state_open() reopens the generator.  Then publish phase.
 * flags (SNOWFLAKE_CLOSE_*) say what differs between the callers:
 *	- KEEP_NODE: current_node still names the node id (it is still ours, as
 *	  at shutdown or when a mark is honoured); otherwise none is shown.
 *	- AT_LAST_ID: leave reserved_until at the last issued millisecond, as at
 *	  shutdown, where the mark comes down to it; otherwise 0.
 *	- REOPEN: ask the worker to reopen the generator (reopen_wanted), after
 *	  the CLOSED bit is set, so that a reopen it asks for sees it.
 * Returns last_id as it was closed: every issued ID is at or below it.
 */
uint64
shared_state_close(SnowflakePhase phase, int flags)
{
	SnowflakeShared *shared = snowflake_shared;
	uint64		last_id;

	pg_atomic_write_u64(&shared->reserved_until, 0);
	pg_memory_barrier();
	last_id = pg_atomic_fetch_or_u64(&shared->last_id, SNOWFLAKE_CLOSED_BIT);
	if (flags & SNOWFLAKE_CLOSE_AT_LAST_ID)
		pg_atomic_write_u64(&shared->reserved_until,
							(uint64) snowflake_millis((int64) (last_id & ~SNOWFLAKE_CLOSED_BIT)));
	if (!(flags & SNOWFLAKE_CLOSE_KEEP_NODE))
		pg_atomic_write_u32(&shared->current_node, SNOWFLAKE_NO_NODE);
	if (flags & SNOWFLAKE_CLOSE_REOPEN)
		pg_atomic_write_u32(&shared->reopen_wanted, 1);
	shared_state_set_phase(phase);
	return last_id & ~SNOWFLAKE_CLOSED_BIT;
}

/*
 * Move last_id (read into *old_id) up so that every later ID of node is
 * above mark_millis, closing the generator as well if close.  Nothing when
 * last_id is of another node or already there.  Returns whether it moved.
 */
static bool
shared_state_raise_last_id(uint64 *old_id, int node, int64 mark_millis, bool close)
{
	SnowflakeShared *shared = snowflake_shared;
	uint64		new_id;

	for (;;)
	{
		uint64		last_id = *old_id & ~SNOWFLAKE_CLOSED_BIT;
		int64		last_tick = snowflake_tick_of((int64) last_id);
		int64		mark_tick = mark_millis / snowflake_layout.unit_ms;

		/* A mark in the last unit itself ends that unit too. */
		if (snowflake_node_of((int64) last_id) != node || mark_tick < last_tick ||
			(mark_tick == last_tick &&
			 snowflake_sequence_of((int64) last_id) == snowflake_layout.max_sequence))
			return false;
		new_id = (uint64) snowflake_compose(mark_millis, node, snowflake_layout.max_sequence) |
			(close ? SNOWFLAKE_CLOSED_BIT : (*old_id & SNOWFLAKE_CLOSED_BIT));
		if (pg_atomic_compare_exchange_u64(&shared->last_id, old_id, new_id))
			break;
	}
	shared_state_note_floor(*old_id, new_id);
	return true;
}

/*
 * A mark of node was written into the table by someone other than the
 * worker (a restore, a superuser).  If it is above the last issued ID of
 * the node this server serves, no further ID may fall at or below it: move
 * last_id up to the mark at once, from this backend, with a compare-and-
 * swap (every ID is above last_id, and the worker only ever moves it up, so
 * this cannot be lost in a race with it), and close the generator so that
 * the worker reopens it with the right phase (waiting for the clock, or
 * clock_behind).  A mark of another epoch or layout only closes it and is
 * counted: the worker's next read of the table waits for the transaction
 * that wrote it, then refuses it.  Raising a floor that is never committed
 * (the restore rolls back) only costs a wait.  Returns whether the
 * generator was closed.
 */
bool
shared_state_honour_mark(int node, bool same_epoch, int64 mark_millis)
{
	SnowflakeShared *shared = snowflake_shared;

	/* No worker will reopen from these: their refusal must stand. */
	switch ((SnowflakePhase) pg_atomic_read_u32(&shared->phase))
	{
		case SNOWFLAKE_PHASE_NO_NODE_ID:
		case SNOWFLAKE_PHASE_SETTINGS_REJECTED:
		case SNOWFLAKE_PHASE_EPOCH_CHANGED:
			return false;
		default:
			break;
	}

	if (same_epoch)
	{
		uint64		seen;
		uint64		old_id;

		/*
		 * Raise the node's floor first (a full barrier): a worker opening
		 * this node id either sees it, or has already put the node in
		 * last_id, which the loop below then sees.
		 */
		mark_millis = Min(mark_millis, snowflake_layout.max_millis);
		seen = pg_atomic_read_u64(&shared->honour_floor[node]);
		while (seen < (uint64) mark_millis &&
			   !pg_atomic_compare_exchange_u64(&shared->honour_floor[node], &seen,
											   (uint64) mark_millis))
			;
		old_id = pg_atomic_read_u64(&shared->last_id);
		if (!shared_state_raise_last_id(&old_id, node, mark_millis, true))
			return false;
	}
	else
		pg_atomic_fetch_add_u32(&shared->foreign_marks, 1);
	(void) shared_state_close(SNOWFLAKE_PHASE_STARTING,
							  SNOWFLAKE_CLOSE_KEEP_NODE | SNOWFLAKE_CLOSE_REOPEN);
	shared_state_wake_worker();
	return true;
}

/* How many rows of another epoch or layout the trigger has seen. */
uint32
shared_state_foreign_marks(void)
{
	return pg_atomic_read_u32(&snowflake_shared->foreign_marks);
}

/*
 * Called by the worker once it has put node in last_id: raise last_id
 * above the node's honour floor if a mark came in while the worker read the
 * others.  Returns the floor the generator now stands on.
 */
static int64
shared_state_honour_floor(int node, int64 base)
{
	uint64		floor = pg_atomic_read_u64(&snowflake_shared->honour_floor[node]);
	uint64		old_id = pg_atomic_read_u64(&snowflake_shared->last_id);

	if ((int64) floor >= base &&
		shared_state_raise_last_id(&old_id, node, (int64) floor, false))
		return (int64) floor;
	return base;
}

/* The highest mark of node honoured so far (ms since the epoch; 0: none). */
int64
shared_state_node_floor(int node)
{
	return (int64) pg_atomic_read_u64(&snowflake_shared->honour_floor[node]);
}

/*
 * Called by the worker while the phase keeps backends away, with the marks
 * of node just read: put node into last_id above mark_millis, the node's
 * honour floor and every ID already issued, reopening the generator with
 * nothing reserved above that floor.  Returns the floor, now also shown as
 * the high-water mark.
 */
int64
shared_state_open(int node, int64 mark_millis)
{
	int64		base;

	base = shared_state_restart_above(Max(mark_millis, shared_state_node_floor(node)),
									  node);
	/* A mark honoured while the others were read, now that last_id is ours. */
	base = shared_state_honour_floor(node, base);
	pg_atomic_write_u64(&snowflake_shared->high_water, (uint64) base);
	return base;
}

/*
 * The worker committed a mark of target_millis everywhere it must be: let
 * the generator issue up to it (the reservation only rises), and wake the
 * backends waiting for it.
 */
void
shared_state_publish_reservation(int64 target_millis, uint64 latency_us)
{
	SnowflakeShared *shared = snowflake_shared;

	pg_atomic_write_u64(&shared->reservation_latency_us, latency_us);
	pg_atomic_write_u64(&shared->high_water, (uint64) target_millis);
	if (target_millis > (int64) pg_atomic_read_u64(&shared->reserved_until))
		pg_atomic_write_u64(&shared->reserved_until, (uint64) target_millis);
	ConditionVariableBroadcast(&shared->progress_cv);
	pg_atomic_write_u32(&shared->reservation_failing, 0);
	pg_atomic_write_u64(&shared->reservation_wanted_since, 0);
}

/* A reservation failed: status says error while callers wait for one. */
void
shared_state_reservation_failed(void)
{
	pg_atomic_write_u32(&snowflake_shared->reservation_failing, 1);
}

/* The mark now committed, for status, when it is not a new reservation. */
void
shared_state_set_high_water(int64 mark_millis)
{
	pg_atomic_write_u64(&snowflake_shared->high_water, (uint64) mark_millis);
}

/* How far the clock is behind the mark, for the CLOCK_BEHIND message. */
void
shared_state_set_clock_behind(int64 behind_millis)
{
	snowflake_shared->clock_behind_by = behind_millis;
}

/* A mark above the last ID was written by someone else: reopen above it. */
bool
shared_state_reopen_wanted(void)
{
	return pg_atomic_read_u32(&snowflake_shared->reopen_wanted) != 0;
}

/* The worker is reading the marks: a mark honoured from now on is in them. */
void
shared_state_clear_reopen(void)
{
	pg_atomic_write_u32(&snowflake_shared->reopen_wanted, 0);
}

/* The millisecond of last_id: at or above every ID issued so far. */
int64
shared_state_last_issued_millis(void)
{
	return snowflake_millis((int64) (pg_atomic_read_u64(&snowflake_shared->last_id) &
									 ~SNOWFLAKE_CLOSED_BIT));
}

void
shared_state_set_worker_latch(Latch *latch)
{
	SpinLockAcquire(&snowflake_shared->status_lock);
	snowflake_shared->worker_latch = latch;
	SpinLockRelease(&snowflake_shared->status_lock);
}

/* Ask the worker for a reservation now rather than at its next round. */
void
shared_state_wake_worker(void)
{
	Latch	   *latch;

	uint64		none = 0;

	pg_atomic_write_u32(&snowflake_shared->reservation_wanted, 1);
	(void) pg_atomic_compare_exchange_u64(&snowflake_shared->reservation_wanted_since,
										  &none, shared_state_monotonic_micros());
	SpinLockAcquire(&snowflake_shared->status_lock);
	latch = snowflake_shared->worker_latch;
	SpinLockRelease(&snowflake_shared->status_lock);
	if (latch)
		SetLatch(latch);
}

/*
 * Exact whenever no ID is being issued at the same moment; otherwise it may
 * lag behind by the IDs of the milliseconds whose count is still being
 * added.  Reading the finished count first means it never runs ahead.
 */
uint64
shared_state_ids_generated(void)
{
	uint64		finished;
	uint64		last_id;

	finished = pg_atomic_read_u64(&snowflake_shared->ids_in_finished_millis);
	pg_read_barrier();
	last_id = pg_atomic_read_u64(&snowflake_shared->last_id);

	return finished + snowflake_sequence_of((int64) (last_id & ~SNOWFLAKE_CLOSED_BIT)) + 1 -
		pg_atomic_read_u64(&snowflake_shared->uncounted_ids);
}

/*
 * Count an event once per millisecond of last_id, however many backends
 * run into it at the same time.  Returns true for the one that counted it.
 */
bool
shared_state_count_once(pg_atomic_uint64 *counted_at,
						pg_atomic_uint64 *counter, uint64 millis)
{
	uint64		seen = pg_atomic_read_u64(counted_at);

	while (seen < millis)
	{
		if (pg_atomic_compare_exchange_u64(counted_at, &seen, millis))
		{
			pg_atomic_fetch_add_u64(counter, 1);
			return true;
		}
	}
	return false;
}
