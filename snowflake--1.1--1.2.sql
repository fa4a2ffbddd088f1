/* snowflake--1.1--1.2.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION snowflake UPDATE TO '1.2'" to load this file. \quit

-- Marks that merge instead of conflicting.  A dump of snowflake.database
-- restored into a server that already wrote its own mark for the same node
-- id (the normal way to replace a machine) adds a second row for that node
-- instead of failing on a primary key: the mark of a node is the highest of
-- its rows, and the worker merges them into one at its next write.
ALTER TABLE @extschema@.snowflake_high_water
	DROP CONSTRAINT snowflake_high_water_pkey;
CREATE INDEX snowflake_high_water_node_id
	ON @extschema@.snowflake_high_water (node_id);

-- A mark written by anyone but the worker (a restore, a superuser's INSERT)
-- takes effect before the next ID: the trigger stops the generator at once
-- if the new mark is above the last issued ID of this server's node, and
-- the worker holds IDs above it.  Only a trigger of this table may run it.
CREATE FUNCTION @extschema@.snowflake_high_water_honour()
RETURNS trigger
AS 'MODULE_PATHNAME', 'snowflake_high_water_honour'
LANGUAGE C;

REVOKE ALL ON FUNCTION @extschema@.snowflake_high_water_honour() FROM PUBLIC;

COMMENT ON FUNCTION @extschema@.snowflake_high_water_honour() IS
'trigger of snowflake_high_water: a mark written by a restore or by hand holds this server''s IDs above it at once';

CREATE TRIGGER snowflake_high_water_honour
	AFTER INSERT OR UPDATE ON @extschema@.snowflake_high_water
	FOR EACH ROW EXECUTE FUNCTION @extschema@.snowflake_high_water_honour();

-- snowflake_convert_column (section owned by the convert_column work)
