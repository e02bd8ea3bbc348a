//! Entry points for the fuzz targets in `fuzz/`: each store's decoding of
//! what it reads back from its engine, fed arbitrary bytes. Compiled only
//! with `--cfg fuzzing`, which `cargo fuzz` sets; not part of the API.

/// A session file's bytes, as [`FileStore`](crate::FileStore) reads them.
#[cfg(feature = "file")]
pub fn file_record(bytes: &[u8]) {
    crate::file::fuzz_read(bytes);
}

/// A stored value, as [`RedbStore`](crate::RedbStore) reads it.
#[cfg(feature = "redb")]
pub fn redb_record(bytes: &[u8]) {
    crate::redb::fuzz_read(bytes);
}

/// A row's `data` and `expires_at` columns, as
/// [`SqliteStore`](crate::SqliteStore) reads them. The first byte of each
/// input picks the SQLite type of the column.
#[cfg(feature = "sqlite")]
pub fn sqlite_row(data_type: u8, data: &[u8], expires_type: u8, expires: &[u8]) {
    use rusqlite::types::ValueRef;
    fn column(kind: u8, bytes: &[u8]) -> ValueRef<'_> {
        let number = bytes.iter().fold(0u64, |n, &b| n.rotate_left(8) ^ u64::from(b));
        match kind % 5 {
            0 => ValueRef::Null,
            1 => ValueRef::Integer(number as i64),
            2 => ValueRef::Real(f64::from_bits(number)),
            3 => ValueRef::Text(bytes),
            _ => ValueRef::Blob(bytes),
        }
    }
    crate::sqlite::fuzz_read(column(data_type, data), column(expires_type, expires));
}

/// A reply to the `get` script, as [`RedisStore`](crate::RedisStore) reads
/// it, built from `bytes` by a small interpreter (nesting bounded by 8).
#[cfg(feature = "redis")]
pub fn redis_reply(bytes: &[u8]) {
    use ::redis::Value;
    fn build(input: &mut &[u8], depth: usize) -> Value {
        let Some((&tag, rest)) = input.split_first() else { return Value::Nil };
        *input = rest;
        let take = |input: &mut &[u8]| {
            let len = input.first().map_or(0, |&n| usize::from(n)).min(input.len().saturating_sub(1));
            let bytes = input.get(1..1 + len).unwrap_or_default().to_vec();
            *input = input.get(1 + len..).unwrap_or_default();
            bytes
        };
        match tag % 6 {
            0 => Value::Nil,
            1 => Value::Boolean(tag & 0x80 != 0),
            2 => {
                let bytes = take(input);
                Value::Int(bytes.iter().fold(0i64, |n, &b| n.rotate_left(8) ^ i64::from(b)))
            }
            3 => Value::BulkString(take(input)),
            4 if depth < 8 => {
                let len = usize::from(tag >> 3);
                Value::Array((0..len).map(|_| build(input, depth + 1)).collect())
            }
            _ => Value::SimpleString(String::from_utf8_lossy(&take(input)).into_owned()),
        }
    }
    let mut input = bytes;
    crate::redis::fuzz_read(build(&mut input, 0));
}
