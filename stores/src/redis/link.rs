//! What an operation talks through: a standalone (or Sentinel-chosen)
//! server's connection manager or a Cluster connection, behind the `redis`
//! crate's own `ConnectionLike`, so that scripts, pipelines and commands are
//! written once for every shape.
//!
//! A write may also have to wait for replicas (`WAIT n timeout`). The `WAIT`
//! travels in the same pipeline as the write it covers: on one connection it
//! counts that write (a `WAIT` on another connection, after a reconnect,
//! would count nothing and acknowledge at once), and on a Cluster the
//! pipeline is routed by the write's key, so the `WAIT` reaches the primary
//! that took the write. A transaction is sent as `MULTI … EXEC WAIT`, the
//! `WAIT` outside it: inside a transaction `WAIT` does not block.

use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager};
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{Route, SingleNodeRoutingInfo, Slot, SlotAddr};
use ::redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};

/// A connection of either shape.
#[derive(Clone)]
pub(super) enum Inner {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Replicas a write must reach before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Wait {
    pub(super) replicas: u32,
    pub(super) timeout: Duration,
}

/// The connection an operation gets: every command on it goes to `inner`,
/// followed by a `WAIT` when `wait` is set.
#[derive(Clone)]
pub(crate) struct Link {
    inner: Inner,
    wait: Option<Wait>,
}

impl Link {
    pub(super) fn new(inner: Inner, wait: Option<Wait>) -> Self {
        Self { inner, wait }
    }

    /// Whether this is a Cluster connection, where a keyless command such
    /// as `SCAN` must be addressed to one node.
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.inner, Inner::Cluster(_))
    }

    /// Sends `pipeline` as one unit to the node the Cluster client holds
    /// for the primary of `slot`, and returns each command's reply. The
    /// client may pick a replica of that primary while the primary is
    /// unreachable, or a node that no longer serves the slot while its
    /// view of the Cluster is stale: a caller that must know which node
    /// answered puts `CLUSTER MYID` in the pipeline. Never waits for
    /// replicas (only reads go this way).
    pub(super) async fn send_to_primary_of_slot(&mut self, slot: u16, pipeline: Pipeline) -> RedisResult<Vec<Value>> {
        let Inner::Cluster(connection) = &mut self.inner else {
            return Err(RedisError::from((ErrorKind::Client, "only a Cluster connection routes by slot")));
        };
        let Some(slot) = Slot::new(slot) else {
            return Err(RedisError::from((ErrorKind::Client, "no such hash slot", slot.to_string())));
        };
        let count = pipeline.len();
        let route = SingleNodeRoutingInfo::SpecificNode(Route::with_slot(slot, SlotAddr::Master));
        connection.route_pipeline(pipeline, 0, count, route).await
    }

    fn wait_cmd(wait: Wait) -> Cmd {
        let mut cmd = ::redis::cmd("WAIT");
        // WAIT 0 would block forever; the builder refuses a zero timeout.
        cmd.arg(wait.replicas).arg(u64::try_from(wait.timeout.as_millis()).unwrap_or(u64::MAX).max(1));
        cmd
    }

    async fn with_wait(
        &mut self,
        pipeline: Pipeline,
        offset: usize,
        count: usize,
        wait: Wait,
    ) -> RedisResult<Vec<Value>> {
        let mut replies = self.inner.req_packed_commands(&pipeline, offset, count + 1).await?;
        let acknowledged = replies.pop();
        // An error in the write comes first: the write did not happen, and
        // the caller (a script's NOSCRIPT retry, say) must see it as such.
        if replies.iter().any(|reply| matches!(reply, Value::ServerError(_))) {
            return Ok(replies);
        }
        match acknowledged {
            Some(Value::Int(count)) if count >= i64::from(wait.replicas) => Ok(replies),
            Some(Value::Int(count)) => Err(RedisError::from((
                ErrorKind::Client,
                "the write was applied on the primary, but too few replicas acknowledged it in time; a failover may lose it",
                format!("{count} of {} replicas within {:?}", wait.replicas, wait.timeout),
            ))),
            Some(Value::ServerError(err)) => Err(RedisError::from(err)),
            other => Err(RedisError::from((
                ErrorKind::UnexpectedReturnType,
                "WAIT answered something other than a count",
                format!("{other:?}"),
            ))),
        }
    }
}

/// Whether `cmd` is one to wait for: everything but `SCRIPT LOAD`, which a
/// script call sends after a `NOSCRIPT` and which goes to every primary.
fn needs_wait(cmd: &Cmd) -> bool {
    !matches!(cmd.args_iter().next(), Some(::redis::Arg::Simple(name)) if name.eq_ignore_ascii_case(b"SCRIPT"))
}

impl Inner {
    fn get_db(&self) -> i64 {
        match self {
            Inner::Single(connection) => connection.get_db(),
            Inner::Cluster(connection) => connection.get_db(),
        }
    }

    async fn req_packed_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Inner::Single(connection) => connection.req_packed_command(cmd).await,
            Inner::Cluster(connection) => connection.req_packed_command(cmd).await,
        }
    }

    async fn req_packed_commands(
        &mut self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            Inner::Single(connection) => connection.req_packed_commands(pipeline, offset, count).await,
            Inner::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count).await,
        }
    }
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            match self.wait {
                Some(wait) if needs_wait(cmd) => {
                    let mut pipeline = ::redis::pipe();
                    pipeline.add_command(cmd.clone()).add_command(Self::wait_cmd(wait));
                    let mut replies = self.with_wait(pipeline, 0, 1, wait).await?;
                    match replies.pop() {
                        Some(reply) => reply.extract_error(),
                        None => Err(RedisError::from((ErrorKind::UnexpectedReturnType, "no reply to a command"))),
                    }
                }
                _ => self.inner.req_packed_command(cmd).await,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let Some(wait) = self.wait else {
                return self.inner.req_packed_commands(pipeline, offset, count).await;
            };
            // The same commands as a plain pipeline, MULTI and EXEC spelled
            // out, so that the WAIT can follow the EXEC.
            let mut with_wait = ::redis::pipe();
            if pipeline.is_transaction() {
                with_wait.cmd("MULTI");
            }
            for cmd in pipeline.cmd_iter() {
                with_wait.add_command(cmd.clone());
            }
            if pipeline.is_transaction() {
                with_wait.cmd("EXEC");
            }
            with_wait.add_command(Self::wait_cmd(wait));
            self.with_wait(with_wait, offset, count, wait).await
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}
