//! Store operations, one at a time.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sessionkit::{SessionId, SessionStore};
use sessionkit_benches::payload;
use sessionkit_stores::MemoryStore;

fn memory(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let store = MemoryStore::new();
    let data = payload(100);
    let ids: Vec<SessionId> = (0..100_000).map(|_| SessionId::generate()).collect();
    runtime.block_on(async {
        for id in &ids {
            store.set(id, &data, None).await.expect("set");
        }
    });
    let mut next = ids.iter().cycle();
    c.bench_function("memory/get/100B/100k", |b| {
        b.to_async(&runtime).iter(|| store.get(black_box(next.next().expect("cycle"))))
    });
}

criterion_group!(benches, memory);
criterion_main!(benches);
