--
-- The high-water marks live in the extension's table in snowflake.database
-- (postgres): until the extension exists there, the server issues nothing.
-- The tests run in another database, as most users' applications do.
--
\c postgres
CREATE EXTENSION snowflake;
SELECT extversion FROM pg_extension WHERE extname = 'snowflake';
\c contrib_regression
