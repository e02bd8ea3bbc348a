//! `RedisStore`: sessions in Redis (or Valkey), one session space shared by
//! every app server that points at it. The key layout is documented on the
//! type, for users; this page says how the operations keep the contract.
//!
//! # Why these operations
//!
//! Every operation is a transaction or one or more server-side scripts,
//! each touching the keys of one hash slot only (see [`keys`] for the
//! layout and [`calls`], where every call is built and its slots tested),
//! so the same code runs on a standalone server and on a Cluster.
//!
//! - `get` is one `MULTI` of `PEXPIRETIME` and `HGETALL`: the expiry and
//!   the fields come from one atomic read in one round trip, at a fraction
//!   of what running a script costs Redis; the expiry is checked here,
//!   against the app server's clock.
//! - `update` is one script: it checks the session is live and the fencing
//!   lease (in the same slot) is held, applies sets, removes and the atomic
//!   operations (`increment`, `push`, `remove_first`) to the stored JSON
//!   text, checks the size limit on the result, and writes only the fields
//!   the patch names, so concurrent requests keep each other's writes and
//!   a session deleted meanwhile is not recreated. It refuses a patch
//!   whole, before its first write.
//! - `touch` is one script that moves the expiry of a live session only.
//! - `set` and `rename` write a whole record; `rename` is two scripts, one
//!   per slot (see [`rename`]).
//! - The user index is kept in its own slot, ordered around the session
//!   writes (see [`index`]). For a session with a user, a write that moves
//!   its expiry past what the index covers costs one more round trip
//!   first (about once per session lifetime).
//! - Every call checks expiry against the app server's clock, so a
//!   record is expired *at* its expiry instant as the store contract says,
//!   even if Redis's clock lags by a few milliseconds.
//!
//! Scripts are sent with `EVALSHA`; after a Redis restart empties the script
//! cache, the client loads them again by itself.

use std::time::{Duration, SystemTime};

use ::redis::aio::ConnectionManager;
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::sentinel::SentinelClient;
use ::redis::{Client, RedisError, Value};
use sessionkit::lease::{Lease, LeaseToken};
use sessionkit::{
    Changes, ScanCursor, ScanPage, SessionMap, SessionRecord, SessionStore, StoreError, StoreKey, UpdateOutcome,
    expiry, reserved,
};

use self::calls::{Call, PatchArgs};
use self::connection::{Connection, Source};
use self::link::{Inner, Link, Wait};
use self::reply::Tagged;
use self::tls::Tls;
use self::url::Shape;

mod calls;
mod connection;
mod index;
mod keys;
mod link;
mod patch;
mod rename;
mod reply;
mod scan;
mod shapes;
mod tls;
mod url;
mod walk;

/// How often a write is retried when the user index had to be raised
/// first (each retry follows one index write; more than two means the
/// session's user or expiry keeps changing under it).
const INDEX_ATTEMPTS: usize = 4;

/// A session store in Redis 7.0 or newer (or Valkey), for deployments where
/// several app servers share one session space: a standalone server, a
/// Redis Cluster, or a primary with replicas behind Sentinel, over TCP or
/// TLS.
///
/// Redis expires sessions by itself; `update` is one server-side script, so
/// it is atomic across every app server, increments and pushes included; a
/// dropped connection is re-established in the background, and every
/// operation gives up after a
/// [timeout](RedisStoreBuilder::timeout) (2 s by default) with
/// [`StoreError::Timeout`], which the session layer turns into an empty 500
/// instead of a hung request.
///
/// # Store URLs
///
/// [`open`](RedisStoreBuilder::open) takes one URL for every shape:
///
/// | shape | URL |
/// | --- | --- |
/// | one server | `redis://[user:password@]host[:port][/db]` |
/// | one server over TLS | `rediss://[user:password@]host[:port][/db]` |
/// | a Unix socket | `unix:///path/redis.sock[?db=N&user=U&pass=P]` |
/// | a Cluster | `redis+cluster://[user:password@]host1:port1,host2:port2/` |
/// | a Cluster over TLS | `rediss+cluster://[user:password@]host1:port1,host2:port2/` |
/// | Sentinel | `redis+sentinel://[user:password@]s1:26379,s2:26379/service[/db]` |
/// | Sentinel over TLS | `rediss+sentinel://[user:password@]s1:26379,s2:26379/service[/db]` |
///
/// - A Cluster URL lists seed nodes (any one that answers will do; list
///   several so that one being down does not stop a restart). The store
///   learns the rest of the Cluster from them and follows slot moves and
///   failovers by itself.
/// - A Sentinel URL lists the sentinels (default port 26379) and names the
///   service (`sentinel monitor <service> ...`). The credentials and the
///   database are the data nodes'; sentinels with a password of their own
///   take `sentinel_username=` and `sentinel_password=`. `rediss+sentinel`
///   speaks TLS to both the sentinels and the data nodes; `sentinel_tls=false`
///   or `node_tls=false` turns one off, and `redis+sentinel://…?node_tls=true`
///   speaks TLS to the data nodes only.
/// - TLS (every `rediss` form) verifies the server against the system's
///   roots, or against `ca=PATH` (a PEM file: a private CA). A server that
///   asks for client certificates (`tls-auth-clients yes`) gets the PEM
///   files `cert=PATH&key=PATH`. A certificate the CA did not sign, a
///   server that does not speak TLS, a missing or unreadable file: each is
///   an error when the store opens ([`StoreError::Config`] or
///   [`StoreError::Backend`] with the cause), within the timeout.
/// - `protocol=resp3` speaks RESP3 (RESP2 by default).
///
/// Values in the query are percent-encoded (`ca=%2Fetc%2Fredis%20ca.pem`);
/// so are user names and passwords. Error messages never quote the URL.
///
/// The same shapes have builder forms: [`open_cluster`](RedisStoreBuilder::open_cluster),
/// [`open_sentinel`](RedisStoreBuilder::open_sentinel),
/// [`tls_ca`](RedisStoreBuilder::tls_ca) and
/// [`tls_client_certificate`](RedisStoreBuilder::tls_client_certificate); and
/// a store can run on a client or connection the application already has
/// ([`from_client`](RedisStoreBuilder::from_client),
/// [`from_cluster_client`](RedisStoreBuilder::from_cluster_client),
/// [`from_sentinel_client`](RedisStoreBuilder::from_sentinel_client), and
/// the connection forms below them).
///
/// # Key layout
///
/// Every key starts with the prefix (default `session:`). A session and
/// everything that belongs to it share one hash tag, its store key (the
/// 43-character [`StoreKey::as_str`]), so that on a Redis Cluster they sit
/// in one slot and every script touches one slot only (a `CROSSSLOT` error
/// cannot happen):
///
/// | key | type | holds |
/// | --- | --- | --- |
/// | `<prefix>{<store key>}` | hash | the session (below); the key's own absolute expiry (`PEXPIREAT`, ms) is the session's |
/// | `<prefix>{<store key>}:lease` | string | the token of the session's [exclusive lease](SessionStore::try_lease), expiring with it (`PX`) |
/// | `<prefix>user:{<user>}` | sorted set | the user's index: store keys scored by a bound on each session's expiry (Unix ms, or `inf`), and `+<store key>` members marking recent additions |
///
/// | session hash field | value |
/// | --- | --- |
/// | each session key | that key's value as JSON |
/// | `"\xffsessionkit"` | the layout version, `2` |
/// | `"\xffsize"` | `<sum> <count>`: the session's serialized JSON size, kept up to date by every write, for the size limit |
/// | `"\xffindex"` | `<bound> <user as JSON>`: what the user's index is known to hold for this session |
///
/// Internal fields start with the byte `0xFF`, which never occurs in
/// UTF-8, so no session key can collide with them. The marker field keeps
/// an empty session alive (Redis drops empty hashes) and tells our hashes
/// from anything else under the prefix. While a rename moves a session,
/// its old key holds a short-lived hash whose marker is `moved` (with the
/// new key in `"\xffto"`), and a rename stopped by a concurrent logout
/// leaves a tombstone with the marker `gone` under the new key; neither
/// reads as a session. Redis removes expired sessions by itself, so
/// [`delete_expired`](SessionStore::delete_expired) has nothing to do and
/// returns 0; user indexes are trimmed whenever they are used, and expire
/// with their last entry.
///
/// A user index is in another slot than the user's sessions, so it is
/// updated in order around each session write rather than atomically:
/// it may briefly (and after a crash, until the next listing) hold
/// sessions that are gone, never miss a live one, and listings repair it.
/// A rename's two keys are in two slots too: it moves the session in two
/// steps that a concurrent delete can stop, and an app server dying
/// between them loses that session (the user logs in again) but never
/// duplicates or revives one. The module sources (`index.rs`,
/// `rename.rs`) and [`docs/redis-layout.md`](https://github.com/sessionkit/sessionkit/blob/main/docs/redis-layout.md) spell out every window.
///
/// A prefix may hold a hash tag of its own (`app{shop}:`): every key then
/// lands in that one slot, which is correct but does not spread the
/// sessions over a Cluster. A prefix with an empty tag (`{}`) is refused.
///
/// **Upgrading from layout 1** (`<prefix><store key>`, no hash tag, before
/// the user index): this version neither reads nor writes those keys, so a
/// deploy logs every user out once. Reading both layouts would cost a
/// second lookup on every miss, for sessions that a day's `ttl` retires
/// anyway. The old keys expire on their own; those of sessions without
/// expiry stay until deleted, e.g. with
/// `redis-cli --scan --pattern '<prefix>*' | grep -v '[{]' | xargs redis-cli unlink`
/// (with the prefix's own glob characters escaped).
///
/// Every script and transaction touches the one key of one session, so on
/// a Cluster each runs on the node that owns that key's slot: a `CROSSSLOT`
/// error cannot arise.
///
/// # Outages and failover
///
/// When Redis goes away, requests in flight fail at once, later ones wait
/// for the background reconnection until the timeout, and each answers an
/// empty 500 through the session layer; nothing panics. Reconnection retries
/// with a backoff capped near half a second and starts again on the next
/// request after it gives up, so once Redis is back the store serves again
/// within about a second, without a restart of the app. A connection that
/// goes silent without being closed (a failed-over host, a NAT dropping the
/// flow) is abandoned for a fresh one once nothing has answered for a whole
/// timeout. Sessions survive the outage if Redis persists them (see the
/// README's "Scaling out").
///
/// When a primary dies, a Cluster promotes its replica once the other
/// primaries agree it is gone (`cluster-node-timeout`), and Sentinel does
/// the same once a quorum of sentinels does (`down-after-milliseconds`).
/// Until then, writes (and reads) of the sessions on that primary fail
/// within the timeout; afterwards the store finds the new primary by
/// itself (the Cluster's slot map, or a new question to the sentinels)
/// and serves again. Replication is asynchronous, so the last writes the
/// old primary acknowledged may not have reached the replica: with
/// [`wait_for_replicas`](RedisStoreBuilder::wait_for_replicas), a write
/// is acknowledged only once replicas have it.
///
/// # Durability and clocks
///
/// A write is acknowledged when Redis has applied it (and, with
/// `wait_for_replicas`, when that many replicas have it too); whether it
/// survives a Redis crash is Redis's persistence setting (`appendonly yes`,
/// with `appendfsync always` for every write, `everysec` for at most a
/// second's loss). Expiry instants come from the app servers' clocks: keep
/// them in sync (NTP), as with any shared session store.
///
/// # Why the `redis` crate
///
/// It is the most used and actively maintained Redis client for Rust, and
/// its [`ConnectionManager`] is what a session store needs: one multiplexed
/// connection that pipelines every concurrent request (no pool to size),
/// reconnects by itself after a failure, and bounds connection and response
/// times. It speaks Cluster and Sentinel, and TLS through rustls (no system
/// OpenSSL). Its [`Script`](redis::Script) re-loads scripts after a server restart. It
/// works with Valkey unchanged. `fred` has comparable features but a larger
/// footprint, and applications that already talk to Redis usually hold a
/// `redis::Client`, which [`RedisStore::from_client`] accepts.
///
/// # Example
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sessionkit::StoreError> {
/// use std::time::Duration;
/// use sessionkit::{SessionConfig, SessionLayer};
/// use sessionkit_stores::RedisStore;
///
/// // Defaults: prefix `session:`, 2 s timeout.
/// let store = RedisStore::open("redis://127.0.0.1:6379").await?;
///
/// // A Cluster, writes acknowledged once a replica has them:
/// let store = RedisStore::builder()
///     .prefix("shop:session:")
///     .timeout(Duration::from_millis(1000))
///     .wait_for_replicas(1, Duration::from_millis(200))
///     .open("redis+cluster://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000/")
///     .await?;
///
/// // Behind Sentinel, over TLS with a private CA:
/// let store = RedisStore::open(
///     "rediss+sentinel://:secret@10.0.0.1:26379,10.0.0.2:26379/sessions?ca=%2Fetc%2Fredis%2Fca.pem",
/// )
/// .await?;
/// let layer = SessionLayer::new(SessionConfig::builder(store));
/// # let _ = layer;
/// # Ok(()) }
/// ```
pub struct RedisStore {
    connection: Connection,
    prefix: Box<str>,
}

/// Options for a [`RedisStore`], then one of the ways to connect it.
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisStoreBuilder {
    prefix: String,
    timeout: Duration,
    wait: Option<Wait>,
    tls: Tls,
}

impl RedisStoreBuilder {
    /// The prefix of every session key [default: `session:`]. Stores with
    /// different prefixes on one Redis do not see each other's sessions.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long any one operation may take, reconnecting included, before it
    /// fails with [`StoreError::Timeout`] [default: 2 s]. While Redis is
    /// unreachable, this is how long a request waits before its empty 500.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Acknowledges a write only once `replicas` replicas have it: each
    /// write is followed by `WAIT replicas timeout` on the same connection
    /// (on a Cluster, the primary that took the write), and fails with
    /// [`StoreError::Backend`] if fewer replicas confirm it within
    /// `timeout` [default: off; `replicas` 0 turns it off].
    ///
    /// A write that fails this way was still applied on the primary: it is
    /// only not known to survive a failover. The write's answer comes one
    /// replication round trip later (a fraction of a millisecond on a LAN;
    /// see the README's "Scaling out" for measurements). While fewer than
    /// `replicas` replicas are connected (one of them is down, or a failover
    /// has just promoted the only one), every write fails: run at least
    /// `replicas + 1` replicas per primary to keep writing through a
    /// failover. `timeout` must be shorter than the store's
    /// [timeout](Self::timeout), which bounds the whole operation.
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait = (replicas > 0).then_some(Wait { replicas, timeout });
        self
    }

    /// Trusts the CA certificates in `pem` (PEM) for TLS connections,
    /// instead of the system's roots; the builder form of `?ca=PATH`.
    pub fn tls_ca(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.set_ca(pem.into());
        self
    }

    /// Presents this client certificate (PEM, with its chain) and private
    /// key (PEM) to TLS servers that ask for one; the builder form of
    /// `?cert=PATH&key=PATH`.
    pub fn tls_client_certificate(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.tls.set_identity(cert_pem.into(), key_pem.into());
        self
    }

    /// Connects to the deployment named by `url`, in any of the forms listed
    /// under "Store URLs" on [`RedisStore`]. TLS files named in the URL
    /// replace certificates given to the builder.
    ///
    /// Fails if the URL is invalid, if Redis does not answer within the
    /// timeout, if TLS fails, or if the server is older than 7.0.
    pub async fn open(mut self, url: &str) -> Result<RedisStore, StoreError> {
        let url = url::parse(url)?;
        self.tls.read_files(&url.tls)?;
        match url.shape {
            Shape::Standalone(info) => {
                let client = shapes::standalone(info, &self.tls)?;
                self.connect(Source::Client(client), None).await
            }
            Shape::Cluster(nodes) => {
                let client = shapes::cluster(nodes, &self.tls, self.timeout)?;
                self.connect(Source::Cluster(client), None).await
            }
            Shape::Sentinel(target) => {
                let client = shapes::sentinel(target, &self.tls)?;
                self.connect(Source::Sentinel(tokio::sync::Mutex::new(client)), None).await
            }
        }
    }

    /// Connects to the Cluster that these seed nodes (`redis://host:port`
    /// or `rediss://host:port`, all alike) belong to, with this builder's
    /// TLS certificates; the builder form of `redis+cluster://`.
    pub async fn open_cluster(
        self,
        nodes: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<RedisStore, StoreError> {
        let client = shapes::cluster(shapes::node_infos(nodes)?, &self.tls, self.timeout)?;
        self.connect(Source::Cluster(client), None).await
    }

    /// Connects to the primary that these sentinels (`redis://host:26379`,
    /// or `rediss://` for sentinels that speak TLS) name for `service_name`;
    /// the builder form of `redis+sentinel://`. The data nodes are reached
    /// the way the sentinels are (TLS or not), with this builder's TLS
    /// certificates and no password; for other settings, build a
    /// [`SentinelClient`] and use [`from_sentinel_client`](Self::from_sentinel_client).
    pub async fn open_sentinel(
        self,
        sentinels: impl IntoIterator<Item = impl AsRef<str>>,
        service_name: &str,
    ) -> Result<RedisStore, StoreError> {
        let sentinels = shapes::node_infos(sentinels)?;
        let node_tls = sentinels.first().is_some_and(|sentinel| url::uses_tls(sentinel.addr()));
        let target =
            url::SentinelTarget { sentinels, service: service_name.to_owned(), node_tls, node: Default::default() };
        let client = shapes::sentinel(target, &self.tls)?;
        self.connect(Source::Sentinel(tokio::sync::Mutex::new(client)), None).await
    }

    /// Connects through an existing client (its address, credentials,
    /// database, protocol and TLS settings), with this store's reconnection
    /// policy. This builder's TLS certificates do not apply: the client has
    /// its own.
    pub async fn from_client(self, client: Client) -> Result<RedisStore, StoreError> {
        self.connect(Source::Client(client), None).await
    }

    /// Uses an existing connection manager, shared with the rest of the
    /// application. Its own reconnection and timeout settings apply beneath
    /// this store's timeout, and since the store cannot open connections
    /// through it, a connection that goes silent (see "Outages" on
    /// [`RedisStore`]) is not replaced: prefer
    /// [`from_client`](Self::from_client) where you can.
    pub async fn from_connection_manager(self, manager: ConnectionManager) -> Result<RedisStore, StoreError> {
        self.connect(Source::Fixed, Some(Inner::Single(manager))).await
    }

    /// Connects to a Cluster through an existing client (its seed nodes,
    /// credentials, TLS, retry and timeout settings, which apply beneath
    /// this store's timeout).
    pub async fn from_cluster_client(self, client: ClusterClient) -> Result<RedisStore, StoreError> {
        self.connect(Source::Cluster(client), None).await
    }

    /// Uses an existing Cluster connection, shared with the rest of the
    /// application. As with [`from_connection_manager`](Self::from_connection_manager),
    /// the store cannot replace it if it goes silent: prefer
    /// [`from_cluster_client`](Self::from_cluster_client) where you can.
    pub async fn from_cluster_connection(self, connection: ClusterConnection) -> Result<RedisStore, StoreError> {
        self.connect(Source::Fixed, Some(Inner::Cluster(connection))).await
    }

    /// Connects to the primary that an existing Sentinel client names. It
    /// must have been built for the primary
    /// ([`SentinelServerType::Master`](::redis::sentinel::SentinelServerType::Master)):
    /// sessions are written. The store asks it again for the primary
    /// whenever the one in use fails, which is how it follows a failover.
    pub async fn from_sentinel_client(self, client: SentinelClient) -> Result<RedisStore, StoreError> {
        self.connect(Source::Sentinel(tokio::sync::Mutex::new(client)), None).await
    }

    async fn connect(self, source: Source, fixed: Option<Inner>) -> Result<RedisStore, StoreError> {
        if let Some(wait) = self.wait
            && (wait.timeout.is_zero() || wait.timeout >= self.timeout)
        {
            return Err(StoreError::config(format!(
                "wait_for_replicas: the timeout ({:?}) must be above zero and below the store's timeout ({:?})",
                wait.timeout, self.timeout
            )));
        }
        let connection = Connection::new(source, fixed, self.timeout, self.wait);
        connection.first_contact("connecting to Redis").await?;
        let store = RedisStore { connection, prefix: self.prefix.into() };
        store.check_server().await?;
        Ok(store)
    }
}

impl RedisStore {
    /// The key prefix used unless [`RedisStoreBuilder::prefix`] says otherwise.
    pub const DEFAULT_PREFIX: &str = "session:";
    /// The operation timeout used unless [`RedisStoreBuilder::timeout`] says otherwise.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

    /// Options, then a way to connect: [`open`](RedisStoreBuilder::open) a
    /// URL (any shape), [`open_cluster`](RedisStoreBuilder::open_cluster),
    /// [`open_sentinel`](RedisStoreBuilder::open_sentinel), or one of the
    /// `from_*` methods on an existing client or connection.
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder {
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            timeout: Self::DEFAULT_TIMEOUT,
            wait: None,
            tls: Tls::default(),
        }
    }

    /// Connects to the Redis deployment at `url` with the default options;
    /// see "Store URLs" above and [`RedisStoreBuilder::open`].
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::builder().open(url).await
    }

    /// Connects through an existing client with the default options; see
    /// [`RedisStoreBuilder::from_client`].
    pub async fn from_client(client: Client) -> Result<Self, StoreError> {
        Self::builder().from_client(client).await
    }

    /// Uses an existing connection manager with the default options; see
    /// [`RedisStoreBuilder::from_connection_manager`].
    pub async fn from_connection_manager(connection: ConnectionManager) -> Result<Self, StoreError> {
        Self::builder().from_connection_manager(connection).await
    }

    /// The prefix of every session key.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// How long one operation may take before [`StoreError::Timeout`].
    pub fn timeout(&self) -> Duration {
        self.connection.timeout()
    }

    /// How many replicas each write waits for (see
    /// [`RedisStoreBuilder::wait_for_replicas`]); 0 when writes do not wait.
    pub fn wait_for_replicas(&self) -> u32 {
        self.connection.wait().map_or(0, |wait| wait.replicas)
    }

    /// The Redis key that holds the session under `id`:
    /// `<prefix>{<store key>}` (see "Key layout" above).
    pub fn key(&self, id: &StoreKey) -> String {
        keys::session(&self.prefix, id)
    }

    /// Fails unless the prefix keeps each session in one slot, and the
    /// server answers and has `PEXPIRETIME` (Redis 7.0, Valkey 7.2), which
    /// the scripts need to read a session's expiry.
    async fn check_server(&self) -> Result<(), StoreError> {
        keys::check_prefix(&self.prefix)?;
        let probe = self.prefix.to_string();
        let result = self
            .connection
            .run("checking the Redis server", |mut connection| {
                let probe = probe.clone();
                async move { ::redis::cmd("PEXPIRETIME").arg(probe).query_async::<i64>(&mut connection).await }
            })
            .await;
        match result {
            Err(StoreError::Backend { source, .. })
                if source.downcast_ref::<RedisError>().is_some_and(|err| err.code() == Some("ERR")) =>
            {
                Err(StoreError::config_caused_by(
                    "RedisStore needs Redis 7.0 or newer (or Valkey 7.2 or newer)",
                    source,
                ))
            }
            other => other.map(drop),
        }
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection's Debug shows its URL, which may hold a password.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    expiry::to_unix_ms(SystemTime::now())
}

/// An expiry as Unix ms.
fn expiry_ms(expires_at: Option<SystemTime>) -> Option<i64> {
    expires_at.map(expiry::to_unix_ms)
}

/// An expiry as a script argument: Unix ms, or empty for none.
fn expiry_arg(expires_at: Option<i64>) -> String {
    expires_at.map(|at| at.to_string()).unwrap_or_default()
}

impl RedisStore {
    /// Runs one script call within the timeout.
    async fn invoke(&self, context: &'static str, call: &Call) -> Result<Value, StoreError> {
        let op = |mut connection: Link| {
            let invocation = call.invocation();
            async move { invocation.invoke_async::<Value>(&mut connection).await }
        };
        if call.writes { self.connection.write(context, op).await } else { self.connection.run(context, op).await }
    }

    /// Runs one script call whose reply is tagged.
    async fn tagged(&self, context: &'static str, call: &Call) -> Result<Tagged, StoreError> {
        Tagged::parse(self.invoke(context, call).await?).map_err(|err| err.into_store_error(context))
    }

    /// What a writing script left to do on success: remove the session's
    /// entry from the index of a user it no longer belongs to.
    async fn follow_up(&self, reply: &Tagged, key: &StoreKey, observed: i64) -> Result<(), StoreError> {
        let stale = reply.optional(0).map_err(|err| err.into_store_error("redis store: reading a reply"))?;
        match stale {
            Some(user) => self.unindex(user, key, observed).await,
            None => Ok(()),
        }
    }

    /// Adds `key` to the index of the user named in a `reindex` reply;
    /// returns the INDEX field to offer the retried write.
    async fn reindex(&self, reply: &Tagged, key: &StoreKey, expires_at: Option<i64>) -> Result<String, StoreError> {
        const CONTEXT: &str = "redis store: reading a reply";
        let user = reply.bytes(0).and_then(reply::user).map_err(|err| err.into_store_error(CONTEXT))?;
        self.index_add(&user, key, expires_at).await
    }
}

#[sessionkit::async_trait]
impl SessionStore for RedisStore {
    async fn get(&self, id: &StoreKey) -> Result<Option<SessionRecord>, StoreError> {
        let now = now_ms();
        let reply = self.connection.run("redis store: reading a session", |mut connection| {
            let read = calls::get(&self.prefix, id);
            async move {
                match read.query_async::<Value>(&mut connection).await {
                    Err(err) if connection::redirected(&err) => {
                        // A lone read of the key, whose redirect the client
                        // follows, makes it learn the slot's new owner.
                        let key = keys::session(&self.prefix, id);
                        ::redis::cmd("PEXPIRETIME").arg(&key).query_async::<i64>(&mut connection).await?;
                        read.query_async::<Value>(&mut connection).await
                    }
                    other => other,
                }
            }
        });
        match reply::decode(reply.await?, now) {
            Ok(record) => Ok(record),
            Err(err) => {
                // Never the id: ids are credentials.
                tracing::warn!(
                    error = &err as &dyn std::error::Error,
                    "a stored Redis session is corrupt; treating it as absent"
                );
                Ok(None)
            }
        }
    }

    /// Indexes the session under its user first (if it has one), then
    /// replaces whatever was under the key, in one script.
    async fn set(&self, id: &StoreKey, data: &SessionMap, expires_at: Option<SystemTime>) -> Result<(), StoreError> {
        const CONTEXT: &str = "redis store: writing a session";
        let now = now_ms();
        let expires_ms = expiry_ms(expires_at);
        if expires_ms.is_some_and(|at| at <= now) {
            // Already over: writing it would only give Redis something to expire.
            return self.delete(id).await;
        }
        let (size, fields) = patch::record(data)?;
        let index = match reserved::user_of(data) {
            Some(user) => self.index_add(user, id, expires_ms).await?,
            None => String::new(),
        };
        let call = calls::set(&self.prefix, id, &expiry_arg(expires_ms), &size, &index, false, fields);
        let reply = self.tagged(CONTEXT, &call).await?;
        self.follow_up(&reply, id, now).await
    }

    /// One script; for a session with a user, one more to clean its index
    /// entry; for one caught mid-rename, the new key is buried too.
    async fn delete(&self, id: &StoreKey) -> Result<(), StoreError> {
        const CONTEXT: &str = "redis store: deleting a session";
        let now = now_ms();
        let reply = self.tagged(CONTEXT, &calls::delete(&self.prefix, id)).await?;
        let corrupt = |err: reply::Corrupt| err.into_store_error(CONTEXT);
        match reply.tag.as_slice() {
            b"deleted" => self.follow_up(&reply, id, now).await,
            b"moved" => {
                let target =
                    StoreKey::parse(reply.text(0).map_err(corrupt)?).ok_or_else(|| corrupt(reply::Corrupt::Shape))?;
                self.bury(&target, None).await?;
                match reply.optional(1).map_err(corrupt)? {
                    Some(user) => self.unindex(user, id, now).await,
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    async fn touch(&self, id: &StoreKey, expires_at: Option<SystemTime>) -> Result<bool, StoreError> {
        const CONTEXT: &str = "redis store: moving a session's expiry";
        let expires_ms = expiry_ms(expires_at);
        let expires = expiry_arg(expires_ms);
        let mut offered = String::new();
        for _ in 0..INDEX_ATTEMPTS {
            let now = now_ms();
            let reply = self.tagged(CONTEXT, &calls::touch(&self.prefix, id, now, &expires, &offered)).await?;
            match reply.tag.as_slice() {
                b"missing" => return Ok(false),
                b"reindex" => offered = self.reindex(&reply, id, expires_ms).await?,
                _ => {
                    self.follow_up(&reply, id, now).await?;
                    return Ok(true);
                }
            }
        }
        Err(StoreError::backend(CONTEXT, "the session's user index kept changing under the write"))
    }

    async fn update(
        &self,
        id: &StoreKey,
        changes: &Changes,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        const CONTEXT: &str = "redis store: updating a session";
        let expires_ms = expiry_ms(expires_at);
        let expires = expiry_arg(expires_ms);
        let encoded = patch::encode(changes)?;
        let operations = changes.iter().any(|change| matches!(change, sessionkit::Change::Modify(..)));
        let size_limit = changes.size_limit().map(|limit| limit.to_string()).unwrap_or_default();
        let fence = changes.lease().map(|token| token.to_string()).unwrap_or_default();
        // A patch that names its user (a login without a new id) is
        // indexed up front, rather than after the script asks for it.
        let mut offered = match patch::user_set(changes) {
            Some(user) if expires_ms.is_none_or(|at| at > now_ms()) => self.index_add(user, id, expires_ms).await?,
            _ => String::new(),
        };
        for _ in 0..INDEX_ATTEMPTS {
            let now = now_ms();
            let args = PatchArgs {
                now,
                expires_at: &expires,
                cleared: changes.is_cleared(),
                size_limit: &size_limit,
                fence: &fence,
                changes: &encoded,
            };
            let reply = self.tagged(CONTEXT, &calls::update(&self.prefix, id, &args, &offered, operations)).await?;
            match reply.tag.as_slice() {
                b"missing" => return Ok(UpdateOutcome::Missing),
                b"refused" => {
                    let refusal = patch::refused(&reply).map_err(|err| err.into_store_error(CONTEXT))?;
                    return Err(StoreError::Refused(refusal));
                }
                b"reindex" => offered = self.reindex(&reply, id, expires_ms).await?,
                _ => {
                    self.follow_up(&reply, id, now).await?;
                    return Ok(UpdateOutcome::Applied);
                }
            }
        }
        Err(StoreError::backend(CONTEXT, "the session's user index kept changing under the write"))
    }

    /// Two scripts, one per slot, with the user index following; see
    /// "Key layout" above, and [`docs/redis-layout.md`](https://github.com/sessionkit/sessionkit/blob/main/docs/redis-layout.md) for the protocol and
    /// what a crash between them leaves.
    async fn rename(
        &self,
        from: &StoreKey,
        to: &StoreKey,
        changes: &Changes,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        self.rename_session(from, to, changes, expires_at).await
    }

    /// Reads the user's index, then each listed session; entries whose
    /// session is gone, expired or someone else's are removed.
    async fn sessions_of(&self, user: &str) -> Result<Vec<(StoreKey, SessionRecord)>, StoreError> {
        self.listing(user).await
    }

    async fn revoke(&self, user: &str, key: &StoreKey) -> Result<bool, StoreError> {
        self.revoke_session(user, key).await
    }

    async fn revoke_all(&self, user: &str, except: Option<&StoreKey>) -> Result<u64, StoreError> {
        self.revoke_sessions(user, except).await
    }

    /// `SCAN MATCH <prefix>{*` through the session keys. The cursor may
    /// carry a few store keys that did not fit the page. `SCAN` itself may
    /// return a key twice when Redis shrinks its keyspace table during the
    /// scan (a mass deletion): a consumer that must not see duplicates
    /// should write idempotently. On a Redis Cluster the scan walks the
    /// primaries one after another (by the lowest slot each serves); a
    /// failover of the primary being walked makes it walk the promoted
    /// replica from its start, so that shard's sessions come twice but none
    /// is skipped, and a resharding during the scan can skip or repeat the
    /// sessions it moves (see [`docs/redis-layout.md`](https://github.com/sessionkit/sessionkit/blob/main/docs/redis-layout.md)).
    async fn scan(&self, cursor: &ScanCursor, limit: usize) -> Result<ScanPage, StoreError> {
        self.scan_page(cursor, limit).await
    }

    /// `SET <prefix>{<store key>}:lease <token> NX PX <ttl>`: one command,
    /// in the session's slot, so fenced writes check it in their script.
    async fn try_lease(&self, key: &StoreKey, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let token = LeaseToken::generate();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let granted_at = SystemTime::now();
        let lease_key = keys::lease(&self.prefix, key);
        let token_text = token.to_string();
        let reply = self
            .connection
            .write("redis store: taking a lease", |mut connection| {
                let mut set = ::redis::cmd("SET");
                set.arg(&lease_key).arg(&token_text).arg("NX").arg("PX").arg(ttl_ms);
                async move { set.query_async::<Value>(&mut connection).await }
            })
            .await?;
        Ok(match reply {
            Value::Nil => None,
            _ => Some(Lease { token, expires_at: granted_at + Duration::from_millis(ttl_ms) }),
        })
    }

    async fn release_lease(&self, key: &StoreKey, token: LeaseToken) -> Result<(), StoreError> {
        let call = calls::release_lease(&self.prefix, key, &token.to_string());
        self.invoke("redis store: releasing a lease", &call).await.map(drop)
    }

    /// Returns 0 at once: Redis removes each session when its expiry passes
    /// (the key's own `PEXPIREAT`), and never returns an expired one, so
    /// there is nothing left to sweep. User indexes are not visited either:
    /// finding them would scan the whole keyspace, and they are trimmed
    /// whenever a login or a listing uses them, and expire with their last
    /// entry. A [`Sweeper`](crate::Sweeper) on this store is harmless and
    /// pointless.
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
}

/// The decoding of a `get` reply, for the fuzz targets in `fuzz/` (built
/// with `--cfg fuzzing` only).
#[cfg(fuzzing)]
pub(crate) fn fuzz_read(reply: Value) {
    let _ = reply::decode(reply, 0);
}
