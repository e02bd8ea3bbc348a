//! A throwaway Redis Cluster for tests: three primaries with one replica
//! each, six `redis-server --cluster-enabled yes` processes on loopback
//! ports, joined by `redis-cli --cluster create`. A short
//! `cluster-node-timeout` (1 s) makes failovers quick. Every process is
//! killed and the directory removed when the cluster is dropped.

use std::ffi::OsString;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::redis_node::{self, Ready, RedisNode, info_field, query, wait_for};

/// Primaries, and replicas per primary.
const PRIMARIES: usize = 3;
const NODES: usize = PRIMARIES * 2;
/// How long a node may be unreachable before the others fail it over.
pub const NODE_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long forming the cluster, or healing it, may take.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A running six-node cluster.
pub struct RedisCluster {
    // Dropped in order: the processes, then their directory.
    nodes: Vec<RedisNode>,
    _dir: TempDir,
}

impl RedisCluster {
    /// Starts and forms a cluster, or returns `None` after a loud skip when
    /// `redis-server` or `redis-cli` is missing (a failure under `CI=true`).
    pub fn start_or_skip() -> Option<Self> {
        if !redis_node::programs_or_skip(&["redis-server", "redis-cli"]) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("cannot create a directory for the cluster: {err}"));
        let ports = redis_node::free_ports(NODES * 2);
        let nodes = (0..NODES)
            .map(|i| {
                let (port, bus_port) = (ports[i], ports[NODES + i]);
                let mut args = redis_node::base_args(port);
                args.extend(
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        &NODE_TIMEOUT.as_millis().to_string(),
                        "--cluster-port",
                        &bus_port.to_string(),
                    ]
                    .map(OsString::from),
                );
                RedisNode::start(
                    format!("cluster node {i}"),
                    dir.path().join(format!("node{i}")),
                    port,
                    args,
                    Ready::Ping,
                )
            })
            .collect();
        let cluster = Self { nodes, _dir: dir };
        cluster.create();
        cluster.wait_healthy();
        Some(cluster)
    }

    fn create(&self) {
        let mut command = Command::new("redis-cli");
        command.arg("--cluster").arg("create");
        for node in &self.nodes {
            command.arg(format!("127.0.0.1:{}", node.port()));
        }
        command.args(["--cluster-replicas", "1", "--cluster-yes"]).stdin(Stdio::null());
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run redis-cli --cluster create: {err}"));
        let started = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if started.elapsed() > SETTLE_TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("redis-cli --cluster create did not finish within {SETTLE_TIMEOUT:?}");
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(err) => panic!("cannot wait for redis-cli: {err}"),
            }
        }
        let output = child.wait_with_output().unwrap_or_else(|err| panic!("cannot read redis-cli's output: {err}"));
        if !output.status.success() {
            panic!(
                "redis-cli --cluster create failed:\n{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }

    /// The store URL naming every node as a seed.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|node| format!("127.0.0.1:{}", node.port())).collect();
        format!("redis+cluster://{}/", hosts.join(","))
    }

    /// Every node's port, in start order.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisNode::port).collect()
    }

    /// The ports of the running nodes that are primaries now.
    pub fn primary_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|node| node.is_running())
            .filter(|node| role(node.port()).is_ok_and(|role| role == "master"))
            .map(RedisNode::port)
            .collect()
    }

    /// The port of the primary that serves `key` now: the one primary that
    /// does not redirect a read of it.
    pub fn primary_of(&self, key: &str) -> u16 {
        for port in self.primary_ports() {
            // A primary answers a read of a key it owns; the others answer MOVED.
            match query::<redis::Value>(port, redis::cmd("EXISTS").arg(key)) {
                Ok(_) => return port,
                Err(err) if err.code() == Some("MOVED") => {}
                Err(err) => panic!("cannot ask node {port} about a key: {err}"),
            }
        }
        panic!("no running primary owns the key's slot");
    }

    /// Hands the slot of `key`, which must hold no key, to another primary
    /// (a resharding of an empty slot: only its ownership moves, announced
    /// with a new epoch), and waits until its old owner redirects `key`.
    /// Returns the old owner's and the new owner's ports.
    pub fn move_empty_slot(&self, key: &str) -> (u16, u16) {
        let from = self.primary_of(key);
        let to = self.primary_ports().into_iter().find(|port| *port != from).expect("a second primary");
        let slot: i64 = query(to, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key)).expect("CLUSTER KEYSLOT");
        let to_id: String = query(to, redis::cmd("CLUSTER").arg("MYID")).expect("CLUSTER MYID");
        // The new owner first, with an epoch above every other node's so that
        // its claim wins; then every other primary, the old owner included.
        let assign = |port: u16| {
            query::<()>(port, redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg("NODE").arg(&to_id))
                .unwrap_or_else(|err| panic!("CLUSTER SETSLOT on node {port}: {err}"));
        };
        assign(to);
        query::<String>(to, redis::cmd("CLUSTER").arg("BUMPEPOCH")).expect("CLUSTER BUMPEPOCH");
        for port in self.primary_ports().into_iter().filter(|port| *port != to) {
            assign(port);
        }
        wait_for("the old owner redirecting the moved slot", SETTLE_TIMEOUT, || {
            match query::<redis::Value>(from, redis::cmd("EXISTS").arg(key)) {
                Err(err) if err.code() == Some("MOVED") => self.all_ok(),
                Ok(_) => Err(format!("node {from} still serves slot {slot}")),
                Err(err) => Err(format!("node {from}: {err}")),
            }
        });
        (from, to)
    }

    /// Kills the node on `port` (SIGKILL).
    pub fn kill(&mut self, port: u16) {
        self.node_mut(port).kill();
    }

    /// Restarts the node on `port` with its `nodes.conf`, and waits until
    /// the cluster is whole again (it rejoins as a replica if it was failed
    /// over meanwhile).
    pub fn restart(&mut self, port: u16) {
        self.node_mut(port).restart();
        self.wait_healthy();
    }

    /// The port of the replica of the primary on `primary`.
    pub fn replica_of(&self, primary: u16) -> u16 {
        let replica = self.nodes.iter().filter(|node| node.is_running()).find(|node| {
            query::<String>(node.port(), redis::cmd("INFO").arg("replication"))
                .is_ok_and(|info| info_field(&info, "master_port") == Some(primary.to_string()))
        });
        match replica {
            Some(node) => node.port(),
            None => panic!("the primary on port {primary} has no replica"),
        }
    }

    /// Waits until `replica` has been promoted and the cluster serves every
    /// slot again.
    pub fn wait_for_promotion(&self, replica: u16) {
        wait_for("the cluster failing over", SETTLE_TIMEOUT, || {
            if role(replica)? != "master" {
                return Err(format!("{replica} is not promoted yet"));
            }
            self.all_ok()
        });
    }

    /// Waits until every running node reports `cluster_state:ok` with all
    /// slots served, knows all six nodes, and every replica is in sync.
    pub fn wait_healthy(&self) {
        wait_for("the cluster becoming healthy", SETTLE_TIMEOUT, || {
            self.all_ok()?;
            for node in self.nodes.iter().filter(|node| node.is_running()) {
                let info = query::<String>(node.port(), redis::cmd("INFO").arg("replication"))
                    .map_err(|err| err.to_string())?;
                if info_field(&info, "role").as_deref() == Some("slave")
                    && info_field(&info, "master_link_status").as_deref() != Some("up")
                {
                    return Err(format!("replica {} is not in sync yet", node.port()));
                }
            }
            let primaries = self.primary_ports().len();
            if primaries != PRIMARIES {
                return Err(format!("{primaries} primaries"));
            }
            Ok(())
        });
    }

    fn all_ok(&self) -> Result<(), String> {
        for node in self.nodes.iter().filter(|node| node.is_running()) {
            let info = query::<String>(node.port(), redis::cmd("CLUSTER").arg("INFO"))
                .map_err(|err| format!("node {}: {err}", node.port()))?;
            for (field, expected) in [("cluster_state", "ok"), ("cluster_slots_ok", "16384")] {
                if info_field(&info, field).as_deref() != Some(expected) {
                    return Err(format!("node {}: {field} is not {expected}", node.port()));
                }
            }
            if info_field(&info, "cluster_known_nodes").as_deref() != Some(&NODES.to_string()) {
                return Err(format!("node {} does not know every node yet", node.port()));
            }
        }
        Ok(())
    }

    /// The log of the node on `port`, to explain a failure.
    pub fn log(&self, port: u16) -> String {
        self.nodes.iter().find(|node| node.port() == port).map(RedisNode::log).unwrap_or_default()
    }

    fn node_mut(&mut self, port: u16) -> &mut RedisNode {
        match self.nodes.iter_mut().find(|node| node.port() == port) {
            Some(node) => node,
            None => panic!("no cluster node on port {port}"),
        }
    }
}

fn role(port: u16) -> Result<String, String> {
    let info = query::<String>(port, redis::cmd("INFO").arg("replication")).map_err(|err| err.to_string())?;
    info_field(&info, "role").ok_or_else(|| "no role".to_owned())
}
