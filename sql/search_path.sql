--
-- A hostile search_path changes nothing: defaults and calls keep reaching
-- the extension's own functions.
--
CREATE TABLE keyed (id bigint PRIMARY KEY DEFAULT snowflake_nextval(), v int);

CREATE SCHEMA evil;
CREATE FUNCTION evil.snowflake_nextval() RETURNS bigint LANGUAGE sql AS 'SELECT 42::bigint';
CREATE FUNCTION evil.snowflake_node(bigint) RETURNS integer LANGUAGE sql AS 'SELECT 666';
CREATE FUNCTION evil.int8(integer) RETURNS bigint LANGUAGE sql AS 'SELECT 42::bigint';

SET search_path = evil, public;
INSERT INTO keyed (v) VALUES (1), (2);
SELECT count(*) AS rows, bool_and(id <> 42) AS real_ids,
       bool_and(public.snowflake_node(id) = 7) AS node_7
FROM public.keyed;

-- The extension's functions called with explicit schema still work with
-- the hostile path in place.
SELECT public.snowflake_node(public.snowflake_from_timestamp(now(), 5, 1)) AS node_5;

RESET search_path;
DROP SCHEMA evil CASCADE;
DROP TABLE keyed;
