/* snowflake--1.2--1.3.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION snowflake UPDATE TO '1.3'" to load this file. \quit

-- Layouts (snowflake.layout).  A mark is written under an epoch and a
-- layout: a server whose layout differs from its marks' refuses to issue,
-- as it does for a changed epoch.  Rows from before layouts existed, and
-- rows a restore of an older dump brings without the column, are of the
-- layout IDs had then.
ALTER TABLE @extschema@.snowflake_high_water
	ADD COLUMN layout pg_catalog.text NOT NULL
	DEFAULT 'time 41, node 10, sequence 12, unit 1ms';

-- Up to 65,536 node ids (16 node bits).
ALTER TABLE @extschema@.snowflake_high_water
	DROP CONSTRAINT snowflake_high_water_node_id_check;
ALTER TABLE @extschema@.snowflake_high_water
	ADD CONSTRAINT snowflake_high_water_node_id_check
	CHECK (node_id OPERATOR(pg_catalog.>=) 0 AND node_id OPERATOR(pg_catalog.<=) 65535);

-- The node and the sequence now follow snowflake.layout: STABLE, like the
-- timestamp.  Index expressions use the variants with the layout given.
-- An index, a generated column or a partition key built on them while
-- they were IMMUTABLE would keep working here, but would make
-- every dump of this database (and pg_upgrade) fail to restore, since
-- PostgreSQL accepts only IMMUTABLE functions there: refuse the update
-- first, naming the object, while nothing has changed yet.
DO $check$
DECLARE
	blocker pg_catalog.text;
BEGIN
	SELECT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid) INTO blocker
	FROM pg_catalog.pg_depend d
	WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
	  AND d.refobjid OPERATOR(pg_catalog.=) ANY (ARRAY[
		'@extschema@.snowflake_node(pg_catalog.int8)'::pg_catalog.regprocedure,
		'@extschema@.snowflake_sequence(pg_catalog.int8)'::pg_catalog.regprocedure]::pg_catalog.oid[])
	  AND (d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
		OR EXISTS (SELECT FROM pg_catalog.pg_attrdef ad
			JOIN pg_catalog.pg_attribute a
			  ON a.attrelid OPERATOR(pg_catalog.=) ad.adrelid
			 AND a.attnum OPERATOR(pg_catalog.=) ad.adnum
			WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_attrdef'::pg_catalog.regclass
			  AND ad.oid OPERATOR(pg_catalog.=) d.objid
			  AND a.attgenerated OPERATOR(pg_catalog.<>) ''))
	ORDER BY 1
	LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION '% uses snowflake_node(bigint) or snowflake_sequence(bigint), which become STABLE in 1.3', blocker
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'They now follow snowflake.layout; indexes, generated columns and partition keys need IMMUTABLE functions, so a dump of this database would no longer restore.',
				  HINT = 'Drop that object, run ALTER EXTENSION snowflake UPDATE, then create it again with the layout given: snowflake_node(id, ''snowflake'') or snowflake_sequence(id, ''snowflake'').';
	END IF;
END
$check$;

ALTER FUNCTION @extschema@.snowflake_node(pg_catalog.int8) STABLE;
ALTER FUNCTION @extschema@.snowflake_sequence(pg_catalog.int8) STABLE;

COMMENT ON FUNCTION @extschema@.snowflake_node(pg_catalog.int8) IS
'the node id of the server that made a snowflake ID, by snowflake.layout';
COMMENT ON FUNCTION @extschema@.snowflake_sequence(pg_catalog.int8) IS
'the sequence of a snowflake ID within its unit of time, by snowflake.layout';
COMMENT ON FUNCTION @extschema@.snowflake_timestamp(pg_catalog.int8) IS
'when a snowflake ID was made, by snowflake.epoch and snowflake.layout';
COMMENT ON FUNCTION @extschema@.snowflake_decode(pg_catalog.int8) IS
'timestamp, node id and sequence of a snowflake ID, by snowflake.epoch and snowflake.layout';
COMMENT ON FUNCTION @extschema@.snowflake_from_timestamp(pg_catalog.timestamptz, pg_catalog.int4, pg_catalog.int4) IS
'the snowflake ID of a timestamp, node id and sequence, by snowflake.epoch and snowflake.layout; with defaults the smallest ID at that time';
COMMENT ON FUNCTION @extschema@.snowflake_timestamp(pg_catalog.int8, pg_catalog.timestamptz) IS
'when a snowflake ID of the original layout (41/10/12, ms) was made, counting from the given epoch';
COMMENT ON FUNCTION @extschema@.snowflake_decode(pg_catalog.int8, pg_catalog.timestamptz) IS
'timestamp, node id and sequence of a snowflake ID of the original layout (41/10/12, ms), counting from the given epoch';
COMMENT ON FUNCTION @extschema@.snowflake_from_timestamp(pg_catalog.timestamptz, pg_catalog.int4, pg_catalog.int4, pg_catalog.timestamptz) IS
'the snowflake ID of the original layout (41/10/12, ms) of a timestamp, node id and sequence, counting from the given epoch';

-- IMMUTABLE variants with the epoch and the layout given: for index
-- expressions, partition bounds, and IDs made by another system.  A layout
-- is a preset name (snowflake, twitter, instagram, sonyflake) or fields
-- such as 'time 41, node 13, sequence 10, unit 1ms'.

CREATE FUNCTION @extschema@.snowflake_timestamp(id pg_catalog.int8,
	epoch pg_catalog.timestamptz, layout pg_catalog.text)
RETURNS pg_catalog.timestamptz
AS 'MODULE_PATHNAME', 'snowflake_timestamp_at_epoch'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.snowflake_timestamp(pg_catalog.int8, pg_catalog.timestamptz, pg_catalog.text) IS
'when a snowflake ID of the given layout was made, counting from the given epoch';

CREATE FUNCTION @extschema@.snowflake_decode(id pg_catalog.int8,
	epoch pg_catalog.timestamptz, layout pg_catalog.text,
	OUT ts pg_catalog.timestamptz, OUT node pg_catalog.int4,
	OUT seq pg_catalog.int4)
RETURNS record
AS 'MODULE_PATHNAME', 'snowflake_decode_at_epoch'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.snowflake_decode(pg_catalog.int8, pg_catalog.timestamptz, pg_catalog.text) IS
'timestamp, node id and sequence of a snowflake ID of the given layout, counting from the given epoch';

CREATE FUNCTION @extschema@.snowflake_from_timestamp(ts pg_catalog.timestamptz,
	node pg_catalog.int4, seq pg_catalog.int4, epoch pg_catalog.timestamptz,
	layout pg_catalog.text)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'snowflake_from_timestamp_at_epoch'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.snowflake_from_timestamp(pg_catalog.timestamptz, pg_catalog.int4, pg_catalog.int4, pg_catalog.timestamptz, pg_catalog.text) IS
'the snowflake ID of the given layout of a timestamp, node id and sequence, counting from the given epoch';

CREATE FUNCTION @extschema@.snowflake_node(id pg_catalog.int8, layout pg_catalog.text)
RETURNS pg_catalog.int4
AS 'MODULE_PATHNAME', 'snowflake_node'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.snowflake_node(pg_catalog.int8, pg_catalog.text) IS
'the node id of a snowflake ID of the given layout';

CREATE FUNCTION @extschema@.snowflake_sequence(id pg_catalog.int8, layout pg_catalog.text)
RETURNS pg_catalog.int4
AS 'MODULE_PATHNAME', 'snowflake_sequence'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.snowflake_sequence(pg_catalog.int8, pg_catalog.text) IS
'the sequence of a snowflake ID of the given layout within its unit of time';

-- What a layout means, for the server's (NULL) or any other.
CREATE FUNCTION @extschema@.snowflake_layout(layout pg_catalog.text DEFAULT NULL,
	OUT name pg_catalog.text, OUT fields pg_catalog.text,
	OUT time_bits pg_catalog.int4, OUT node_bits pg_catalog.int4,
	OUT sequence_bits pg_catalog.int4, OUT zero_bits pg_catalog.int4,
	OUT unit pg_catalog.interval, OUT epoch pg_catalog.timestamptz,
	OUT ids_per_unit pg_catalog.int4, OUT node_ids pg_catalog.int4,
	OUT covers_until pg_catalog.timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'snowflake_layout_info'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.snowflake_layout(pg_catalog.text) IS
'fields, unit, epoch and capacity of a snowflake layout: the server''s (NULL), a preset or a custom one';
