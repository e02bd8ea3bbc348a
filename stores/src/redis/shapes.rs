//! The `redis` crate's clients for each deployment shape, built from a
//! parsed store URL or the builder's settings, with the store's timeouts and
//! TLS certificates applied the same way to each.

use std::time::Duration;

use ::redis::cluster::{ClusterClient, ClusterClientBuilder};
use ::redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use ::redis::{Client, ConnectionInfo, IntoConnectionInfo, TlsMode};
use sessionkit::StoreError;

use super::connection::{RECONNECT_MAX_DELAY, RECONNECT_MIN_DELAY};
use super::tls::Tls;
use super::url::{SentinelTarget, uses_tls};

/// How often a Cluster connection retries a request internally (after a
/// `MOVED`, a broken node, a failover), each within the store's timeout.
const CLUSTER_RETRIES: u32 = 32;

const NO_TLS: &str = "TLS certificates were given for a connection without TLS: use rediss:// (or rediss+cluster://, rediss+sentinel://)";

fn invalid(err: ::redis::RedisError) -> StoreError {
    StoreError::config_caused_by("invalid Redis connection settings", err)
}

/// Parses each of `urls` as the address of one node (`redis://` or `rediss://`).
pub(super) fn node_infos(urls: impl IntoIterator<Item = impl AsRef<str>>) -> Result<Vec<ConnectionInfo>, StoreError> {
    urls.into_iter()
        .map(|url| {
            url.as_ref().into_connection_info().map_err(|err| StoreError::config_caused_by("invalid Redis URL", err))
        })
        .collect()
}

/// A client for one server.
pub(super) fn standalone(info: ConnectionInfo, tls: &Tls) -> Result<Client, StoreError> {
    if !uses_tls(info.addr()) {
        if !tls.is_empty() {
            return Err(StoreError::config(NO_TLS));
        }
        return Client::open(info).map_err(invalid);
    }
    match tls.certificates() {
        Some(certificates) => Client::build_with_tls(info, certificates).map_err(invalid),
        None => Client::open(info).map_err(invalid),
    }
}

/// A client for the Cluster these seed nodes belong to.
pub(super) fn cluster(nodes: Vec<ConnectionInfo>, tls: &Tls, timeout: Duration) -> Result<ClusterClient, StoreError> {
    if nodes.is_empty() {
        return Err(StoreError::config("a Redis Cluster needs at least one seed node"));
    }
    let secure = nodes.iter().any(|node| uses_tls(node.addr()));
    if !secure && !tls.is_empty() {
        return Err(StoreError::config(NO_TLS));
    }
    let mut builder = ClusterClientBuilder::new(nodes)
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .retries(CLUSTER_RETRIES)
        .min_retry_wait(millis(RECONNECT_MIN_DELAY))
        .max_retry_wait(millis(RECONNECT_MAX_DELAY));
    if secure && let Some(certificates) = tls.certificates() {
        builder = builder.certs(certificates);
    }
    builder.build().map_err(invalid)
}

/// A client that asks these sentinels for the primary of the service.
pub(super) fn sentinel(target: SentinelTarget, tls: &Tls) -> Result<SentinelClient, StoreError> {
    let SentinelTarget { sentinels, service, node_tls, node } = target;
    let Some(first) = sentinels.first() else {
        return Err(StoreError::config("Redis Sentinel needs at least one sentinel address"));
    };
    let sentinel_tls = uses_tls(first.addr());
    if sentinels.iter().any(|sentinel| uses_tls(sentinel.addr()) != sentinel_tls) {
        return Err(StoreError::config("the sentinels must all use TLS or all not"));
    }
    if !sentinel_tls && !node_tls && !tls.is_empty() {
        return Err(StoreError::config(NO_TLS));
    }
    let sentinel_settings = first.redis_settings().clone();
    let addresses = sentinels.iter().map(|sentinel| sentinel.addr().clone()).collect::<Vec<_>>();
    let mut builder = SentinelClientBuilder::new(addresses, &service, SentinelServerType::Master).map_err(invalid)?;
    if let Some(username) = sentinel_settings.username() {
        builder = builder.set_client_to_sentinel_username(username);
    }
    if let Some(password) = sentinel_settings.password() {
        builder = builder.set_client_to_sentinel_password(password);
    }
    let certificates = tls.certificates();
    if sentinel_tls && let Some(certificates) = &certificates {
        builder = builder.set_client_to_sentinel_certificates(certificates.clone());
    }
    if node_tls {
        builder = builder.set_client_to_redis_tls_mode(TlsMode::Secure);
        if let Some(certificates) = certificates {
            builder = builder.set_client_to_redis_certificates(certificates);
        }
    }
    if let Some(username) = node.username() {
        builder = builder.set_client_to_redis_username(username);
    }
    if let Some(password) = node.password() {
        builder = builder.set_client_to_redis_password(password);
    }
    builder = builder.set_client_to_redis_db(node.db()).set_client_to_redis_protocol(node.protocol());
    builder.build().map_err(invalid)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
