/*-------------------------------------------------------------------------
 *
 * functions.c
 *	  The SQL-callable functions: issue, decode, compose, report status.
 *
 * Argument checks and conversions between IDs and timestamps live here;
 * making IDs is the generator's job (generator.c) and the bit layout is
 * layout.h's.  Every decode and compose function exists in a form that
 * reads snowflake.epoch and snowflake.layout (STABLE) and one that takes
 * them as arguments (IMMUTABLE, for index expressions, partition bounds and
 * IDs made elsewhere); the older variants with only an epoch read the
 * original layout, 41/10/12 in ms.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "executor/spi.h"
#include "common/int.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "generator.h"
#include "layout.h"
#include "mark_store.h"
#include "settings.h"
#include "shared_state.h"

static void functions_report_timestamp_out_of_range(TimestampTz ts, TimestampTz epoch,
													const SnowflakeLayout *layout) pg_attribute_noreturn();

#define FUNCTIONS_MAX_BATCH 1000000

static void
functions_check_id(int64 id)
{
	if (id < 0)
		ereport(ERROR,
				errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				errmsg("snowflake ID %lld is negative", (long long) id),
				errdetail("Snowflake IDs are positive 64-bit integers."));
}

/*
 * snowflake.epoch, which exists only when the library was preloaded, and
 * means nothing when the configured value was rejected (the variable then
 * holds the default, not the operator's epoch).
 */
static TimestampTz
functions_configured_epoch(void)
{
	if (snowflake_shared == NULL)
		shared_state_report_not_preloaded("Add snowflake to shared_preload_libraries "
										  "in postgresql.conf and restart the server, "
										  "or use the form of the function that takes "
										  "the epoch and the layout as arguments.");
	if (snowflake_rejected_setting != NULL &&
		strcmp(snowflake_rejected_setting, "snowflake.epoch") == 0)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("the configured value of snowflake.epoch was rejected at server start"),
				errhint("See the server log for why, correct snowflake.epoch in "
						"postgresql.conf and restart the server, or pass the epoch "
						"explicitly."));
	return snowflake_epoch;
}

/*
 * snowflake.layout, which like the epoch means nothing when the library was
 * not preloaded or the configured value was rejected.
 */
static const SnowflakeLayout *
functions_configured_layout(void)
{
	(void) functions_configured_epoch();
	if (snowflake_rejected_setting != NULL &&
		strcmp(snowflake_rejected_setting, "snowflake.layout") == 0)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("the configured value of snowflake.layout was rejected at server start"),
				errhint("See the server log for why, correct snowflake.layout in "
						"postgresql.conf and restart the server, or pass the layout "
						"explicitly."));
	return &snowflake_layout;
}

/*
 * A layout given as an argument: a preset name or the custom form.  If
 * preset_epoch is not NULL, it is set to the preset's own epoch (NULL for
 * none).
 */
static SnowflakeLayout *
functions_layout_argument(text * layout_text, const char **preset_epoch)
{
	char	   *text = text_to_cstring(layout_text);
	SnowflakeLayout *layout = palloc(sizeof(SnowflakeLayout));
	const char *epoch_text;
	char	   *problem;

	if (!layout_parse(text, layout, preset_epoch ? preset_epoch : &epoch_text,
					  &problem))
		ereport(ERROR,
				errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				errmsg("invalid snowflake layout \"%s\"", text),
				errdetail("%s.", problem),
				errhint("Use a preset (snowflake, twitter, instagram, sonyflake) or "
						"fields such as \"time 41, node 10, sequence 12, unit 1ms\"."));
	return layout;
}

/*
 * The layout of the variants that take only an epoch: IDs had this layout
 * before snowflake.layout existed, and an IMMUTABLE function cannot follow
 * a setting.
 */
static const SnowflakeLayout *
functions_original_layout(void)
{
	static SnowflakeLayout original;
	static bool parsed = false;

	if (!parsed)
	{
		const char *unused_epoch;
		char	   *problem;

		if (!layout_parse(SNOWFLAKE_ORIGINAL_LAYOUT, &original, &unused_epoch, &problem))
			elog(ERROR, "snowflake: the original layout does not parse: %s", problem);
		parsed = true;
	}
	return &original;
}

static void
functions_check_epoch(TimestampTz epoch)
{
	if (TIMESTAMP_NOT_FINITE(epoch))
		ereport(ERROR,
				errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				errmsg("snowflake epoch must be finite"));
}

/* epoch + millis, or false when that is not a valid timestamptz */
static bool
functions_millis_to_timestamp(TimestampTz epoch, int64 millis,
							  TimestampTz *result)
{
	return !pg_add_s64_overflow(epoch, millis * 1000, result) &&
		IS_VALID_TIMESTAMP(*result);
}

/* The fields of an ID, which must be one of the layout. */
static void
functions_split_id(int64 id, const SnowflakeLayout *layout,
				   int64 *tick, int *node, int *sequence)
{
	functions_check_id(id);
	layout_split_id(layout, id, tick, node, sequence);
	if (*tick > layout->max_tick)
		ereport(ERROR,
				errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				errmsg("%lld is not a snowflake ID of layout \"%s\"",
					   (long long) id, layout->text),
				errdetail("Its time field is beyond the layout's %lld units.",
						  (long long) layout->max_tick + 1));
}

static TimestampTz
functions_id_to_timestamp(int64 id, TimestampTz epoch,
						  const SnowflakeLayout *layout)
{
	TimestampTz result;
	int64		tick;
	int			node;
	int			sequence;

	functions_split_id(id, layout, &tick, &node, &sequence);
	functions_check_epoch(epoch);
	if (!functions_millis_to_timestamp(epoch, tick * layout->unit_ms, &result))
		ereport(ERROR,
				errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				errmsg("timestamp of snowflake ID %lld is out of range for epoch %s",
					   (long long) id, timestamptz_to_str(epoch)));
	return result;
}

static void
functions_report_timestamp_out_of_range(TimestampTz ts, TimestampTz epoch,
										const SnowflakeLayout *layout)
{
	TimestampTz last;
	char	   *epoch_text = pstrdup(timestamptz_to_str(epoch));

	ereport(ERROR,
			errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
			errmsg("timestamp %s is outside the range of snowflake IDs",
				   timestamptz_to_str(ts)),
			functions_millis_to_timestamp(epoch, layout->max_millis, &last) ?
			errdetail("With epoch %s and layout \"%s\", IDs cover %s to %s.",
					  epoch_text, layout->text, epoch_text, timestamptz_to_str(last)) :
			errdetail("IDs cannot be earlier than the epoch %s.", epoch_text));
}

static int64
functions_compose(TimestampTz ts, int32 node, int32 sequence,
				  TimestampTz epoch, const SnowflakeLayout *layout)
{
	int64		micros;

	functions_check_epoch(epoch);
	if (node < 0 || node > layout->max_node)
		ereport(ERROR,
				errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				errmsg("node id %d is out of range", node),
				errdetail("A node id is from 0 to %d.", layout->max_node));
	if (sequence < 0 || sequence > layout->max_sequence)
		ereport(ERROR,
				errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				errmsg("sequence %d is out of range", sequence),
				errdetail("A sequence is from 0 to %d.", layout->max_sequence));
	if (TIMESTAMP_NOT_FINITE(ts) ||
		pg_sub_s64_overflow(ts, epoch, &micros) ||
		micros < 0 || micros / layout->unit_micros > layout->max_tick)
		functions_report_timestamp_out_of_range(ts, epoch, layout);

	return layout_make_id(layout, micros / layout->unit_micros, node, sequence);
}

static Datum
functions_decode(FunctionCallInfo fcinfo, int64 id, TimestampTz epoch,
				 const SnowflakeLayout *layout)
{
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	int64		tick;
	int			node;
	int			sequence;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	functions_split_id(id, layout, &tick, &node, &sequence);
	values[0] = TimestampTzGetDatum(functions_id_to_timestamp(id, epoch, layout));
	values[1] = Int32GetDatum(node);
	values[2] = Int32GetDatum(sequence);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* The node id (want_node) or the sequence of an ID of the layout. */
static int32
functions_part_of(int64 id, const SnowflakeLayout *layout, bool want_node)
{
	int64		tick;
	int			node;
	int			sequence;

	functions_split_id(id, layout, &tick, &node, &sequence);
	return want_node ? node : sequence;
}

PG_FUNCTION_INFO_V1(snowflake_nextval);
Datum
snowflake_nextval(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(generator_next_id());
}

typedef struct BatchState
{
	int32		count;
	int32		next;			/* index of the next word to return */
	int64	   *words;			/* all that were taken (see layout.h) */
} BatchState;

/*
 * Hands out n IDs.  The first call takes them all, one unit's chunk (one
 * compare-and-swap) at a time, before the first is returned: a row costs
 * more than the generator does for an ID, so taking the next chunk only
 * once the last one's rows are out would let units of time pass unused (a
 * layout with 16,384 IDs per ms got little more than a third of them).
 */
PG_FUNCTION_INFO_V1(snowflake_nextval_batch);
Datum
snowflake_nextval_batch(PG_FUNCTION_ARGS)
{
	FuncCallContext *funcctx;
	BatchState *state;

	if (SRF_IS_FIRSTCALL())
	{
		int32		n = PG_GETARG_INT32(0);
		int32		i = 0;

		if (n < 1 || n > FUNCTIONS_MAX_BATCH)
			ereport(ERROR,
					errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					errmsg("batch size %d is out of range", n),
					errdetail("snowflake_nextval_batch() hands out 1 to %d IDs per call.",
							  FUNCTIONS_MAX_BATCH));
		funcctx = SRF_FIRSTCALL_INIT();
		state = MemoryContextAlloc(funcctx->multi_call_memory_ctx,
								   sizeof(BatchState));
		state->words = MemoryContextAlloc(funcctx->multi_call_memory_ctx,
										  sizeof(int64) * n);
		while (i < n)
		{
			int			taken;
			int64		word = generator_take(Min(n - i,
												  snowflake_layout.ids_per_tick),
											  &taken);

			while (taken-- > 0)
				state->words[i++] = word++;
		}
		state->count = n;
		state->next = 0;
		funcctx->user_fctx = state;
	}
	funcctx = SRF_PERCALL_SETUP();
	state = funcctx->user_fctx;

	if (state->next < state->count)
		SRF_RETURN_NEXT(funcctx,
						Int64GetDatum(snowflake_id_of_word(state->words[state->next++])));
	SRF_RETURN_DONE(funcctx);
}

PG_FUNCTION_INFO_V1(snowflake_timestamp);
Datum
snowflake_timestamp(PG_FUNCTION_ARGS)
{
	PG_RETURN_TIMESTAMPTZ(functions_id_to_timestamp(PG_GETARG_INT64(0),
													functions_configured_epoch(),
													functions_configured_layout()));
}

PG_FUNCTION_INFO_V1(snowflake_timestamp_at_epoch);
Datum
snowflake_timestamp_at_epoch(PG_FUNCTION_ARGS)
{
	PG_RETURN_TIMESTAMPTZ(functions_id_to_timestamp(PG_GETARG_INT64(0),
													PG_GETARG_TIMESTAMPTZ(1),
													PG_NARGS() > 2 ?
													functions_layout_argument(PG_GETARG_TEXT_PP(2), NULL) :
													functions_original_layout()));
}

PG_FUNCTION_INFO_V1(snowflake_node);
Datum
snowflake_node(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(functions_part_of(PG_GETARG_INT64(0),
									  PG_NARGS() > 1 ?
									  functions_layout_argument(PG_GETARG_TEXT_PP(1), NULL) :
									  functions_configured_layout(),
									  true));
}

PG_FUNCTION_INFO_V1(snowflake_sequence);
Datum
snowflake_sequence(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(functions_part_of(PG_GETARG_INT64(0),
									  PG_NARGS() > 1 ?
									  functions_layout_argument(PG_GETARG_TEXT_PP(1), NULL) :
									  functions_configured_layout(),
									  false));
}

PG_FUNCTION_INFO_V1(snowflake_decode);
Datum
snowflake_decode(PG_FUNCTION_ARGS)
{
	return functions_decode(fcinfo, PG_GETARG_INT64(0),
							functions_configured_epoch(),
							functions_configured_layout());
}

PG_FUNCTION_INFO_V1(snowflake_decode_at_epoch);
Datum
snowflake_decode_at_epoch(PG_FUNCTION_ARGS)
{
	return functions_decode(fcinfo, PG_GETARG_INT64(0),
							PG_GETARG_TIMESTAMPTZ(1),
							PG_NARGS() > 2 ?
							functions_layout_argument(PG_GETARG_TEXT_PP(2), NULL) :
							functions_original_layout());
}

PG_FUNCTION_INFO_V1(snowflake_from_timestamp);
Datum
snowflake_from_timestamp(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(functions_compose(PG_GETARG_TIMESTAMPTZ(0),
									  PG_GETARG_INT32(1),
									  PG_GETARG_INT32(2),
									  functions_configured_epoch(),
									  functions_configured_layout()));
}

PG_FUNCTION_INFO_V1(snowflake_from_timestamp_at_epoch);
Datum
snowflake_from_timestamp_at_epoch(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(functions_compose(PG_GETARG_TIMESTAMPTZ(0),
									  PG_GETARG_INT32(1),
									  PG_GETARG_INT32(2),
									  PG_GETARG_TIMESTAMPTZ(3),
									  PG_NARGS() > 4 ?
									  functions_layout_argument(PG_GETARG_TEXT_PP(4), NULL) :
									  functions_original_layout()));
}

/*
 * What a layout means: its fields, unit, epoch and capacity.  NULL for the
 * server's layout and epoch; otherwise the epoch a server would take with
 * that layout and no snowflake.epoch set: a preset's own, or the default.
 */
PG_FUNCTION_INFO_V1(snowflake_layout_info);
Datum
snowflake_layout_info(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[11];
	bool		nulls[11] = {false};
	const SnowflakeLayout *layout;
	TimestampTz epoch;
	TimestampTz until;
	char	   *name;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	if (PG_ARGISNULL(0))
	{
		epoch = functions_configured_epoch();
		layout = functions_configured_layout();
		name = GetConfigOptionByName("snowflake.layout", NULL, false);
	}
	else
	{
		const char *preset_epoch;

		name = text_to_cstring(PG_GETARG_TEXT_PP(0));
		layout = functions_layout_argument(PG_GETARG_TEXT_PP(0), &preset_epoch);
		epoch = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
														CStringGetDatum(preset_epoch ?
																		preset_epoch :
																		SNOWFLAKE_DEFAULT_EPOCH),
														ObjectIdGetDatum(InvalidOid),
														Int32GetDatum(-1)));
	}
	if (!functions_millis_to_timestamp(epoch, layout->max_millis, &until))
		nulls[10] = true;

	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(layout->text);
	values[2] = Int32GetDatum(layout->time_bits);
	values[3] = Int32GetDatum(layout->node_bits);
	values[4] = Int32GetDatum(layout->sequence_bits);
	values[5] = Int32GetDatum(layout->zero_bits);
	values[6] = DirectFunctionCall3(interval_in,
									CStringGetDatum(psprintf("%d ms", layout->unit_ms)),
									ObjectIdGetDatum(InvalidOid),
									Int32GetDatum(-1));
	values[7] = TimestampTzGetDatum(epoch);
	values[8] = Int32GetDatum(layout->ids_per_tick);
	values[9] = Int32GetDatum(layout->max_node + 1);
	values[10] = TimestampTzGetDatum(until);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

static const char *
functions_state_name(SnowflakePhase phase)
{
	switch (phase)
	{
		case SNOWFLAKE_PHASE_STARTING:
			return "starting";
		case SNOWFLAKE_PHASE_WAITING_FOR_CLOCK:
			return "waiting_for_clock";
		case SNOWFLAKE_PHASE_CLOCK_BEHIND:
			return "clock_behind";
		case SNOWFLAKE_PHASE_READY:
			return "ready";
		case SNOWFLAKE_PHASE_NO_NODE_ID:
		case SNOWFLAKE_PHASE_NODE_ID_UNAVAILABLE:
			return "no_node_id";
		case SNOWFLAKE_PHASE_FENCED:
			return "fenced";
		case SNOWFLAKE_PHASE_SETTINGS_REJECTED:
		case SNOWFLAKE_PHASE_EPOCH_CHANGED:
		case SNOWFLAKE_PHASE_MARKS_UNAVAILABLE:
			return "error";
	}
	return "error";
}

/* Column numbers of snowflake_status(), as declared in the install script. */
enum
{
	STATUS_NODE_ID,
	STATUS_NODE_SOURCE,
	STATUS_STATE,
	STATUS_LEASE_ID,
	STATUS_LEASE_EXPIRES_AT,
	STATUS_HIGH_WATER,
	STATUS_LAST_TIMESTAMP,
	STATUS_IDS_GENERATED,
	STATUS_SEQUENCE_EXHAUSTIONS,
	STATUS_CLOCK_ROLLBACKS,
	STATUS_NODE_MIGRATIONS,
	STATUS_ETCD_ERRORS,
	STATUS_LAST_ERROR,
	STATUS_RESERVATION_LATENCY_MS,
	STATUS_ETCD_LATENCY_MS,
	STATUS_COLUMNS
};

/*
 * One row describing the generator.  Columns that do not apply (the lease
 * when the node id comes from the setting) are NULL.
 */
PG_FUNCTION_INFO_V1(snowflake_status);
Datum
snowflake_status(PG_FUNCTION_ARGS)
{
	SnowflakeShared *shared = snowflake_shared;
	TupleDesc	tupdesc;
	Datum		values[STATUS_COLUMNS];
	bool		nulls[STATUS_COLUMNS];
	SnowflakePhase phase;
	int64		last_id;
	int64		high_water;
	uint64		ids_generated;
	char		last_error[SNOWFLAKE_LAST_ERROR_LEN];
	uint32		node;
	int64		lease_id;
	TimestampTz lease_expires_at;
	bool		state_error = false;
	int64		shown_millis;

	if (shared == NULL)
		shared_state_report_not_preloaded("Add snowflake to shared_preload_libraries "
										  "in postgresql.conf and restart the server.");

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	if (tupdesc->natts != STATUS_COLUMNS)
		elog(ERROR, "snowflake_status() declared with %d columns, expected %d",
			 tupdesc->natts, STATUS_COLUMNS);

	memset(nulls, true, sizeof(nulls));
	phase = (SnowflakePhase) pg_atomic_read_u32(&shared->phase);
	last_id = (int64) (pg_atomic_read_u64(&shared->last_id) & ~SNOWFLAKE_CLOSED_BIT);
	high_water = (int64) pg_atomic_read_u64(&shared->high_water);
	ids_generated = shared_state_ids_generated();
	shared_state_get_last_error(last_error);
	node = pg_atomic_read_u32(&shared->current_node);
	lease_id = shared_state_get_lease(&lease_expires_at);

	/*
	 * The phase is the worker's word; what a caller of snowflake_nextval()
	 * meets now can be worse: backends stop at the fence by themselves,
	 * before the worker notices; a closed generator waits for the worker; and
	 * a reservation that ran out while the worker cannot write a new one
	 * makes callers time out.  Never say ready then.
	 */
	if (phase == SNOWFLAKE_PHASE_READY)
	{
		int64		now = generator_clock_millis();

		if (shared_state_fenced(&shared->fence_deadline))
			phase = SNOWFLAKE_PHASE_FENCED;
		else if (now < 0 || now / snowflake_layout.unit_ms > snowflake_layout.max_tick)
			state_error = true;
		else if (shared_state_last_issued_millis() - now > snowflake_max_clock_rollback)
			phase = SNOWFLAKE_PHASE_CLOCK_BEHIND;
		else if (pg_atomic_read_u64(&shared->last_id) & SNOWFLAKE_CLOSED_BIT)
			phase = SNOWFLAKE_PHASE_STARTING;
		else if (now > (int64) pg_atomic_read_u64(&shared->reserved_until))
		{
			uint64		wanted_since = pg_atomic_read_u64(&shared->reservation_wanted_since);

			/*
			 * Callers wait for a reservation: the worker's writes fail, or it
			 * has not answered for longer than a reserve (a commit that
			 * hangs, e.g. on a synchronous standby that is down).
			 */
			if (pg_atomic_read_u32(&shared->reservation_failing) ||
				(wanted_since != 0 &&
				 shared_state_monotonic_micros() - wanted_since >
				 (uint64) snowflake_reserve * 1000))
				state_error = true;
		}
	}

	if (node != SNOWFLAKE_NO_NODE)
	{
		values[STATUS_NODE_ID] = Int32GetDatum((int32) node);
		nulls[STATUS_NODE_ID] = false;
	}
	if (lease_id != 0)
	{
		values[STATUS_LEASE_ID] = Int64GetDatum(lease_id);
		nulls[STATUS_LEASE_ID] = false;
		values[STATUS_LEASE_EXPIRES_AT] = TimestampTzGetDatum(lease_expires_at);
		nulls[STATUS_LEASE_EXPIRES_AT] = false;
	}
	if (settings_etcd_in_use())
	{
		values[STATUS_ETCD_ERRORS] =
			Int64GetDatum((int64) pg_atomic_read_u64(&shared->etcd_errors));
		nulls[STATUS_ETCD_ERRORS] = false;
		values[STATUS_NODE_MIGRATIONS] =
			Int64GetDatum((int64) pg_atomic_read_u64(&shared->node_migrations));
		nulls[STATUS_NODE_MIGRATIONS] = false;
		if (pg_atomic_read_u64(&shared->etcd_latency_us) > 0)
		{
			values[STATUS_ETCD_LATENCY_MS] =
				Float8GetDatum(pg_atomic_read_u64(&shared->etcd_latency_us) / 1000.0);
			nulls[STATUS_ETCD_LATENCY_MS] = false;
		}
	}
	if (high_water > 0)
	{
		values[STATUS_HIGH_WATER] =
			TimestampTzGetDatum(snowflake_millis_to_timestamp(snowflake_epoch,
															  high_water));
		nulls[STATUS_HIGH_WATER] = false;
		values[STATUS_RESERVATION_LATENCY_MS] =
			Float8GetDatum(pg_atomic_read_u64(&shared->reservation_latency_us) / 1000.0);
		nulls[STATUS_RESERVATION_LATENCY_MS] = false;
	}
	values[STATUS_NODE_SOURCE] =
		CStringGetTextDatum(settings_node_source_name(snowflake_node_source));
	nulls[STATUS_NODE_SOURCE] = false;
	values[STATUS_STATE] = CStringGetTextDatum(state_error ? "error" :
											   functions_state_name(phase));
	nulls[STATUS_STATE] = false;

	/*
	 * The worker reopens the generator with a floor in last_id (the mark,
	 * perhaps ahead of the clock) that no ID carries: until an ID follows,
	 * show the last timestamp issued before.
	 */
	shown_millis = (uint64) last_id == pg_atomic_read_u64(&shared->placeholder_id) ?
		(int64) pg_atomic_read_u64(&shared->previous_last_millis) :
		snowflake_millis(last_id);
	if (ids_generated > 0 && shown_millis > 0)
	{
		values[STATUS_LAST_TIMESTAMP] =
			TimestampTzGetDatum(snowflake_millis_to_timestamp(snowflake_epoch,
															  shown_millis));
		nulls[STATUS_LAST_TIMESTAMP] = false;
	}
	values[STATUS_IDS_GENERATED] = Int64GetDatum((int64) ids_generated);
	nulls[STATUS_IDS_GENERATED] = false;
	values[STATUS_SEQUENCE_EXHAUSTIONS] =
		Int64GetDatum((int64) pg_atomic_read_u64(&shared->sequence_exhaustions));
	nulls[STATUS_SEQUENCE_EXHAUSTIONS] = false;
	values[STATUS_CLOCK_ROLLBACKS] =
		Int64GetDatum((int64) pg_atomic_read_u64(&shared->clock_rollbacks));
	nulls[STATUS_CLOCK_ROLLBACKS] = false;
	if (last_error[0] != '\0')
	{
		values[STATUS_LAST_ERROR] = CStringGetTextDatum(last_error);
		nulls[STATUS_LAST_ERROR] = false;
	}

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * Trigger of snowflake_high_water: a mark written by anyone but the worker
 * (pg_restore's COPY, a superuser's INSERT) must hold this server's IDs
 * above it before the next one is issued, not only from the worker's next
 * read.  Rows of other tables, other databases and the worker's own writes
 * change nothing.
 */
PG_FUNCTION_INFO_V1(snowflake_high_water_honour);
Datum
snowflake_high_water_honour(PG_FUNCTION_ARGS)
{
	TriggerData *trigger;
	HeapTuple	row;
	TupleDesc	tupdesc;
	int			node_attnum;
	int			epoch_attnum;
	int			layout_attnum;
	int			mark_attnum;
	bool		other_layout = false;
	bool		node_null;
	bool		epoch_null;
	bool		mark_null;
	int64		mark_micros;
	Datum		node;
	Datum		epoch;
	Datum		mark;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				errmsg("snowflake_high_water_honour() can only be called as a trigger"));
	trigger = (TriggerData *) fcinfo->context;

	/*
	 * GRANTs alone cannot keep the marks to superusers: pg_write_all_data
	 * writes every table.  A mark removed or lowered could let IDs repeat.
	 */
	if (!superuser())
		ereport(ERROR,
				errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				errmsg("only superusers may change %s",
					   RelationGetRelationName(trigger->tg_relation)),
				errdetail("It holds the high-water marks that keep snowflake IDs from "
						  "repeating."));
	if (TRIGGER_FIRED_BY_DELETE(trigger->tg_event) ||
		TRIGGER_FIRED_BY_TRUNCATE(trigger->tg_event))
		return PointerGetDatum(NULL);
	if (!TRIGGER_FIRED_FOR_ROW(trigger->tg_event) ||
		!TRIGGER_FIRED_AFTER(trigger->tg_event))
		ereport(ERROR,
				errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				errmsg("snowflake_high_water_honour() must be an AFTER ... FOR EACH ROW trigger"));

	if (snowflake_shared == NULL || snowflake_in_worker ||
		!mark_store_is_mark_table(RelationGetRelid(trigger->tg_relation)))
		return PointerGetDatum(NULL);

	row = TRIGGER_FIRED_BY_UPDATE(trigger->tg_event) ?
		trigger->tg_newtuple : trigger->tg_trigtuple;
	tupdesc = RelationGetDescr(trigger->tg_relation);
	node_attnum = SPI_fnumber(tupdesc, "node_id");
	epoch_attnum = SPI_fnumber(tupdesc, "epoch");
	mark_attnum = SPI_fnumber(tupdesc, "high_water");
	if (node_attnum <= 0 || epoch_attnum <= 0 || mark_attnum <= 0)
		ereport(ERROR,
				errcode(ERRCODE_UNDEFINED_COLUMN),
				errmsg("%s lacks the columns node_id, epoch and high_water",
					   RelationGetRelationName(trigger->tg_relation)));
	node = heap_getattr(row, node_attnum, tupdesc, &node_null);
	epoch = heap_getattr(row, epoch_attnum, tupdesc, &epoch_null);
	mark = heap_getattr(row, mark_attnum, tupdesc, &mark_null);
	if (node_null || epoch_null || mark_null)
		return PointerGetDatum(NULL);	/* the table's constraints say why */

	/*
	 * Another epoch or layout first: its node ids may lie beyond this
	 * layout's, and such a row must stop the generator all the same.
	 */
	layout_attnum = SPI_fnumber(tupdesc, "layout");
	if (layout_attnum > 0)
	{
		bool		layout_null;
		Datum		layout = heap_getattr(row, layout_attnum, tupdesc, &layout_null);

		other_layout = !layout_null &&
			strcmp(TextDatumGetCString(layout), snowflake_layout.text) != 0;
	}
	if (DatumGetTimestampTz(epoch) != snowflake_epoch || other_layout)
	{
		shared_state_honour_mark(DatumGetInt32(node), false, 0);
		return PointerGetDatum(NULL);
	}
	if (DatumGetInt32(node) < 0 || DatumGetInt32(node) > snowflake_layout.max_node)
		return PointerGetDatum(NULL);	/* no node id of this layout */

	/*
	 * A mark the generator could never pass would stop this node id for good,
	 * even if this transaction rolls back: refuse it here, as the worker
	 * refuses to read it.
	 */
	mark_micros = DatumGetTimestampTz(mark) - snowflake_epoch;
	if (TIMESTAMP_NOT_FINITE(DatumGetTimestampTz(mark)) ||
		DatumGetTimestampTz(mark) >
		snowflake_millis_to_timestamp(snowflake_epoch, snowflake_layout.max_millis))
		ereport(ERROR,
				errcode(ERRCODE_DATA_EXCEPTION),
				errmsg("high-water mark %s of node %d is beyond the range of IDs of "
					   "snowflake.epoch",
					   timestamptz_to_str(DatumGetTimestampTz(mark)), DatumGetInt32(node)),
				errdetail("IDs of snowflake.epoch %s reach %s.",
						  pstrdup(timestamptz_to_str(snowflake_epoch)),
						  pstrdup(timestamptz_to_str(snowflake_millis_to_timestamp(snowflake_epoch,
																				   snowflake_layout.max_millis)))));
	if (mark_micros > 0)
		shared_state_honour_mark(DatumGetInt32(node), true, (mark_micros + 999) / 1000);
	return PointerGetDatum(NULL);
}
