//! Every script call the store makes, built in one place: which script,
//! which keys (from [`keys`](super::keys)), which arguments. Building them
//! here, and nowhere else, is what lets the tests below prove that each
//! call's keys share one hash slot, so that a `CROSSSLOT` error cannot
//! happen on a Cluster. The scripts touch no key they are not given.

use std::sync::LazyLock;

use ::redis::{Pipeline, Script, ScriptInvocation};
use sessionkit::StoreKey;

use super::keys;

/// A script with the shared Lua helpers in front of it (Redis has no
/// `require`; the helpers are local functions of each script).
macro_rules! script {
    ($name:ident = $($file:literal),+) => {
        static $name: LazyLock<Script> = LazyLock::new(|| Script::new(concat!($(include_str!($file), "\n"),+)));
    };
}

script!(SET = "shared.lua", "set.lua");
script!(TOUCH = "shared.lua", "touch.lua");
// With the operations (`ops.lua`) only where a patch may carry them, and
// `update` twice: defining the operations costs Redis more on every call
// than the rest of an update of a few keys, and most patches only set keys.
script!(UPDATE = "shared.lua", "ops.lua", "update.lua");
script!(UPDATE_SETS = "shared.lua", "update.lua");
script!(RENAME_OUT = "shared.lua", "ops.lua", "rename_out.lua");
script!(DELETE = "shared.lua", "delete.lua");
script!(REVOKE = "shared.lua", "revoke.lua");
script!(BURY = "shared.lua", "bury.lua");
script!(INDEX_ADD = "index.lua", "index_add.lua");
script!(INDEX_READ = "index.lua", "index_read.lua");
script!(INDEX_REMOVE = "index.lua", "index_remove.lua");
script!(RELEASE_LEASE = "release_lease.lua");

/// One script call: sent as `EVALSHA`, loaded first if Redis lost it.
pub(super) struct Call {
    script: &'static Script,
    pub(super) keys: Vec<String>,
    args: Vec<Vec<u8>>,
    /// Whether the script may write: a write waits for replicas when the
    /// store is built with `wait_for_replicas`.
    pub(super) writes: bool,
}

impl Call {
    fn new(script: &'static LazyLock<Script>, keys: Vec<String>) -> Self {
        Self { script: LazyLock::force(script), keys, args: Vec::new(), writes: true }
    }

    fn arg(mut self, arg: impl Into<Vec<u8>>) -> Self {
        self.args.push(arg.into());
        self
    }

    fn args<A: Into<Vec<u8>>>(mut self, args: impl IntoIterator<Item = A>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The invocation to send (rebuilt for each attempt of a retried call).
    pub(super) fn invocation(&self) -> ScriptInvocation<'static> {
        let mut invocation = self.script.prepare_invoke();
        for key in &self.keys {
            invocation.key(key);
        }
        for arg in &self.args {
            invocation.arg(arg);
        }
        invocation
    }
}

/// Number arguments, as the scripts read them.
fn num(n: i64) -> Vec<u8> {
    n.to_string().into_bytes()
}

/// `get`: the expiry and the fields in one transaction of two plain
/// commands (one round trip, one slot). A script would do the same reading
/// at several times the server's cost: running any script costs Redis more
/// than these two commands.
pub(super) fn get(prefix: &str, key: &StoreKey) -> Pipeline {
    let key = keys::session(prefix, key);
    let mut read = ::redis::pipe();
    // A value of another type under the key makes HGETALL fail: that reads
    // as no session, not as an error.
    read.atomic().ignore_errors().cmd("PEXPIRETIME").arg(&key).cmd("HGETALL").arg(&key);
    read
}

/// A whole-record write; `rename` makes it step 2 of a rename, which a
/// tombstone stops. `fields` are name, JSON value pairs.
pub(super) fn set<F: Into<Vec<u8>>>(
    prefix: &str,
    key: &StoreKey,
    expires_at: &str,
    size: &str,
    index: &str,
    rename: bool,
    fields: impl IntoIterator<Item = F>,
) -> Call {
    Call::new(&SET, vec![keys::session(prefix, key)])
        .arg(expires_at)
        .arg(size)
        .arg(index)
        .arg(if rename { "rename" } else { "set" })
        .args(fields)
}

pub(super) fn touch(prefix: &str, key: &StoreKey, now: i64, expires_at: &str, offered: &str) -> Call {
    Call::new(&TOUCH, vec![keys::session(prefix, key)])
        .arg(num(now))
        .arg(expires_at)
        .arg(sessionkit::reserved::USER)
        .arg(offered)
}

/// How a patch travels: the arguments both patching scripts share.
pub(super) struct PatchArgs<'a> {
    pub(super) now: i64,
    pub(super) expires_at: &'a str,
    pub(super) cleared: bool,
    pub(super) size_limit: &'a str,
    pub(super) fence: &'a str,
    /// The encoded changes ([`super::patch::encode`]).
    pub(super) changes: &'a [Vec<u8>],
}

fn patch_head(call: Call, patch: &PatchArgs<'_>) -> Call {
    call.arg(num(patch.now))
        .arg(patch.expires_at)
        .arg(if patch.cleared { "1" } else { "0" })
        .arg(patch.size_limit)
        .arg(patch.fence)
        .arg(sessionkit::reserved::USER)
}

/// `operations`: whether the patch carries any (increment, push,
/// remove-first); one that only sets and removes keys goes to the script
/// built without them.
pub(super) fn update(prefix: &str, key: &StoreKey, patch: &PatchArgs<'_>, offered: &str, operations: bool) -> Call {
    let script = if operations { &UPDATE } else { &UPDATE_SETS };
    let call = Call::new(script, vec![keys::session(prefix, key), keys::lease(prefix, key)]);
    patch_head(call, patch).arg(offered).args(patch.changes.iter().cloned())
}

/// Step 1 of a rename, on `from`'s slot; `ttl_ms` is how long its moved
/// marker lives.
pub(super) fn rename_out(prefix: &str, from: &StoreKey, to: &StoreKey, patch: &PatchArgs<'_>, ttl_ms: i64) -> Call {
    let call = Call::new(&RENAME_OUT, vec![keys::session(prefix, from), keys::lease(prefix, from)]);
    patch_head(call, patch).arg(to.as_str()).arg(num(ttl_ms)).args(patch.changes.iter().cloned())
}

pub(super) fn delete(prefix: &str, key: &StoreKey) -> Call {
    Call::new(&DELETE, vec![keys::session(prefix, key)])
}

pub(super) fn revoke(prefix: &str, key: &StoreKey, now: i64, user_json: &str) -> Call {
    Call::new(&REVOKE, vec![keys::session(prefix, key)]).arg(num(now)).arg(user_json).arg(sessionkit::reserved::USER)
}

pub(super) fn bury(prefix: &str, key: &StoreKey, ttl_ms: i64) -> Call {
    Call::new(&BURY, vec![keys::session(prefix, key)]).arg(num(ttl_ms))
}

pub(super) fn index_add(
    prefix: &str,
    user: &str,
    now: i64,
    margin: i64,
    key: &StoreKey,
    bound: &str,
    recent_until: i64,
) -> Call {
    Call::new(&INDEX_ADD, vec![keys::user_index(prefix, user)])
        .arg(num(now))
        .arg(num(margin))
        .arg(key.as_str())
        .arg(bound)
        .arg(num(recent_until))
}

pub(super) fn index_read(prefix: &str, user: &str, now: i64, margin: i64) -> Call {
    Call::new(&INDEX_READ, vec![keys::user_index(prefix, user)]).arg(num(now)).arg(num(margin))
}

pub(super) fn index_remove<'k>(
    prefix: &str,
    user: &str,
    now: i64,
    margin: i64,
    observed: i64,
    grace: i64,
    members: impl IntoIterator<Item = &'k [u8]>,
) -> Call {
    Call::new(&INDEX_REMOVE, vec![keys::user_index(prefix, user)])
        .arg(num(now))
        .arg(num(margin))
        .arg(num(observed))
        .arg(num(grace))
        .args(members)
}

pub(super) fn release_lease(prefix: &str, key: &StoreKey, token: &str) -> Call {
    Call::new(&RELEASE_LEASE, vec![keys::lease(prefix, key)]).arg(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::keys::slot;

    /// Prefixes and users chosen to trip the hash tag rule: braces before,
    /// inside and after the tag, unclosed ones, empty tags in the user.
    const PREFIXES: [&str; 6] = ["session:", "app{tenant}:", "a{", "a}b{", "}{", "x{y"];
    const USERS: [&str; 8] = ["ada", "", "}", "{", "a}b", "{x}", "ü{}", "{}{}"];

    fn store_keys() -> Vec<StoreKey> {
        (0u8..64)
            .map(|i| {
                let mut bytes = [0u8; 32];
                bytes.iter_mut().enumerate().for_each(|(j, b)| *b = i.wrapping_mul(31).wrapping_add(j as u8 * 7));
                StoreKey::from_bytes(bytes)
            })
            .collect()
    }

    fn one_slot(what: &str, call: &Call) {
        let slots: Vec<u16> = call.keys.iter().map(|key| slot(key.as_bytes())).collect();
        assert!(slots.windows(2).all(|pair| pair[0] == pair[1]), "{what}: keys {:?} span slots {slots:?}", call.keys);
    }

    /// Every call the store makes touches keys of one slot only: each
    /// script, for every prefix, store key and user.
    #[test]
    fn every_call_touches_one_slot() {
        let patch = PatchArgs { now: 1, expires_at: "", cleared: false, size_limit: "", fence: "", changes: &[] };
        for prefix in PREFIXES {
            for key in store_keys() {
                let other = StoreKey::from_bytes([9; 32]);
                let calls = [
                    ("set", set(prefix, &key, "", "0 0", "", false, Vec::<Vec<u8>>::new())),
                    ("touch", touch(prefix, &key, 1, "", "")),
                    ("update", update(prefix, &key, &patch, "", true)),
                    ("update, sets only", update(prefix, &key, &patch, "", false)),
                    ("rename, step 1", rename_out(prefix, &key, &other, &patch, 1)),
                    ("rename, step 2", set(prefix, &key, "", "0 0", "", true, Vec::<Vec<u8>>::new())),
                    ("delete", delete(prefix, &key)),
                    ("revoke", revoke(prefix, &key, 1, "\"ada\"")),
                    ("bury", bury(prefix, &key, 1)),
                    ("release_lease", release_lease(prefix, &key, "t")),
                ];
                for (what, call) in &calls {
                    one_slot(what, call);
                }
                // `get` reads one key; `try_lease` is a plain SET of the lease key: one key.
                assert!(get(prefix, &key).cmd_iter().all(|cmd| cmd.args_iter().nth(1).is_some_and(
                    |arg| matches!(arg, ::redis::Arg::Simple(bytes) if bytes == keys::session(prefix, &key).as_bytes())
                )));
                assert_eq!(slot(keys::lease(prefix, &key).as_bytes()), slot(keys::session(prefix, &key).as_bytes()));
            }
            for user in USERS {
                let key = StoreKey::from_bytes([1; 32]);
                one_slot("index_add", &index_add(prefix, user, 1, 1, &key, "inf", 1));
                one_slot("index_read", &index_read(prefix, user, 1, 1));
                one_slot("index_remove", &index_remove(prefix, user, 1, 1, 1, 1, [key.as_str().as_bytes()]));
            }
        }
    }

    /// The converse, so that the test above cannot pass by accident: the
    /// session tag really spreads sessions over slots.
    #[test]
    fn sessions_spread_over_slots() {
        let slots: std::collections::HashSet<u16> =
            store_keys().iter().map(|key| slot(keys::session("session:", key).as_bytes())).collect();
        assert!(slots.len() > 50, "64 sessions landed in only {} slots", slots.len());
    }
}
