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
-- the worker holds IDs above it.  It also refuses every change by a role
-- that is not a superuser: members of pg_write_all_data may write any table
-- whatever its grants.  Only a trigger of this table may run it.
CREATE FUNCTION @extschema@.snowflake_high_water_honour()
RETURNS trigger
AS 'MODULE_PATHNAME', 'snowflake_high_water_honour'
LANGUAGE C;

REVOKE ALL ON FUNCTION @extschema@.snowflake_high_water_honour() FROM PUBLIC;

COMMENT ON FUNCTION @extschema@.snowflake_high_water_honour() IS
'trigger of snowflake_high_water: a mark written by a restore or by hand holds this server''s IDs above it at once';

CREATE TRIGGER snowflake_high_water_honour
	AFTER INSERT OR UPDATE OR DELETE ON @extschema@.snowflake_high_water
	FOR EACH ROW EXECUTE FUNCTION @extschema@.snowflake_high_water_honour();
CREATE TRIGGER snowflake_high_water_truncate
	BEFORE TRUNCATE ON @extschema@.snowflake_high_water
	FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.snowflake_high_water_honour();
-- Also for rows a logical replication subscriber applies (it runs with
-- session_replication_role = replica).
ALTER TABLE @extschema@.snowflake_high_water
	ENABLE ALWAYS TRIGGER snowflake_high_water_honour;
ALTER TABLE @extschema@.snowflake_high_water
	ENABLE ALWAYS TRIGGER snowflake_high_water_truncate;

-- Without the primary key the table needs a replica identity of its own,
-- or a publication that covers it (FOR ALL TABLES) would make PostgreSQL
-- refuse the worker's writes.
ALTER TABLE @extschema@.snowflake_high_water REPLICA IDENTITY FULL;

-- snowflake_convert_column (section owned by the convert_column work)

-- Two more refusals, each before anything changes:
--
-- Row-level security.  The collision check reads max(col) as the caller, so
-- a policy that applies to the caller (an owner under FORCE ROW LEVEL
-- SECURITY) would hide rows from it, and a hidden value at or above the ID
-- of now would later collide.  The check must see every row: the function
-- refuses clearly when policies apply, and runs with row_security = off so
-- that, should a policy apply anyway, PostgreSQL raises rather than filters.
-- Policies of child tables and partitions never filter a query through the
-- parent, so only the table named needs the check.
--
-- Referencing columns.  A column on the referencing side of a foreign key
-- takes the values of the keys it points to; new rows given a fresh
-- snowflake ID would point at nothing (and fail the constraint, or worse,
-- hit an unrelated row).  Its key is converted in the referenced table.
-- Inherited children get the new default too, so their own foreign keys
-- count as well.
CREATE OR REPLACE FUNCTION @extschema@.snowflake_convert_column(tbl pg_catalog.regclass,
	col pg_catalog.name)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
SET row_security = off
AS $convert$
DECLARE
	rel			record;
	att			record;
	fk			record;
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

	-- The lock also keeps policies and constraints as checked below: every
	-- change to them takes a lock that conflicts with it.
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

	-- wrong_object_type rather than object_not_in_prerequisite_state, as for
	-- a view: the column is the wrong kind of column, and no change of its
	-- state is the remedy (dropping the foreign key would leave new rows
	-- pointing at nothing all the same).  The table's own constraints come
	-- first, then those of children nearest to it.
	SELECT con.conname, con.conrelid::regclass AS conrel,
		   con.confrelid::regclass AS refrel, ra.attname AS refcol
	INTO fk
	FROM (WITH RECURSIVE tree(relid, depth) AS (
			SELECT tbl::oid, 0
			UNION
			SELECT i.inhrelid, t.depth + 1
			FROM pg_inherits i JOIN tree t ON i.inhparent = t.relid)
		  SELECT relid, min(depth) AS depth FROM tree GROUP BY relid) m
		JOIN pg_attribute a ON a.attrelid = m.relid AND a.attname = col
			AND NOT a.attisdropped
		JOIN pg_constraint con ON con.conrelid = m.relid AND con.contype = 'f'
			AND a.attnum = ANY (con.conkey)
		JOIN pg_attribute ra ON ra.attrelid = con.confrelid
			AND ra.attnum = con.confkey[array_position(con.conkey, a.attnum)]
	ORDER BY m.depth, con.conname
	LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'column "%" of table % references table % through foreign key constraint "%"',
			col, fk.conrel, fk.refrel, fk.conname
			USING ERRCODE = 'wrong_object_type',
				  DETAIL = format('Its values are keys of %s: new rows given snowflake IDs would reference no row there.', fk.refrel),
				  HINT = format('Convert the referenced key column instead (SELECT snowflake_convert_column(%L, %L)) and leave the referencing columns alone.',
								fk.refrel, fk.refcol);
	END IF;

	-- insufficient_privilege, as PostgreSQL's own error under
	-- row_security = off: the remedy is a role that bypasses the policies.
	IF row_security_active(tbl) THEN
		RAISE EXCEPTION 'row-level security on table % would hide rows from the collision check', tbl
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('Rows that the policies hide from role %s could hold values at or above the snowflake ID of now.', current_user),
				  HINT = format('Run snowflake_convert_column as a superuser or a role with BYPASSRLS, or disable FORCE ROW LEVEL SECURITY while converting (ALTER TABLE %s NO FORCE ROW LEVEL SECURITY).', tbl);
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
'switches an existing bigint or bigserial column to DEFAULT snowflake_nextval(), refusing if existing values could collide with future IDs (every row is checked, whatever row-level security would hide) and refusing referencing columns of foreign keys';
