--
-- Issuing IDs: snowflake_nextval() and snowflake_nextval_batch() on a server
-- preloaded with snowflake.node_id = 7.
--
-- Each ID carries this server's node id and a timestamp within a moment of
-- the clock.
SELECT snowflake_node(x) AS node,
       snowflake_timestamp(x) BETWEEN now() - interval '1 minute' AND clock_timestamp() AS timestamp_is_now
FROM (SELECT snowflake_nextval() AS x) s;

-- Strictly increasing in issue order, none repeated.
SELECT count(*) AS ids, count(DISTINCT x) AS distinct_ids,
       bool_and(x > prev) AS strictly_increasing
FROM (SELECT x, lag(x) OVER (ORDER BY o) AS prev
      FROM (SELECT snowflake_nextval() AS x, o FROM generate_series(1, 20000) o) s) t;

-- A table keyed by the DEFAULT.
CREATE TABLE orders (id bigint PRIMARY KEY DEFAULT snowflake_nextval(), item text);
INSERT INTO orders (item) SELECT 'item ' || g FROM generate_series(1, 1000) g;
SELECT count(*), count(DISTINCT id), min(snowflake_node(id)), max(snowflake_node(id)) FROM orders;
-- Rows inserted later get larger keys.
INSERT INTO orders (item) VALUES ('last');
SELECT item FROM orders ORDER BY id DESC LIMIT 1;
DROP TABLE orders;

-- A batch: n IDs in issue order, all distinct, all after what came before
-- and before what comes after.
SELECT snowflake_nextval() AS before_batch \gset
CREATE TEMP TABLE batch AS
SELECT x, o FROM snowflake_nextval_batch(10000) WITH ORDINALITY AS b(x, o);
SELECT snowflake_nextval() AS after_batch \gset
SELECT count(*) AS ids, count(DISTINCT x) AS distinct_ids,
       bool_and(x > :before_batch AND x < :after_batch) AS between_neighbours,
       bool_and(snowflake_node(x) = 7) AS node_7
FROM batch;
SELECT bool_and(x > prev) AS strictly_increasing
FROM (SELECT x, lag(x) OVER (ORDER BY o) AS prev FROM batch) s;
-- 10000 IDs need at least three milliseconds of 4096.
SELECT count(DISTINCT snowflake_timestamp(x)) >= 3 AS spans_milliseconds FROM batch;
DROP TABLE batch;

-- Batch sizes at the limits.
SELECT count(*) FROM snowflake_nextval_batch(1);
SELECT count(*), count(DISTINCT x) FROM snowflake_nextval_batch(1000000) x;

-- A batch in the select list works too.
SELECT count(*) FROM (SELECT snowflake_nextval_batch(5)) s;

-- Timestamps of issued IDs never run ahead of the clock, even at full speed.
SELECT bool_and(snowflake_timestamp(x) <= clock_timestamp()) AS never_ahead
FROM (SELECT snowflake_nextval() AS x FROM generate_series(1, 50000)) s;
