--
-- The bit layout: composing and decoding with an explicit epoch gives exact,
-- reproducible results, and every valid ID round-trips.
--
CREATE EXTENSION snowflake;
SET TimeZone = 'UTC';
SET DateStyle = 'ISO';

-- The smallest ID at the epoch is 0; each part lands in its own bits.
SELECT snowflake_from_timestamp('2024-01-01 00:00:00+00', 0, 0, '2024-01-01 00:00:00+00') AS zero,
       snowflake_from_timestamp('2024-01-01 00:00:00.001+00', 0, 0, '2024-01-01 00:00:00+00') AS one_ms,
       snowflake_from_timestamp('2024-01-01 00:00:00+00', 1, 0, '2024-01-01 00:00:00+00') AS node_one,
       snowflake_from_timestamp('2024-01-01 00:00:00+00', 0, 1, '2024-01-01 00:00:00+00') AS seq_one;

-- Sub-millisecond parts of the timestamp are dropped, not rounded.
SELECT snowflake_from_timestamp('2024-01-01 00:00:00.0019+00', 0, 0, '2024-01-01 00:00:00+00');

-- The largest parts: the last millisecond, node 1023, sequence 4095 is the
-- largest bigint.
SELECT snowflake_from_timestamp(snowflake_timestamp(9223372036854775807, '2024-01-01+00'),
                                1023, 4095, '2024-01-01+00') = 9223372036854775807 AS max_id;
SELECT * FROM snowflake_decode(9223372036854775807, '2024-01-01+00');
SELECT * FROM snowflake_decode(0, '2024-01-01+00');
SELECT snowflake_node(9223372036854775807), snowflake_sequence(9223372036854775807),
       snowflake_node(4194303), snowflake_sequence(4194303), snowflake_node(4096);

-- A known ID decodes to known parts.
SELECT * FROM snowflake_decode(384556825820819456, '2024-01-01+00');
SELECT snowflake_timestamp(384556825820819456, '2024-01-01+00');

-- The same ID read with another epoch is shifted by exactly the difference.
SELECT snowflake_timestamp(384556825820819456, '2020-01-01+00')
     - snowflake_timestamp(384556825820819456, '2024-01-01+00') AS shift;

-- Round trip over IDs spread across the whole positive range, including the
-- extremes of every part.
SELECT count(*) AS ids_checked,
       count(*) FILTER (WHERE snowflake_from_timestamp(snowflake_timestamp(x, '2024-01-01+00'),
                                                       snowflake_node(x), snowflake_sequence(x),
                                                       '2024-01-01+00') <> x) AS mismatches,
       count(*) FILTER (WHERE (d).ts <> snowflake_timestamp(x, '2024-01-01+00')
                          OR (d).node <> snowflake_node(x)
                          OR (d).seq <> snowflake_sequence(x)) AS decode_mismatches
FROM (SELECT x, snowflake_decode(x, '2024-01-01+00') AS d
      FROM (SELECT (g::numeric * 92233720368547 % 9223372036854775808)::bigint AS x
            FROM generate_series(0, 100000) g
            UNION ALL
            VALUES (0::bigint), (1), (4095), (4096), (4194303), (4194304),
                   (9223372036854775807), (9223372036854775807 - 4095)) ids) s;

-- With the server's default epoch the STABLE forms agree with the explicit ones.
SELECT current_setting('snowflake.epoch') AS epoch;
SELECT snowflake_timestamp(384556825820819456) = snowflake_timestamp(384556825820819456, '2024-01-01+00') AS same_ts,
       snowflake_from_timestamp('2026-11-27 04:11:31.996+00', 7, 0) = 384556825820819456 AS same_id,
       snowflake_decode(384556825820819456) = snowflake_decode(384556825820819456, '2024-01-01+00') AS same_decode;

-- With defaults, from_timestamp is the smallest ID at that time: a range scan
-- by time.
CREATE TABLE events (id bigint PRIMARY KEY);
INSERT INTO events
SELECT snowflake_from_timestamp('2025-06-01+00'::timestamptz + g * interval '1 hour', g % 1024, g % 4096)
FROM generate_series(0, 47) g;
SELECT count(*) AS rows_on_june_1 FROM events
WHERE id >= snowflake_from_timestamp('2025-06-01+00')
  AND id < snowflake_from_timestamp('2025-06-02+00');
DROP TABLE events;
