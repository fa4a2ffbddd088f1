--
-- Edges of snowflake.layout found in review: time fields wider than
-- timestamps can show, the messages of two broken layouts, and an update
-- to 1.3 that would leave a database whose dump cannot be restored.
--
SET TimeZone = 'UTC';
SET DateStyle = 'ISO';

-- A time field counts at most about 146,000 years, however wide: the end
-- of each of these layouts is a real timestamp after its epoch, not a
-- number that wrapped around to before it.
SELECT fields, covers_until, covers_until > epoch AS ends_after_epoch
FROM (VALUES ('time 61, node 1, sequence 1, unit 1s'),
             ('time 62, node 1, sequence 1, unit 10ms'),
             ('time 54, node 4, sequence 5, unit 1ms'),
             ('time 44, node 8, sequence 11, unit 1s')) v(l),
     snowflake_layout(l);

-- An ID whose time lies beyond that is refused, not read as another time
-- (this one used to decode as 0.000384 s after the epoch).
SELECT snowflake_timestamp(18446744073709552::bigint << 2, '2024-01-01+00',
                           'time 61, node 1, sequence 1, unit 1ms');
SELECT * FROM snowflake_decode(18446744073709552::bigint << 2, '2024-01-01+00',
                               'time 61, node 1, sequence 1, unit 1ms');

-- The last unit such a layout holds composes and decodes back exactly.
SELECT snowflake_timestamp(snowflake_from_timestamp(covers_until, 1, 1, epoch, fields),
                           epoch, fields) = covers_until AS last_unit_round_trip,
       snowflake_node(snowflake_from_timestamp(covers_until, 1, 1, epoch, fields), fields) AS node
FROM snowflake_layout('time 44, node 8, sequence 11, unit 1s');
SELECT snowflake_from_timestamp(covers_until + interval '1 s', 0, 0, epoch, fields)
FROM snowflake_layout('time 44, node 8, sequence 11, unit 1s');

-- Each broken layout is named for the rule it breaks.
SELECT snowflake_layout('time 0, node 10, sequence 12');
SELECT snowflake_layout('time 41, node 5, sequence 12, zero 3, zero 3');

-- Updating to 1.3 makes snowflake_node(bigint) and snowflake_sequence(bigint)
-- STABLE.  Objects that need IMMUTABLE functions and were built on them
-- under 1.2 would no longer restore from a dump: the update refuses,
-- naming each, and changes nothing.
CREATE DATABASE layout_review_update;
\c layout_review_update
SET client_min_messages = warning;
\set SHOW_CONTEXT never
CREATE EXTENSION snowflake VERSION '1.2';
CREATE TABLE ids (id bigint, node int GENERATED ALWAYS AS (snowflake_node(id)) STORED);
ALTER EXTENSION snowflake UPDATE TO '1.3';
SELECT extversion FROM pg_extension WHERE extname = 'snowflake';
ALTER TABLE ids DROP COLUMN node;
CREATE INDEX ids_sequence ON ids (snowflake_sequence(id));
ALTER EXTENSION snowflake UPDATE TO '1.3';
DROP INDEX ids_sequence;
CREATE TABLE parts (id bigint) PARTITION BY LIST (snowflake_node(id));
ALTER EXTENSION snowflake UPDATE TO '1.3';
DROP TABLE parts;
-- A view, a CHECK constraint and statistics need no IMMUTABLE function:
-- no refusal.
CREATE VIEW id_nodes AS SELECT snowflake_node(id) AS node FROM ids;
ALTER TABLE ids ADD CHECK (snowflake_sequence(id) >= 0);
CREATE STATISTICS id_stats ON (snowflake_node(id)), (snowflake_sequence(id)) FROM ids;
ALTER EXTENSION snowflake UPDATE TO '1.3';
SELECT extversion FROM pg_extension WHERE extname = 'snowflake';
-- What a restore would now run into, and what to build instead.
CREATE INDEX ids_node ON ids (snowflake_node(id));
CREATE INDEX ids_node ON ids (snowflake_node(id, 'snowflake'));
\c contrib_regression
DROP DATABASE layout_review_update;
