/*-------------------------------------------------------------------------
 *
 * shared_state.h
 *	  The one generator per server, as it lives in shared memory.
 *
 * Note about who writes what.  Every field has one owner, the only file
 * that changes it (readers are everywhere); the functions named here are
 * the only way in for the other files.
 *
 * shared_state.c owns the generator and its reservation:
 *	- last_id: one atomic word, changed only by compare-and-swap (or an
 *	  atomic OR of SNOWFLAKE_CLOSED_BIT), never by a plain write once the
 *	  server runs.  Issuing an ID is generator.c's compare-and-swap on it
 *	  (the one exception to the owner rule, as it is the hot path); every
 *	  other move (a floor, closing, reopening) is in shared_state.c:
 *	  shared_state_open(), shared_state_close(), shared_state_honour_mark().
 *	- reserved_until, high_water, reservation_latency_us,
 *	  reservation_failing, reservation_wanted_since, current_node,
 *	  placeholder_id, previous_last_millis, uncounted_ids, honour_floor[],
 *	  reopen_wanted, foreign_marks, backend_error_at_id: atomics written
 *	  only here, by the worker through shared_state_open(),
 *	  shared_state_publish_reservation() and friends, or by a backend
 *	  through shared_state_honour_mark() and shared_state_wake_worker().  reserved_until is set to 0 (with a
 *	  barrier) before last_id moves, so that no backend pairs a new last_id
 *	  with an old reservation.
 *	- phase: an atomic written only by shared_state_set_phase() (from the
 *	  worker, or from shared_state.c itself), which broadcasts progress_cv.
 *	- ids_in_finished_millis: atomically added to by whoever moves last_id
 *	  into a new millisecond: generator_take() or a floor set here.
 *	- clock_behind_by: a plain int64, written only by the worker through
 *	  shared_state_set_clock_behind() before it publishes CLOCK_BEHIND;
 *	  read for messages only.
 *	- status_lock, a spinlock, guards last_error (written by any process
 *	  through shared_state_set_last_error()), refusal and refusal_hint
 *	  (the worker), lease_id and lease_expires_at (the worker, node_lease.c,
 *	  through shared_state_set_lease()), and worker_latch (the worker, at
 *	  start and exit).  It is held only to copy those few bytes.
 *
 * generator.c owns sequence_exhaustions, clock_rollbacks and their
 * *_counted_at, through shared_state_count_once().
 *
 * worker.c owns connect_attempts, marks_checks, node_migrations and
 * reservation_wanted's reset (backends set it, the worker takes it).
 *
 * node_lease.c owns fence_deadline: it moves only after a proof that the
 * lease lives and the node id's key is still ours, and drops to 0 when the
 * lease is lost.  Every backend checks it before starting a millisecond.
 *
 * etcd_transport.c owns etcd_latency_us, and etcd_errors through
 * etcd_count_error(), which the other etcd files and node_lease.c call.
 *
 * progress_cv has no owner: whoever publishes progress (a phase, a
 * reservation, a look at the home of the marks) broadcasts it.
 *
 * The node id, where it is kept and why each copy stays:
 *	- the node bits of last_id: the truth for issuing; an ID's node id can
 *	  never be seen out of step with its (millisecond, sequence).
 *	- current_node: what status and messages show; SNOWFLAKE_NO_NODE while
 *	  the server holds none (fenced, refused), when the bits of a closed
 *	  last_id still name the last one.
 *	- worker.c's worker_node: the node id the worker serves, known before
 *	  shared_state_open() puts it into last_id.
 *	- node_lease.c's node_lease_node (held under the lease, for the
 *	  keep-alive's read-back) and node_mark_cached_node (whose etcd mark
 *	  the compare-and-swap cache holds: it may outlive the claim).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNOWFLAKE_SHARED_STATE_H
#define SNOWFLAKE_SHARED_STATE_H

#include <time.h>

#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/spin.h"

#include "layout.h"

/* Why the generator is or is not issuing IDs. */
typedef enum SnowflakePhase
{
	SNOWFLAKE_PHASE_STARTING,	/* the worker has not read the mark yet */
	SNOWFLAKE_PHASE_WAITING_FOR_CLOCK,	/* clock a little behind the mark */
	SNOWFLAKE_PHASE_CLOCK_BEHIND,	/* clock far behind the mark: refuse */
	SNOWFLAKE_PHASE_READY,
	SNOWFLAKE_PHASE_NO_NODE_ID,
	SNOWFLAKE_PHASE_SETTINGS_REJECTED,
	SNOWFLAKE_PHASE_EPOCH_CHANGED,	/* marks were written under another epoch */
	SNOWFLAKE_PHASE_FENCED,		/* etcd mode: no live lease on a node id */
	SNOWFLAKE_PHASE_NODE_ID_UNAVAILABLE,	/* etcd: none free, or ours held */
	SNOWFLAKE_PHASE_MARKS_UNAVAILABLE	/* no safe home for the marks */
} SnowflakePhase;

/* current_node when the server holds no node id. */
#define SNOWFLAKE_NO_NODE		UINT32_MAX

/* fence_deadline when no lease bounds issuing (node id from the setting). */
#define SNOWFLAKE_NO_FENCE		PG_UINT64_MAX

/*
 * Set in last_id by the worker at shutdown: a backend that sees it issues
 * nothing more, so the exact last ID the worker records stays the last.
 */
#define SNOWFLAKE_CLOSED_BIT	(UINT64CONST(1) << 63)

#define SNOWFLAKE_LAST_ERROR_LEN 256

/*
 * What shared_state_close() leaves besides a closed generator (0: the
 * reservation at 0 and no node id held).
 */
#define SNOWFLAKE_CLOSE_KEEP_NODE	0x01	/* current_node stays: still ours */
#define SNOWFLAKE_CLOSE_AT_LAST_ID	0x02	/* reserved_until: last issued ms */
#define SNOWFLAKE_CLOSE_REOPEN		0x04	/* ask the worker to reopen */

typedef struct SnowflakeShared
{
	/*
	 * The last ID issued, node id bits included.  Issuing an ID is one
	 * compare-and-swap on this word, so the node id and the (millisecond,
	 * sequence) pair can never be seen out of step.
	 */
	pg_atomic_uint64 last_id;

	pg_atomic_uint32 phase;		/* a SnowflakePhase */

	/*
	 * The high-water reservation, in milliseconds since the epoch: the
	 * generator issues no ID in a later millisecond.  Only the worker raises
	 * it, and only after the mark table holds at least as much.
	 */
	pg_atomic_uint64 reserved_until;
	pg_atomic_uint64 high_water;	/* last mark committed, ms since epoch */
	pg_atomic_uint64 reservation_latency_us;	/* of the last commit */
	pg_atomic_uint32 reservation_wanted;	/* a backend waits for one */
	/* monotonic us since a backend has been waiting for one; 0: none */
	pg_atomic_uint64 reservation_wanted_since;
	ConditionVariable progress_cv;	/* broadcast on phase or reservation */
	int64		clock_behind_by;	/* ms, when phase is CLOCK_BEHIND */

	/*
	 * ids_generated is derived rather than counted per ID, which would put a
	 * second contended atomic on the hot path: whoever moves last_id into a
	 * new millisecond adds the IDs of the finished one here, and the current
	 * millisecond's count is its sequence + 1.  uncounted_ids is the share of
	 * that sum that belongs to the starting value of last_id, not to IDs.
	 */
	pg_atomic_uint64 ids_in_finished_millis;
	pg_atomic_uint64 uncounted_ids;

	pg_atomic_uint64 sequence_exhaustions;
	pg_atomic_uint64 clock_rollbacks;
	/* millisecond of last_id for which each event was last counted */
	pg_atomic_uint64 exhaustion_counted_at;
	pg_atomic_uint64 rollback_counted_at;

	/* The node id in last_id, or SNOWFLAKE_NO_NODE; for messages and status. */
	pg_atomic_uint32 current_node;

	/*
	 * Fencing in etcd mode: shared_state_monotonic_micros() after which the
	 * node id's lease may have expired, so no backend may issue under it,
	 * whatever the worker is doing (it may be stopped).
	 */
	pg_atomic_uint64 fence_deadline;

	/*
	 * The value restart_above() put in last_id: a floor, not an issued ID.
	 * While last_id still equals it, snowflake_status() shows the last
	 * timestamp issued before, previous_last_millis (0: none).
	 */
	pg_atomic_uint64 placeholder_id;
	pg_atomic_uint64 previous_last_millis;

	/*
	 * Marks written into the table by someone else than the worker (a
	 * restore), which the generator must stay above, per node id in ms since
	 * the epoch: the trigger on the table raises honour_floor[node], and if
	 * the generator runs under that node moves last_id above it, closes the
	 * generator and sets reopen_wanted; the worker then reopens above it.
	 * Kept per node so that a mark arriving while the worker is between node
	 * ids is not lost, nor applied to another node id.
	 */
	pg_atomic_uint64 honour_floor[SNOWFLAKE_NODE_LIMIT];
	pg_atomic_uint32 reopen_wanted;

	/*
	 * Rows of another epoch or layout the trigger has seen, counted: the
	 * transaction that wrote one may not have committed when the worker reads
	 * the table again, so that read waits for the table's writers.
	 */
	pg_atomic_uint32 foreign_marks;

	/* last_id when a backend last wrote last_error: cleared once IDs move on */
	pg_atomic_uint64 backend_error_at_id;

	/* Set while the worker's reservations fail, for an honest state. */
	pg_atomic_uint32 reservation_failing;

	/*
	 * Worker starts that have not finished connecting to snowflake.database:
	 * non-zero at a start means the last one died there (the database does
	 * not exist), so the next one looks before it connects.
	 */
	pg_atomic_uint32 connect_attempts;

	/* Counts the worker's looks at the home of the marks, for waiters. */
	pg_atomic_uint32 marks_checks;

	pg_atomic_uint64 node_migrations;
	pg_atomic_uint64 etcd_errors;
	pg_atomic_uint64 etcd_latency_us;	/* of the last successful request */

	slock_t		status_lock;	/* protects the fields below */
	Latch	   *worker_latch;	/* NULL when no worker runs */
	char		last_error[SNOWFLAKE_LAST_ERROR_LEN];
	/* Why IDs are refused, for NODE_ID_UNAVAILABLE and MARKS_UNAVAILABLE. */
	char		refusal[SNOWFLAKE_LAST_ERROR_LEN];
	char		refusal_hint[SNOWFLAKE_LAST_ERROR_LEN];
	int64		lease_id;		/* 0: none */
	TimestampTz lease_expires_at;	/* estimate, by the wall clock */
} SnowflakeShared;

/*
 * A clock that never steps, in microseconds, the same in every process of
 * the server.  CLOCK_BOOTTIME rather than CLOCK_MONOTONIC: it keeps counting
 * while the machine is suspended, as etcd's clock does for a lease.
 */
static inline uint64
shared_state_monotonic_micros(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64) ts.tv_sec * USECS_PER_SEC + ts.tv_nsec / 1000;
}

/* True once the lease of the node id in use may have expired. */
static inline bool
shared_state_fenced(const pg_atomic_uint64 *fence_deadline)
{
	uint64		deadline = pg_atomic_read_u64((pg_atomic_uint64 *) fence_deadline);

	return deadline != SNOWFLAKE_NO_FENCE &&
		shared_state_monotonic_micros() > deadline;
}

/* NULL when the library was not preloaded. */
extern SnowflakeShared *snowflake_shared;

/* True in the background worker process. */
extern bool snowflake_in_worker;

extern void SharedStateInit(void);
extern void shared_state_report_not_preloaded(const char *hint) pg_attribute_noreturn();
extern void shared_state_set_last_error(const char *message);
extern void shared_state_set_backend_error(const char *message);
extern bool shared_state_ids_moved_on(void);
extern void shared_state_get_last_error(char *buf);
extern void shared_state_set_refusal(const char *message, const char *hint);
extern void shared_state_get_refusal(char *message, char *hint);
extern void shared_state_set_lease(int64 lease_id, TimestampTz expires_at);
extern int64 shared_state_get_lease(TimestampTz *expires_at);
extern uint64 shared_state_ids_generated(void);
extern void shared_state_set_phase(SnowflakePhase phase);
extern int64 shared_state_open(int node, int64 mark_millis);
extern uint64 shared_state_close(SnowflakePhase phase, int flags);
extern void shared_state_publish_reservation(int64 target_millis,
											 uint64 latency_us);
extern void shared_state_reservation_failed(void);
extern void shared_state_set_high_water(int64 mark_millis);
extern void shared_state_set_clock_behind(int64 behind_millis);
extern bool shared_state_reopen_wanted(void);
extern void shared_state_clear_reopen(void);
extern bool shared_state_honour_mark(int node, bool same_epoch, int64 mark_millis);
extern uint32 shared_state_foreign_marks(void);
extern int64 shared_state_node_floor(int node);
extern int64 shared_state_last_issued_millis(void);
extern void shared_state_set_worker_latch(Latch *latch);
extern void shared_state_wake_worker(void);
extern bool shared_state_count_once(pg_atomic_uint64 *counted_at,
									pg_atomic_uint64 *counter,
									uint64 millis);

#endif							/* SNOWFLAKE_SHARED_STATE_H */
