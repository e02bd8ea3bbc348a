//! Persisting: from a session's final state to store calls and a
//! `Set-Cookie`.
//!
//! | final state | store calls | `Set-Cookie` |
//! | --- | --- | --- |
//! | new, never written | none | none |
//! | new, written | `set` | the new id |
//! | existing, changed | `update` (`Missing`: the session was destroyed meanwhile, nothing is written) | only if rolling, or the expiry was capped |
//! | existing, unchanged, rolling | `touch` (an `update` of the activity stamp once a minute) | refreshed `Max-Age` |
//! | existing, unchanged, expiry capped by the configuration | `touch` | the capped `Max-Age` |
//! | existing, unchanged, otherwise | none | none |
//! | regenerated (or logged in) | `rename` from the old key to the new one (`Missing`: destroyed meanwhile, nothing is written) | the new id, if renamed |
//! | destroyed | `delete`; for a user's session, also the sessions it was regenerated into meanwhile | a removal cookie with the same Path, Domain, Secure, HttpOnly, SameSite |
//!
//! Every write carries sessionkit's bookkeeping ([`crate::reserved`]): the
//! creation and activity stamps, the user, how keys are derived; a patch
//! carries the size limit, so that the store refuses a result that grew past
//! [`max_size`](crate::SessionConfig::max_size) through other requests'
//! writes; a request holding an exclusive lease fences its patch with it.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::session::{Owner, Retire, State, Status, revoke_lineage};
use crate::{
    Changes, PatchError, SessionConfig, SessionId, SessionMap, SessionStore, StoreError, StoreKey, UpdateOutcome,
    limits, reserved,
};

/// How stale the activity stamp may get before a rolling refresh (which
/// only moves the expiry) also rewrites it: "last active" in a listing is
/// exact to about this much, and most refreshes stay cheap.
pub const ACTIVITY_GRANULARITY: Duration = Duration::from_secs(60);

/// What persisting tells the client: rendered as a `Set-Cookie`, or a
/// response header, by the layer (see [`crate::transport`]).
#[derive(Debug)]
pub(crate) enum Issued {
    /// The client holds `id` until `expires_at`; `changed` when the id is
    /// new to it (a created session, a login), not just refreshed.
    Id { id: SessionId, expires_at: Option<SystemTime>, changed: bool },
    /// The session ended: the client should drop what it holds.
    Ended,
}

/// The store calls one request needs.
#[derive(Debug)]
pub(crate) enum Plan {
    Nothing,
    /// `set` the whole record under `key`, then retire the old one.
    Create {
        id: SessionId,
        key: StoreKey,
        data: SessionMap,
        expires_at: Option<SystemTime>,
        retire: Option<Retire>,
    },
    Update {
        /// The id for a refreshed cookie, when the cookie must change.
        cookie: Option<SessionId>,
        key: StoreKey,
        changes: Changes,
        expires_at: Option<SystemTime>,
    },
    Touch {
        id: SessionId,
        key: StoreKey,
        expires_at: Option<SystemTime>,
    },
    Rename {
        id: SessionId,
        from: StoreKey,
        to: StoreKey,
        changes: Changes,
        expires_at: Option<SystemTime>,
    },
    /// Retire the stored record (if it was ever stored) and remove the
    /// cookie, if the client holds one.
    Remove {
        retire: Option<Retire>,
        removal_cookie: bool,
    },
}

impl Plan {
    /// The plan for `state`, or why the session cannot be saved (too large
    /// or too deep: the layer answers 413).
    pub(crate) fn decide(state: &mut State, config: &SessionConfig, now: SystemTime) -> Result<Self, PatchError> {
        let fence = state.lease.as_ref().map(|lease| lease.token);
        let plan = match state.status.clone() {
            Status::Destroyed => {
                let retire = state.retire.take();
                Plan::Remove { removal_cookie: retire.is_some() || state.cookie_present, retire }
            }
            Status::New if state.data.is_empty() && state.meta.user.is_none() => match state.retire.take() {
                Some(retire) => Plan::Remove { retire: Some(retire), removal_cookie: true },
                None => Plan::Nothing,
            },
            Status::New => {
                let mut data = state.data.clone();
                for (name, value) in bookkeeping(state, config, now, Bookkeeping::All) {
                    data.insert(name.to_owned(), value);
                }
                limits::check(&data, config.max_size)?;
                Plan::Create {
                    id: state.id.clone(),
                    key: state.store_key(&state.id, config),
                    data,
                    expires_at: config.session_expiry(state.meta.created, now),
                    retire: state.retire.take(),
                }
            }
            Status::Renewed { from, .. } => {
                limits::check(&state.data, config.max_size)?;
                let changes = patch(state, config, now, fence, Bookkeeping::All);
                Plan::Rename {
                    id: state.id.clone(),
                    from,
                    to: state.store_key(&state.id, config),
                    changes,
                    expires_at: config.session_expiry(state.meta.created, now),
                }
            }
            Status::Loaded { expires_at } => {
                let expires_at =
                    if config.rolling { config.session_expiry(state.meta.created, now) } else { expires_at };
                let key = state.store_key(&state.id, config);
                // The cookie follows the expiry whenever the expiry moves.
                let cookie = (config.rolling || state.expiry_capped).then(|| state.id.clone());
                let stale = state
                    .meta
                    .last_active
                    .is_none_or(|at| now.duration_since(at).unwrap_or_default() >= ACTIVITY_GRANULARITY);
                if !state.changes.is_empty() {
                    limits::check(&state.data, config.max_size)?;
                    let changes = patch(state, config, now, fence, Bookkeeping::Changed);
                    Plan::Update { cookie, key, changes, expires_at }
                } else if config.rolling && stale {
                    let changes = patch(state, config, now, fence, Bookkeeping::Changed);
                    Plan::Update { cookie, key, changes, expires_at }
                } else if config.rolling || state.expiry_capped {
                    match fence {
                        // A fenced refresh is a fenced empty patch: `touch`
                        // cannot carry the fence.
                        Some(_) => {
                            let changes = patch(state, config, now, fence, Bookkeeping::Nothing);
                            Plan::Update { cookie, key, changes, expires_at }
                        }
                        None => Plan::Touch { id: state.id.clone(), key, expires_at },
                    }
                } else {
                    Plan::Nothing
                }
            }
        };
        Ok(plan)
    }

    /// Runs the store calls; returns what to tell the client, if anything.
    ///
    /// By reference, and with the rarer, longer paths boxed: the future is
    /// part of every persisting request's, which is heap-allocated, and a
    /// small one comes from the allocator's fast path (a plan moved in,
    /// with its arms' bindings, made it about 1.5 KiB).
    pub(crate) async fn execute(&self, config: &SessionConfig) -> Result<Option<Issued>, StoreError> {
        // Through the trait object itself: calling through the `Arc` would
        // box a second future around the store's.
        let store = config.store.as_ref();
        let issue = |id: &SessionId, expires_at, changed| Some(Issued::Id { id: id.clone(), expires_at, changed });
        Ok(match self {
            Plan::Nothing => None,
            Plan::Create { id, key, data, expires_at, retire } => {
                Box::pin(create(store, key, data, *expires_at, retire.as_ref())).await?;
                issue(id, *expires_at, true)
            }
            Plan::Update { cookie, key, changes, expires_at } => {
                match (store.update(key, changes, *expires_at).await?, cookie) {
                    (UpdateOutcome::Applied, Some(id)) => issue(id, *expires_at, false),
                    // Missing: destroyed (or regenerated) by a concurrent request.
                    // No cookie either: a removal could race with the cookie
                    // that request sent.
                    (UpdateOutcome::Applied | UpdateOutcome::Missing, _) => None,
                }
            }
            Plan::Touch { id, key, expires_at } => {
                if store.touch(key, *expires_at).await? {
                    issue(id, *expires_at, false)
                } else {
                    None
                }
            }
            Plan::Rename { id, from, to, changes, expires_at } => {
                match store.rename(from, to, changes, *expires_at).await? {
                    UpdateOutcome::Applied => issue(id, *expires_at, true),
                    // Destroyed meanwhile (a logout in another tab, a
                    // revocation): it stays destroyed, and this client gets
                    // no cookie that would work.
                    UpdateOutcome::Missing => None,
                }
            }
            Plan::Remove { retire, removal_cookie } => {
                if let Some(retire) = retire {
                    Box::pin(retire_record(store, retire)).await?;
                }
                removal_cookie.then_some(Issued::Ended)
            }
        })
    }
}

/// Writes a new record; then retires the one it replaces, if any.
async fn create(
    store: &dyn SessionStore,
    key: &StoreKey,
    data: &SessionMap,
    expires_at: Option<SystemTime>,
    retire: Option<&Retire>,
) -> Result<(), StoreError> {
    // The new record first: if retiring the old one fails, the client
    // still has a working session.
    match (store.set(key, data, expires_at).await, retire) {
        (Ok(()), Some(retire)) => retire_record(store, retire).await,
        (Ok(()), None) => Ok(()),
        // A full store: the retired record frees a place, so retire it
        // first. It is ending anyway (destroyed, or past what the
        // configuration allows).
        (Err(StoreError::Full { .. }), Some(retire)) => {
            retire_record(store, retire).await?;
            store.set(key, data, expires_at).await
        }
        (Err(err), _) => Err(err),
    }
}

/// Deletes a retired record; for a logout, also whatever it was
/// regenerated into by a request that raced with it.
async fn retire_record(store: &dyn SessionStore, retire: &Retire) -> Result<(), StoreError> {
    store.delete(&retire.key).await?;
    if let Some(owner) = &retire.owner {
        revoke_lineage(store, owner, None).await?;
    }
    Ok(())
}

/// Which of sessionkit's own keys a write carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bookkeeping {
    /// All of them: a new record, or one under a new key.
    All,
    /// The activity stamp, and whatever the store lacks or a clear wiped.
    Changed,
    /// None: a refresh of the expiry only.
    Nothing,
}

/// The handler's changes plus sessionkit's keys, limited and fenced.
fn patch(
    state: &mut State,
    config: &SessionConfig,
    now: SystemTime,
    fence: Option<crate::lease::LeaseToken>,
    which: Bookkeeping,
) -> Changes {
    let which = if state.changes.is_cleared() && which == Bookkeeping::Changed { Bookkeeping::All } else { which };
    let mut changes = std::mem::take(&mut state.changes);
    for (name, value) in bookkeeping(state, config, now, which) {
        changes.set(name, value);
    }
    changes.limit_size(config.max_size);
    if let Some(token) = fence {
        changes.fence(token);
    }
    changes
}

/// sessionkit's keys, as `which` asks.
fn bookkeeping(
    state: &State,
    config: &SessionConfig,
    now: SystemTime,
    which: Bookkeeping,
) -> Vec<(&'static str, Value)> {
    let meta = &state.meta;
    let mut keys = Vec::new();
    if which == Bookkeeping::Nothing {
        return keys;
    }
    let all = which == Bookkeeping::All;
    keys.push((reserved::LAST_ACTIVE, reserved::stamp(now)));
    if all || meta.created_missing {
        keys.push((reserved::CREATED_AT, reserved::stamp(meta.created)));
    }
    if all || meta.keyed_by_missing {
        keys.push((reserved::KEYED_BY, Value::from(config.keyed_by())));
    }
    if all && let Some(Owner { user, lineage }) = owner(state) {
        keys.push((reserved::USER, Value::from(user)));
        keys.push((reserved::LINEAGE, Value::from(lineage)));
    }
    keys
}

fn owner(state: &State) -> Option<Owner> {
    Some(Owner { user: state.meta.user.clone()?, lineage: state.meta.lineage.clone()? })
}
