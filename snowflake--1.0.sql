/* snowflake--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION snowflake" to load this file. \quit

-- Issuing IDs

CREATE FUNCTION @extschema@.snowflake_nextval()
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'snowflake_nextval'
LANGUAGE C VOLATILE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.snowflake_nextval() IS
'the next snowflake ID of this server; usable as a column DEFAULT';

CREATE FUNCTION @extschema@.snowflake_nextval_batch(n pg_catalog.int4)
RETURNS SETOF pg_catalog.int8
AS 'MODULE_PATHNAME', 'snowflake_nextval_batch'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE
ROWS 1000;

COMMENT ON FUNCTION @extschema@.snowflake_nextval_batch(pg_catalog.int4) IS
'n snowflake IDs (1 to 1000000) in issue order, taken one millisecond at a time';

-- Decoding, with the epoch of snowflake.epoch (STABLE: reads a setting)

CREATE FUNCTION @extschema@.snowflake_timestamp(id pg_catalog.int8)
RETURNS pg_catalog.timestamptz
AS 'MODULE_PATHNAME', 'snowflake_timestamp'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.snowflake_timestamp(pg_catalog.int8) IS
'when a snowflake ID was made, by snowflake.epoch';

CREATE FUNCTION @extschema@.snowflake_decode(id pg_catalog.int8,
	OUT ts pg_catalog.timestamptz, OUT node pg_catalog.int4,
	OUT seq pg_catalog.int4)
RETURNS record
AS 'MODULE_PATHNAME', 'snowflake_decode'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.snowflake_decode(pg_catalog.int8) IS
'timestamp, node id and sequence of a snowflake ID, by snowflake.epoch';

CREATE FUNCTION @extschema@.snowflake_from_timestamp(ts pg_catalog.timestamptz,
	node pg_catalog.int4 DEFAULT 0, seq pg_catalog.int4 DEFAULT 0)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'snowflake_from_timestamp'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.snowflake_from_timestamp(pg_catalog.timestamptz, pg_catalog.int4, pg_catalog.int4) IS
'the snowflake ID of a timestamp, node id and sequence, by snowflake.epoch; with the defaults, the smallest ID at that time';

-- The same with the epoch as an argument (IMMUTABLE: for indexes and
-- partition bounds)

CREATE FUNCTION @extschema@.snowflake_timestamp(id pg_catalog.int8,
	epoch pg_catalog.timestamptz)
RETURNS pg_catalog.timestamptz
AS 'MODULE_PATHNAME', 'snowflake_timestamp_at_epoch'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.snowflake_timestamp(pg_catalog.int8, pg_catalog.timestamptz) IS
'when a snowflake ID was made, counting from the given epoch';

CREATE FUNCTION @extschema@.snowflake_decode(id pg_catalog.int8,
	epoch pg_catalog.timestamptz,
	OUT ts pg_catalog.timestamptz, OUT node pg_catalog.int4,
	OUT seq pg_catalog.int4)
RETURNS record
AS 'MODULE_PATHNAME', 'snowflake_decode_at_epoch'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.snowflake_decode(pg_catalog.int8, pg_catalog.timestamptz) IS
'timestamp, node id and sequence of a snowflake ID, counting from the given epoch';

CREATE FUNCTION @extschema@.snowflake_from_timestamp(ts pg_catalog.timestamptz,
	node pg_catalog.int4, seq pg_catalog.int4, epoch pg_catalog.timestamptz)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'snowflake_from_timestamp_at_epoch'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.snowflake_from_timestamp(pg_catalog.timestamptz, pg_catalog.int4, pg_catalog.int4, pg_catalog.timestamptz) IS
'the snowflake ID of a timestamp, node id and sequence, counting from the given epoch';

-- Parts that do not depend on the epoch

CREATE FUNCTION @extschema@.snowflake_node(id pg_catalog.int8)
RETURNS pg_catalog.int4
AS 'MODULE_PATHNAME', 'snowflake_node'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.snowflake_node(pg_catalog.int8) IS
'the node id (0..1023) of the server that made a snowflake ID';

CREATE FUNCTION @extschema@.snowflake_sequence(id pg_catalog.int8)
RETURNS pg_catalog.int4
AS 'MODULE_PATHNAME', 'snowflake_sequence'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.snowflake_sequence(pg_catalog.int8) IS
'the sequence (0..4095) of a snowflake ID within its millisecond';

-- Status

CREATE FUNCTION @extschema@.snowflake_status(
	OUT node_id pg_catalog.int4,
	OUT node_source pg_catalog.text,
	OUT state pg_catalog.text,
	OUT lease_id pg_catalog.int8,
	OUT lease_expires_at pg_catalog.timestamptz,
	OUT high_water pg_catalog.timestamptz,
	OUT last_timestamp pg_catalog.timestamptz,
	OUT ids_generated pg_catalog.int8,
	OUT sequence_exhaustions pg_catalog.int8,
	OUT clock_rollbacks pg_catalog.int8,
	OUT node_migrations pg_catalog.int8,
	OUT etcd_errors pg_catalog.int8,
	OUT last_error pg_catalog.text,
	OUT reservation_latency_ms pg_catalog.float8,
	OUT etcd_latency_ms pg_catalog.float8)
RETURNS record
AS 'MODULE_PATHNAME', 'snowflake_status'
LANGUAGE C VOLATILE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.snowflake_status() IS
'one row describing this server''s snowflake generator';

-- The high-water marks: per node id, a timestamp at or
-- above every timestamp that node has put in an ID on this server, written
-- ahead of use by the background worker in snowflake.database.  An
-- ordinary, WAL-logged table, so a promoted standby inherits the marks.

CREATE TABLE @extschema@.snowflake_high_water (
	node_id pg_catalog.int4 PRIMARY KEY
		CHECK (node_id OPERATOR(pg_catalog.>=) 0 AND node_id OPERATOR(pg_catalog.<=) 1023),
	epoch pg_catalog.timestamptz NOT NULL,
	high_water pg_catalog.timestamptz NOT NULL,
	updated_at pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now()
);

COMMENT ON TABLE @extschema@.snowflake_high_water IS
'per node id, a persisted timestamp at or above every timestamp put in an ID; written by the snowflake background worker';

-- Readable by everyone; written only by the worker (a superuser session).
REVOKE ALL ON @extschema@.snowflake_high_water FROM PUBLIC;
GRANT SELECT ON @extschema@.snowflake_high_water TO PUBLIC;
