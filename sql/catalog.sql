--
-- What pg_proc says of every function: volatility, strictness, parallel
-- safety, a comment; and the settings as pg_settings shows them.
--
SELECT p.oid::regprocedure AS function, p.provolatile AS vol, p.proisstrict AS strict,
       p.proparallel AS par, obj_description(p.oid, 'pg_proc') IS NOT NULL AS commented
FROM pg_proc p
JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'snowflake'
ORDER BY p.oid::regprocedure::text;

-- Only the forms with the epoch (and layout) given may serve in an index
-- expression: the others follow the server's settings.
CREATE TABLE t (id bigint);
CREATE INDEX t_ts ON t (snowflake_timestamp(id, '2024-01-01+00'));
CREATE INDEX t_ts_stable ON t (snowflake_timestamp(id));
CREATE INDEX t_node ON t (snowflake_node(id));
CREATE INDEX t_node_layout ON t (snowflake_node(id, 'snowflake'));
CREATE INDEX t_ts_layout ON t (snowflake_timestamp(id, '2014-09-01+00', 'sonyflake'));
DROP TABLE t;

-- Partition bounds by time, from IDs.
CREATE TABLE p (id bigint) PARTITION BY RANGE (id);
CREATE TABLE p_2025 PARTITION OF p
  FOR VALUES FROM (snowflake_from_timestamp('2025-01-01+00', 0, 0, '2024-01-01+00'))
             TO (snowflake_from_timestamp('2026-01-01+00', 0, 0, '2024-01-01+00'));
INSERT INTO p VALUES (snowflake_from_timestamp('2025-07-01+00', 3, 9, '2024-01-01+00'));
SELECT tableoid::regclass, snowflake_node(id) FROM p;
DROP TABLE p;

-- Settings: names, defaults, ranges, units, contexts.
SELECT name, setting, unit, context, vartype, min_val, max_val, enumvals
FROM pg_settings WHERE name LIKE 'snowflake.%' ORDER BY name;

-- Postmaster settings cannot change in a session; wait_timeout can.
SET snowflake.node_id = 3;
SET snowflake.epoch = '2020-01-01';
SET snowflake.wait_timeout = '2s';
SHOW snowflake.wait_timeout;
SET snowflake.wait_timeout = -1;
RESET snowflake.wait_timeout;
-- The snowflake. prefix is reserved: a misspelt setting is an error.
SET snowflake.nodeid = 3;

-- The etcd password is hidden from pg_settings and SHOW ALL, and only a
-- superuser may read it.
SELECT count(*) AS password_in_pg_settings
FROM pg_settings WHERE name = 'snowflake.etcd_password';
CREATE ROLE snowflake_catalog_reader;
SET ROLE snowflake_catalog_reader;
SHOW snowflake.etcd_password;
SHOW snowflake.etcd_username;
RESET ROLE;
DROP ROLE snowflake_catalog_reader;

-- Marks written by others take effect at once: the trigger is there, and
-- nobody but a superuser may attach its function to another table.
SELECT tgname, tgenabled FROM pg_trigger
WHERE tgrelid = 'snowflake_high_water'::regclass AND NOT tgisinternal ORDER BY tgname;
SELECT has_function_privilege('public', 'snowflake_high_water_honour()', 'EXECUTE')
	AS public_may_execute;
-- Several rows per node id may exist (a restore adds one): no primary key.
SELECT count(*) AS unique_indexes FROM pg_index
WHERE indrelid = 'snowflake_high_water'::regclass AND indisunique;
