--
-- snowflake_convert_column(): an existing bigint or bigserial column moves
-- to DEFAULT snowflake_nextval() in one step; bad input is refused with a
-- clear error and changes nothing.  The server is node 7.
--
\set SHOW_CONTEXT never

-- How a column's default and serial sequence look, for before/after checks.
CREATE FUNCTION column_state(t regclass, c name)
RETURNS TABLE (tbl regclass, col_default text, owned_sequence text)
LANGUAGE sql AS $$
  SELECT a.attrelid::regclass, pg_get_expr(d.adbin, d.adrelid),
         pg_get_serial_sequence(a.attrelid::regclass::text, a.attname)
  FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE a.attrelid = t AND a.attname = c
$$;
-- SQLSTATE, message and hint of a call, which then changed nothing.
CREATE FUNCTION try_convert(t regclass, c name) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE msg text; hint text;
BEGIN
  PERFORM snowflake_convert_column(t, c);
  RETURN 'converted';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
  RETURN SQLSTATE || ': ' || msg || coalesce(E'\nHINT: ' || nullif(hint, ''), '');
END $$;

-- A bigserial column with rows: converted, the sequence kept but detached.
CREATE TABLE orders (id bigserial PRIMARY KEY, item text);
INSERT INTO orders (item) VALUES ('old 1'), ('old 2');
SELECT * FROM column_state('orders', 'id');
SELECT snowflake_convert_column('orders', 'id');
SELECT * FROM column_state('orders', 'id');
SELECT count(*) AS sequence_kept FROM pg_class WHERE relname = 'orders_id_seq';
INSERT INTO orders (item) VALUES ('new 1'), ('new 2');
SELECT item, id > 1000000 AS snowflake_id, snowflake_node(id) FROM orders ORDER BY id;
-- Converting again is harmless.
SELECT snowflake_convert_column('orders', 'id');
SELECT * FROM column_state('orders', 'id');

-- The owner need not be a superuser.
CREATE ROLE regress_convert_owner;
CREATE TABLE owned (id bigserial PRIMARY KEY);
ALTER TABLE owned OWNER TO regress_convert_owner;
SET ROLE regress_convert_owner;
SELECT snowflake_convert_column('owned', 'id');
INSERT INTO owned DEFAULT VALUES;
SELECT snowflake_node(id) FROM owned;
RESET ROLE;

-- A plain bigint column holding IDs of another node made earlier: allowed.
CREATE TABLE merged (id bigint PRIMARY KEY);
INSERT INTO merged VALUES (snowflake_from_timestamp(now() - interval '1 hour', 900, 5));
SELECT snowflake_convert_column('merged', 'id');
INSERT INTO merged DEFAULT VALUES;
SELECT snowflake_node(id) FROM merged ORDER BY id;

-- A partitioned table whose key is referenced by a foreign key: the parent
-- and every partition get the new default; the referencing table needs no
-- change.
CREATE TABLE events (id bigserial, region int NOT NULL, PRIMARY KEY (id))
  PARTITION BY HASH (id);
CREATE TABLE events_0 PARTITION OF events FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE events_1 PARTITION OF events FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE event_notes (event_id bigint REFERENCES events (id), note text);
INSERT INTO events (region) SELECT g FROM generate_series(1, 4) g;
INSERT INTO event_notes SELECT id, 'old' FROM events;
SELECT snowflake_convert_column('events', 'id');
SELECT tbl, col_default, owned_sequence FROM column_state('events', 'id')
UNION ALL SELECT * FROM column_state('events_0', 'id')
UNION ALL SELECT * FROM column_state('events_1', 'id');
INSERT INTO events (region) VALUES (10), (11), (12), (13);
INSERT INTO event_notes SELECT id, 'new' FROM events WHERE region >= 10;
SELECT count(*) AS rows, count(*) FILTER (WHERE snowflake_node(id) = 7 AND id > 1000000) AS snowflake_ids
FROM events;
SELECT n.note, count(*) FROM event_notes n JOIN events e ON e.id = n.event_id GROUP BY 1 ORDER BY 1;
-- The foreign key still holds.
INSERT INTO event_notes VALUES (12345, 'dangling');

-- Bad input: a clear error, and nothing changes.
CREATE TABLE bad (id bigserial PRIMARY KEY, name text, small int,
  ident bigint GENERATED ALWAYS AS IDENTITY, gen bigint GENERATED ALWAYS AS (id * 2) STORED);
SELECT snowflake_convert_column('bad', 'name');
SELECT try_convert('bad', 'name');
SELECT try_convert('bad', 'small');
SELECT try_convert('bad', 'nosuch');
SELECT try_convert('bad', 'ident');
SELECT try_convert('bad', 'gen');
SELECT snowflake_convert_column('nosuch', 'id');
CREATE VIEW bad_view AS SELECT id FROM bad;
SELECT try_convert('bad_view', 'id');
-- Values at or above the ID of now: refused, naming the largest.
INSERT INTO bad (id) VALUES (1), (4000000000000000000), (snowflake_from_timestamp(now() + interval '1 day', 0, 0));
SELECT try_convert('bad', 'id');
-- A value a second ahead of now (a sequence set high) is refused too.
DELETE FROM bad WHERE id > 1;
SELECT setval('bad_id_seq', snowflake_from_timestamp(now() + interval '1 second', 0, 0)) > 0 AS set_high;
INSERT INTO bad DEFAULT VALUES;
SELECT try_convert('bad', 'id') ~ '^55000: column "id" of table public.bad holds values up to \d+, at or above the snowflake ID of now' AS refused;
-- A table the caller does not own.
DELETE FROM bad WHERE id > 1;
CREATE ROLE regress_convert_other;
GRANT SELECT ON bad TO regress_convert_other;
SET ROLE regress_convert_other;
SELECT try_convert('bad', 'id');
RESET ROLE;
-- None of these changed anything.
SELECT * FROM column_state('bad', 'id');
SELECT * FROM column_state('bad', 'ident');
SELECT count(*) AS rows FROM bad;
-- NULL in, nothing done.
SELECT snowflake_convert_column(NULL, 'id') IS NULL AS null_in;

-- A hostile search_path is ignored: the default is the extension's own.
CREATE SCHEMA evil;
CREATE FUNCTION evil.snowflake_nextval() RETURNS bigint LANGUAGE sql AS 'SELECT 42::bigint';
CREATE TABLE hostile (id bigint);
SET search_path = evil, public;
SELECT snowflake_convert_column('hostile', 'id');
INSERT INTO hostile DEFAULT VALUES;
RESET search_path;
SELECT id <> 42 AS real_id, col_default FROM hostile, column_state('hostile', 'id');

-- Row-level security: the collision check must see every row.  A value ten
-- years ahead for this node, hidden by a policy from the owner under FORCE
-- ROW LEVEL SECURITY, would escape the check: refused, and nothing changes.
CREATE TABLE secret (id bigserial PRIMARY KEY, visible boolean NOT NULL DEFAULT true);
INSERT INTO secret (visible) VALUES (true);
INSERT INTO secret VALUES (snowflake_from_timestamp(now() + interval '10 years', 7, 0), false);
SELECT max(id) AS hidden FROM secret \gset
CREATE POLICY only_visible ON secret USING (visible);
ALTER TABLE secret ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE secret OWNER TO regress_convert_owner;
SET ROLE regress_convert_owner;
SELECT count(*) AS rows_the_owner_sees FROM secret;
SELECT try_convert('secret', 'id');
RESET ROLE;
SELECT * FROM column_state('secret', 'id');
-- A superuser bypasses the policy: the normal check sees the hidden value.
SELECT try_convert('secret', 'id') LIKE
  '55000: column "id" of table public.secret holds values up to ' || :hidden || ',%' AS refused_naming_hidden;
-- Without FORCE the owner bypasses the policy too: the same.
ALTER TABLE secret NO FORCE ROW LEVEL SECURITY;
SET ROLE regress_convert_owner;
SELECT count(*) AS rows_the_owner_sees FROM secret;
SELECT try_convert('secret', 'id') LIKE
  '55000: column "id" of table public.secret holds values up to ' || :hidden || ',%' AS refused_naming_hidden;
RESET ROLE;
SELECT * FROM column_state('secret', 'id');
-- Once the value is gone, the table converts with its policy in place.
DELETE FROM secret WHERE NOT visible;
SET ROLE regress_convert_owner;
SELECT snowflake_convert_column('secret', 'id');
RESET ROLE;
SELECT * FROM column_state('secret', 'id');

-- A partition's own policy: read through the parent it filters nothing, so
-- the parent's check sees the far value; the partition itself is refused.
CREATE TABLE parted (id bigint NOT NULL, visible boolean NOT NULL) PARTITION BY RANGE (id);
CREATE TABLE parted_low PARTITION OF parted FOR VALUES FROM (MINVALUE) TO (1000000);
CREATE TABLE parted_high PARTITION OF parted FOR VALUES FROM (1000000) TO (MAXVALUE);
INSERT INTO parted VALUES (1, true), (:hidden, false);
CREATE POLICY only_visible ON parted_high USING (visible);
ALTER TABLE parted_high ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE parted OWNER TO regress_convert_owner;
ALTER TABLE parted_low OWNER TO regress_convert_owner;
ALTER TABLE parted_high OWNER TO regress_convert_owner;
SET ROLE regress_convert_owner;
SELECT (SELECT count(*) FROM parted) AS through_parent, (SELECT count(*) FROM parted_high) AS in_partition;
SELECT try_convert('parted', 'id') LIKE
  '55000: column "id" of table public.parted holds values up to ' || :hidden || ',%' AS refused_naming_hidden;
SELECT try_convert('parted_high', 'id');
RESET ROLE;
SELECT * FROM column_state('parted', 'id')
UNION ALL SELECT * FROM column_state('parted_low', 'id')
UNION ALL SELECT * FROM column_state('parted_high', 'id');

-- The referencing side of a foreign key is refused: new rows would get IDs
-- that reference nothing.  The referenced key converts, and the foreign
-- key keeps working with the new IDs.
CREATE TABLE customers (id bigserial PRIMARY KEY, name text);
CREATE TABLE invoices (id bigserial PRIMARY KEY, customer_id bigint REFERENCES customers);
-- A one-to-one table whose key is a serial by mistake, and a child table
-- with a foreign key of its own, which the default would reach too.
CREATE TABLE customer_profiles (customer_id bigserial PRIMARY KEY REFERENCES customers (id));
CREATE TABLE ledger (id bigserial PRIMARY KEY, customer_id bigint);
CREATE TABLE ledger_archive () INHERITS (ledger);
ALTER TABLE ledger_archive ADD CONSTRAINT ledger_archive_customer
  FOREIGN KEY (customer_id) REFERENCES customers;
INSERT INTO customers (name) VALUES ('ann'), ('bob');
INSERT INTO invoices (customer_id) VALUES (1), (2);
INSERT INTO customer_profiles VALUES (1), (2);
SELECT try_convert('invoices', 'customer_id');
SELECT try_convert('customer_profiles', 'customer_id');
SELECT try_convert('ledger', 'customer_id');
SELECT * FROM column_state('invoices', 'customer_id')
UNION ALL SELECT * FROM column_state('customer_profiles', 'customer_id')
UNION ALL SELECT * FROM column_state('ledger', 'customer_id')
UNION ALL SELECT * FROM column_state('ledger_archive', 'customer_id');
SELECT snowflake_convert_column('customers', 'id');
SELECT * FROM column_state('customers', 'id');
INSERT INTO customers (name) VALUES ('cyd');
INSERT INTO invoices (customer_id) SELECT id FROM customers WHERE name = 'cyd';
SELECT c.name, snowflake_node(c.id) = 7 AND c.id > 1000000 AS snowflake_id, count(i.id) AS invoices
FROM customers c LEFT JOIN invoices i ON i.customer_id = c.id GROUP BY 1, 2 ORDER BY 1;

DROP SCHEMA evil CASCADE;
DROP VIEW bad_view;
DROP TABLE orders, merged, event_notes, events, bad, hostile;
DROP SEQUENCE orders_id_seq, events_id_seq;
DROP TABLE owned, secret, parted, customer_profiles, invoices, customers, ledger_archive, ledger;
DROP SEQUENCE owned_id_seq, secret_id_seq, customers_id_seq;
DROP ROLE regress_convert_other, regress_convert_owner;
DROP FUNCTION column_state(regclass, name), try_convert(regclass, name);
