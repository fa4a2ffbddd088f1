/*-------------------------------------------------------------------------
 *
 * generator.c
 *	  Makes IDs: one compare-and-swap on the shared last_id per unit of
 *	  time touched (a millisecond in the default layout).
 *
 * generator_take() reads the shared last ID, reads the clock, and moves the
 * last ID forward with one compare-and-swap: to the clock's unit (of
 * snowflake.layout: 1 ms, 10 ms or 1 s) with sequence 0 when the clock is
 * ahead, otherwise by the number of IDs taken within the same unit.  No
 * lock, no allocation.  An ID that continues a unit costs one wall-clock
 * read; one that starts a new unit in etcd mode also reads a second clock,
 * the monotonic one the fence is measured by (CLOCK_BOOTTIME).  Nothing
 * else makes a system call unless it waits: when a unit is full it waits
 * for the next one (briefly sleeping, then spinning the last microseconds),
 * so an ID's timestamp is never ahead of the clock.  A clock that stepped
 * back is ridden out from the last unit while its sequence lasts, then
 * waited for up to snowflake.max_clock_rollback; an ID is never issued
 * twice.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "access/xlog.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/timestamp.h"

#include "generator.h"
#include "layout.h"
#include "settings.h"
#include "shared_state.h"

static void generator_report_clock_out_of_range(int64 now_micros) pg_attribute_noreturn();

/*
 * pg_usleep() oversleeps by the kernel's timer slack (50us by default), so
 * the last stretch before the next unit is spun rather than slept.
 */
#define GENERATOR_SPIN_MICROS	80

/* Longest single sleep while waiting out a clock step, for interrupts. */
#define GENERATOR_MAX_SLEEP_MICROS	100000

/* How often a backend waiting for the worker looks again, at the latest. */
#define GENERATOR_WORKER_POLL_MS	10

/* Microseconds since snowflake.epoch by the wall clock. */
static inline int64
generator_clock_micros(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64) ts.tv_sec * USECS_PER_SEC + ts.tv_nsec / 1000 -
		SNOWFLAKE_UNIX_TO_POSTGRES_MICROS - snowflake_epoch;
}

static int64
generator_monotonic_micros(void)
{
	return (int64) shared_state_monotonic_micros();
}

static int
generator_current_node(void)
{
	return (int) pg_atomic_read_u32(&snowflake_shared->current_node);
}

static char *
generator_millis_to_str(int64 millis)
{
	return pstrdup(timestamptz_to_str(snowflake_millis_to_timestamp(snowflake_epoch,
																	millis)));
}

/*
 * The error being raised: leave its message in shared memory for
 * snowflake_status().last_error.  Called in generator_fail's PG_CATCH.
 */
static void
generator_note_error(MemoryContext context)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(context);
	edata = CopyErrorData();
	shared_state_set_backend_error(edata->message);
	FreeErrorData(edata);
}

/*
 * ereport(ERROR, ...) whose message also goes to last_error.  The caller's
 * errmsg(), errdetail() and errhint() keep their format strings, for grep
 * and translation.
 */
#define generator_fail(...) \
	do { \
		MemoryContext generator_context_ = CurrentMemoryContext; \
		PG_TRY(); \
		{ \
			ereport(ERROR, __VA_ARGS__); \
		} \
		PG_CATCH(); \
		{ \
			generator_note_error(generator_context_); \
			PG_RE_THROW(); \
		} \
		PG_END_TRY(); \
		pg_unreachable(); \
	} while (0)

/*
 * Sleep until the worker reports progress (a phase change, a reservation) or
 * a short while passes; raise once this call has waited longer than
 * snowflake.wait_timeout in all.  The caller re-checks what it waits for.
 */
static void
generator_wait_for_worker(int64 *wait_started, const char *what)
{
	int64		now = generator_monotonic_micros();
	long		sleep_ms = GENERATOR_WORKER_POLL_MS;

	if (*wait_started == 0)
		*wait_started = now;
	if (snowflake_wait_timeout > 0)
	{
		int64		left = (int64) snowflake_wait_timeout * 1000 -
		(now - *wait_started);
		char		last_error[SNOWFLAKE_LAST_ERROR_LEN];

		if (left <= 0)
		{
			shared_state_get_last_error(last_error);
			generator_fail(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
						   errmsg("timed out after %d ms waiting for %s",
								  snowflake_wait_timeout, what),
						   last_error[0] ?
						   errdetail("The last error of the snowflake worker was: %s",
									 last_error) : 0,
						   errhint("See snowflake_status() and the server log. Raise "
								   "snowflake.wait_timeout to wait longer."));
		}
		sleep_ms = Min(sleep_ms, left / 1000 + 1);
	}
	ConditionVariablePrepareToSleep(&snowflake_shared->progress_cv);
	ConditionVariableTimedSleep(&snowflake_shared->progress_cv, sleep_ms,
								PG_WAIT_EXTENSION);
	ConditionVariableCancelSleep();
}

/*
 * Return once the generator may issue IDs: wait while the worker reads the
 * mark or the clock catches up with it; raise for what waiting cannot fix.
 */
static void
generator_wait_until_ready(int64 *wait_started)
{
	uint32		marks_checks = 0;
	bool		asked_worker = false;

	if (snowflake_shared == NULL)
		shared_state_report_not_preloaded("Add snowflake to shared_preload_libraries "
										  "in postgresql.conf, set snowflake.node_id, "
										  "and restart the server.");
	if (RecoveryInProgress())
		ereport(ERROR,
				errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				errmsg("cannot issue snowflake IDs during recovery"),
				errdetail("This server is a standby or still replaying WAL; "
						  "it cannot persist a high-water mark."),
				errhint("Take IDs from the primary. This server issues IDs once it is "
						"promoted, above the high-water mark it received."));

	for (;;)
	{
		switch ((SnowflakePhase) pg_atomic_read_u32(&snowflake_shared->phase))
		{
			case SNOWFLAKE_PHASE_READY:
				return;
			case SNOWFLAKE_PHASE_STARTING:
				generator_wait_for_worker(wait_started,
										  "the high-water mark to be read");
				break;
			case SNOWFLAKE_PHASE_WAITING_FOR_CLOCK:
				generator_wait_for_worker(wait_started,
										  "the clock to pass the high-water mark");
				break;
			case SNOWFLAKE_PHASE_CLOCK_BEHIND:
				{
					int64		mark = (int64) pg_atomic_read_u64(&snowflake_shared->high_water);

					generator_fail(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
								   errmsg("the clock is %lld ms behind the high-water mark "
										  "of node %d",
										  (long long) snowflake_shared->clock_behind_by,
										  generator_current_node()),
								   errdetail("IDs of node %d were reserved up to %s; issuing "
											 "now could repeat them. That is more than "
											 "snowflake.reserve + snowflake.max_clock_rollback "
											 "(%d ms) behind.",
											 generator_current_node(),
											 generator_millis_to_str(mark),
											 snowflake_reserve + snowflake_max_clock_rollback),
								   errhint("Correct the system clock. IDs resume by themselves "
										   "once it passes the mark."));
				}
			case SNOWFLAKE_PHASE_NO_NODE_ID:
				generator_fail(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
							   errmsg("snowflake.node_id is not set"),
							   errdetail("No ID is issued without a node id. The server "
										 "started with snowflake.node_id = -1; a value outside "
										 "0..%d in the configuration is rejected at start-up "
										 "with a warning in the server log.",
										 snowflake_layout.max_node),
							   errhint("Set snowflake.node_id to a number from 0 to %d, "
									   "unique among your servers, in postgresql.conf and "
									   "restart the server.",
									   snowflake_layout.max_node));
			case SNOWFLAKE_PHASE_SETTINGS_REJECTED:
				generator_fail(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							   errmsg("snowflake is not issuing IDs because the configured "
									  "value of %s was rejected at server start",
									  snowflake_rejected_setting),
							   errdetail("PostgreSQL fell back to the setting's default, or "
										 "the settings do not fit together; this server was "
										 "not configured to issue IDs that way."),
							   errhint("See the server log for why, correct %s in "
									   "postgresql.conf and restart the server.",
									   snowflake_rejected_setting));
			case SNOWFLAKE_PHASE_FENCED:
				generator_wait_for_worker(wait_started,
										  "a node id lease from etcd");
				break;
			case SNOWFLAKE_PHASE_MARKS_UNAVAILABLE:

				/*
				 * The worker may not have looked since the cause went away
				 * (CREATE EXTENSION a moment ago): ask it to look again now,
				 * and refuse only if it still finds no safe home.
				 */
				if (!asked_worker)
				{
					marks_checks = pg_atomic_read_u32(&snowflake_shared->marks_checks);
					shared_state_wake_worker();
					asked_worker = true;
				}

				/*
				 * Two looks: the one under way when we asked may have begun
				 * before the cause went away.
				 */
				if ((uint32) (pg_atomic_read_u32(&snowflake_shared->marks_checks) -
							  marks_checks) < 2)
				{
					generator_wait_for_worker(wait_started,
											  "the snowflake worker to find its high-water table");
					break;
				}
				{
					char		refusal[SNOWFLAKE_LAST_ERROR_LEN];
					char		hint[SNOWFLAKE_LAST_ERROR_LEN];

					/* The worker composed the refusal: pass it on as it is. */
					shared_state_get_refusal(refusal, hint);
					generator_fail(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
								   errmsg_internal("%s", refusal),
								   errdetail("No ID is issued until the high-water marks have "
											 "a home that only superusers can change."),
								   errhint("%s", hint));
				}
			case SNOWFLAKE_PHASE_NODE_ID_UNAVAILABLE:
				{
					char		problem[SNOWFLAKE_LAST_ERROR_LEN];
					char		unused_hint[SNOWFLAKE_LAST_ERROR_LEN];

					/* The worker composed the problem: pass it on as it is. */
					shared_state_get_refusal(problem, unused_hint);
					generator_fail(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
								   errmsg_internal("%s", problem),
								   errdetail("No ID is issued without a node id of its own. "
											 "The snowflake worker keeps trying in the "
											 "background."),
								   errhint("See snowflake_status() and, with etcdctl, the "
										   "keys under snowflake.etcd_prefix."));
				}
			case SNOWFLAKE_PHASE_EPOCH_CHANGED:
				{
					char		refusal[SNOWFLAKE_LAST_ERROR_LEN];
					char		hint[SNOWFLAKE_LAST_ERROR_LEN];

					/*
					 * The worker's refusal as it is: the marks, or the other
					 * servers under the etcd prefix, are of another epoch or
					 * layout.
					 */
					shared_state_get_refusal(refusal, hint);
					generator_fail(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
								   errmsg_internal("%s", refusal),
								   errdetail("IDs of another epoch or layout would look older or "
											 "newer than they are, and could repeat these or sort "
											 "apart from them."),
								   errhint("%s", hint));
				}
		}
	}
}

static void
generator_report_clock_out_of_range(int64 now_micros)
{
	generator_fail(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				   errmsg("the clock reads %s, outside the range of IDs for "
						  "snowflake.epoch %s",
						  pstrdup(timestamptz_to_str(snowflake_epoch + now_micros)),
						  generator_millis_to_str(0)),
				   errdetail("IDs cover %s to %s.",
							 generator_millis_to_str(0),
							 generator_millis_to_str(snowflake_layout.max_millis)),
				   errhint("Check the system clock."));
}

/*
 * Wait until the clock has passed last_tick, a unit of the layout: for a
 * moment when the unit is merely full, longer after a backward clock step.
 * Raises when the clock is behind by more than snowflake.max_clock_rollback,
 * or when waiting for a clock that is behind has taken longer than
 * snowflake.wait_timeout since *wait_started (0: not waiting yet) within the
 * current call.  A full unit is always given the moment it needs.
 */
static void
generator_wait_past(int64 last_tick, int64 *wait_started)
{
	const int64 unit_micros = snowflake_layout.unit_micros;
	int64		last_millis = last_tick * snowflake_layout.unit_ms;

	for (;;)
	{
		int64		waited = generator_monotonic_micros();
		int64		now_micros = generator_clock_micros();
		int64		now_tick = now_micros / unit_micros;
		int64		remaining;

		if (now_tick > last_tick)
			return;

		if (*wait_started == 0)
			*wait_started = waited;
		waited -= *wait_started;

		if (now_tick == last_tick)
			shared_state_count_once(&snowflake_shared->exhaustion_counted_at,
									&snowflake_shared->sequence_exhaustions,
									last_tick);
		else
		{
			/* How far the clock is behind the start of the last unit. */
			int64		now_millis = now_micros / 1000;
			int64		behind = last_millis - now_millis;

			shared_state_count_once(&snowflake_shared->rollback_counted_at,
									&snowflake_shared->clock_rollbacks,
									last_tick);
			if (behind > snowflake_max_clock_rollback)
				generator_fail(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
							   errmsg("the clock moved backwards by %lld ms, more than "
									  "snowflake.max_clock_rollback (%d ms)",
									  (long long) behind,
									  snowflake_max_clock_rollback),
							   errdetail("The last ID was issued at %s; the clock reads %s. "
										 "No ID is issued until the clock passes the last one.",
										 generator_millis_to_str(last_millis),
										 generator_millis_to_str(now_millis)),
							   errhint("Correct the system clock. IDs resume by themselves "
									   "once it passes the last issued timestamp."));
			if (snowflake_wait_timeout > 0 &&
				waited > (int64) snowflake_wait_timeout * 1000)
				generator_fail(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
							   errmsg("timed out after %d ms waiting for the clock "
									  "to pass the last issued ID",
									  snowflake_wait_timeout),
							   errdetail("The clock is %lld ms behind the last issued ID.",
										 (long long) Max(behind, 0)),
							   errhint("Raise snowflake.wait_timeout, or correct the system "
									   "clock."));
		}

		remaining = (last_tick + 1) * unit_micros - now_micros;
		if (remaining > GENERATOR_SPIN_MICROS)
			pg_usleep(Min(remaining - GENERATOR_SPIN_MICROS,
						  GENERATOR_MAX_SLEEP_MICROS));
		else
			pg_spin_delay();
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Read last_id before the clock, so that a clock reading is never older
 * than the last_id it is compared with.
 */
static inline uint64
generator_read_last_id(void)
{
	uint64		last_id = pg_atomic_read_u64(&snowflake_shared->last_id);

	pg_read_barrier();
	return last_id;
}

/*
 * Wait for the worker (for what, in messages) until the generator is ready
 * again, then read last_id anew.
 */
static uint64
generator_wait_and_reread(int64 *wait_started, const char *what)
{
	generator_wait_for_worker(wait_started, what);
	generator_wait_until_ready(wait_started);
	return generator_read_last_id();
}

/*
 * What generator_take_in() needs of a layout, as values.  It is inlined
 * twice: with the original layout's constants (41 | 10 | 12, 1 ms, the
 * default), which the compiler folds into immediates and fixed shifts as
 * when the layout was not configurable, and with the server's layout read
 * once into these fields.  As variables the default layout's fields cost
 * the hot path about a fifth more instructions per ID (they spill from
 * registers across the clock read); as constants, nothing over the code
 * before layouts (bash bench/compare.sh --callgrind shows both).
 */
typedef struct GeneratorShape
{
	int			tick_shift;
	int			max_sequence;
	int64		unit_micros;
	int64		unit_ms;
	int64		max_tick;
	uint64		node_mask;
} GeneratorShape;

#define GENERATOR_ORIGINAL_SHAPE \
	((GeneratorShape) { \
		.tick_shift = 22, \
		.max_sequence = 4095, \
		.unit_micros = 1000, \
		.unit_ms = 1, \
		.max_tick = (INT64CONST(1) << 41) - 1, \
		.node_mask = UINT64CONST(1023) << 12, \
	})

/* The server's layout, read once, for generator_take_in(). */
static inline GeneratorShape
generator_shape(void)
{
	const SnowflakeLayout *layout = &snowflake_layout;
	GeneratorShape shape;

	shape.tick_shift = layout->tick_shift;
	shape.max_sequence = layout->max_sequence;
	shape.unit_micros = layout->unit_micros;
	shape.unit_ms = layout->unit_ms;
	shape.max_tick = layout->max_tick;
	shape.node_mask = ((uint64) layout->max_node) << layout->sequence_bits;
	return shape;
}

/*
 * Whether the server's layout is the original one, whose words are its IDs
 * (snowflake.layout is fixed from server start: looked at once per backend).
 * Without preloading the layout is unset; generator_take_in() raises then.
 */
static inline bool
generator_layout_is_original(void)
{
	static int	original = -1;

	if (unlikely(original < 0))
	{
#ifdef USE_ASSERT_CHECKING
		GeneratorShape configured = generator_shape();
		GeneratorShape constants = GENERATOR_ORIGINAL_SHAPE;
#endif

		if (snowflake_shared == NULL)
			return false;
		original = strcmp(snowflake_layout.text, SNOWFLAKE_ORIGINAL_LAYOUT) == 0;
		/* The constants are what the original layout's text says. */
		Assert(!original ||
			   (configured.tick_shift == constants.tick_shift &&
				configured.max_sequence == constants.max_sequence &&
				configured.unit_micros == constants.unit_micros &&
				configured.unit_ms == constants.unit_ms &&
				configured.max_tick == constants.max_tick &&
				configured.node_mask == constants.node_mask &&
				snowflake_layout.zero_bits == 0 && !snowflake_layout.node_low));
	}
	return original;
}

/*
 * Take up to 'wanted' (1..IDs per unit) consecutive words of one unit of
 * time with one compare-and-swap.  Returns the first; *taken says how many
 * (snowflake_id_of_word() makes their IDs).  Reads the wall clock once per
 * try, and the monotonic clock too, in etcd mode, when the try starts a new
 * unit (the fence).
 */
static pg_attribute_always_inline int64
generator_take_in(int wanted, int *taken, const GeneratorShape shape)
{
	SnowflakeShared *shared = snowflake_shared;
	uint64		last_id;
	int64		wait_started = 0;

	/* Raises when not preloaded, before the layout (then unset) is used. */
	if (unlikely(shared == NULL ||
				 pg_atomic_read_u32(&shared->phase) != SNOWFLAKE_PHASE_READY ||
				 RecoveryInProgress()))
		generator_wait_until_ready(&wait_started);
	Assert(wanted >= 1 && wanted <= snowflake_layout.ids_per_tick);

	last_id = generator_read_last_id();
	for (;;)
	{
		int64		now_micros = generator_clock_micros();
		int64		now_tick = likely(shape.unit_micros == 1000) ?
		now_micros / 1000 : now_micros / shape.unit_micros;
		int64		last_tick = (int64) last_id >> shape.tick_shift;
		int			last_sequence = (int) (last_id & shape.max_sequence);
		int64		first;
		int			count;

		if (unlikely(last_id & SNOWFLAKE_CLOSED_BIT))
		{
			/* The worker stopped; wait for it to come back and reopen. */
			last_id = generator_wait_and_reread(&wait_started,
												"the snowflake worker to restart");
			continue;
		}

		if (unlikely(now_micros < 0 || now_tick > shape.max_tick))
			generator_report_clock_out_of_range(now_micros);

		if (likely(now_tick > last_tick))
		{
			/*
			 * etcd mode: once the node id's lease may have expired another
			 * server may hold it, so nothing more is issued under it until
			 * the worker has a live lease again.  Checked by every backend,
			 * so that a stalled worker cannot extend the lease's life; and
			 * only when a new unit starts, like the reservation, which keeps
			 * the second clock read off the path of IDs within one unit. The
			 * fence's margin is far larger than that.
			 */
			if (unlikely(shared_state_fenced(&shared->fence_deadline)))
			{
				shared_state_wake_worker();
				last_id = generator_wait_and_reread(&wait_started,
													"a node id lease from etcd");
				continue;
			}
			if (unlikely(now_tick * shape.unit_ms >
						 (int64) pg_atomic_read_u64(&shared->reserved_until)))
			{
				/* Past the committed mark: ask the worker to reserve more. */
				shared_state_wake_worker();
				last_id = generator_wait_and_reread(&wait_started,
													"a high-water reservation to be committed");
				continue;
			}
			first = (now_tick << shape.tick_shift) |
				(int64) (last_id & shape.node_mask);
			count = wanted;
		}
		else if (last_sequence < shape.max_sequence)
		{
			if (unlikely(now_tick < last_tick))
				shared_state_count_once(&shared->rollback_counted_at,
										&shared->clock_rollbacks,
										last_tick);
			first = (int64) last_id + 1;
			count = Min(wanted, shape.max_sequence - last_sequence);
		}
		else
		{
			generator_wait_past(last_tick, &wait_started);
			last_id = generator_read_last_id();
			continue;
		}

		if (pg_atomic_compare_exchange_u64(&shared->last_id, &last_id,
										   (uint64) (first + count - 1)))
		{
			if ((first >> shape.tick_shift) != last_tick)
				pg_atomic_fetch_add_u64(&shared->ids_in_finished_millis,
										last_sequence + 1);
			*taken = count;
			return first;
		}
		/* Lost the race: last_id now holds the winner's value; go again. */
	}
}

int64
generator_take(int wanted, int *taken)
{
	if (likely(generator_layout_is_original()))
		return generator_take_in(wanted, taken, GENERATOR_ORIGINAL_SHAPE);
	return generator_take_in(wanted, taken, generator_shape());
}

int64
generator_next_id(void)
{
	int			taken;

	/* The original layout's words are its IDs. */
	if (likely(generator_layout_is_original()))
		return generator_take_in(1, &taken, GENERATOR_ORIGINAL_SHAPE);
	return snowflake_id_of_word(generator_take_in(1, &taken, generator_shape()));
}

/* Milliseconds since snowflake.epoch by the wall clock; -1 before it. */
int64
generator_clock_millis(void)
{
	int64		micros = generator_clock_micros();

	return micros < 0 ? -1 : micros / 1000;
}
