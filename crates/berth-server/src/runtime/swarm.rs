//! [`Runtime`] on the nodes of a Docker Swarm. The swarm gives membership (which nodes there
//! are, their addresses, availability and labels); Berth places each session's container itself,
//! on the node with the most memory left that the template may use, and runs it there as on a
//! single host, through that node's `berth-node` relay. Why not one Swarm service per session:
//! ARCHITECTURE.md, Choices.
//!
//! A container's id here is `{node}/{engine's id}`, so every call after the create goes to the
//! node that holds it, and the store's rows say where each session runs.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::SocketAddr,
    sync::{Arc, Mutex as StdMutex},
    time::{Duration, Instant, SystemTime},
};

use async_trait::async_trait;
use bollard::{
    Docker,
    models::{NodeSpecAvailabilityEnum, NodeState},
    query_parameters::ListNodesOptions,
};
use futures_util::{StreamExt, stream};
use tokio::sync::{Mutex, OnceCell};

use super::{
    ContainerOrigin, ContainerSpec, DockerRuntime, EventStream, ManagedContainer, ManagedHome,
    ManagedSnapshot, Runtime, RuntimeError, SnapshotDepth,
    docker::{engine_client, map_error, negotiated},
};
use crate::{
    config::{DockerConfig, SwarmConfig},
    networks::SessionNetworks,
    reach::{self, KEY_HEADER, NodeRoute, RelayAccess, RelayConnector},
};

/// The swarm's node list is asked for again after this long: drains, labels and new nodes are
/// seen within it.
const NODES_REFRESH: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct SwarmRuntime {
    docker: DockerConfig,
    networks: SessionNetworks,
    swarm: SwarmConfig,
    relays: RelayAccess,
    timeout: Duration,
    manager: OnceCell<Docker>,
    /// The nodes as last listed; held across a placement so two creates never both count on
    /// the same free memory.
    view: Mutex<View>,
    /// Nodes once listed that are now down or gone: their containers went with them.
    lost: StdMutex<BTreeSet<String>>,
    /// Ready nodes the last listing of containers could not ask.
    unanswered: StdMutex<BTreeSet<String>>,
    /// The ready nodes' names, as last listed: a change ends [`Runtime::events`]' stream, so
    /// the session manager subscribes anew (a node that joined is followed too) and reconciles
    /// (a node that was lost has its sessions recovered) at once.
    membership: tokio::sync::watch::Sender<BTreeSet<String>>,
}

#[derive(Debug, Default)]
struct View {
    nodes: BTreeMap<String, Arc<Node>>,
    listed_at: Option<Instant>,
}

/// One node of the swarm, as placement sees it.
#[derive(Debug)]
struct Node {
    name: String,
    relay: SocketAddr,
    engine: DockerRuntime,
    /// Set once its session networks exist and [`reach`] knows their subnets.
    routed: OnceCell<()>,
    state: StdMutex<NodeView>,
}

#[derive(Debug, Clone, Default)]
struct NodeView {
    /// Ready, neither drained nor paused, and its berth-node answers: new sessions may go there.
    takes_sessions: bool,
    /// Ready: its engine answers for the sessions it holds.
    reachable: bool,
    /// Ready, and its berth-node answered the last reading of the node list: Berth can ask
    /// it what it holds.
    answers: bool,
    /// Ready and set to `drain`: its sessions are to move elsewhere.
    draining: bool,
    labels: HashMap<String, String>,
    memory_bytes: i64,
    /// The memory limits of the sessions it holds, as of the last listing, plus those made
    /// on it since.
    listed_bytes: i64,
    /// The memory limits of the sessions being made there now, which no listing shows yet.
    placing_bytes: i64,
}

impl NodeView {
    fn free_bytes(&self) -> i64 {
        self.memory_bytes - self.listed_bytes - self.placing_bytes
    }
}

impl SwarmRuntime {
    pub fn new(
        docker: DockerConfig,
        networks: SessionNetworks,
        swarm: SwarmConfig,
        relays: RelayAccess,
    ) -> Self {
        Self {
            timeout: Duration::from_secs(docker.timeout_seconds),
            docker,
            networks,
            swarm,
            relays,
            manager: OnceCell::new(),
            view: Mutex::new(View::default()),
            lost: StdMutex::new(BTreeSet::new()),
            unanswered: StdMutex::new(BTreeSet::new()),
            membership: tokio::sync::watch::Sender::new(BTreeSet::new()),
        }
    }

    async fn manager(&self) -> Result<&Docker, RuntimeError> {
        self.manager
            .get_or_try_init(|| async {
                let address = self
                    .swarm
                    .manager
                    .as_deref()
                    .or(self.docker.host.as_deref());
                negotiated(
                    engine_client(address)?.with_timeout(self.timeout),
                    self.timeout,
                )
                .await
            })
            .await
    }

    /// The nodes, listed again when the last listing is older than [`NODES_REFRESH`].
    async fn nodes(&self) -> Result<tokio::sync::MutexGuard<'_, View>, RuntimeError> {
        let mut view = self.view.lock().await;
        if view
            .listed_at
            .is_none_or(|at| at.elapsed() >= NODES_REFRESH)
        {
            self.list_nodes(&mut view).await?;
        }
        Ok(view)
    }

    async fn list_nodes(&self, view: &mut View) -> Result<(), RuntimeError> {
        let manager = self.manager().await?;
        let listed =
            tokio::time::timeout(self.timeout, manager.list_nodes(None::<ListNodesOptions>))
                .await
                .map_err(|_| {
                    RuntimeError::Unavailable("the swarm manager did not list its nodes".into())
                })?
                .map_err(|err| match map_error(err) {
                    RuntimeError::Engine(msg) if msg.contains("not a swarm manager") => {
                        RuntimeError::Engine(format!(
                            "{msg}; swarm.manager must name the engine of a manager node"
                        ))
                    }
                    other => other,
                })?;
        let mut nodes = BTreeMap::new();
        for listed in listed {
            let description = listed.description.unwrap_or_default();
            let spec = listed.spec.unwrap_or_default();
            let status = listed.status.unwrap_or_default();
            let (Some(name), Some(addr)) = (description.hostname, status.addr) else {
                continue;
            };
            let Ok(ip) = addr.parse::<std::net::IpAddr>() else {
                continue;
            };
            let relay = SocketAddr::new(ip, self.swarm.relay_port);
            let reachable = status.state == Some(NodeState::READY);
            let state = NodeView {
                takes_sessions: reachable
                    && spec.availability == Some(NodeSpecAvailabilityEnum::ACTIVE),
                reachable,
                // Known once its berth-node is asked, below.
                answers: false,
                draining: reachable && spec.availability == Some(NodeSpecAvailabilityEnum::DRAIN),
                labels: spec.labels.unwrap_or_default(),
                memory_bytes: description
                    .resources
                    .and_then(|resources| resources.memory_bytes)
                    .unwrap_or(0),
                listed_bytes: 0,
                placing_bytes: 0,
            };
            let node = match view.nodes.remove(&name) {
                Some(known) if known.relay == relay => known,
                _ => Arc::new(self.node(name.clone(), relay)?),
            };
            // Asked through the node's relay: a node whose berth-node does not answer takes no
            // new sessions (its running ones are left alone: its engine may be fine).
            let load = if reachable {
                match node.engine.load().await {
                    // Routed as soon as it answers, so its sessions are reached again at once.
                    Ok(load) => match self.route(&node).await {
                        Ok(()) => Some(load),
                        Err(err) => {
                            tracing::warn!(node = %name, %err, "cannot route to a node's sessions; no new sessions go there");
                            None
                        }
                    },
                    Err(err) => {
                        tracing::warn!(node = %name, %err, "a node's berth-node does not answer; no new sessions go there");
                        None
                    }
                }
            } else {
                None
            };
            {
                let mut current = node.state.lock().unwrap_or_else(|p| p.into_inner());
                *current = NodeView {
                    takes_sessions: state.takes_sessions && load.is_some(),
                    answers: state.reachable && load.is_some(),
                    listed_bytes: load.map_or(current.listed_bytes, |l| l.promised_bytes),
                    placing_bytes: current.placing_bytes,
                    ..state
                };
                crate::metrics::node(
                    &name,
                    &crate::metrics::NodeFigures {
                        up: current.takes_sessions,
                        containers: load.map(|l| l.containers),
                        memory_bytes: current.memory_bytes,
                        promised_bytes: current.listed_bytes,
                    },
                );
            }
            nodes.insert(name, node);
        }
        {
            let mut lost = self.lost.lock().unwrap_or_else(|p| p.into_inner());
            for gone in view.nodes.keys().filter(|name| !nodes.contains_key(*name)) {
                // Its gauges would otherwise keep their last values, as if it still ran sessions.
                crate::metrics::node(
                    gone,
                    &crate::metrics::NodeFigures {
                        up: false,
                        containers: Some(0),
                        memory_bytes: 0,
                        promised_bytes: 0,
                    },
                );
                lost.insert(gone.clone());
            }
            for (name, node) in &nodes {
                if node.state().reachable {
                    lost.remove(name);
                } else {
                    lost.insert(name.clone());
                }
            }
        }
        let ready: BTreeSet<String> = nodes
            .iter()
            .filter(|(_, node)| node.state().reachable)
            .map(|(name, _)| name.clone())
            .collect();
        self.membership.send_if_modified(|known| {
            let changed = *known != ready;
            *known = ready;
            changed
        });
        view.nodes = nodes;
        view.listed_at = Some(Instant::now());
        Ok(())
    }

    fn node(&self, name: String, relay: SocketAddr) -> Result<Node, RuntimeError> {
        let key = axum::http::HeaderValue::from_str(self.relays.key())
            .map_err(|_| RuntimeError::Engine("the node key is not a header value".into()))?;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(RelayConnector {
                    relay,
                    access: self.relays.clone(),
                });
        let engine = Docker::connect_with_custom_transport(
            move |request: bollard::BollardRequest| {
                let answer = client.request(request);
                async move { answer.await.map_err(bollard::errors::Error::from) }
            },
            Some(format!("http://{relay}")),
            self.docker.timeout_seconds,
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(map_error)?
        .with_request_modifier(move |mut request| {
            request.headers_mut().insert(KEY_HEADER, key.clone());
            request
        });
        Ok(Node {
            engine: DockerRuntime::on_engine(self.docker.clone(), self.networks.clone(), engine),
            name,
            relay,
            routed: OnceCell::new(),
            state: StdMutex::new(NodeView::default()),
        })
    }

    /// Makes the node's session networks and tells [`reach`] their subnets; once.
    async fn route(&self, node: &Node) -> Result<(), RuntimeError> {
        node.routed
            .get_or_try_init(|| async {
                node.engine.prepare().await?;
                self.set_route(node).await
            })
            .await
            .map(drop)
    }

    /// Tells [`reach`] the node's session subnets as its engine reports them now.
    async fn set_route(&self, node: &Node) -> Result<(), RuntimeError> {
        let subnets = node.engine.session_subnets().await?;
        reach::set_route(NodeRoute {
            node: node.name.clone(),
            subnets,
            relay: node.relay,
            access: self.relays.clone(),
        })
        .map_err(RuntimeError::Engine)
    }

    /// The node `container_id` names and the engine's own id; `None` when the swarm no longer
    /// lists that node or says it is down: its containers are gone with it.
    async fn locate<'a>(
        &self,
        container_id: &'a str,
    ) -> Result<Option<(Arc<Node>, &'a str)>, RuntimeError> {
        let Some((name, id)) = container_id.split_once('/') else {
            return Ok(None);
        };
        let node = self.nodes().await?.nodes.get(name).cloned();
        match node {
            Some(node) if node.state().reachable => {
                self.route(&node).await?;
                Ok(Some((node, id)))
            }
            _ => Ok(None),
        }
    }

    async fn located(&self, container_id: &str) -> Result<(Arc<Node>, String), RuntimeError> {
        match self.locate(container_id).await? {
            Some((node, id)) => Ok((node, id.to_owned())),
            None => Err(RuntimeError::NotFound(container_id.to_owned())),
        }
    }

    /// Every node the swarm says is ready.
    async fn ready_nodes(&self) -> Result<Vec<Arc<Node>>, RuntimeError> {
        Ok(self
            .nodes()
            .await?
            .nodes
            .values()
            .filter(|node| node.state().reachable)
            .cloned()
            .collect())
    }

    /// Every ready node whose berth-node answers, routed. One that does not answer, or cannot
    /// be routed, is left out rather than failing what asks of every node: the others still
    /// serve (reconcile says which nodes were left out, [`Runtime::unanswered`]).
    async fn reachable_nodes(&self) -> Result<Vec<Arc<Node>>, RuntimeError> {
        let mut routed = Vec::new();
        for node in self.ready_nodes().await? {
            if self.answering(&node).await.is_ok() {
                routed.push(node);
            }
        }
        Ok(routed)
    }

    /// Routes a node whose berth-node answers; why not, otherwise.
    async fn answering(&self, node: &Node) -> Result<(), RuntimeError> {
        if !node.state().answers {
            return Err(RuntimeError::Unavailable(format!(
                "node {}'s berth-node does not answer",
                node.name
            )));
        }
        self.route(node).await
    }

    /// A reachable node that holds `image`.
    async fn holder_of(&self, image: &str) -> Result<Option<Arc<Node>>, RuntimeError> {
        for node in self.reachable_nodes().await? {
            // A node that cannot say is not counted on to hold it.
            if matches!(node.engine.has_image(image).await, Ok(true)) {
                return Ok(Some(node));
            }
        }
        Ok(None)
    }

    /// The reachable nodes that hold `image`, when it names a registry (a snapshot, or an
    /// operator's image): a session made from it prefers them, and any other node needs it
    /// pushed first.
    async fn holders_of(&self, image: &str) -> Result<Vec<Arc<Node>>, RuntimeError> {
        if super::registry_of(image).is_none() {
            return Ok(Vec::new());
        }
        let mut holders = Vec::new();
        for node in self.reachable_nodes().await? {
            if matches!(node.engine.has_image(image).await, Ok(true)) {
                holders.push(node);
            }
        }
        Ok(holders)
    }

    /// Chooses the node for `spec` and counts its memory there, under the view's lock: of the
    /// nodes that may take it, one of `holders` when any has room (no pull), else the one with
    /// the most memory left.
    async fn place(
        &self,
        spec: &ContainerSpec,
        holders: &[Arc<Node>],
    ) -> Result<Arc<Node>, RuntimeError> {
        let view = self.nodes().await?;
        let mut best: Option<((bool, i64), &Arc<Node>)> = None;
        let mut refusals = Vec::new();
        for node in view.nodes.values() {
            let state = node.state();
            let free = state.free_bytes();
            let missing_label = spec
                .node_labels
                .iter()
                .find(|(key, value)| state.labels.get(*key) != Some(*value));
            if !state.takes_sessions {
                refusals.push(format!(
                    "{} is not ready, not active, or its berth-node does not answer",
                    node.name
                ));
            } else if let Some((key, value)) = missing_label {
                refusals.push(format!("{} lacks the label {key}={value}", node.name));
            } else if free < spec.memory_bytes {
                refusals.push(format!("{} has {} MiB left", node.name, free.max(0) >> 20));
            } else {
                let rank = (holders.iter().any(|h| h.name == node.name), free);
                if best.is_none_or(|(highest, _)| rank > highest) {
                    best = Some((rank, node));
                }
            }
        }
        let Some((_, node)) = best else {
            return Err(RuntimeError::Engine(format!(
                "no node of the swarm can run a session of template {} ({} MiB): {}",
                spec.template,
                spec.memory_bytes >> 20,
                if refusals.is_empty() {
                    "the swarm lists no nodes".to_owned()
                } else {
                    refusals.join("; ")
                }
            )));
        };
        node.start_placing(spec.memory_bytes);
        Ok(node.clone())
    }
}

impl Node {
    fn state(&self) -> NodeView {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn start_placing(&self, bytes: i64) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .placing_bytes += bytes;
    }

    /// A create placed here ended: made (its container now counts as listed until the next
    /// listing shows it), or not.
    fn end_placing(&self, bytes: i64, made: bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.placing_bytes -= bytes;
        if made {
            state.listed_bytes += bytes;
        }
    }

    fn id_of(&self, engine_id: &str) -> String {
        format!("{}/{engine_id}", self.name)
    }
}

#[async_trait]
impl Runtime for SwarmRuntime {
    async fn ping(&self) -> Result<(), RuntimeError> {
        let manager = self.manager().await?;
        tokio::time::timeout(self.timeout, manager.ping())
            .await
            .map_err(|_| RuntimeError::Unavailable("the swarm manager did not answer".into()))?
            .map_err(map_error)
            .map(drop)
    }

    async fn prepare(&self) -> Result<(), RuntimeError> {
        self.reachable_nodes().await.map(drop)
    }

    /// A session woken on another node than the one it slept on may find its snapshot's push
    /// still under way there: the holder pushes it (again) first, so the pull here finds it.
    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let holders = self.holders_of(&spec.image).await?;
        let node = self.place(spec, &holders).await?;
        let created = async {
            self.route(&node).await?;
            if let Some(holder) = holders.first()
                && !holders.iter().any(|h| h.name == node.name)
            {
                holder.engine.push_snapshot(&spec.image).await?;
            }
            node.engine.create(spec).await
        };
        let created = created.await;
        node.end_placing(spec.memory_bytes, created.is_ok());
        created.map(|id| node.id_of(&id))
    }

    async fn start(&self, container_id: &str) -> Result<SocketAddr, RuntimeError> {
        let (node, id) = self.located(container_id).await?;
        let addr = node.engine.start(&id).await?;
        // On a shard of its policy's networks made since the node was routed.
        if !reach::is_routed(addr.ip()) {
            self.set_route(&node).await?;
        }
        Ok(addr)
    }

    async fn remove(&self, container_id: &str) -> Result<(), RuntimeError> {
        match self.locate(container_id).await? {
            Some((node, id)) => node.engine.remove(id).await,
            // Its node left the swarm, and the container with it.
            None => Ok(()),
        }
    }

    async fn stop(&self, container_id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let (node, id) = self.located(container_id).await?;
        node.engine.stop(&id, grace).await
    }

    /// Committed, then pushed before it counts: a snapshot only its node holds would be lost
    /// with that node, and no other node could wake the session. A failed push fails the
    /// commit, so a hibernation undoes itself and the session keeps running.
    async fn commit(
        &self,
        container_id: &str,
        image: &str,
        pause: bool,
    ) -> Result<(), RuntimeError> {
        let (node, id) = self.located(container_id).await?;
        node.engine.commit(&id, image, pause).await?;
        if let Err(err) = node.engine.push_snapshot(image).await {
            if let Err(cleanup) = node.engine.drop_local_snapshot(image).await {
                tracing::warn!(%cleanup, %image, "an unpushed snapshot stays on its node");
            }
            return Err(RuntimeError::Unavailable(format!(
                "the snapshot could not be pushed to the registry, so no other node could restore it: {err}"
            )));
        }
        Ok(())
    }

    async fn unchanged_image(&self, container_id: &str) -> Result<Option<String>, RuntimeError> {
        let (node, id) = self.located(container_id).await?;
        node.engine.unchanged_image(&id).await
    }

    async fn snapshot_depth(&self, image: &str, base: &str) -> Result<SnapshotDepth, RuntimeError> {
        match self.holder_of(image).await? {
            Some(node) => node.engine.snapshot_depth(image, base).await,
            None => Err(RuntimeError::NotFound(image.to_owned())),
        }
    }

    async fn compact_snapshot(
        &self,
        image: &str,
        base: &str,
        target: &str,
    ) -> Result<(), RuntimeError> {
        match self.holder_of(image).await? {
            Some(node) => node.engine.compact_snapshot(image, base, target).await,
            None => Err(RuntimeError::NotFound(image.to_owned())),
        }
    }

    /// The registry's copy once, through whichever node holds the image; every node's copy.
    async fn remove_snapshot(&self, image: &str) -> Result<(), RuntimeError> {
        let nodes = self.reachable_nodes().await?;
        let holder = self.holder_of(image).await?;
        if let Some(first) = holder.as_ref().or(nodes.first()) {
            first.engine.remove_snapshot(image).await?;
        }
        for node in &nodes {
            node.engine.drop_local_snapshot(image).await?;
        }
        Ok(())
    }

    async fn push_snapshot(&self, image: &str) -> Result<(), RuntimeError> {
        match self.holder_of(image).await? {
            Some(node) => node.engine.push_snapshot(image).await,
            None => Err(RuntimeError::NotFound(image.to_owned())),
        }
    }

    async fn drop_local_snapshot(&self, image: &str) -> Result<(), RuntimeError> {
        for node in self.reachable_nodes().await? {
            node.engine.drop_local_snapshot(image).await?;
        }
        Ok(())
    }

    fn home_volume(&self, owner: &str, template: &str) -> String {
        super::home_volume_name(&self.docker.instance, owner, template)
    }

    /// A volume stays on the node that made it while a session wakes on any node, so a swarm
    /// keeps no persistent homes (the config refuses `home = "persistent"` there); this
    /// answers a spec that asks for one all the same.
    async fn ensure_home(&self, spec: &ContainerSpec) -> Result<Option<String>, RuntimeError> {
        match spec.home {
            Some(_) => Err(RuntimeError::Engine(format!(
                "template {} has a persistent home, which a swarm does not serve",
                spec.template
            ))),
            None => Ok(None),
        }
    }

    /// None: a swarm makes no homes.
    async fn homes(&self) -> Result<Vec<ManagedHome>, RuntimeError> {
        Ok(Vec::new())
    }

    async fn remove_home(&self, _volume: &str) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn snapshots(&self) -> Result<Vec<ManagedSnapshot>, RuntimeError> {
        let mut all = BTreeMap::new();
        for node in self.reachable_nodes().await? {
            for snapshot in node.engine.snapshots().await? {
                all.insert(snapshot.image.clone(), snapshot);
            }
        }
        Ok(all.into_values().collect())
    }

    /// Every ready node's containers; a node that cannot be asked is named in the log and
    /// by [`Runtime::unanswered`] until a listing reaches it.
    async fn list(&self) -> Result<Vec<ManagedContainer>, RuntimeError> {
        let mut all = Vec::new();
        let mut unanswered = BTreeSet::new();
        for node in self.ready_nodes().await? {
            let listed = match self.answering(&node).await {
                Ok(()) => node.engine.list().await,
                Err(err) => Err(err),
            };
            match listed {
                Ok(containers) => {
                    all.extend(containers.into_iter().map(|container| ManagedContainer {
                        id: node.id_of(&container.id),
                        ..container
                    }));
                }
                Err(err) => {
                    tracing::warn!(node = %node.name, %err, "cannot list a node's containers; its sessions are left as they are until it answers");
                    unanswered.insert(node.name.clone());
                }
            }
        }
        *self.unanswered.lock().unwrap_or_else(|p| p.into_inner()) = unanswered;
        Ok(all)
    }

    async fn inspect(&self, container_id: &str) -> Result<Option<ManagedContainer>, RuntimeError> {
        Ok(self.origin(container_id).await?.map(ManagedContainer::from))
    }

    async fn origin(&self, container_id: &str) -> Result<Option<ContainerOrigin>, RuntimeError> {
        let Some((node, id)) = self.locate(container_id).await? else {
            return Ok(None);
        };
        Ok(node.engine.origin(id).await?.map(|origin| ContainerOrigin {
            container_id: node.id_of(&origin.container_id),
            ..origin
        }))
    }

    async fn oom_killed(&self, container_id: &str) -> Result<bool, RuntimeError> {
        match self.locate(container_id).await? {
            Some((node, id)) => node.engine.oom_killed(id).await,
            None => Ok(false),
        }
    }

    async fn disk_used(&self, container_id: &str) -> Result<Option<u64>, RuntimeError> {
        match self.locate(container_id).await? {
            Some((node, id)) => node.engine.disk_used(id).await,
            None => Ok(None),
        }
    }

    // Docker inside sessions is not served on a swarm (the config refuses it), so sessions
    // there have no children.
    async fn remove_children(&self, _session_id: &str) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn stop_children(&self, _session_id: &str) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn start_children(&self, _session_id: &str) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn child_owners(&self) -> Result<BTreeSet<String>, RuntimeError> {
        Ok(BTreeSet::new())
    }

    async fn leaving(&self) -> Result<Vec<String>, RuntimeError> {
        let draining: Vec<Arc<Node>> = self
            .nodes()
            .await?
            .nodes
            .values()
            .filter(|node| node.state().draining)
            .cloned()
            .collect();
        let mut leaving = Vec::new();
        for node in draining {
            // One that cannot be asked now is asked again at the next reap.
            let Ok(()) = self.answering(&node).await else {
                continue;
            };
            let Ok(containers) = node.engine.list().await else {
                continue;
            };
            leaving.extend(
                containers
                    .into_iter()
                    .filter(|container| container.running)
                    .map(|container| node.id_of(&container.id)),
            );
        }
        Ok(leaving)
    }

    fn unanswered(&self, container_id: &str) -> bool {
        let unanswered = self.unanswered.lock().unwrap_or_else(|p| p.into_inner());
        container_id
            .split_once('/')
            .is_some_and(|(node, _)| unanswered.contains(node))
    }

    fn vanished_reason(&self, container_id: &str) -> &'static str {
        let lost = self.lost.lock().unwrap_or_else(|p| p.into_inner());
        match container_id.split_once('/') {
            Some((node, _)) if lost.contains(node) => "node_lost",
            _ => "container_vanished",
        }
    }

    /// Every reachable node's events, as one stream that ends when any node's ends (the
    /// caller then looks at the engines again and subscribes anew, nodes that joined included).
    /// A node that does not answer is left out rather than holding up the others: the swarm
    /// soon says whether it is down, and reconcile acts on that.
    async fn events(&self, since: SystemTime) -> Result<EventStream, RuntimeError> {
        let nodes = self.ready_nodes().await?;
        // The stream ends when the nodes change (the watcher then follows the new set), but not
        // for the change the listing above made: the first listing after a start fills the
        // membership, and a stream ended at once would be heard as the engine lost.
        let mut changes = self.membership.subscribe();
        let following: BTreeSet<&str> = nodes.iter().map(|node| node.name.as_str()).collect();
        let moved_since = changes
            .borrow_and_update()
            .iter()
            .map(String::as_str)
            .ne(following);
        if moved_since {
            changes.mark_changed();
        }
        let mut streams = vec![
            stream::once(async move {
                let _ = changes.changed().await;
                None
            })
            .boxed(),
        ];
        let mut silent = None;
        for node in nodes {
            let subscribed = async {
                self.route(&node).await?;
                node.engine.events(since).await
            };
            let events = match subscribed.await {
                Ok(events) => events,
                Err(err) => {
                    tracing::warn!(node = %node.name, %err, "a swarm node's engine does not answer");
                    silent = Some(err);
                    continue;
                }
            };
            let named = node.clone();
            streams.push(
                events
                    .map(move |event| {
                        Some(super::ContainerEvent {
                            container_id: named.id_of(&event.container_id),
                            ..event
                        })
                    })
                    .chain(stream::once(async { None }))
                    .boxed(),
            );
        }
        if let (1, Some(err)) = (streams.len(), silent) {
            return Err(err);
        }
        Ok(stream::select_all(streams)
            .take_while(|event| std::future::ready(event.is_some()))
            .filter_map(std::future::ready)
            .boxed())
    }
}
