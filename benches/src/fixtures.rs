//! What the benchmarks store: payloads of realistic sizes, populations of
//! live sessions, and a small deterministic random number generator.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use sessionkit::{SessionMap, SessionStore, StoreError, StoreKey};

/// The payload sizes every store operation is measured with, and their labels.
pub const PAYLOADS: [(&str, usize); 3] = [("100B", 100), ("4KiB", 4 * 1024), ("64KiB", 64 * 1024)];

/// The size of the sessions that fill a store (the population): a typical
/// small session.
pub const BACKGROUND_BYTES: usize = 100;

/// How long benchmark sessions live: long enough never to expire during a run.
pub const TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// A session map whose JSON is exactly `bytes` long (for `bytes` of 60 or
/// more): a few typical keys plus padding.
pub fn payload(bytes: usize) -> SessionMap {
    let base = json!({ "user": "ada", "visits": 42, "theme": "dark" });
    let base_len = base.to_string().len();
    let pad = bytes.saturating_sub(base_len + r#","pad":"""#.len());
    let mut map = match base {
        Value::Object(map) => map,
        _ => SessionMap::new(),
    };
    map.insert("pad".to_owned(), Value::String("x".repeat(pad)));
    map
}

/// The expiry benchmark sessions are written with.
pub fn expiry() -> Option<SystemTime> {
    Some(SystemTime::now() + TTL)
}

/// SplitMix64: a fast, seedable generator. Benchmarks need reproducible
/// streams of ids and choices, not secrecy.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose stream depends only on `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: usize) -> usize {
        // Multiply-shift: unbiased enough for choosing benchmark keys.
        ((u128::from(self.next_u64()) * bound as u128) >> 64) as usize
    }

    /// A session id from this stream. Benchmarks use these instead of
    /// a fresh id's [`StoreKey`]: a million ids without a million system calls.
    pub fn id(&mut self) -> StoreKey {
        let mut bytes = [0u8; 32];
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        StoreKey::from_bytes(bytes)
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// How many writes [`fill`] keeps in flight for a store that waits on I/O:
/// enough for a durable store to group hundreds of them into each commit.
const WAITING_FILL_WORKERS: usize = 256;

/// Writes `data` under every id in `ids` with `expires_at`. For a store
/// whose writes wait on I/O, many at a time, so that they share commits and
/// round trips; for the others, one after the other, which is fastest when
/// a write does not wait. Runs on the caller's runtime.
pub async fn fill(
    store: &Arc<dyn SessionStore>,
    waits: bool,
    ids: &[StoreKey],
    data: &SessionMap,
    expires_at: Option<SystemTime>,
) -> Result<(), StoreError> {
    if !waits {
        for id in ids {
            store.set(id, data, expires_at).await?;
        }
        return Ok(());
    }
    if ids.is_empty() {
        return Ok(());
    }
    let ids: Arc<[StoreKey]> = ids.into();
    let data = Arc::new(data.clone());
    let workers = WAITING_FILL_WORKERS.min(ids.len());
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let (store, ids, data) = (Arc::clone(store), Arc::clone(&ids), Arc::clone(&data));
        tasks.spawn(async move {
            for id in ids.iter().skip(worker).step_by(workers) {
                store.set(id, &data, expires_at).await?;
            }
            Ok::<_, StoreError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(result) => result?,
            Err(panicked) => std::panic::resume_unwind(panicked.into_panic()),
        }
    }
    Ok(())
}

/// Fills `store` with `count` live sessions of [`BACKGROUND_BYTES`] and
/// returns their ids, in random order.
pub async fn populate(
    store: &Arc<dyn SessionStore>,
    waits: bool,
    count: usize,
    rng: &mut Rng,
) -> Result<Vec<StoreKey>, StoreError> {
    let ids: Vec<StoreKey> = (0..count).map(|_| rng.id()).collect();
    fill(store, waits, &ids, &payload(BACKGROUND_BYTES), expiry()).await?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_requested_size() {
        for (_, bytes) in PAYLOADS {
            let len = serde_json::to_vec(&payload(bytes)).expect("json").len();
            assert_eq!(len, bytes, "payload({bytes}) is {len} bytes");
        }
    }

    #[test]
    fn the_generator_is_reproducible_and_in_range() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        assert_eq!(a.id(), b.id());
        assert!((0..10_000).all(|_| a.below(10) < 10));
        let mut items: Vec<u32> = (0..100).collect();
        a.shuffle(&mut items);
        items.sort_unstable();
        assert_eq!(items, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn fill_writes_every_id() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let store: Arc<dyn SessionStore> = Arc::new(sessionkit_stores::MemoryStore::new());
        for waits in [false, true] {
            let ids = runtime.block_on(populate(&store, waits, 1_000, &mut Rng::new(1))).expect("populate");
            for id in &ids {
                assert!(runtime.block_on(store.get(id)).expect("get").is_some());
            }
        }
    }
}
