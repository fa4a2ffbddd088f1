/* snowflake--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION snowflake UPDATE TO '1.1'" to load this file. \quit

-- pg_dump carries the high-water marks with the data, so that a dump
-- restored into snowflake.database of another server gives it the marks of
-- the node ids the data was made under (read by its worker at its next
-- start: a restored mark can only hold the generator higher).
SELECT pg_catalog.pg_extension_config_dump('@extschema@.snowflake_high_water', '');

-- Adopting snowflake keys on an existing table.
--
-- plpgsql rather than C: every step is an ordinary catalog query or
-- ALTER command, and reads best as such.  The table is locked before the
-- existing values are checked, so no row can slip in between the check and
-- the new default.
CREATE FUNCTION @extschema@.snowflake_convert_column(tbl pg_catalog.regclass,
	col pg_catalog.name)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $convert$
DECLARE
	rel			record;
	att			record;
	node		integer;
	floor_id	bigint;
	max_id		bigint;
	seq			text;
	member		regclass;
BEGIN
	SELECT c.relkind, c.relowner INTO rel FROM pg_class c WHERE c.oid = tbl;
	IF rel.relkind NOT IN ('r', 'p') THEN
		RAISE EXCEPTION '"%" is not a table', tbl
			USING ERRCODE = 'wrong_object_type';
	END IF;
	-- Checked before the lock, which would fail less clearly.
	IF NOT pg_has_role(current_user, rel.relowner, 'USAGE') THEN
		RAISE EXCEPTION 'must be owner of table %', tbl
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Only the owner of a table can change its column defaults.';
	END IF;

	EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', tbl);

	SELECT a.atttypid, a.attidentity, a.attgenerated INTO att
	FROM pg_attribute a
	WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0
		AND NOT a.attisdropped;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'column "%" of relation % does not exist', col, tbl
			USING ERRCODE = 'undefined_column';
	END IF;
	IF att.atttypid <> 'pg_catalog.int8'::regtype THEN
		RAISE EXCEPTION 'column "%" of table % is of type %, not bigint',
			col, tbl, format_type(att.atttypid, NULL)
			USING ERRCODE = 'datatype_mismatch',
				  HINT = 'Snowflake IDs are bigint: change the column''s type first (ALTER TABLE ... ALTER COLUMN ... TYPE bigint).';
	END IF;
	-- An identity column's sequence cannot be detached from it, and GENERATED
	-- ALWAYS refuses explicit values where a DEFAULT accepts them: whether
	-- that change is wanted is the owner's decision, not ours.
	IF att.attidentity <> '' THEN
		RAISE EXCEPTION 'column "%" of table % is an identity column', col, tbl
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'Its values come from its identity sequence, which cannot be replaced by a DEFAULT.',
				  HINT = format('Drop the identity first (ALTER TABLE %s ALTER COLUMN %I DROP IDENTITY), then convert the column.', tbl, col);
	END IF;
	IF att.attgenerated <> '' THEN
		RAISE EXCEPTION 'column "%" of table % is a generated column', col, tbl
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;

	-- Every ID the generator issues later is above the one it issues now,
	-- itself at or above the ID of now: values below it can never collide,
	-- even IDs issued in this very millisecond.  Without a node id yet there
	-- is no generator to ask; node 0 gives the smallest ID of now, below that
	-- of any node.  snowflake_status() raises if the library is not
	-- preloaded: the new DEFAULT could not issue anything then.
	SELECT s.node_id INTO node FROM @extschema@.snowflake_status() s;
	IF node IS NULL THEN
		floor_id := @extschema@.snowflake_from_timestamp(clock_timestamp(), 0, 0);
	ELSE
		floor_id := @extschema@.snowflake_nextval();
	END IF;
	EXECUTE format('SELECT max(%I) FROM %s', col, tbl) INTO max_id;
	IF max_id >= floor_id THEN
		RAISE EXCEPTION 'column "%" of table % holds values up to %, at or above the snowflake ID of now',
			col, tbl, max_id
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('The snowflake ID of now for node %s is %s: existing values at or above it could collide with future IDs.',
								  coalesce(node, 0), floor_id),
				  HINT = 'Renumber the rows whose values are that large, or convert the column once the clock has passed snowflake_timestamp() of the largest value.';
	END IF;

	-- Without ONLY, SET DEFAULT recurses to every partition and child table.
	EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT @extschema@.snowflake_nextval()',
				   tbl, col);

	-- The serial sequences of the table and of its partitions are no longer
	-- anyone's default: detach them so dropping the column leaves them
	-- alone, and say so, since only the owner knows whether to drop them.
	FOR member IN
		WITH RECURSIVE tree(relid) AS (
			SELECT tbl::oid
			UNION
			SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.relid)
		SELECT relid::regclass FROM tree
	LOOP
		seq := pg_get_serial_sequence(member::text, col);
		IF seq IS NOT NULL THEN
			EXECUTE format('ALTER SEQUENCE %s OWNED BY NONE', seq);
			RAISE NOTICE 'sequence % is no longer used by %.%', seq, member, quote_ident(col)
				USING HINT = 'Drop it when nothing else needs it.';
		END IF;
	END LOOP;
END
$convert$;

COMMENT ON FUNCTION @extschema@.snowflake_convert_column(pg_catalog.regclass, pg_catalog.name) IS
'switches an existing bigint or bigserial column to DEFAULT snowflake_nextval(), refusing if existing values could collide with future IDs';
