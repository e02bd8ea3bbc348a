//! Store URLs for Redis: one string names a standalone server, a Cluster or a
//! Sentinel-managed primary, with the TLS files to use. The syntax is
//! documented for users on [`RedisStore`](super::RedisStore); this module
//! turns it into the `redis` crate's connection settings.
//!
//! The multi-host forms (`redis+cluster://h1:p1,h2:p2/`) are split by hand:
//! a URL has one host, so a URL parser rejects them. Each host is then
//! rewritten as a one-host `redis://` URL and parsed by the `redis` crate, so
//! credentials, percent-escapes and `protocol=` mean exactly what they mean
//! in a standalone URL.

use std::path::PathBuf;

use ::redis::{ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};
use sessionkit::StoreError;

/// Default ports when a host has none.
const REDIS_PORT: u16 = 6379;
const SENTINEL_PORT: u16 = 26379;

/// What a store URL names.
#[derive(Debug)]
pub(super) struct StoreUrl {
    pub(super) shape: Shape,
    pub(super) tls: TlsFiles,
}

/// The deployment a URL points at.
#[derive(Debug)]
pub(super) enum Shape {
    /// One server (`redis://`, `rediss://`, `unix://`).
    Standalone(ConnectionInfo),
    /// A Cluster, through these seed nodes.
    Cluster(Vec<ConnectionInfo>),
    /// The primary of `service`, as these sentinels report it.
    Sentinel(SentinelTarget),
}

/// A Sentinel deployment: where the sentinels are and how to speak to the
/// data nodes they report.
#[derive(Debug)]
pub(super) struct SentinelTarget {
    pub(super) sentinels: Vec<ConnectionInfo>,
    pub(super) service: String,
    pub(super) node_tls: bool,
    pub(super) node: RedisConnectionInfo,
}

/// PEM files named by `ca=`, `cert=` and `key=`.
#[derive(Debug, Default)]
pub(super) struct TlsFiles {
    pub(super) ca: Option<PathBuf>,
    pub(super) cert: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
}

impl TlsFiles {
    fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }

    /// Takes `ca`, `cert` and `key` from the query pairs; true if `name` was one of them.
    fn take(&mut self, name: &str, value: &str) -> bool {
        let slot = match name {
            "ca" => &mut self.ca,
            "cert" => &mut self.cert,
            "key" => &mut self.key,
            _ => return false,
        };
        *slot = Some(PathBuf::from(value));
        true
    }
}

/// Parses a store URL. Errors never quote the URL: it may hold a password.
pub(super) fn parse(url: &str) -> Result<StoreUrl, StoreError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(StoreError::config(
            "invalid Redis URL: no scheme (expected redis://, rediss://, redis+cluster://, redis+sentinel://, unix://)",
        ));
    };
    match scheme {
        "redis" | "rediss" | "valkey" | "valkeys" | "unix" | "redis+unix" | "valkey+unix" => standalone(url),
        "redis+cluster" => cluster(rest, false),
        "rediss+cluster" => cluster(rest, true),
        "redis+sentinel" => sentinel(rest, false),
        "rediss+sentinel" => sentinel(rest, true),
        _ => Err(StoreError::config(
            "invalid Redis URL: unknown scheme (expected redis://, rediss://, redis+cluster://, rediss+cluster://, redis+sentinel://, rediss+sentinel://, unix://)",
        )),
    }
}

/// Whether connections to `addr` are TLS.
pub(super) fn uses_tls(addr: &::redis::ConnectionAddr) -> bool {
    matches!(addr, ::redis::ConnectionAddr::TcpTls { .. })
}

fn invalid(what: &'static str) -> StoreError {
    StoreError::config(format!("invalid Redis URL: {what}"))
}

fn standalone(url: &str) -> Result<StoreUrl, StoreError> {
    let mut parsed = ::url::Url::parse(url).map_err(|err| StoreError::config_caused_by("invalid Redis URL", err))?;
    let mut tls = TlsFiles::default();
    let mut kept = Vec::new();
    for (name, value) in parsed.query_pairs() {
        if !tls.take(&name, &value) {
            kept.push((name.into_owned(), value.into_owned()));
        }
    }
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    let info =
        parsed.as_str().into_connection_info().map_err(|err| StoreError::config_caused_by("invalid Redis URL", err))?;
    if !tls.is_empty() && !uses_tls(info.addr()) {
        return Err(invalid("ca=, cert= and key= need TLS: use rediss://"));
    }
    Ok(StoreUrl { shape: Shape::Standalone(info), tls })
}

/// The pieces of a multi-host URL: `[userinfo@]host[:port],... [/path] [?query]`.
struct MultiHost<'a> {
    userinfo: Option<&'a str>,
    hosts: Vec<&'a str>,
    path: &'a str,
    query: Vec<(String, String)>,
}

fn split_multi_host(rest: &str) -> Result<MultiHost<'_>, StoreError> {
    if rest.contains('#') {
        return Err(invalid("a fragment (#...) is not supported here"));
    }
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = match before_query.find('/') {
        Some(slash) => before_query.split_at(slash),
        None => (before_query, ""),
    };
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    let hosts: Vec<&str> = hosts.split(',').collect();
    if hosts.iter().any(|host| host.is_empty()) {
        return Err(invalid("an empty host in the host list"));
    }
    let query = ::url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    Ok(MultiHost { userinfo, hosts, path, query })
}

/// Whether `host` (`name`, `name:port`, `[v6]` or `[v6]:port`) has a port.
fn has_port(host: &str) -> bool {
    match host.rfind(']') {
        Some(bracket) => host[bracket..].contains(':'),
        None => host.contains(':'),
    }
}

/// One host of a multi-host URL as a one-host URL for the `redis` crate.
fn node_info(
    tls: bool,
    userinfo: Option<&str>,
    host: &str,
    default_port: u16,
    db: &str,
    protocol: Option<&str>,
) -> Result<ConnectionInfo, StoreError> {
    let mut url = String::from(if tls { "rediss://" } else { "redis://" });
    if let Some(userinfo) = userinfo {
        url.push_str(userinfo);
        url.push('@');
    }
    url.push_str(host);
    if !has_port(host) {
        url.push(':');
        url.push_str(&default_port.to_string());
    }
    url.push('/');
    url.push_str(db);
    if let Some(protocol) = protocol {
        url.push_str("?protocol=");
        url.extend(::url::form_urlencoded::byte_serialize(protocol.as_bytes()));
    }
    url.as_str()
        .into_connection_info()
        .map_err(|err| StoreError::config_caused_by("invalid Redis URL: a bad host", err))
}

fn cluster(rest: &str, tls: bool) -> Result<StoreUrl, StoreError> {
    let parts = split_multi_host(rest)?;
    let db = parts.path.trim_matches('/');
    if !db.is_empty() && db != "0" {
        return Err(invalid("a Cluster has only database 0"));
    }
    let mut files = TlsFiles::default();
    let mut protocol = None;
    for (name, value) in &parts.query {
        if files.take(name, value) {
            continue;
        }
        match name.as_str() {
            "protocol" => protocol = Some(value.as_str()),
            _ => return Err(invalid("unknown parameter for redis+cluster:// (known: protocol, ca, cert, key)")),
        }
    }
    if !tls && !files.is_empty() {
        return Err(invalid("ca=, cert= and key= need TLS: use rediss+cluster://"));
    }
    let nodes = parts
        .hosts
        .iter()
        .map(|host| node_info(tls, parts.userinfo, host, REDIS_PORT, "", protocol))
        .collect::<Result<_, _>>()?;
    Ok(StoreUrl { shape: Shape::Cluster(nodes), tls: files })
}

fn parse_bool(value: &str) -> Result<bool, StoreError> {
    match value {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err(invalid("sentinel_tls= and node_tls= take true or false")),
    }
}

fn sentinel(rest: &str, tls: bool) -> Result<StoreUrl, StoreError> {
    let parts = split_multi_host(rest)?;
    let mut path = parts.path.trim_matches('/').split('/');
    let service = path.next().unwrap_or_default();
    if service.is_empty() {
        return Err(invalid(
            "redis+sentinel:// needs the service name as its path: redis+sentinel://host:26379/mymaster",
        ));
    }
    let service = service.to_owned();
    let db = path.next().unwrap_or_default();
    if path.next().is_some() {
        return Err(invalid("the path of redis+sentinel:// is /service or /service/db"));
    }

    let mut files = TlsFiles::default();
    let (mut sentinel_tls, mut node_tls) = (tls, tls);
    let (mut protocol, mut sentinel_username, mut sentinel_password) = (None, None, None);
    for (name, value) in &parts.query {
        if files.take(name, value) {
            continue;
        }
        match name.as_str() {
            "protocol" => protocol = Some(value.as_str()),
            "sentinel_tls" => sentinel_tls = parse_bool(value)?,
            "node_tls" => node_tls = parse_bool(value)?,
            "sentinel_username" => sentinel_username = Some(value.as_str()),
            "sentinel_password" => sentinel_password = Some(value.as_str()),
            _ => {
                return Err(invalid(
                    "unknown parameter for redis+sentinel:// (known: protocol, ca, cert, key, sentinel_tls, node_tls, sentinel_username, sentinel_password)",
                ));
            }
        }
    }
    if !sentinel_tls && !node_tls && !files.is_empty() {
        return Err(invalid("ca=, cert= and key= need TLS: use rediss+sentinel:// or node_tls=true"));
    }

    // The userinfo is the data nodes' credentials; the sentinels have their own.
    let node = node_info(false, parts.userinfo, "localhost", REDIS_PORT, db, protocol)?.redis_settings().clone();
    let sentinel_userinfo = match (sentinel_username, sentinel_password) {
        (None, None) => None,
        (username, password) => {
            let encode = |text: &str| ::url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
            let mut userinfo = encode(username.unwrap_or_default());
            if let Some(password) = password {
                userinfo.push(':');
                userinfo.push_str(&encode(password));
            }
            Some(userinfo)
        }
    };
    let sentinels = parts
        .hosts
        .iter()
        .map(|host| node_info(sentinel_tls, sentinel_userinfo.as_deref(), host, SENTINEL_PORT, "", None))
        .collect::<Result<_, _>>()?;
    Ok(StoreUrl { shape: Shape::Sentinel(SentinelTarget { sentinels, service, node_tls, node }), tls: files })
}

#[cfg(test)]
mod tests {
    use ::redis::{ConnectionAddr, ProtocolVersion};

    use super::*;

    fn tcp(info: &ConnectionInfo) -> (String, u16, bool) {
        match info.addr() {
            ConnectionAddr::Tcp(host, port) => (host.clone(), *port, false),
            ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), *port, true),
            other => panic!("not TCP: {other:?}"),
        }
    }

    fn config_error(url: &str) -> String {
        match parse(url) {
            Err(StoreError::Config { message, .. }) => {
                assert!(!message.contains("s3cret"), "an error quoted the password: {message}");
                message
            }
            other => panic!("{url}: expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn standalone_urls_keep_their_settings_and_lose_only_the_tls_files() {
        let url = parse("rediss://ana:s3cret@cache.example:6380/2?protocol=resp3&ca=/etc/ca.pem&cert=c.pem&key=k.pem")
            .expect("parses");
        let Shape::Standalone(info) = &url.shape else { panic!("not standalone: {url:?}") };
        assert_eq!(tcp(info), ("cache.example".to_owned(), 6380, true));
        assert_eq!(info.redis_settings().db(), 2);
        assert_eq!(info.redis_settings().username(), Some("ana"));
        assert_eq!(info.redis_settings().password(), Some("s3cret"));
        assert_eq!(info.redis_settings().protocol(), ProtocolVersion::RESP3);
        assert_eq!(url.tls.ca, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(url.tls.cert, Some(PathBuf::from("c.pem")));
        assert_eq!(url.tls.key, Some(PathBuf::from("k.pem")));

        let url = parse("redis://127.0.0.1:6379").expect("parses");
        let Shape::Standalone(info) = &url.shape else { panic!("not standalone") };
        assert_eq!(tcp(info), ("127.0.0.1".to_owned(), 6379, false));
        assert!(url.tls.is_empty());
        assert!(matches!(parse("unix:///run/redis.sock").expect("parses").shape, Shape::Standalone(_)));
    }

    #[test]
    fn cluster_urls_name_every_seed_node_with_shared_credentials() {
        let url = parse("rediss+cluster://:s3cret@10.0.0.1:7000,10.0.0.2,[::1]:7002/?ca=ca.pem").expect("parses");
        let Shape::Cluster(nodes) = &url.shape else { panic!("not a cluster: {url:?}") };
        let addrs: Vec<_> = nodes.iter().map(tcp).collect();
        assert_eq!(
            addrs,
            vec![
                ("10.0.0.1".to_owned(), 7000, true),
                ("10.0.0.2".to_owned(), 6379, true),
                ("::1".to_owned(), 7002, true)
            ]
        );
        assert!(nodes.iter().all(|node| node.redis_settings().password() == Some("s3cret")));
        assert_eq!(url.tls.ca, Some(PathBuf::from("ca.pem")));
        assert!(matches!(parse("redis+cluster://h:1").expect("no path is fine").shape, Shape::Cluster(_)));
    }

    #[test]
    fn sentinel_urls_name_the_sentinels_the_service_and_the_data_nodes_settings() {
        let url = parse(
            "redis+sentinel://:s3cret@s1:26379,s2/mymaster/3?node_tls=true&sentinel_password=p%40ss&ca=ca.pem&protocol=resp3",
        )
        .expect("parses");
        let Shape::Sentinel(target) = &url.shape else { panic!("not sentinel: {url:?}") };
        assert_eq!(target.service, "mymaster");
        let addrs: Vec<_> = target.sentinels.iter().map(tcp).collect();
        assert_eq!(addrs, vec![("s1".to_owned(), 26379, false), ("s2".to_owned(), 26379, false)]);
        assert!(target.sentinels.iter().all(|s| s.redis_settings().password() == Some("p@ss")));
        assert!(target.node_tls);
        assert_eq!(target.node.password(), Some("s3cret"));
        assert_eq!(target.node.db(), 3);
        assert_eq!(target.node.protocol(), ProtocolVersion::RESP3);

        let url = parse("rediss+sentinel://s1/svc?sentinel_tls=false").expect("parses");
        let Shape::Sentinel(target) = &url.shape else { panic!("not sentinel") };
        assert!(target.node_tls);
        assert!(target.sentinels.iter().all(|s| !tcp(s).2), "sentinel_tls=false must reach the sentinels");
    }

    #[test]
    fn malformed_urls_are_config_errors_that_never_quote_the_password() {
        for url in [
            "postgres://127.0.0.1/",
            "127.0.0.1:6379",
            "redis://:s3cret@127.0.0.1/?ca=ca.pem",
            "redis+cluster://:s3cret@h1,,h2/",
            "redis+cluster://:s3cret@h1/3",
            "redis+cluster://:s3cret@h1/?ca=ca.pem",
            "redis+cluster://:s3cret@h1/?tls=yes",
            "redis+sentinel://:s3cret@s1:26379",
            "redis+sentinel://:s3cret@s1:26379/svc/0/extra",
            "redis+sentinel://:s3cret@s1:26379/svc?node_tls=maybe",
            "redis+sentinel://:s3cret@s1:26379/svc?ca=ca.pem",
            "redis+sentinel://:s3cret@s1:26379/svc#frag",
        ] {
            config_error(url);
        }
    }
}
