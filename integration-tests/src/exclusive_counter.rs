//! A read-modify-write that only an exclusive lease makes safe, for tests
//! that prove leases exclude (across processes, too): read a counter, then
//! write its successor with a plain `set`, fenced by the lease. Without
//! exclusion, two holders read the same value and one increment is lost.

use std::time::{Duration, Instant};

use serde_json::json;
use sessionkit::lease::Lease;
use sessionkit::{Changes, SessionStore, StoreKey, UpdateOutcome};

/// How long one increment waits for the lease before giving up.
const PATIENCE: Duration = Duration::from_secs(60);

/// Waits for the lease on `id`, reads `"n"`, writes `n + 1`, releases.
pub async fn increment(store: &dyn SessionStore, id: &StoreKey) -> Result<(), String> {
    let lease = wait_for_lease(store, id).await?;
    let record = store.get(id).await.map_err(|err| err.to_string())?.ok_or("the session is missing")?;
    let n = record.data.get("n").and_then(serde_json::Value::as_u64).ok_or("the session has no counter")?;
    let mut changes = Changes::new();
    changes.set("n", json!(n + 1));
    changes.fence(lease.token);
    match store.update(id, &changes, None).await.map_err(|err| err.to_string())? {
        UpdateOutcome::Applied => {}
        UpdateOutcome::Missing => return Err("the session went missing".into()),
    }
    store.release_lease(id, lease.token).await.map_err(|err| err.to_string())
}

async fn wait_for_lease(store: &dyn SessionStore, id: &StoreKey) -> Result<Lease, String> {
    let started = Instant::now();
    loop {
        if let Some(lease) = store.try_lease(id, Duration::from_secs(30)).await.map_err(|err| err.to_string())? {
            return Ok(lease);
        }
        if started.elapsed() > PATIENCE {
            return Err("waited too long for the lease".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
