//! A throwaway Sentinel deployment for tests: a primary, one replica and
//! three sentinels (quorum 2) on loopback ports, with a short
//! `down-after-milliseconds` (1 s) so that failovers are quick. The
//! sentinels run as `redis-server sentinel.conf --sentinel`, so no package
//! beyond redis-server is needed. Every process is killed and the directory
//! removed when the deployment is dropped.

use std::ffi::OsString;
use std::time::Duration;

use tempfile::TempDir;

use crate::redis_node::{self, Ready, RedisNode, info_field, query, wait_for};

/// The service name the sentinels monitor.
pub const SERVICE: &str = "sessionkit";
/// How long the primary may be unreachable before the sentinels agree it is down.
pub const DOWN_AFTER: Duration = Duration::from_millis(1000);
const SENTINELS: usize = 3;
/// How long settling (discovery, a failover, a resync) may take.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A running primary + replica + three sentinels.
pub struct RedisSentinel {
    // Dropped in order: the processes, then their directory.
    data: Vec<RedisNode>,
    sentinels: Vec<RedisNode>,
    _dir: TempDir,
}

impl RedisSentinel {
    /// Starts the deployment and waits until the sentinels agree on it, or
    /// returns `None` after a loud skip when `redis-server` is missing (a
    /// failure under `CI=true`).
    pub fn start_or_skip() -> Option<Self> {
        if !redis_node::programs_or_skip(&["redis-server"]) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("cannot create a directory for sentinel: {err}"));
        let ports = redis_node::free_ports(2 + SENTINELS);
        let primary = RedisNode::start(
            "primary",
            dir.path().join("node0"),
            ports[0],
            redis_node::base_args(ports[0]),
            Ready::Ping,
        );
        let mut replica_args = redis_node::base_args(ports[1]);
        replica_args.extend(["--replicaof", "127.0.0.1", &ports[0].to_string()].map(OsString::from));
        let replica = RedisNode::start("replica", dir.path().join("node1"), ports[1], replica_args, Ready::Ping);
        let sentinels = (0..SENTINELS)
            .map(|i| {
                let port = ports[2 + i];
                let sentinel_dir = dir.path().join(format!("sentinel{i}"));
                if let Err(err) = std::fs::create_dir_all(&sentinel_dir) {
                    panic!("cannot create {}: {err}", sentinel_dir.display());
                }
                // Sentinel rewrites its configuration file, so each has its own.
                let config = format!(
                    "port {port}\nbind 127.0.0.1\ndaemonize no\nloglevel notice\n\
                     sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n\
                     sentinel down-after-milliseconds {SERVICE} {down}\n\
                     sentinel failover-timeout {SERVICE} 3000\n\
                     sentinel parallel-syncs {SERVICE} 1\n",
                    primary = ports[0],
                    down = DOWN_AFTER.as_millis(),
                );
                let path = sentinel_dir.join("sentinel.conf");
                if let Err(err) = std::fs::write(&path, config) {
                    panic!("cannot write {}: {err}", path.display());
                }
                let args = vec![OsString::from(path), OsString::from("--sentinel")];
                RedisNode::start(format!("sentinel {i}"), sentinel_dir, port, args, Ready::Ping)
            })
            .collect();
        let deployment = Self { data: vec![primary, replica], sentinels, _dir: dir };
        deployment.wait_settled();
        Some(deployment)
    }

    /// The store URL: every sentinel, and the service.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|node| format!("127.0.0.1:{}", node.port())).collect();
        format!("redis+sentinel://{}/{SERVICE}", hosts.join(","))
    }

    /// The sentinels' ports.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(RedisNode::port).collect()
    }

    /// The port of the primary the sentinels name now.
    pub fn primary_port(&self) -> u16 {
        wait_for("a sentinel naming the primary", SETTLE_TIMEOUT, || self.reported_primary())
    }

    fn reported_primary(&self) -> Result<u16, String> {
        let (_host, port): (String, u16) =
            query(self.sentinels[0].port(), redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(SERVICE))
                .map_err(|err| err.to_string())?;
        Ok(port)
    }

    /// Kills the primary (SIGKILL); returns its port.
    pub fn kill_primary(&mut self) -> u16 {
        let port = self.primary_port();
        self.node_mut(port).kill();
        port
    }

    /// Waits until the sentinels have promoted another data node and it
    /// acts as primary; returns its port.
    pub fn wait_for_failover(&self, old_primary: u16) -> u16 {
        wait_for("the sentinels failing over", SETTLE_TIMEOUT, || {
            let port = self.reported_primary()?;
            if port == old_primary {
                return Err("the sentinels still name the old primary".to_owned());
            }
            let info = query::<String>(port, redis::cmd("INFO").arg("replication")).map_err(|err| err.to_string())?;
            match info_field(&info, "role").as_deref() {
                Some("master") => Ok(port),
                _ => Err(format!("{port} is not primary yet")),
            }
        })
    }

    /// Restarts the data node on `port` (empty: no persistence), and waits
    /// until the sentinels have turned it into an in-sync replica of the
    /// current primary. (Sentinel does that only once the node has been back
    /// for about 8 s, its fixed `SENTINEL_PUBLISH_PERIOD * 4`.)
    pub fn restart(&mut self, port: u16) {
        self.node_mut(port).restart();
        wait_for("the restarted node becoming a replica", SETTLE_TIMEOUT, || {
            let primary = self.reported_primary()?;
            self.replicas_in_sync(primary)
        });
    }

    fn replicas_in_sync(&self, primary: u16) -> Result<(), String> {
        for node in self.data.iter().filter(|node| node.port() != primary) {
            let info =
                query::<String>(node.port(), redis::cmd("INFO").arg("replication")).map_err(|err| err.to_string())?;
            if info_field(&info, "master_port") != Some(primary.to_string())
                || info_field(&info, "master_link_status").as_deref() != Some("up")
            {
                return Err(format!("{} is not an in-sync replica of {primary}", node.port()));
            }
        }
        Ok(())
    }

    /// Waits until the data nodes are one primary and one replica in sync,
    /// and every sentinel names that primary, sees that replica up, and can
    /// authorise a failover (it knows the other sentinels).
    pub fn wait_settled(&self) {
        wait_for("the sentinel deployment settling", SETTLE_TIMEOUT, || {
            let primary = self.reported_primary()?;
            for sentinel in &self.sentinels {
                let (_host, port): (String, u16) =
                    query(sentinel.port(), redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(SERVICE))
                        .map_err(|err| err.to_string())?;
                if port != primary {
                    return Err(format!("sentinel {} names {port}, not {primary}", sentinel.port()));
                }
                query::<String>(sentinel.port(), redis::cmd("SENTINEL").arg("ckquorum").arg(SERVICE))
                    .map_err(|err| format!("sentinel {}: {err}", sentinel.port()))?;
                let replicas: Vec<std::collections::HashMap<String, String>> =
                    query(sentinel.port(), redis::cmd("SENTINEL").arg("replicas").arg(SERVICE))
                        .map_err(|err| err.to_string())?;
                let up = replicas.iter().filter(|replica| {
                    replica.get("flags").is_some_and(|flags| flags == "slave")
                        && replica.get("master-link-status").is_some_and(|status| status == "ok")
                });
                if up.count() != 1 {
                    return Err(format!("sentinel {} does not see one healthy replica", sentinel.port()));
                }
            }
            self.replicas_in_sync(primary)
        });
    }

    fn node_mut(&mut self, port: u16) -> &mut RedisNode {
        match self.data.iter_mut().find(|node| node.port() == port) {
            Some(node) => node,
            None => panic!("no data node on port {port}"),
        }
    }
}
