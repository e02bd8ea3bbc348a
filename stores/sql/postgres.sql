-- The tables of sessionkit's PostgresStore: the sessions, and the exclusive
-- leases on them.
--
-- The store runs this file itself, in one transaction, when the sessions
-- table is missing (unless `create_table(false)` is set). Teams that run
-- migrations themselves apply the text `PostgresStore::schema_sql("your_table")`
-- returns: this file with the names in braces replaced by quoted names
-- (the tables schema-qualified if you gave a schema, which must exist).
-- A table made by an earlier version of the store is upgraded by
-- postgres_upgrade_2.sql (`PostgresStore::upgrade_sql`).

CREATE TABLE IF NOT EXISTS {table} (
    -- The store key, 43 characters of URL-safe base64. Collation "C":
    -- bytewise comparison and order, the same on every server whatever its
    -- locale, and the cheapest to index. Scans page through it in order.
    id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    -- The session data: a JSON object, as the UTF-8 bytes the store wrote.
    -- Not JSONB: JSONB refuses strings holding U+0000, which session data
    -- may contain. Read it with convert_from(data, 'UTF8').
    data       BYTEA NOT NULL,
    -- The expiry in Unix milliseconds; NULL never expires.
    expires_at BIGINT,
    -- The user the session belongs to: the string under
    -- "__sessionkit.user" in its data, written by every write from the
    -- data it writes; NULL for a session without a user.
    user_id    TEXT COLLATE "C"
);

-- For sweeps: delete_expired finds expired rows through this index
-- instead of scanning the table.
CREATE INDEX IF NOT EXISTS {index} ON {table} (expires_at);

-- For listing and revoking a user's sessions. Partial: sessions without a
-- user (most of them, usually) cost the index nothing.
CREATE INDEX IF NOT EXISTS {user_index} ON {table} (user_id) WHERE user_id IS NOT NULL;

-- Exclusive leases, one row per session key that someone holds or held:
-- at most one live lease per key. A lease is live until expires_at (Unix
-- ms, compared with the app servers' clocks). Rows outlive their sessions
-- and are swept by delete_expired once they ran out.
CREATE TABLE IF NOT EXISTS {leases} (
    id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    -- The grant's token, 32 hexadecimal digits.
    token      TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS {leases_index} ON {leases} (expires_at);
