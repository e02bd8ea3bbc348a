//! `RedisStore`: sessions in Redis (or Valkey), one session space shared by
//! every app server that points at it. The key layout is documented on the
//! type, for users; this page says how the operations keep the contract.
//!
//! # Why these operations
//!
//! - `get` is a read-only script: the expiry and the fields come from one
//!   atomic read.
//! - `set` is `MULTI`/`UNLINK`/`HSET`/`PEXPIREAT`/`EXEC`: a whole-record
//!   replace that no reader sees half done.
//! - `touch` is a script that moves the expiry of a live session only.
//! - `update` is a script: it checks the session is live, then writes only
//!   the fields the patch names (`HSET`/`HDEL`), so two requests changing
//!   different keys of one session both keep their writes, and a session
//!   deleted meanwhile is not recreated.
//! - Every script also checks expiry against the app server's clock, so a
//!   record is expired *at* its expiry instant as the store contract says,
//!   even if Redis's clock lags by a few milliseconds.
//!
//! Scripts are sent with `EVALSHA`; after a Redis restart empties the script
//! cache, the client loads them again by itself.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use ::redis::aio::ConnectionManager;
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::sentinel::SentinelClient;
use ::redis::{Client, RedisError, Script, Value};
use sessionkit::{
    Change, Changes, SessionMap, SessionRecord, SessionStore, StoreError, StoreKey, UpdateOutcome, expiry,
};

use self::connection::{Connection, Source};
use self::link::{Inner, Wait};
use self::tls::Tls;
use self::url::Shape;

mod connection;
mod link;
mod shapes;
mod tls;
mod url;

/// The hash field that marks a session hash and holds its layout version.
/// `0xFF` cannot start (or appear in) UTF-8 text, so no session key equals it.
const MARKER_FIELD: &[u8] = b"\xffsessionkit";
const _: () = assert!(MARKER_FIELD[0] == 0xFF, "the marker must not be valid UTF-8");
/// The layout this code writes and reads.
const LAYOUT_VERSION: &[u8] = b"1";

static GET: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("redis/get.lua")));
static TOUCH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("redis/touch.lua")));
static UPDATE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("redis/update.lua")));

/// A session store in Redis 7.0 or newer (or Valkey), for deployments where
/// several app servers share one session space: a standalone server, a
/// Redis Cluster, or a primary with replicas behind Sentinel, over TCP or
/// TLS.
///
/// Redis expires sessions by itself; `update` is one server-side script, so
/// it is atomic across every app server; a dropped connection is
/// re-established in the background, and every operation gives up after a
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
/// One Redis hash per session, at `<prefix><id>` (the prefix defaults to
/// `session:`, the id is the 43-character [`StoreKey::as_str`]):
///
/// | hash field | value |
/// | --- | --- |
/// | each session key | that key's value as JSON |
/// | `"\xffsessionkit"` | the layout version, `1` |
///
/// The marker field keeps an empty session alive (Redis drops empty hashes)
/// and tells our hashes from anything else under the prefix. Its name starts
/// with the byte `0xFF`, which never occurs in UTF-8, so no session key can
/// collide with it. The expiry is the key's own absolute expiry
/// (`PEXPIREAT`, milliseconds): Redis removes expired sessions by itself,
/// so [`delete_expired`](SessionStore::delete_expired) has nothing to do and
/// returns 0.
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
/// OpenSSL). Its [`Script`] re-loads scripts after a server restart. It
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
/// let layer = SessionLayer::new(SessionConfig::new(store));
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
    pub fn waits_for_replicas(&self) -> u32 {
        self.connection.wait().map_or(0, |wait| wait.replicas)
    }

    /// The Redis key that holds the session `id`.
    pub fn key(&self, id: &StoreKey) -> String {
        let mut key = String::with_capacity(self.prefix.len() + id.as_str().len());
        key.push_str(&self.prefix);
        key.push_str(id.as_str());
        key
    }

    /// Fails unless the server answers and has `PEXPIRETIME` (Redis 7.0,
    /// Valkey 7.2), which the scripts need to read a session's expiry.
    async fn check_server(&self) -> Result<(), StoreError> {
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

/// The expiry as a script argument: Unix ms, or empty for none.
fn expiry_arg(expires_at: Option<SystemTime>) -> String {
    expires_at.map(|at| expiry::to_unix_ms(at).to_string()).unwrap_or_default()
}

fn encode(value: &serde_json::Value) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(StoreError::Encode)
}

/// Why a stored hash could not be read as a session.
#[derive(Debug, thiserror::Error)]
enum Corrupt {
    #[error("the reply has an unexpected shape")]
    Shape,
    #[error("the hash has no sessionkit marker field")]
    NoMarker,
    #[error("the hash was written in an unknown layout version")]
    UnknownLayout,
    #[error("a field name is not UTF-8")]
    FieldName,
    #[error("a field value is not JSON")]
    FieldValue(#[source] serde_json::Error),
}

/// Reads the `get` script's reply: nil, or `[expiry ms | -1, [field, value, ...]]`.
fn decode(reply: Value) -> Result<Option<SessionRecord>, Corrupt> {
    let items = match reply {
        // The script's `false` is nil over RESP2 and a boolean over RESP3.
        Value::Nil | Value::Boolean(false) => return Ok(None),
        Value::Array(items) => items,
        _ => return Err(Corrupt::Shape),
    };
    let [Value::Int(expires_at_ms), Value::Array(fields)] =
        <[Value; 2]>::try_from(items).map_err(|_| Corrupt::Shape)?
    else {
        return Err(Corrupt::Shape);
    };
    let mut data = SessionMap::new();
    let mut layout = None;
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        let (Value::BulkString(name), Value::BulkString(value)) = (name, value) else {
            return Err(Corrupt::Shape);
        };
        if name == MARKER_FIELD {
            layout = Some(value);
            continue;
        }
        let name = String::from_utf8(name).map_err(|_| Corrupt::FieldName)?;
        let value = serde_json::from_slice(&value).map_err(Corrupt::FieldValue)?;
        data.insert(name, value);
    }
    match layout {
        None => Err(Corrupt::NoMarker),
        Some(version) if version != LAYOUT_VERSION => Err(Corrupt::UnknownLayout),
        // PEXPIRETIME answers -1 for a key without expiry.
        Some(_) => {
            Ok(Some(SessionRecord::new(data, (expires_at_ms >= 0).then(|| expiry::from_unix_ms(expires_at_ms)))))
        }
    }
}

#[sessionkit::async_trait]
impl SessionStore for RedisStore {
    async fn get(&self, id: &StoreKey) -> Result<Option<SessionRecord>, StoreError> {
        let key = self.key(id);
        let reply = self
            .connection
            .run("redis store: reading a session", |mut connection| {
                let mut call = GET.key(&key);
                call.arg(now_ms());
                async move { call.invoke_async::<Value>(&mut connection).await }
            })
            .await?;
        match decode(reply) {
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

    async fn set(&self, id: &StoreKey, data: &SessionMap, expires_at: Option<SystemTime>) -> Result<(), StoreError> {
        let key = self.key(id);
        if expires_at.is_some_and(|at| expiry::to_unix_ms(at) <= now_ms()) {
            // Already over: writing it would only give Redis something to expire.
            return self.delete(id).await;
        }
        let mut hset = ::redis::cmd("HSET");
        hset.arg(&key).arg(MARKER_FIELD).arg(LAYOUT_VERSION);
        for (name, value) in data {
            hset.arg(name).arg(encode(value)?);
        }
        let mut replace = ::redis::pipe();
        replace.atomic().cmd("UNLINK").arg(&key).ignore().add_command(hset).ignore();
        if let Some(at) = expires_at {
            replace.cmd("PEXPIREAT").arg(&key).arg(expiry::to_unix_ms(at)).ignore();
        }
        self.connection
            .write("redis store: writing a session", |mut connection| {
                let replace = &replace;
                async move { replace.query_async::<()>(&mut connection).await }
            })
            .await
    }

    async fn delete(&self, id: &StoreKey) -> Result<(), StoreError> {
        let key = self.key(id);
        self.connection
            .write("redis store: deleting a session", |mut connection| {
                let key = &key;
                // UNLINK frees a large session off Redis's main thread.
                async move { ::redis::cmd("UNLINK").arg(key).query_async::<()>(&mut connection).await }
            })
            .await
    }

    async fn touch(&self, id: &StoreKey, expires_at: Option<SystemTime>) -> Result<bool, StoreError> {
        let key = self.key(id);
        let expires_at = expiry_arg(expires_at);
        self.connection
            .write("redis store: moving a session's expiry", |mut connection| {
                let mut call = TOUCH.key(&key);
                call.arg(MARKER_FIELD).arg(now_ms()).arg(&expires_at);
                async move { call.invoke_async::<bool>(&mut connection).await }
            })
            .await
    }

    async fn update(
        &self,
        id: &StoreKey,
        changes: &Changes,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        let key = self.key(id);
        let expires_at = expiry_arg(expires_at);
        // Encode once; the script call is rebuilt per attempt from these.
        let mut sets = Vec::new();
        let mut removes = Vec::new();
        for change in changes {
            match change {
                Change::Set(name, value) => sets.push((name, encode(value)?)),
                Change::Remove(name) => removes.push(name),
                Change::Modify(..) => {
                    return Err(StoreError::unsupported("operations on session keys (increment, push)"));
                }
            }
        }
        let cleared = if changes.is_cleared() { "1" } else { "0" };
        let applied = self
            .connection
            .write("redis store: updating a session", |mut connection| {
                let mut call = UPDATE.key(&key);
                call.arg(MARKER_FIELD).arg(now_ms()).arg(&expires_at).arg(cleared).arg(sets.len());
                for (name, value) in &sets {
                    call.arg(*name).arg(value);
                }
                for name in &removes {
                    call.arg(*name);
                }
                async move { call.invoke_async::<bool>(&mut connection).await }
            })
            .await?;
        Ok(if applied { UpdateOutcome::Applied } else { UpdateOutcome::Missing })
    }

    /// Returns 0 at once: Redis removes each session when its expiry passes
    /// (the key's own `PEXPIREAT`), and never returns an expired one, so
    /// there is nothing left to sweep. A [`Sweeper`](crate::Sweeper) on this
    /// store is harmless and pointless.
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
}

/// The decoding of a `get` reply, for the fuzz targets in `fuzz/` (built
/// with `--cfg fuzzing` only).
#[cfg(fuzzing)]
pub(crate) fn fuzz_read(reply: Value) {
    let _ = decode(reply);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn bulk(bytes: &[u8]) -> Value {
        Value::BulkString(bytes.to_vec())
    }

    fn reply(expires_at_ms: i64, fields: &[(&[u8], &[u8])]) -> Value {
        let fields = fields.iter().flat_map(|(name, value)| [bulk(name), bulk(value)]).collect();
        Value::Array(vec![Value::Int(expires_at_ms), Value::Array(fields)])
    }

    #[test]
    fn a_well_formed_reply_decodes() {
        let record = decode(reply(1_700_000_000_123, &[(MARKER_FIELD, b"1"), (b"user", b"\"ana\""), (b"n", b"[1,2]")]));
        let record = record.expect("decodes").expect("present");
        assert_eq!(serde_json::Value::Object(record.data), json!({ "user": "ana", "n": [1, 2] }));
        assert_eq!(record.expires_at, Some(expiry::from_unix_ms(1_700_000_000_123)));
    }

    #[test]
    fn no_expiry_and_nil_decode() {
        let record = decode(reply(-1, &[(MARKER_FIELD, b"1")])).expect("decodes").expect("present");
        assert_eq!(record, SessionRecord::new(SessionMap::new(), None));
        assert_eq!(decode(Value::Nil).expect("decodes"), None);
        assert_eq!(decode(Value::Boolean(false)).expect("decodes over RESP3"), None);
    }

    #[test]
    fn foreign_or_damaged_hashes_are_corrupt() {
        assert!(matches!(decode(reply(-1, &[(b"user", b"1")])), Err(Corrupt::NoMarker)));
        assert!(matches!(decode(reply(-1, &[(MARKER_FIELD, b"2")])), Err(Corrupt::UnknownLayout)));
        assert!(matches!(decode(reply(-1, &[(MARKER_FIELD, b"1"), (b"\xfe", b"1")])), Err(Corrupt::FieldName)));
        assert!(matches!(decode(reply(-1, &[(MARKER_FIELD, b"1"), (b"a", b"{")])), Err(Corrupt::FieldValue(_))));
        assert!(matches!(decode(Value::Int(3)), Err(Corrupt::Shape)));
        assert!(matches!(decode(Value::Array(vec![Value::Int(1)])), Err(Corrupt::Shape)));
    }
}
