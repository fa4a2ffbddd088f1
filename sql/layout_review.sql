--
-- Edges of snowflake.layout found in review: time fields wider than
-- timestamps can show, and the messages of two broken layouts.
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
