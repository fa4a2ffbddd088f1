--
-- Marks written by someone other than the worker (a restore, a superuser)
-- take effect before the next ID; marks the generator could never pass are
-- refused; the table copy in any other database changes nothing.
--
\c postgres
-- A mark 1.5 s ahead of the clock for this server's node (7), within
-- reserve + max_clock_rollback (2 s), so waited out: the next ID is
-- above it, although the worker had reserved less.
INSERT INTO snowflake_high_water (node_id, epoch, high_water)
VALUES (7, current_setting('snowflake.epoch')::timestamptz, clock_timestamp() + interval '1.5 s')
RETURNING high_water AS inserted_mark \gset
SELECT snowflake_timestamp(snowflake_nextval()) > :'inserted_mark'::timestamptz AS next_id_above_mark;
-- Two rows of node 7 now (a restore adds one): the mark is the higher, and
-- the worker merges them at its next write.
SELECT count(*) >= 1 AS rows_of_node_7, max(high_water) >= :'inserted_mark'::timestamptz AS mark_kept
FROM snowflake_high_water WHERE node_id = 7;
-- A mark beyond the range of IDs would stop the node for good: refused.
INSERT INTO snowflake_high_water (node_id, epoch, high_water)
VALUES (7, current_setting('snowflake.epoch')::timestamptz, 'infinity');
INSERT INTO snowflake_high_water (node_id, epoch, high_water)
VALUES (7, current_setting('snowflake.epoch')::timestamptz, '2200-01-01+00');
-- The trigger function serves only as the table's trigger.
SELECT snowflake_high_water_honour();
\c contrib_regression
-- Here the table is not snowflake.database's: a mark in it changes nothing.
INSERT INTO snowflake_high_water (node_id, epoch, high_water)
VALUES (7, current_setting('snowflake.epoch')::timestamptz, clock_timestamp() + interval '1 hour');
SELECT snowflake_timestamp(snowflake_nextval()) < clock_timestamp() + interval '1 minute' AS unaffected;
DELETE FROM snowflake_high_water;
-- Nobody else may hang the trigger function on a table of their own.
CREATE ROLE marks_intruder;
SET ROLE marks_intruder;
CREATE TEMP TABLE fake (node_id int, epoch timestamptz, high_water timestamptz);
CREATE TRIGGER t AFTER INSERT ON fake FOR EACH ROW EXECUTE FUNCTION snowflake_high_water_honour();
RESET ROLE;
DROP TABLE fake;
DROP ROLE marks_intruder;
-- pg_write_all_data writes every table whatever its grants: not the marks.
INSERT INTO snowflake_high_water (node_id, epoch, high_water)
VALUES (8, current_setting('snowflake.epoch')::timestamptz, clock_timestamp());
CREATE ROLE marks_writer IN ROLE pg_write_all_data;
SET ROLE marks_writer;
DELETE FROM snowflake_high_water;
UPDATE snowflake_high_water SET high_water = high_water - interval '1 day';
INSERT INTO snowflake_high_water (node_id, epoch, high_water)
VALUES (9, current_setting('snowflake.epoch')::timestamptz, clock_timestamp());
RESET ROLE;
SELECT count(*) AS rows_left FROM snowflake_high_water;
DROP ROLE marks_writer;
