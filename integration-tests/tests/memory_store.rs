//! The conformance kit against `MemoryStore`.

sessionkit::store_conformance_tests!(async { sessionkit_stores::MemoryStore::new() });
