//! [`Runtime`] on a Docker engine, through bollard.

use std::{
    collections::{BTreeSet, HashMap},
    net::{IpAddr, SocketAddr},
    path::Path,
    time::{Duration, Instant, SystemTime},
};

use async_trait::async_trait;
use berth_proto::agent::AGENT_PORT;
use bollard::{
    Docker,
    errors::Error as BollardError,
    models::{
        ContainerConfig, ContainerCreateBody, ContainerSummary, ContainerSummaryStateEnum,
        EndpointSettings, HostConfig, HostConfigLogConfig, NetworkCreateRequest, NetworkingConfig,
    },
    query_parameters::{
        CommitContainerOptions, CreateContainerOptionsBuilder, EventsOptionsBuilder,
        ListContainersOptionsBuilder, ListImagesOptionsBuilder, RemoveContainerOptionsBuilder,
        RemoveImageOptionsBuilder, StopContainerOptions,
    },
};
use futures_util::StreamExt;
use tokio::sync::OnceCell;

mod budget;
mod children;
mod compact;
mod cpu;
mod disk;
mod homes;
mod node;
mod overlay;
mod placement;
mod registry;

pub use placement::parse_cpuset;

use super::{
    ContainerEvent, ContainerEventKind, ContainerOrigin, ContainerSpec, EventStream,
    ManagedContainer, ManagedHome, ManagedSnapshot, Runtime, RuntimeError, SnapshotDepth, labels,
};
use crate::{
    config::DockerConfig,
    networks::{Cidr, SessionNetwork, SessionNetworks},
};

/// A commit copies every byte the session changed: its time grows with them, not with the
/// engine's responsiveness, so it gets a bound of its own.
pub(super) const COMMIT_DEADLINE: Duration = Duration::from_secs(600);

/// Container removals one engine is asked for at once. Each runs `runc` to kill and delete:
/// 2,000 sessions deleted together would otherwise start 2,000 of them, and the engine, busy
/// with them all, would answer nothing else for minutes.
const REMOVALS_AT_ONCE: usize = 8;

/// uid:gid of the `user` account in every session image.
const SESSION_USER: &str = "1000:1000";

/// How the engine lists an image's tags once it has none.
const UNTAGGED: &str = "<none>:<none>";

/// The option that names a bridge network's interface; the firewall's rules are keyed by it.
const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";

#[derive(Debug)]
pub struct DockerRuntime {
    config: DockerConfig,
    /// Which network each template's sessions join.
    networks: SessionNetworks,
    /// How full each shard of those networks, and each of the host's cores, is on this engine.
    placements: std::sync::Mutex<placement::PlacementBook>,
    /// Turns for [`REMOVALS_AT_ONCE`].
    removals: tokio::sync::Semaphore,
    timeout: Duration,
    /// Connected on first use, so the control plane starts (and answers 503) while the engine
    /// is down, and picks the engine up when it comes back.
    client: OnceCell<Docker>,
    /// Set once the session networks exist; checked before every create so a network deleted
    /// by hand, or an engine that was down at start, heals on the next create.
    prepared: OnceCell<()>,
    /// The sessions' Docker API sockets (`crate::docker_api`), opened as containers are made.
    docker_api: Option<crate::docker_api::Sockets>,
    /// The sessions' callback sockets (`crate::callback`), opened as containers are made.
    callback: Option<crate::callback::CallbackSockets>,
    /// The cgroups sessions with Docker share with their children, where the host allows;
    /// looked for on first use.
    budgets: OnceCell<Option<budget::SessionBudgets>>,
    /// The engine's client before version negotiation, when it is not `docker.host`'s (a swarm
    /// node's, through its relay).
    engine: Option<Docker>,
    /// Set once the engine refused a volume's size: homes are made without one from then on.
    no_volume_quota: std::sync::atomic::AtomicBool,
    /// Whether containers' writable layers get `disk_mb` as their size.
    layer_quota: disk::LayerQuota,
}

impl DockerRuntime {
    pub fn new(config: DockerConfig, networks: SessionNetworks) -> Self {
        let timeout = Duration::from_secs(config.timeout_seconds);
        Self {
            config,
            networks,
            placements: std::sync::Mutex::default(),
            removals: tokio::sync::Semaphore::new(REMOVALS_AT_ONCE),
            timeout,
            client: OnceCell::new(),
            prepared: OnceCell::new(),
            docker_api: None,
            callback: None,
            budgets: OnceCell::new(),
            engine: None,
            no_volume_quota: std::sync::atomic::AtomicBool::new(false),
            layer_quota: disk::LayerQuota::default(),
        }
    }

    /// Lets templates with `docker.enabled` run: their containers get their session's socket
    /// directory from `sockets` mounted where `DOCKER_HOST` points.
    pub fn with_docker_api(mut self, sockets: crate::docker_api::Sockets) -> Self {
        self.docker_api = Some(sockets);
        self
    }

    /// Gives every session the callback API: its socket directory from `sockets` mounted at
    /// [`crate::callback::DIR_IN_SESSION`], and the variables that find it.
    pub fn with_callback(mut self, sockets: crate::callback::CallbackSockets) -> Self {
        self.callback = Some(sockets);
        self
    }

    /// The callback API's bind and variables for a session's container, when it is served.
    fn callback_for(
        &self,
        session_id: &str,
    ) -> Result<Option<(String, [String; 3])>, RuntimeError> {
        use berth_proto::callback::{
            API_URL_ENV, RELAY_PORT, TOKEN_ENV, TOKEN_FILE, TOKEN_FILE_ENV,
        };
        let Some(sockets) = &self.callback else {
            return Ok(None);
        };
        // Read-only and the directory, not the socket, as for the Docker API's.
        let dir = sockets.ensure_open(session_id).map_err(|e| {
            RuntimeError::Engine(format!(
                "cannot open the callback socket of {session_id}: {e}"
            ))
        })?;
        let bind = format!("{}:{}:ro", dir.display(), crate::callback::DIR_IN_SESSION);
        let env = [
            format!("{API_URL_ENV}=http://127.0.0.1:{RELAY_PORT}"),
            format!("{TOKEN_ENV}={}", sockets.token(session_id)),
            format!("{TOKEN_FILE_ENV}={TOKEN_FILE}"),
        ];
        Ok(Some((bind, env)))
    }

    /// The bind that puts the session's socket directory in its container. The directory, not
    /// the socket: a control plane that restarts binds a new socket, which a mounted file
    /// would not follow. Read-only, so the session can neither remove the socket nor leave
    /// files on the host.
    fn docker_api_bind(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let sockets = self.docker_api.as_ref().ok_or_else(|| {
            RuntimeError::Engine("this control plane serves no Docker API to sessions".into())
        })?;
        // Opened here, before the container exists, so the socket is there before the
        // session's first command (the store's periodic sync would open it only later).
        let dir = sockets
            .ensure_open(&spec.session_id, &spec.template)
            .map_err(|e| {
                RuntimeError::Engine(format!(
                    "cannot open the Docker API socket of {}: {e}",
                    spec.session_id
                ))
            })?;
        Ok(format!(
            "{}:{}:ro",
            dir.display(),
            crate::docker_api::SOCKET_DIR_IN_SESSION
        ))
    }

    /// The file listing a hibernated session's children that its hibernation stopped; `None`
    /// when no Docker API is served (so there are no children). Beside the sessions' socket
    /// directories, in none of them.
    fn hibernated_children(&self, session_id: &str) -> Option<std::path::PathBuf> {
        let dir = self.docker_api.as_ref()?.dir().join(".hibernated");
        Some(dir.join(session_id))
    }

    /// The sessions' shared cgroups, where Docker in sessions is served, the engine is this
    /// host's and places containers by cgroup path, and the hierarchies are v1 and writable.
    async fn budgets(&self) -> Option<&budget::SessionBudgets> {
        self.budgets
            .get_or_init(|| async {
                if self.docker_api.is_none() || self.engine.is_some() {
                    return None;
                }
                let driver = match self.docker().await {
                    Ok(docker) => self.call("info", docker.info()).await.ok()?.cgroup_driver,
                    Err(_) => return None,
                };
                let driver = driver.map(|d| d.to_string()).unwrap_or_default();
                let budgets = (driver == "cgroupfs")
                    .then(|| {
                        budget::SessionBudgets::detect(
                            Path::new(crate::host::CGROUP_ROOT),
                            &self.config.instance,
                        )
                    })
                    .flatten();
                if budgets.is_none() {
                    tracing::warn!(
                        %driver,
                        "sessions with Docker do not share their limits with their children here \
                         (needs the engine's cgroupfs driver on cgroup v1); each child gets the \
                         session's limits of its own"
                    );
                }
                budgets
            })
            .await
            .as_ref()
    }

    fn children_filter(&self, session_id: Option<&str>) -> HashMap<String, Vec<String>> {
        let mut labels = vec![format!(
            "{}={}",
            labels::PARENT_INSTANCE,
            self.config.instance
        )];
        labels.extend(session_id.map(|id| format!("{}={id}", labels::PARENT)));
        HashMap::from([("label".to_owned(), labels)])
    }

    async fn docker(&self) -> Result<&Docker, RuntimeError> {
        self.client
            .get_or_try_init(|| async {
                let docker = match &self.engine {
                    Some(engine) => engine.clone(),
                    None => engine_client(self.config.host.as_deref())?,
                };
                negotiated(docker.with_timeout(self.timeout), self.timeout).await
            })
            .await
    }

    /// The client for calls that move a session's bytes (a commit): the engine answers them
    /// only when done, so the configured deadline, which the client applies to every answer,
    /// would cut a large one short. [`within_transfer`] bounds them instead.
    async fn transfer_client(&self) -> Result<Docker, RuntimeError> {
        Ok(self.docker().await?.clone().with_timeout(COMMIT_DEADLINE))
    }

    /// Runs one engine call under the configured deadline and records its latency.
    async fn call<T, F>(&self, op: &'static str, fut: F) -> Result<T, RuntimeError>
    where
        F: Future<Output = Result<T, BollardError>>,
    {
        self.call_within(op, self.timeout, fut).await
    }

    /// [`Self::call`] under `deadline`: a transfer's, for a call of [`Self::transfer_client`].
    async fn call_within<T, F>(
        &self,
        op: &'static str,
        deadline: Duration,
        fut: F,
    ) -> Result<T, RuntimeError>
    where
        F: Future<Output = Result<T, BollardError>>,
    {
        let started = Instant::now();
        let result = match tokio::time::timeout(deadline, fut).await {
            Ok(result) => result.map_err(map_error),
            Err(_) => Err(RuntimeError::Unavailable(format!(
                "{op} took longer than {deadline:?}"
            ))),
        };
        crate::metrics::docker_call(op, started.elapsed(), result.is_ok());
        result
    }

    /// Bounds one whole runtime operation, however many engine calls it makes (connecting
    /// included), by the configured deadline: a hung engine costs a caller that long at most.
    async fn within<T>(
        &self,
        operation: impl Future<Output = Result<T, RuntimeError>>,
    ) -> Result<T, RuntimeError> {
        tokio::time::timeout(self.timeout, operation)
            .await
            .unwrap_or_else(|_| {
                Err(RuntimeError::Unavailable(format!(
                    "the engine did not answer within {} s (docker.timeout_seconds)",
                    self.timeout.as_secs()
                )))
            })
    }

    /// Creates a session's container from an image the engine holds, on the first shard of
    /// its template's networks with room.
    async fn create_from_local(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        self.within(async {
            self.prepare().await?;
            let policy = self
                .networks
                .index_of_template(&spec.template)
                .ok_or_else(|| {
                    RuntimeError::Engine(format!(
                        "no session network for template {}",
                        spec.template
                    ))
                })?;
            let shard = self.take_shard(policy).await?;
            let cores = if self.config.pin_cpus {
                self.placements()
                    .take_cores(placement::cores_for(spec.nano_cpus))
            } else {
                Vec::new()
            };
            let mut held = placement::Held::new(
                self,
                placement::Placement {
                    shard: (policy, shard.index),
                    cores,
                    session: spec.session_id.clone(),
                },
            );
            let cpuset = held.cpuset();
            let mut created = self.create_on(spec, shard.name.clone(), &cpuset).await;
            if !cpuset.is_empty()
                && matches!(&created, Err(RuntimeError::Engine(msg))
                    if msg.contains("CPUs are not available"))
            {
                // `docker info` counts the cores the engine may use, not which: an engine
                // confined to cores 2 and 3 refuses 0. Its sessions run unpinned from now on.
                tracing::warn!(
                    "the engine refused to pin a session to cores {cpuset}: sessions on it run \
                     unpinned (docker.pin_cpus)"
                );
                held.unpin();
                self.placements().cores_known(0);
                created = self.create_on(spec, shard.name, "").await;
            }
            match &created {
                Ok(id) => held.placed(id.clone()),
                Err(RuntimeError::NotFound(msg)) if msg.contains("network") => {
                    let shard = held.shard();
                    drop(held);
                    self.placements().unknown(shard);
                }
                Err(_) => {}
            }
            created
        })
        .await
    }

    /// Creates the container on `network`, pinned to the cores of `cpuset` when it names any.
    async fn create_on(
        &self,
        spec: &ContainerSpec,
        network: String,
        cpuset: &str,
    ) -> Result<String, RuntimeError> {
        let storage_opt = self.storage_opt(spec);
        let sized = storage_opt.is_some();
        let created = self
            .create_sized(spec, network.clone(), cpuset, storage_opt)
            .await;
        if self.retry_without_size(sized, &created) {
            return self.create_sized(spec, network, cpuset, None).await;
        }
        created
    }

    async fn create_sized(
        &self,
        spec: &ContainerSpec,
        network: String,
        cpuset: &str,
        storage_opt: Option<HashMap<String, String>>,
    ) -> Result<String, RuntimeError> {
        let docker = self.docker().await?;
        let mut labels = HashMap::from([
            (labels::SESSION.to_owned(), spec.session_id.clone()),
            (labels::OWNER.to_owned(), spec.owner.clone()),
            (labels::TEMPLATE.to_owned(), spec.template.clone()),
            (labels::INSTANCE.to_owned(), self.config.instance.clone()),
            (labels::MEMORY.to_owned(), spec.memory_bytes.to_string()),
        ]);
        let cpuset_cpus = (!cpuset.is_empty()).then(|| cpuset.to_owned());
        if let Some(cpuset) = &cpuset_cpus {
            labels.insert(labels::CPUSET.to_owned(), cpuset.clone());
        }
        let cgroup_parent = match self.budgets().await.filter(|_| spec.docker_api) {
            Some(budgets) => {
                let limits = budget::Limits {
                    memory_bytes: spec.memory_bytes,
                    nano_cpus: spec.nano_cpus,
                    pids: spec.pids_limit,
                };
                budgets.ensure(&spec.session_id, limits).map_err(|e| {
                    RuntimeError::Engine(format!(
                        "cannot set the limits of {}'s cgroup: {e}",
                        spec.session_id
                    ))
                })?;
                Some(budgets.parent(&spec.session_id))
            }
            None => None,
        };
        let mut binds = Vec::new();
        let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if spec.docker_api {
            binds.push(self.docker_api_bind(spec)?);
        }
        if let Some((bind, callback_env)) = self.callback_for(&spec.session_id)? {
            binds.push(bind);
            env.extend(callback_env);
        }
        let host_config = HostConfig {
            cgroup_parent,
            memory: Some(spec.memory_bytes),
            // Equal to memory: no swap beyond the limit.
            memory_swap: Some(spec.memory_bytes),
            nano_cpus: Some(spec.nano_cpus),
            cpuset_cpus,
            pids_limit: Some(spec.pids_limit),
            cap_drop: Some(vec!["ALL".to_owned()]),
            cap_add: Some(self.config.cap_add.clone()),
            // The engine's default seccomp profile applies because none is overridden here.
            security_opt: Some(vec!["no-new-privileges:true".to_owned()]),
            privileged: Some(false),
            network_mode: Some(network.clone()),
            binds: Some(binds),
            mounts: self.home_mount(spec).map(|home| vec![home]),
            storage_opt,
            runtime: spec.oci_runtime.clone(),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".to_owned()),
                config: Some(HashMap::from([
                    ("max-size".to_owned(), self.config.log_max_size.clone()),
                    ("max-file".to_owned(), "1".to_owned()),
                ])),
            }),
            ..HostConfig::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            // Everything in a session, the agent included, runs as the session user.
            user: Some(SESSION_USER.to_owned()),
            hostname: Some(spec.session_id.clone()),
            env: Some(env),
            labels: Some(labels),
            host_config: Some(host_config),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(network, EndpointSettings::default())])),
            }),
            ..ContainerCreateBody::default()
        };
        let name = crate::runtime::container_name(&spec.session_id);
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        match self
            .call(
                "create_container",
                docker.create_container(Some(options), body),
            )
            .await
        {
            Ok(created) => Ok(created.id),
            Err(RuntimeError::NotFound(msg)) if msg.contains("image") => {
                Err(RuntimeError::ImageMissing(spec.image.clone()))
            }
            Err(RuntimeError::Engine(msg))
                if msg.contains("runtime") && spec.oci_runtime.is_some() =>
            {
                Err(RuntimeError::Engine(format!(
                    "{msg}: the template's `runtime` must be one `docker info` lists (install \
                     it, gVisor's is runsc, or take `runtime` out of the template)"
                )))
            }
            Err(err) => Err(err),
        }
    }

    /// What `docker info` says that placement needs: whether the storage limits a container's
    /// size (an engine that does not say is tried), and how many cores there are to pin
    /// sessions to.
    async fn learn_from_info(&self) {
        let Ok(docker) = self.docker().await else {
            return;
        };
        let Ok(info) = self.call("info", docker.info()).await else {
            return;
        };
        self.layer_quota.learn_from_info(
            info.driver.as_deref().unwrap_or_default(),
            &info.driver_status.unwrap_or_default(),
        );
        if self.config.pin_cpus {
            let cores = info.ncpu.and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
            self.placements().cores_known(cores);
        }
    }

    /// Makes every policy's first network, and counts the sessions already on each shard.
    async fn ensure_networks(&self) -> Result<(), RuntimeError> {
        for (policy, network) in self.networks.iter().enumerate() {
            let subnets = self.ensure_network(network, 0).await?;
            self.placements().known(
                (policy, 0),
                placement::capacity(self.config.sessions_per_network, &subnets),
            );
        }
        let containers = self.instance_containers().await?;
        let found: Vec<_> = self.placements_of(&containers).collect();
        self.placements().seed(found);
        Ok(())
    }

    /// Makes shard `index` of the policy's networks unless it exists; its subnets either way.
    async fn ensure_network(
        &self,
        network: &SessionNetwork,
        index: usize,
    ) -> Result<Vec<Cidr>, RuntimeError> {
        let docker = self.docker().await?;
        let shard = network.shard(index);
        let name = &shard.name;
        let subnets = |ipam: Option<bollard::models::Ipam>| -> Vec<Cidr> {
            ipam.and_then(|ipam| ipam.config)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|config| config.subnet?.parse().ok())
                .collect()
        };
        match self
            .call("inspect_network", docker.inspect_network(name, None))
            .await
        {
            Ok(existing) => {
                // The firewall keys its rules by this bridge: on any other, sessions would go
                // unguarded.
                let bridge = existing
                    .options
                    .and_then(|mut options| options.remove(BRIDGE_NAME_OPTION));
                if bridge.as_deref() == Some(shard.bridge.as_str()) {
                    return Ok(subnets(existing.ipam));
                }
                return Err(RuntimeError::Engine(format!(
                    "network {name} exists with bridge {} instead of {}, so Berth's firewall \
                     rules would not cover it; remove it (`docker network rm {name}`) once no \
                     container uses it, and Berth makes it again",
                    bridge.as_deref().unwrap_or("(engine-named)"),
                    shard.bridge
                )));
            }
            Err(RuntimeError::NotFound(_)) => {}
            Err(err) => return Err(err),
        }
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".to_owned()),
            options: Some(HashMap::from([
                // Sessions must not reach each other: no traffic between containers on this bridge.
                (
                    "com.docker.network.bridge.enable_icc".to_owned(),
                    "false".to_owned(),
                ),
                (BRIDGE_NAME_OPTION.to_owned(), shard.bridge.clone()),
            ])),
            labels: Some(HashMap::from([(
                labels::INSTANCE.to_owned(),
                self.config.instance.clone(),
            )])),
            ..NetworkCreateRequest::default()
        };
        match self
            .call("create_network", docker.create_network(request))
            .await
        {
            Ok(_) => {}
            // Another control plane created it between our inspect and create.
            Err(RuntimeError::Engine(msg)) if msg.contains("already exists") => {}
            Err(err) => return Err(err),
        }
        // The engine picks the subnet from its address pools as it creates the network.
        let created = self
            .call("inspect_network", docker.inspect_network(name, None))
            .await?;
        Ok(subnets(created.ipam))
    }

    /// Every container of this instance, running or not, as the engine lists them.
    async fn instance_containers(&self) -> Result<Vec<ContainerSummary>, RuntimeError> {
        let docker = self.docker().await?;
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&self.instance_filter())
            .build();
        self.call("list_containers", docker.list_containers(Some(options)))
            .await
    }

    fn instance_filter(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([(
            "label".to_owned(),
            vec![format!("{}={}", labels::INSTANCE, self.config.instance)],
        )])
    }
}

/// Bounds an operation whose time grows with the bytes it moves (a commit, a compaction, a
/// push or a pull) by [`COMMIT_DEADLINE`], not by the engine's responsiveness.
async fn within_transfer<T>(
    what: String,
    operation: impl Future<Output = Result<T, RuntimeError>>,
) -> Result<T, RuntimeError> {
    tokio::time::timeout(COMMIT_DEADLINE, operation)
        .await
        .unwrap_or_else(|_| {
            Err(RuntimeError::Unavailable(format!(
                "{what} took longer than {} s",
                COMMIT_DEADLINE.as_secs()
            )))
        })
}

/// A client for the engine at `host` (`DOCKER_HOST`, then the local default, when `None`);
/// nothing is connected until its first call.
pub(in crate::runtime) fn engine_client(host: Option<&str>) -> Result<Docker, RuntimeError> {
    let host = host
        .map(str::to_owned)
        .or_else(|| std::env::var("DOCKER_HOST").ok());
    match host {
        Some(host) => Docker::connect_with_host(&host),
        None => Docker::connect_with_local_defaults(),
    }
    .map_err(map_error)
}

/// `docker` speaking the engine's API version: engines here speak 1.41, bollard defaults to a
/// newer one.
pub(in crate::runtime) async fn negotiated(
    docker: Docker,
    timeout: Duration,
) -> Result<Docker, RuntimeError> {
    tokio::time::timeout(timeout, docker.negotiate_version())
        .await
        .map_err(|_| RuntimeError::Unavailable("version negotiation timed out".into()))?
        .map_err(map_error)
}

pub(in crate::runtime) fn map_error(err: BollardError) -> RuntimeError {
    match err {
        BollardError::DockerResponseServerError {
            status_code: 404,
            message,
        } => RuntimeError::NotFound(message),
        BollardError::DockerResponseServerError { message, .. } => RuntimeError::Engine(message),
        BollardError::JsonDataError { .. }
        | BollardError::JsonSerdeError { .. }
        | BollardError::APIVersionParseError { .. } => RuntimeError::Engine(err.to_string()),
        // bollard's own per-request deadline is the same setting `within` enforces.
        BollardError::RequestTimeoutError => RuntimeError::Unavailable(
            "the engine did not answer in time (docker.timeout_seconds)".into(),
        ),
        // Everything else is about reaching the engine: socket missing, connection refused,
        // timeouts, broken streams.
        other => RuntimeError::Unavailable(other.to_string()),
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    async fn ping(&self) -> Result<(), RuntimeError> {
        self.within(async {
            let docker = self.docker().await?;
            self.call("ping", docker.ping()).await.map(drop)
        })
        .await
    }

    async fn prepare(&self) -> Result<(), RuntimeError> {
        self.prepared
            .get_or_try_init(|| async {
                self.ensure_networks().await?;
                self.learn_from_info().await;
                Ok(())
            })
            .await
            .map(drop)
    }

    /// An image a registry holds (a snapshot whose local copy was dropped, a template's image
    /// on the operator's registry) is pulled when the engine lacks it.
    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        match self.create_from_local(spec).await {
            Err(RuntimeError::ImageMissing(image)) if super::registry_of(&image).is_some() => {
                match self.pull(&image).await {
                    // Not in the registry either: missing, as the engine would say.
                    Err(RuntimeError::NotFound(_)) => Err(RuntimeError::ImageMissing(image)),
                    Err(err) => Err(err),
                    Ok(()) => self.create_from_local(spec).await,
                }
            }
            created => created,
        }
    }

    async fn start(&self, container_id: &str) -> Result<SocketAddr, RuntimeError> {
        self.within(async {
            let docker = self.docker().await?;
            self.call(
                "start_container",
                docker.start_container(container_id, None),
            )
            .await?;
            let inspected = self
                .call(
                    "inspect_container",
                    docker.inspect_container(container_id, None),
                )
                .await?;
            let ip = inspected
                .network_settings
                .and_then(|settings| settings.networks)
                .and_then(|networks| {
                    networks
                        .into_iter()
                        .find(|(name, _)| self.networks.is_session_network(name))
                })
                .and_then(|(_, endpoint)| endpoint.ip_address)
                .and_then(|ip| ip.parse::<IpAddr>().ok())
                .ok_or_else(|| {
                    RuntimeError::Engine(format!(
                        "container {container_id} has no address on a session network"
                    ))
                })?;
            Ok(SocketAddr::new(ip, AGENT_PORT))
        })
        .await
    }

    async fn remove(&self, container_id: &str) -> Result<(), RuntimeError> {
        // Waiting for a turn is not the engine's slowness: the deadline starts after it.
        let _turn = self.removals.acquire().await;
        self.within(async {
            let docker = self.docker().await?;
            let options = RemoveContainerOptionsBuilder::new()
                .force(true)
                .v(true)
                .build();
            match self
                .call(
                    "remove_container",
                    docker.remove_container(container_id, Some(options)),
                )
                .await
            {
                Ok(()) | Err(RuntimeError::NotFound(_)) => Ok(()),
                // Another removal is under way (a concurrent reconcile, say): done when it is,
                // since callers rely on the container being gone when this returns.
                Err(RuntimeError::Engine(msg)) if msg.contains("already in progress") => loop {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    match self
                        .call(
                            "inspect_container",
                            docker.inspect_container(container_id, None),
                        )
                        .await
                    {
                        Err(RuntimeError::NotFound(_)) => break Ok(()),
                        Err(err) => break Err(err),
                        Ok(_) => {}
                    }
                },
                Err(err) => Err(err),
            }
        })
        .await
        .inspect(|()| self.placements().removed(container_id))
    }

    async fn list(&self) -> Result<Vec<ManagedContainer>, RuntimeError> {
        self.within(async {
            let generation = self.placements().begin_listing();
            let containers = self.instance_containers().await?;
            let found: std::collections::HashSet<&str> =
                containers.iter().filter_map(|c| c.id.as_deref()).collect();
            let placed: Vec<_> = self.placements_of(&containers).collect();
            let mut book = self.placements();
            book.listed(generation, &found);
            // Made by another control plane on this engine (one that led lifecycle before).
            book.seed(placed);
            drop(book);
            Ok(containers
                .into_iter()
                .filter_map(|summary| {
                    Some(ManagedContainer {
                        id: summary.id?,
                        session_id: summary.labels?.remove(labels::SESSION)?,
                        // A paused container (a commit pauses it) is alive, as inspecting
                        // it says: reconcile must not start it again.
                        running: matches!(
                            summary.state,
                            Some(
                                ContainerSummaryStateEnum::RUNNING
                                    | ContainerSummaryStateEnum::PAUSED
                            )
                        ),
                    })
                })
                .collect())
        })
        .await
    }

    /// One inspection serves both: what a container was made for includes what it is.
    async fn inspect(&self, container_id: &str) -> Result<Option<ManagedContainer>, RuntimeError> {
        Ok(self.origin(container_id).await?.map(ManagedContainer::from))
    }

    fn limits_disk(&self) -> bool {
        self.layer_quota.enforced()
    }

    async fn oom_killed(&self, container_id: &str) -> Result<bool, RuntimeError> {
        self.within(async {
            let docker = self.docker().await?;
            match self
                .call(
                    "inspect_container",
                    docker.inspect_container(container_id, None),
                )
                .await
            {
                Ok(inspected) => Ok(inspected
                    .state
                    .and_then(|state| state.oom_killed)
                    .unwrap_or(false)),
                Err(RuntimeError::NotFound(_)) => Ok(false),
                Err(err) => Err(err),
            }
        })
        .await
    }

    fn cpu_time(&self, session_id: &str, container_id: &str) -> Option<Duration> {
        self.session_cpu_time(session_id, container_id)
    }

    async fn disk_used(&self, container_id: &str) -> Result<Option<u64>, RuntimeError> {
        self.layer_bytes(container_id).await
    }

    async fn origin(&self, container_id: &str) -> Result<Option<ContainerOrigin>, RuntimeError> {
        self.within(async {
            let docker = self.docker().await?;
            let inspected = match self
                .call(
                    "inspect_container",
                    docker.inspect_container(container_id, None),
                )
                .await
            {
                Ok(inspected) => inspected,
                Err(RuntimeError::NotFound(_)) => return Ok(None),
                Err(err) => return Err(err),
            };
            let config = inspected.config.unwrap_or_default();
            let mut labels = config.labels.unwrap_or_default();
            if labels.get(labels::INSTANCE) != Some(&self.config.instance) {
                return Ok(None);
            }
            let secret_prefix = format!("{}=", berth_proto::agent::SECRET_ENV);
            let agent_secret = config
                .env
                .unwrap_or_default()
                .iter()
                .find_map(|var| var.strip_prefix(&secret_prefix).map(str::to_owned))
                .unwrap_or_default();
            let created_at = inspected
                .created
                .and_then(|at| chrono::DateTime::parse_from_rfc3339(&at).ok())
                .map_or_else(chrono::Utc::now, |at| at.with_timezone(&chrono::Utc));
            Ok(Some(ContainerOrigin {
                container_id: inspected.id.unwrap_or_else(|| container_id.to_owned()),
                session_id: labels.remove(labels::SESSION).unwrap_or_default(),
                owner: labels.remove(labels::OWNER).unwrap_or_default(),
                template: labels.remove(labels::TEMPLATE).unwrap_or_default(),
                agent_secret,
                created_at,
                running: inspected.state.and_then(|s| s.running).unwrap_or(false),
            }))
        })
        .await
    }

    async fn remove_children(&self, session_id: &str) -> Result<(), RuntimeError> {
        self.session_remove_children(session_id).await
    }

    async fn stop_children(&self, session_id: &str) -> Result<(), RuntimeError> {
        self.session_stop_children(session_id).await
    }

    async fn start_children(&self, session_id: &str) -> Result<(), RuntimeError> {
        self.session_start_children(session_id).await
    }

    async fn child_owners(&self) -> Result<BTreeSet<String>, RuntimeError> {
        self.child_owners_of_sessions().await
    }

    async fn events(&self, since: SystemTime) -> Result<EventStream, RuntimeError> {
        self.within(async {
            let docker = self.docker().await?;
            // Answering a ping is what "connected" means: the events request itself only reports
            // an unreachable engine once it is polled.
            self.call("ping", docker.ping()).await?;
            let mut filters = self.instance_filter();
            filters.insert("type".to_owned(), vec!["container".to_owned()]);
            filters.insert(
                "event".to_owned(),
                ["start", "die", "oom", "destroy"].map(str::to_owned).into(),
            );
            let since = since
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            let since = format!("{}.{:09}", since.as_secs(), since.subsec_nanos());
            let options = EventsOptionsBuilder::new()
                .since(&since)
                .filters(&filters)
                .build();
            let events = docker
                .events(Some(options))
                .take_while(|item| std::future::ready(item.is_ok()))
                .filter_map(|item| {
                    std::future::ready(item.ok().and_then(|message| {
                        let kind = match message.action.as_deref()? {
                            "start" => ContainerEventKind::Start,
                            "die" => ContainerEventKind::Die,
                            "oom" => ContainerEventKind::Oom,
                            "destroy" => ContainerEventKind::Destroy,
                            _ => return None,
                        };
                        let actor = message.actor?;
                        Some(ContainerEvent {
                            session_id: actor.attributes?.remove(labels::SESSION)?,
                            container_id: actor.id?,
                            kind,
                        })
                    }))
                });
            Ok(events.boxed())
        })
        .await
    }

    async fn stop(&self, container_id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let deadline = grace + self.timeout;
        let stopped = tokio::time::timeout(deadline, async {
            let docker = self.docker().await?;
            let options = StopContainerOptions {
                t: Some(i32::try_from(grace.as_secs()).unwrap_or(i32::MAX)),
                signal: None,
            };
            // 304 (already stopped) is a success for bollard. The engine answers once the
            // container is down, which takes the grace for one that ignores SIGTERM (a shell as
            // PID 1): the call has the whole deadline, not one call's.
            self.call_within(
                "stop_container",
                deadline,
                docker.stop_container(container_id, Some(options)),
            )
            .await
        });
        stopped.await.unwrap_or_else(|_| {
            Err(RuntimeError::Unavailable(format!(
                "stopping {container_id} took longer than {} s",
                deadline.as_secs()
            )))
        })
    }

    async fn commit(
        &self,
        container_id: &str,
        image: &str,
        pause: bool,
    ) -> Result<(), RuntimeError> {
        let (repository, tag) = super::split_tag(image);
        within_transfer(format!("committing {container_id}"), async {
            let docker = self.transfer_client().await?;
            let options = CommitContainerOptions {
                container: Some(container_id.to_owned()),
                repo: Some(repository.to_owned()),
                tag: Some(tag.to_owned()),
                comment: Some(compact::SNAPSHOT_COMMENT.to_owned()),
                pause,
                ..CommitContainerOptions::default()
            };
            // The engine keeps the container's environment in the image unless the commit
            // names the variable: the agent's secret and the session's callback token are
            // blanked, a restore brings fresh ones.
            // The container's labels (session, instance) go into the image, which is how
            // `snapshots` finds it.
            let config = ContainerConfig {
                env: Some(vec![
                    format!("{}=", berth_proto::agent::SECRET_ENV),
                    format!("{}=", berth_proto::callback::TOKEN_ENV),
                ]),
                ..ContainerConfig::default()
            };
            let commit = docker.commit_container(options, config);
            self.call_within("commit_container", COMMIT_DEADLINE, commit)
                .await
                .map(drop)
        })
        .await
    }

    async fn unchanged_image(&self, container_id: &str) -> Result<Option<String>, RuntimeError> {
        self.within(async {
            let docker = self.docker().await?;
            let inspected = self
                .call(
                    "inspect_container",
                    docker.inspect_container(container_id, None),
                )
                .await?;
            let Some(image) = inspected.config.and_then(|config| config.image) else {
                return Ok(None);
            };
            // The engine compares the container's own layer with its image: on overlay2 a
            // walk of that layer alone, however large the image.
            let changes = self
                .call("container_changes", docker.container_changes(container_id))
                .await?;
            Ok(changes.unwrap_or_default().is_empty().then_some(image))
        })
        .await
    }

    async fn snapshot_depth(&self, image: &str, base: &str) -> Result<SnapshotDepth, RuntimeError> {
        self.within(self.snapshot_lineage(image, base)).await
    }

    async fn compact_snapshot(
        &self,
        image: &str,
        base: &str,
        target: &str,
    ) -> Result<(), RuntimeError> {
        self.compact(image, base, target).await
    }

    /// The registry's copy first, while the local one still lets reconcile find the image
    /// and retry. A registry that will not delete (deletes disabled, unreachable) costs its
    /// manifest, logged, never the session's deletion.
    async fn remove_snapshot(&self, image: &str) -> Result<(), RuntimeError> {
        if let Err(err) = self.delete_manifest(image).await {
            tracing::warn!(%err, %image, "the registry keeps this snapshot's manifest");
        }
        self.drop_local_snapshot(image).await
    }

    async fn push_snapshot(&self, image: &str) -> Result<(), RuntimeError> {
        self.push(image).await
    }

    async fn drop_local_snapshot(&self, image: &str) -> Result<(), RuntimeError> {
        self.within(async {
            let docker = self.docker().await?;
            let options = RemoveImageOptionsBuilder::new().force(true).build();
            match self
                .call(
                    "remove_image",
                    docker.remove_image(image, Some(options), None),
                )
                .await
            {
                Ok(_) | Err(RuntimeError::NotFound(_)) => Ok(()),
                Err(err) => Err(err),
            }
        })
        .await
    }

    fn home_volume(&self, owner: &str, template: &str) -> String {
        super::home_volume_name(&self.config.instance, owner, template)
    }

    async fn ensure_home(&self, spec: &ContainerSpec) -> Result<Option<String>, RuntimeError> {
        self.make_home(spec).await
    }

    async fn homes(&self) -> Result<Vec<ManagedHome>, RuntimeError> {
        self.home_volumes().await
    }

    async fn remove_home(&self, volume: &str) -> Result<(), RuntimeError> {
        self.remove_home_volume(volume).await
    }

    async fn snapshots(&self) -> Result<Vec<ManagedSnapshot>, RuntimeError> {
        self.within(async {
            let docker = self.docker().await?;
            let options = ListImagesOptionsBuilder::new()
                .filters(&self.instance_filter())
                .build();
            let (images, containers) = tokio::try_join!(
                self.call("list_images", docker.list_images(Some(options))),
                self.instance_containers(),
            )?;
            let in_use: std::collections::HashSet<String> = containers
                .into_iter()
                .filter_map(|container| container.image_id)
                .collect();
            Ok(images
                .into_iter()
                .filter_map(|mut image| {
                    let session_id = image.labels.remove(labels::SESSION)?;
                    let tag = image.repo_tags.into_iter().find(|tag| tag != UNTAGGED);
                    // Removing a snapshot a restored container still runs on only takes its
                    // tag; the image is named by its id from then on, and swept by it once
                    // no container of this instance uses it.
                    let image = match tag {
                        Some(tag) => tag,
                        None if in_use.contains(&image.id) => return None,
                        None => image.id,
                    };
                    Some(ManagedSnapshot { image, session_id })
                })
                .collect())
        })
        .await
    }
}
