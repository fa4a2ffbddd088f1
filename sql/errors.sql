--
-- Bad input gets an error with a SQLSTATE; NULL in gives NULL out.
--
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';

-- Negative IDs.
SELECT snowflake_timestamp(-1);
\echo :LAST_ERROR_SQLSTATE
SELECT snowflake_timestamp(-1, '2024-01-01+00');
\echo :LAST_ERROR_SQLSTATE
SELECT snowflake_node(-1);
\echo :LAST_ERROR_SQLSTATE
SELECT snowflake_sequence(-9223372036854775808);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM snowflake_decode(-1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM snowflake_decode(-1, '2024-01-01+00');
\echo :LAST_ERROR_SQLSTATE

-- Node and sequence out of range.
SELECT snowflake_from_timestamp(now(), -1);
\echo :LAST_ERROR_SQLSTATE
SELECT snowflake_from_timestamp(now(), 1024);
\echo :LAST_ERROR_SQLSTATE
SELECT snowflake_from_timestamp(now(), 0, -1);
\echo :LAST_ERROR_SQLSTATE
SELECT snowflake_from_timestamp(now(), 0, 4096, '2024-01-01+00');
\echo :LAST_ERROR_SQLSTATE

-- Timestamps outside the 41-bit range from the epoch.
SELECT snowflake_from_timestamp('2023-12-31 23:59:59.999+00');
\echo :LAST_ERROR_SQLSTATE
SELECT snowflake_from_timestamp('2100-01-01+00');
\echo :LAST_ERROR_SQLSTATE
SELECT snowflake_from_timestamp('infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT snowflake_from_timestamp('-infinity', 0, 0, '2024-01-01+00');
\echo :LAST_ERROR_SQLSTATE
SELECT snowflake_from_timestamp('2024-01-01+00', 0, 0, '294276-12-31 23:59:59+00');
\echo :LAST_ERROR_SQLSTATE
-- The last representable millisecond is fine, the next one is not.
SELECT snowflake_from_timestamp('2093-09-06 15:47:35.551+00', 1023, 4095);
SELECT snowflake_from_timestamp('2093-09-06 15:47:35.552+00');
\echo :LAST_ERROR_SQLSTATE

-- An epoch that is not a finite time, or an ID whose time is out of range.
SELECT snowflake_timestamp(0, 'infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT snowflake_timestamp(9223372036854775807, '294276-01-01+00');
\echo :LAST_ERROR_SQLSTATE

-- Batch sizes outside 1..1000000.
SELECT count(*) FROM snowflake_nextval_batch(0);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM snowflake_nextval_batch(-5);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM snowflake_nextval_batch(1000001);
\echo :LAST_ERROR_SQLSTATE

-- NULL in, NULL out.
SELECT snowflake_timestamp(NULL) IS NULL AS a,
       snowflake_timestamp(NULL, '2024-01-01+00') IS NULL AS b,
       snowflake_timestamp(1, NULL) IS NULL AS c,
       snowflake_node(NULL) IS NULL AS d,
       snowflake_sequence(NULL) IS NULL AS e,
       snowflake_decode(NULL) IS NULL AS f,
       snowflake_decode(1, NULL) IS NULL AS g,
       snowflake_from_timestamp(NULL) IS NULL AS h,
       snowflake_from_timestamp(now(), NULL) IS NULL AS i,
       snowflake_from_timestamp(now(), 0, NULL) IS NULL AS j,
       snowflake_from_timestamp(now(), 0, 0, NULL) IS NULL AS k;
SELECT count(*) AS null_batch FROM snowflake_nextval_batch(NULL);

-- An error leaves the generator working.
SELECT snowflake_node(snowflake_nextval()) AS still_node_7;
