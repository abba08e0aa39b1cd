//! Berth's control plane.
//!
//! [`run`] serves the API on a listener until `shutdown` resolves. Everything it is made of is
//! reachable from here: `api` (HTTP), `sessions` (the lifecycle owner), `runtime` (the engine
//! seam), `store` (the database seam). See ARCHITECTURE.md for how they fit.

pub mod agent_client;
pub mod api;
pub mod auth;
pub mod callback;
pub mod cluster;
pub mod config;
pub mod docker_api;
pub mod firewall;
pub mod host;
pub mod ids;
pub mod labs;
pub mod login;
pub mod metrics;
pub mod networks;
pub mod preview;
pub mod proxy;
pub mod queued;
pub mod reach;
pub mod relay_tls;
pub mod runtime;
mod serve;
mod session_socket;
pub mod sessions;
pub mod signing;
pub mod store;
pub mod webhooks;

use std::{sync::Arc, time::Duration};

use axum::Router;
use tokio::{net::TcpListener, task::JoinHandle};

use crate::{
    agent_client::AgentClient,
    api::AppState,
    auth::Authenticator,
    cluster::{Coordination, LeaderClient, Leadership},
    config::{Config, ConfigError, RuntimeKind},
    firewall::{Firewall, FirewallError},
    networks::SessionNetworks,
    runtime::{DockerRuntime, Runtime, SwarmRuntime},
    sessions::{ManagerContext, SessionManager},
    store::Store,
};

/// Messages leave out their `source`: `berth` prints the whole chain, which adds it.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot use {path} (the data dir, or cluster.host_dir)")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    #[error(transparent)]
    RelayTls(#[from] relay_tls::RelayTlsError),
    #[error("serving: {0}")]
    Serve(std::io::Error),
    #[error("labs in {dir}:\n{errors}")]
    Labs {
        dir: std::path::PathBuf,
        errors: String,
    },
    #[error("cannot listen on {addr} ({key})")]
    Bind {
        key: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// A wired control plane: the router plus the background loops that keep sessions in shape.
/// Dropping it stops the loops.
#[derive(Debug)]
pub struct App {
    pub router: Router,
    /// With `[e2b] enabled`: E2B's control-plane REST and envd, each for a listener of its own.
    pub e2b: Option<E2bRouters>,
    pub sessions: SessionManager,
    /// What the sessions' callback sockets serve (`callback`).
    pub callback: Router,
    /// This instance's part in leading lifecycle; released on a graceful stop.
    pub leadership: Leadership,
    background: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
pub struct E2bRouters {
    pub api: Router,
    pub sandbox: Router,
}

impl App {
    /// Keeps the sessions' Docker API sockets matched with the store while the app runs.
    pub fn serve_docker_api(
        &mut self,
        sockets: docker_api::Sockets,
        store: Arc<dyn Store>,
        runtime: Arc<dyn Runtime>,
        serving: cluster::Serving,
    ) {
        let api = docker_api::DockerApi::new(sockets, store, runtime, serving);
        self.background.push(api.spawn());
    }

    /// Whether this instance serves sessions' sockets now: those in a host dir of its own
    /// always (the sessions it made mount them), those in one shared by the instances on an
    /// engine (`cluster.host_dir`) while it leads.
    pub fn serves_sockets(&self, config: &Config) -> cluster::Serving {
        let shared = config.cluster.host_dir.is_some();
        let sessions = self.sessions.clone();
        cluster::Serving::new(move || !shared || sessions.leads())
    }
}

impl Drop for App {
    fn drop(&mut self) {
        for task in &self.background {
            task.abort();
        }
    }
}

/// Wires the control plane on a given store, coordination, runtime and labs, claims the lead
/// of lifecycle (a new leader converges with the engine before this returns), and starts the
/// reaper, the periodic reconcile and the lease's renewals.
pub async fn app(
    config: &Config,
    store: Arc<dyn Store>,
    coordination: Arc<dyn Coordination>,
    runtime: Arc<dyn Runtime>,
    admin_token: &str,
    labs: labs::Catalogue,
) -> App {
    // Installed before anything records, so no early measurement is lost.
    metrics::handle();
    let templates = Arc::new(config.templates.clone());
    let max_file_bytes = config.agent.max_file_mb.saturating_mul(1024 * 1024);
    let holder = ids::instance_id();
    let activity = Arc::new(sessions::Activity::default());
    let mut background = Vec::from(cluster::notices::relay(
        coordination.clone(),
        activity.clone(),
    ));
    let leader = LeaderClient::new(coordination.clone(), &holder, admin_token);
    let (webhooks, announcements, dispatcher) = webhooks::Dispatcher::new(
        store.clone(),
        config.webhooks.clone(),
        config.webhook_delivery.clone(),
    );
    let agent = AgentClient::default();
    let sessions = SessionManager::clustered(
        ManagerContext {
            store: store.clone(),
            runtime: runtime.clone(),
            agent: agent.clone(),
            templates: templates.clone(),
            sessions_per_user: config.quota.sessions_per_user,
            max_hibernated: config.quota.max_hibernated,
            hibernated_ttl: Duration::from_secs(config.snapshots.hibernated_ttl_seconds),
            // Validated to at most 100.
            compact_after_layers: config.snapshots.compact_after_layers as u32,
            snapshot_repository: sessions::snapshot_repository(
                config.snapshots.registry.as_deref(),
            ),
            keep_local_snapshots: config.snapshots.keep_local,
            agent_ready_timeout: Duration::from_millis(config.agent.ready_timeout_ms),
            max_file_bytes,
            create_slots: Arc::new(tokio::sync::Semaphore::new(
                config.capacity.create_concurrency as usize,
            )),
            capacity: config.capacity.clone(),
            tickets: sessions::QueueTickets::default(),
            create_timeout: Duration::from_secs(config.lifecycle.create_timeout_seconds),
            engine: Default::default(),
            activity,
            wake_outlook: Default::default(),
            webhooks: webhooks.clone(),
            journals: sessions::timeline::Collector::new(agent, store.clone(), webhooks.clone()),
        },
        leader,
    );
    background.extend(dispatcher.spawn(announcements, sessions.clone()));
    background.push(sessions.sweep_journals(Duration::from_secs(config.timeline.collect_seconds)));
    background.push(sessions.watch_disks(Duration::from_secs(config.lifecycle.disk_check_seconds)));

    let leadership = Leadership::new(
        coordination.clone(),
        sessions.clone(),
        &holder,
        &config.advertise_url(),
        Duration::from_millis(config.cluster.lease_ttl_ms),
    );
    // The lead first: a leader's actor follows the engine's events from here on, so an
    // engine that does not answer is known as lost before the first request.
    let took_lead = leadership.claim_without_reconcile().await;
    if let Err(err) = runtime.prepare().await {
        tracing::warn!(%err, "engine not ready at start; sessions cannot be created until it is");
    }
    if took_lead {
        leadership.reconcile().await;
    } else {
        tracing::info!("another instance leads session lifecycle; following it");
    }
    background.push(leadership.clone().spawn());

    let reaper = {
        let sessions = sessions.clone();
        let period = Duration::from_millis(config.lifecycle.reap_interval_ms);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if sessions.reap().await.is_err() {
                    return;
                }
            }
        })
    };
    let reconciler = {
        let sessions = sessions.clone();
        let period = Duration::from_secs(config.lifecycle.reconcile_interval_seconds);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match sessions.reconcile().await {
                    Ok(report) if report != Default::default() => {
                        tracing::info!(?report, "reconciled")
                    }
                    // Once per cluster: the leader's.
                    Ok(_) | Err(sessions::SessionError::NotLeader) => {}
                    Err(sessions::SessionError::ManagerGone) => return,
                    Err(err) => tracing::warn!(%err, "reconcile failed; will retry"),
                }
            }
        })
    };

    let retention = Duration::from_secs(config.timeline.retention_days.saturating_mul(86_400));
    let (timeline, writer) = sessions::timeline::TimelineWriter::spawn(store.clone(), retention);
    background.push(writer);
    let audit = if config.audit.enabled {
        let retention = Duration::from_secs(config.audit.retention_days.saturating_mul(86_400));
        let (audit, writer) = api::AuditLog::spawn(store.clone(), retention);
        background.push(writer);
        audit
    } else {
        api::AuditLog::default()
    };
    let state = AppState::new(api::Services {
        sessions: sessions.clone(),
        auth: Authenticator::new(admin_token, store.clone()),
        store,
        runtime,
        templates,
        tickets: auth::Tickets::new(coordination),
        agent: AgentClient::default(),
        max_file_bytes,
        signer: signing::Signer::from_secret(admin_token),
        proxy: preview::PreviewProxy::default(),
        preview: config.preview.clone(),
        docker_api: config
            .templates
            .values()
            .any(|t| t.docker.enabled)
            .then(|| docker_api_dir(config.host_dir())),
        docker_timeout: Duration::from_secs(config.docker.timeout_seconds),
        e2b_templates: Arc::new(config.e2b.templates.clone()),
        cluster_key: cluster::cluster_key(admin_token).into(),
        compat: config.compat.clone(),
        rate_limit: api::rate_limit::RateLimiter::new(
            config.quota.requests_per_second,
            config.quota.request_burst,
        ),
        webhooks,
        audit,
        callback_rate: api::rate_limit::RateLimiter::new(
            api::callback::RATE_PER_SECOND,
            api::callback::RATE_BURST,
        )
        .expect("the callback's rate is not zero"),
        login: login::Providers::new(&config.auth),
        timeline,
        webhook_config: api::WebhookSettings {
            operators: config.webhooks.clone(),
            delivery: config.webhook_delivery.clone(),
        },
        labs: api::labs::LabsService::new(
            labs,
            &config.ai,
            Duration::from_secs(config.labs.judge_timeout_seconds),
        ),
    });
    App {
        router: api::router(state.clone()),
        callback: api::callback_router(state.clone()),
        e2b: config.e2b.enabled.then(|| E2bRouters {
            api: api::e2b::api_router(state.clone()),
            sandbox: api::e2b::sandbox_router(state),
        }),
        sessions,
        leadership,
        background: {
            background.extend([reaper, reconciler]);
            background
        },
    }
}

/// Installs the process's rustls provider (ring's, the one Berth links), which every outbound
/// HTTPS client (the assistant's, webhooks') needs before it is built; later calls change
/// nothing.
pub(crate) fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The labs of `[labs] dir`, every one checked: one broken lab stops the start, with the
/// file and field it is wrong in.
fn lab_catalogue(config: &Config) -> Result<labs::Catalogue, ServerError> {
    let Some(dir) = &config.labs.dir else {
        return Ok(labs::Catalogue::default());
    };
    labs::load_catalogue(dir, &config.templates).map_err(|errors| {
        let errors: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        ServerError::Labs {
            dir: dir.clone(),
            errors: errors.join("\n"),
        }
    })
}

/// Creates the data dir, or narrows an existing one, to its owner alone (0700): it holds the
/// admin token and every session's agent secret.
fn private_dir(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

/// Serves the control plane on `listener` until `shutdown` resolves: SQLite in the data dir,
/// the Docker engine from the config.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let data_dir = config.data_dir.clone();
    let labs = lab_catalogue(&config)?;
    for dir in [&data_dir, config.host_dir()] {
        private_dir(dir).map_err(|source| ServerError::DataDir {
            path: dir.to_owned(),
            source,
        })?;
    }
    let (admin_token, generated) =
        auth::load_or_generate_admin_token(&data_dir, config.admin_token.as_deref()).map_err(
            |source| ServerError::DataDir {
                path: data_dir.clone(),
                source,
            },
        )?;
    if generated {
        // The token itself stays out of the log: logs are shipped and kept where files are not.
        tracing::warn!(
            file = %auth::admin_token_path(&data_dir).display(),
            "generated the admin token; read it from the file named here"
        );
    }

    let opened = store::open(config.store.url.as_deref(), &data_dir).await?;
    let (store, coordination) = (opened.store, opened.coordination);
    let networks = SessionNetworks::new(&config)?;
    // Before `app`, which starts containers (warm pools): none runs without its rules. On a
    // swarm, no session runs on this host: each node's berth-node keeps that node's rules.
    let firewall = match config.runtime.kind {
        RuntimeKind::Docker => install_firewall(&config, &networks).await?,
        RuntimeKind::Swarm => None,
    };
    let docker_sockets = docker_sockets(&config, &networks)?;
    let callback_sockets = callback_sockets(&config, &admin_token);
    let several_instances = config
        .store
        .url
        .as_deref()
        .is_some_and(|url| url.starts_with("redis"));
    if several_instances
        && config.cluster.host_dir.is_none()
        && (docker_sockets.is_some() || callback_sockets.is_some())
    {
        tracing::warn!(
            "cluster.host_dir is not set: sessions' Docker API and callback sockets live in this \
             instance's data dir and stop with it; give every instance on this engine the same \
             cluster.host_dir (docs/operations.md)"
        );
    }
    // Sessions' use is read from this host's cgroups: only an engine of this host's has them.
    let local_engine = engine_is_local(&config);
    let mut steered = None;
    let runtime: Arc<dyn Runtime> = match config.runtime.kind {
        RuntimeKind::Docker => {
            let mut runtime = DockerRuntime::new(config.docker.clone(), networks.clone());
            if let Some(sockets) = &docker_sockets {
                runtime = runtime.with_docker_api(sockets.clone());
            }
            if let Some(sockets) = &callback_sockets {
                runtime = runtime.with_callback(sockets.clone());
            }
            let runtime = Arc::new(runtime);
            if local_engine && config.docker.pin_cpus && config.docker.steer_control_plane {
                steered = Some(runtime.clone());
            }
            runtime
        }
        RuntimeKind::Swarm => {
            reach::relays_only();
            Arc::new(SwarmRuntime::new(
                config.docker.clone(),
                networks.clone(),
                config.swarm.clone(),
                reach::RelayAccess::new(&admin_token)?,
            ))
        }
    };
    let mut app = app(
        &config,
        store.clone(),
        coordination,
        runtime.clone(),
        &admin_token,
        labs,
    )
    .await;
    if let Some(sockets) = callback_sockets {
        sockets.serve(app.callback.clone());
        let serving = app.serves_sockets(&config);
        app.background.push(sockets.spawn(store.clone(), serving));
    }
    if let Some(sockets) = docker_sockets {
        let serving = app.serves_sockets(&config);
        app.serve_docker_api(sockets, store, runtime, serving);
    }
    if let Some(runtime) = steered {
        app.background
            .push(tokio::spawn(runtime.steer_control_plane()));
    }
    if let Some(firewall) = &firewall {
        let period = Duration::from_secs(config.firewall.check_interval_seconds);
        let engine_generations = app.sessions.engine().generations();
        app.background
            .push(firewall.spawn_checks(period, engine_generations));
    }
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "berth is serving; API docs at http://{addr}/docs");
    }
    // The E2B listeners are bound before anything is served, so a taken port stops the start.
    let mut e2b = Vec::new();
    if let Some(routers) = &app.e2b {
        for (key, addr, router) in [
            ("e2b.api_listen", config.e2b.api_listen, routers.api.clone()),
            (
                "e2b.sandbox_listen",
                config.e2b.sandbox_listen,
                routers.sandbox.clone(),
            ),
        ] {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { key, addr, source })?;
            tracing::info!(%addr, "serving {key} for E2B's SDKs");
            e2b.push((listener, router));
        }
    }
    // One shutdown for every listener.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let leadership = app.leadership.clone();
    tokio::spawn(async move {
        shutdown.await;
        // Handed over before the open connections drain: another instance leads within a
        // second, instead of after this one's last client has gone.
        leadership.release().await;
        let _ = stop.send(true);
    });
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let mut servers = tokio::task::JoinSet::new();
    for (listener, router) in e2b.into_iter().chain([(listener, app.router.clone())]) {
        let (limits, stopped) = (config.http.clone(), until_stopped());
        servers.spawn(async move { serve::serve(listener, router, &limits, stopped).await });
    }
    while let Some(served) = servers.join_next().await {
        served.map_err(|join| ServerError::Serve(std::io::Error::other(join)))?;
    }
    Ok(())
}

/// The sessions' Docker API sockets when a template has `docker.enabled`: under the host dir,
/// forwarding to the engine on this host. The runtime mounts them into containers
/// ([`DockerRuntime::with_docker_api`]); [`App::serve_docker_api`] keeps them open.
pub fn docker_sockets(
    config: &Config,
    networks: &SessionNetworks,
) -> Result<Option<docker_api::Sockets>, ConfigError> {
    Ok(docker_api_engine(config)?.map(|engine| {
        docker_api::Sockets::new(
            config,
            docker_api_dir(config.host_dir()),
            engine,
            networks.clone(),
        )
    }))
}

/// The sessions' callback sockets (`callback`), with `[callback] enabled` where sessions run
/// on this host's engine: the socket directories are mounted from this host.
fn callback_sockets(config: &Config, admin_token: &str) -> Option<callback::CallbackSockets> {
    let local_engine = engine_is_local(config);
    if !config.callback.enabled || config.runtime.kind != RuntimeKind::Docker || !local_engine {
        return None;
    }
    Some(callback::CallbackSockets::new(
        config.host_dir().join("callback"),
        signing::Signer::from_secret(admin_token),
        Duration::from_secs(config.callback.token_ttl_seconds),
    ))
}

/// The engine's address as the runtime reads it: `docker.host`, `DOCKER_HOST`, or the local
/// default.
fn engine_address(config: &Config) -> String {
    config
        .docker
        .host
        .clone()
        .or_else(|| std::env::var("DOCKER_HOST").ok())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned())
}

/// Whether the engine is this host's (its unix socket): only then are its containers' cgroups
/// and socket mounts this host's too.
fn engine_is_local(config: &Config) -> bool {
    engine_address(config).starts_with("unix://")
}

/// Where the sessions' Docker API sockets live, one directory each.
fn docker_api_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("docker-api")
}

/// The engine the sessions' Docker APIs forward to, when a template has one. It must be on
/// this host's unix socket: the APIs' sockets are mounted from this host into the containers.
fn docker_api_engine(config: &Config) -> Result<Option<docker_api::Engine>, ConfigError> {
    let Some(name) = config
        .templates
        .iter()
        .find_map(|(name, t)| t.docker.enabled.then_some(name))
    else {
        return Ok(None);
    };
    let address = engine_address(config);
    let timeout = Duration::from_secs(config.docker.timeout_seconds);
    docker_api::Engine::from_address(&address, timeout)
        .map(Some)
        .ok_or_else(|| {
            ConfigError::Invalid(format!(
                "template {name:?} has docker.enabled, which needs the engine on this host's unix \
                 socket (docker.host = \"unix:///var/run/docker.sock\"), not {address}"
            ))
        })
}

/// Installs Berth's firewall rules, or says loudly that it runs without them.
pub async fn install_firewall(
    config: &Config,
    networks: &SessionNetworks,
) -> Result<Option<Firewall>, FirewallError> {
    if !config.firewall.enabled {
        tracing::warn!(
            "FIREWALL DISABLED (firewall.enabled = false): sessions can reach this host, the cloud \
             metadata service and whatever the host can, and templates' egress policies are not \
             applied, unless the operator's own firewall does it"
        );
        return Ok(None);
    }
    let networks = networks.clone();
    let firewall = tokio::task::spawn_blocking(move || {
        let firewall = Firewall::detect(&networks)?;
        let changes = firewall.ensure_blocking()?;
        tracing::info!(changes = changes.0.len(), "firewall rules in place");
        Ok::<_, FirewallError>(firewall)
    })
    .await
    .map_err(|join| FirewallError::Task(join.to_string()))??;
    Ok(Some(firewall))
}
