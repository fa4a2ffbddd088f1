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

static shmem_request_hook_type shared_state_prev_request_hook = NULL;
static shmem_startup_hook_type shared_state_prev_startup_hook = NULL;

static void
shared_state_request(void)
{
	if (shared_state_prev_request_hook)
		shared_state_prev_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(SnowflakeShared)));
}

static SnowflakePhase
shared_state_initial_phase(void)
{
	if (snowflake_rejected_setting != NULL)
		return SNOWFLAKE_PHASE_SETTINGS_REJECTED;
	if (snowflake_node_id < 0)
		return SNOWFLAKE_PHASE_NO_NODE_ID;
	return SNOWFLAKE_PHASE_READY;
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
		shared->uncounted_ids = 1;
		pg_atomic_init_u32(&shared->phase, shared_state_initial_phase());
		pg_atomic_init_u64(&shared->ids_in_finished_millis, 0);
		pg_atomic_init_u64(&shared->sequence_exhaustions, 0);
		pg_atomic_init_u64(&shared->clock_rollbacks, 0);
		pg_atomic_init_u64(&shared->exhaustion_counted_at, 0);
		pg_atomic_init_u64(&shared->rollback_counted_at, 0);
		SpinLockInit(&shared->error_lock);
		shared->last_error[0] = '\0';
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

void
shared_state_set_last_error(const char *message)
{
	SpinLockAcquire(&snowflake_shared->error_lock);
	strlcpy(snowflake_shared->last_error, message, SNOWFLAKE_LAST_ERROR_LEN);
	SpinLockRelease(&snowflake_shared->error_lock);
}

void
shared_state_get_last_error(char *buf)
{
	SpinLockAcquire(&snowflake_shared->error_lock);
	memcpy(buf, snowflake_shared->last_error, SNOWFLAKE_LAST_ERROR_LEN);
	SpinLockRelease(&snowflake_shared->error_lock);
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

	return finished + snowflake_sequence_of((int64) last_id) + 1 -
		snowflake_shared->uncounted_ids;
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
