-- Upgrades a sessions table made by the first version of sessionkit's
-- PostgresStore (id, data, expires_at) to the layout of postgres.sql: a
-- user_id column with its index, filled from the sessions' data, and the
-- leases table.
--
-- With `create_table(true)` (the default) the store runs these steps
-- itself when it opens such a table, under the advisory lock that keeps
-- app servers starting at once from migrating together, and fills the
-- column in Rust, in short batches, instead of with the DO block below.
-- With `create_table(false)` it refuses to open the table until this has
-- run: apply the text `PostgresStore::upgrade_sql("your_table")` returns
-- (this file with the names in braces replaced by quoted names), for
-- example with `psql -f`. Running it again changes nothing.
--
-- Upgrade every app server: a session written after this ran by a server
-- still on the previous version is listed under its user only once an
-- upgraded server writes it again.

-- sessionkit: schema
-- Instant on PostgreSQL 11 and later: a column without a default rewrites
-- nothing.
ALTER TABLE {table} ADD COLUMN IF NOT EXISTS user_id TEXT COLLATE "C";

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

-- sessionkit: backfill
-- Fills user_id from the "__sessionkit.user" string at the top of each
-- session's JSON data. JSONB refuses the escape \u0000 anywhere in a
-- document, and session data may hold it, so a session that fails to
-- parse is parsed again with every \u0000 read as \u0001 (same length, still
-- valid JSON); a user name that could have changed in that reading is left
-- out, with a warning. Rows that are not UTF-8 JSON read as absent in the
-- store and are skipped. One transaction: the rows it fills stay locked
-- until it ends.
DO $backfill$
DECLARE
    session    RECORD;
    text_data  TEXT;
    found      JSONB;
BEGIN
    FOR session IN
        SELECT id, data FROM {table}
        WHERE user_id IS NULL AND position('"__sessionkit.user"'::bytea IN data) > 0
        FOR UPDATE
    LOOP
        BEGIN
            text_data := convert_from(session.data, 'UTF8');
        EXCEPTION WHEN OTHERS THEN
            CONTINUE;
        END;
        BEGIN
            found := text_data::jsonb -> '__sessionkit.user';
        EXCEPTION WHEN OTHERS THEN
            BEGIN
                found := replace(text_data, E'\\u0000', E'\\u0001')::jsonb -> '__sessionkit.user';
                IF jsonb_typeof(found) = 'string'
                   AND (position(chr(1) IN found #>> '{}') > 0 OR position(E'\\u0001' IN found #>> '{}') > 0) THEN
                    RAISE WARNING 'sessionkit: the user of session %... may hold U+0000; it is left out of the user index',
                        left(session.id, 8);
                    found := NULL;
                END IF;
            EXCEPTION WHEN OTHERS THEN
                found := NULL;
            END;
        END;
        IF jsonb_typeof(found) = 'string' THEN
            UPDATE {table} SET user_id = found #>> '{}' WHERE id = session.id;
        END IF;
    END LOOP;
END
$backfill$;

-- sessionkit: index
-- Last: the store takes this index as the sign that the upgrade finished.
CREATE INDEX IF NOT EXISTS {user_index} ON {table} (user_id) WHERE user_id IS NOT NULL;
