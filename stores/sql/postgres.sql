-- The sessions table of sessionkit's PostgresStore.
--
-- The store runs this file itself, in one transaction, when the table is
-- missing (unless `create_table(false)` is set). Teams that run migrations
-- themselves apply the text `PostgresStore::schema_sql("your_table")`
-- returns: this file with the two names in braces replaced by the quoted
-- table name (schema-qualified if you gave a schema, which must exist) and
-- the quoted name of its expiry index.

CREATE TABLE IF NOT EXISTS {table} (
    -- The store key, 43 characters of URL-safe base64. Collation "C":
    -- bytewise comparison and order, the same on every server whatever its
    -- locale, and the cheapest to index.
    id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    -- The session data: a JSON object, as the UTF-8 bytes the store wrote.
    -- Not JSONB: JSONB refuses strings holding U+0000, which session data
    -- may contain. Read it with convert_from(data, 'UTF8').
    data       BYTEA NOT NULL,
    -- The expiry in Unix milliseconds; NULL never expires.
    expires_at BIGINT
);

-- For sweeps: delete_expired finds expired rows through this index
-- instead of scanning the table.
CREATE INDEX IF NOT EXISTS {index} ON {table} (expires_at);
