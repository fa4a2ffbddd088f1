--
-- Layouts other than the server's: presets and custom layouts through the
-- IMMUTABLE functions that take the epoch and the layout, compose/decode
-- round trips at the edges of each field, and the rules a layout must meet.
--
SET TimeZone = 'UTC';
SET DateStyle = 'ISO';
SET IntervalStyle = 'postgres_verbose';

-- What each preset means (the README's table of presets says the same).
SELECT l.name, l.fields, l.unit, l.epoch, l.ids_per_unit, l.node_ids, l.covers_until
FROM unnest(ARRAY['snowflake', 'twitter', 'instagram', 'sonyflake']) AS p,
     snowflake_layout(p) AS l;

-- The server's own layout is the default.
SELECT name, fields, epoch FROM snowflake_layout();

-- Custom layouts: any case and spacing, given in their canonical form.
SELECT fields, time_bits, node_bits, sequence_bits, zero_bits, unit, ids_per_unit, node_ids, covers_until
FROM snowflake_layout(' Time 41 ,NODE 5, sequence 12 , zero 6 ');
SELECT fields, unit, ids_per_unit, node_ids, covers_until
FROM snowflake_layout('time 32, node 11, sequence 20, unit 1s');
SELECT fields, covers_until FROM snowflake_layout('time 41, node 8, sequence 14');
SELECT fields, covers_until FROM snowflake_layout('time 39, sequence 8, node 16, unit 10ms, zero 0');

-- Each field lands in its own bits.  Sonyflake puts the sequence above the
-- node, zero bits stay zero.
SELECT snowflake_from_timestamp('2014-09-01 00:00:00.01+00', 0, 0, '2014-09-01+00', 'sonyflake') AS one_unit,
       snowflake_from_timestamp('2014-09-01+00', 1, 0, '2014-09-01+00', 'sonyflake') AS node_one,
       snowflake_from_timestamp('2014-09-01+00', 0, 1, '2014-09-01+00', 'sonyflake') AS seq_one;
SELECT snowflake_from_timestamp('2011-08-24 21:07:01.722+00', 0, 0, '2011-08-24 21:07:01.721+00', 'instagram') AS one_ms,
       snowflake_from_timestamp('2011-08-24 21:07:01.721+00', 1, 0, '2011-08-24 21:07:01.721+00', 'instagram') AS node_one,
       snowflake_from_timestamp('2011-08-24 21:07:01.721+00', 0, 1, '2011-08-24 21:07:01.721+00', 'instagram') AS seq_one;
SELECT snowflake_from_timestamp('2024-01-01 00:00:00.001+00', 1, 1, '2024-01-01+00',
                                'time 41, node 5, sequence 12, zero 6') AS zero_bits;

-- A unit coarser than the timestamp drops what is below it, never rounds.
SELECT snowflake_timestamp(snowflake_from_timestamp('2020-05-05 12:00:00.019+00', 0, 0,
       '2014-09-01+00', 'sonyflake'), '2014-09-01+00', 'sonyflake');
SELECT snowflake_timestamp(snowflake_from_timestamp('2030-05-05 12:00:59.999+00', 0, 0,
       '2024-01-01+00', 'time 32, node 11, sequence 20, unit 1s'), '2024-01-01+00',
       'time 32, node 11, sequence 20, unit 1s');

-- The largest fields at the last unit round-trip, and stay positive; with
-- 64 bits of fields (instagram) that is the largest bigint.
SELECT l.name,
       snowflake_decode(snowflake_from_timestamp(l.covers_until, l.node_ids - 1, l.ids_per_unit - 1,
                                                 l.epoch, l.name), l.epoch, l.name) AS decoded,
       snowflake_from_timestamp(l.covers_until, l.node_ids - 1, l.ids_per_unit - 1, l.epoch, l.name) AS id
FROM unnest(ARRAY['snowflake', 'twitter', 'instagram', 'sonyflake']) AS p,
     snowflake_layout(p) AS l;
SELECT * FROM snowflake_decode(0, '2014-09-01+00', 'sonyflake');

-- Every field of many IDs round-trips, in each layout.
SELECT l.name, count(*) AS ids,
       count(*) FILTER (WHERE (snowflake_decode(id, l.epoch, l.name)).ts = ts
                          AND snowflake_node(id, l.name) = node
                          AND snowflake_sequence(id, l.name) = seq) AS round_trips
FROM unnest(ARRAY['snowflake', 'instagram', 'sonyflake', 'time 41, node 5, sequence 12, zero 6, unit 1ms',
                  'time 32, sequence 20, node 11, unit 1s']) AS p,
     snowflake_layout(p) AS l,
     LATERAL (SELECT l.epoch + i * interval '1 day 1 second' AS ts,
                     (i * 7919) % l.node_ids AS node, (i * 104729) % l.ids_per_unit AS seq
              FROM generate_series(0, 3000) AS i) AS f,
     LATERAL (SELECT snowflake_from_timestamp(ts, node, seq, l.epoch, l.name) AS id) AS g
GROUP BY l.name ORDER BY l.name;

-- IDs sort by time first, then (in Sonyflake's order) by sequence, then node.
SELECT snowflake_from_timestamp('2020-01-01+00', 65535, 0, '2014-09-01+00', 'sonyflake')
     < snowflake_from_timestamp('2020-01-01+00', 0, 1, '2014-09-01+00', 'sonyflake') AS seq_above_node,
       snowflake_from_timestamp('2020-01-01+00', 65535, 255, '2014-09-01+00', 'sonyflake')
     < snowflake_from_timestamp('2020-01-01 00:00:00.01+00', 0, 0, '2014-09-01+00', 'sonyflake') AS time_above_all;

-- Out of range for the layout: fields, times, and IDs beyond its bits.
SELECT snowflake_from_timestamp('2020-01-01+00', 8192, 0, '2011-08-24 21:07:01.721+00', 'instagram');
\echo :LAST_ERROR_SQLSTATE
SELECT snowflake_from_timestamp('2020-01-01+00', 0, 256, '2014-09-01+00', 'sonyflake');
\echo :LAST_ERROR_SQLSTATE
SELECT snowflake_from_timestamp('2046-07-01+00', 0, 0, '2011-08-24 21:07:01.721+00', 'instagram');
\echo :LAST_ERROR_SQLSTATE
SELECT snowflake_decode(4611686018427387904, '2024-01-01+00', 'time 38, node 10, sequence 12, unit 10ms');
\echo :LAST_ERROR_SQLSTATE
SELECT snowflake_node(-1, 'sonyflake');
\echo :LAST_ERROR_SQLSTATE

-- NULL in, NULL out.
SELECT snowflake_node(NULL, 'sonyflake') IS NULL AS a, snowflake_node(1, NULL) IS NULL AS b,
       snowflake_timestamp(1, '2024-01-01+00', NULL) IS NULL AS c;

-- The rules, each named when broken (SQLSTATE 22023).
SELECT * FROM snowflake_layout('time 35, node 10, sequence 12');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM snowflake_layout('time 41, node 17, sequence 5');
SELECT * FROM snowflake_layout('time 41, node 0, sequence 22');
SELECT * FROM snowflake_layout('time 30, node 10, sequence 23, unit 1s');
SELECT * FROM snowflake_layout('time 43, node 10, sequence 12');
-- 64 bits of fields are allowed: the top time bit is the sign, always 0.
SELECT fields, covers_until FROM snowflake_layout('time 42, node 10, sequence 12');
SELECT * FROM snowflake_layout('node 10, time 41, sequence 12');
SELECT * FROM snowflake_layout('time 41, zero 2, node 10, sequence 10');
SELECT * FROM snowflake_layout('time 41, node 10, sequence 12, unit 2ms');
SELECT * FROM snowflake_layout('time 41, node 10, node 12');
SELECT * FROM snowflake_layout('time 41, node 10');
SELECT * FROM snowflake_layout('time 41, machine 10, sequence 12');
SELECT * FROM snowflake_layout('time 41, node ten, sequence 12');
SELECT * FROM snowflake_layout('time 41, node 10, sequence 12,');
SELECT * FROM snowflake_layout('');
SELECT * FROM snowflake_layout('discord');
SELECT snowflake_timestamp(1, '2024-01-01+00', 'time 41 node 10 sequence 12');
\echo :LAST_ERROR_SQLSTATE

-- The IMMUTABLE forms serve in index expressions and partition bounds.
CREATE TABLE sf (id bigint);
CREATE INDEX sf_ts ON sf (snowflake_timestamp(id, '2014-09-01+00', 'sonyflake'));
CREATE INDEX sf_node ON sf (snowflake_node(id, 'sonyflake'));
CREATE TABLE sfp (id bigint) PARTITION BY RANGE (id);
CREATE TABLE sfp_2025 PARTITION OF sfp
  FOR VALUES FROM (snowflake_from_timestamp('2025-01-01+00', 0, 0, '2014-09-01+00', 'sonyflake'))
             TO (snowflake_from_timestamp('2026-01-01+00', 0, 0, '2014-09-01+00', 'sonyflake'));
INSERT INTO sfp VALUES (snowflake_from_timestamp('2025-07-01+00', 65000, 200, '2014-09-01+00', 'sonyflake'));
SELECT tableoid::regclass, snowflake_node(id, 'sonyflake'), snowflake_sequence(id, 'sonyflake') FROM sfp;
DROP TABLE sf, sfp;
