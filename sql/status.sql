--
-- snowflake_status(): one row, every column the README lists, readable by
-- everyone, and counters that follow what was issued.
--
SELECT node_id, node_source, state, lease_id, lease_expires_at,
       high_water IS NOT NULL AS has_high_water, last_error, node_migrations,
       etcd_errors, reservation_latency_ms >= 0 AS has_reservation_latency,
       etcd_latency_ms
FROM snowflake_status();

SELECT ids_generated AS before FROM snowflake_status() \gset
SELECT count(snowflake_nextval()) FROM generate_series(1, 100);
SELECT count(*) FROM snowflake_nextval_batch(5000);
SELECT ids_generated - :before AS issued_since FROM snowflake_status();

-- last_timestamp is the time of the last ID issued.
SELECT snowflake_nextval() AS last_id \gset
SELECT last_timestamp = snowflake_timestamp(:last_id) AS last_timestamp_matches
FROM snowflake_status();

-- The committed high-water mark covers every ID issued.
SELECT high_water >= last_timestamp AS mark_covers_ids FROM snowflake_status();

-- 5000 IDs in one batch fill at least one millisecond: counted.
SELECT sequence_exhaustions > 0 AS exhaustions_counted, clock_rollbacks
FROM snowflake_status();

-- Column names and types, in order.
SELECT name, type
FROM unnest((SELECT proargnames FROM pg_proc WHERE proname = 'snowflake_status'),
            (SELECT proallargtypes::regtype[] FROM pg_proc WHERE proname = 'snowflake_status'))
     AS c(name, type);

-- Readable by a role with no special rights.
CREATE ROLE snowflake_reader;
SET ROLE snowflake_reader;
SELECT state FROM snowflake_status();
SELECT snowflake_node(snowflake_nextval()) AS node;
-- The high-water table: readable by everyone, written by the worker only.
SELECT count(*) >= 0 AS can_read FROM snowflake_high_water;
INSERT INTO snowflake_high_water VALUES (1, now(), now());
RESET ROLE;
DROP ROLE snowflake_reader;
