//! The lock holder of the killed-holder test: opens a `RedisStore`, takes
//! the exclusive lease of one session, prints `HELD`, and holds it until it
//! is killed (the test sends SIGKILL: a crash, so nothing releases the
//! lease). It also exits when its stdin closes, so that a test that died
//! without killing it leaves no process behind.
//!
//! Usage: `lease-holder <store URL> <prefix> <store key> <ttl ms>`

use std::io::{Read, Write};
use std::time::Duration;

use sessionkit::{SessionStore, StoreKey};
use sessionkit_stores::RedisStore;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, prefix, key, ttl_ms] = args.as_slice() else {
        panic!("usage: lease-holder <store URL> <prefix> <store key> <ttl ms>");
    };
    let key = StoreKey::parse(key).expect("a store key");
    let ttl = Duration::from_millis(ttl_ms.parse().expect("a ttl in ms"));
    std::thread::spawn(|| {
        // EOF or an error: the parent is gone.
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    let store = RedisStore::builder()
        .prefix(prefix.as_str())
        .open(url)
        .await
        .unwrap_or_else(|err| panic!("cannot open the store: {err:?}"));
    let said = match store.try_lease(&key, ttl).await {
        Ok(Some(_lease)) => "HELD",
        Ok(None) => "TAKEN",
        Err(err) => panic!("cannot take the lease: {err:?}"),
    };
    let mut out = std::io::stdout().lock();
    // The parent reads this pipe; if it is gone there is nobody to tell.
    let _ = writeln!(out, "{said}");
    let _ = out.flush();
    drop(out);
    std::future::pending::<()>().await;
}
