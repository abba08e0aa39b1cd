//! The control plane's configuration: one TOML file, every key optional.
//!
//! The reference for every key is `docs/config.md`; `berth.example.toml` at the repository root
//! is parsed by a test so it cannot drift from this code.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use berth_proto::Egress;
use serde::{Deserialize, Serialize};

use crate::networks::EgressPolicy;

/// The name of the template used when a request names none.
pub const DEFAULT_TEMPLATE: &str = "default";

/// The longest lifetime a template may give its sessions: ten years. Anything longer is a
/// mistake, and durations are added to dates, which cannot grow without bound.
pub const MAX_TTL_SECONDS: u64 = 10 * 365 * 24 * 3600;

/// The shortest admin token a config may set; generated ones are much longer.
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;

/// The most sessions one session network holds: a bridge's 1,023 ports, less room for the
/// children of sessions with a Docker API, which join their parent's policy network.
pub const MAX_SESSIONS_PER_NETWORK: u32 = 1000;

/// The largest `home_size_mb` and `disk_mb`: 16 TiB, past any disk a session could mean; the
/// bound keeps the byte count the engine is given far from overflowing.
const MAX_HOME_SIZE_MB: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the API listens on.
    pub listen: SocketAddr,
    /// Where the SQLite database and the generated admin token live.
    pub data_dir: PathBuf,
    /// Token with every right. Generated into the data dir at first start when unset.
    pub admin_token: Option<String>,
    pub quota: QuotaConfig,
    pub http: HttpConfig,
    pub docker: DockerConfig,
    pub agent: AgentConfig,
    pub lifecycle: LifecycleConfig,
    pub capacity: CapacityConfig,
    pub preview: PreviewConfig,
    pub snapshots: SnapshotsConfig,
    pub firewall: FirewallConfig,
    pub e2b: E2bConfig,
    pub compat: CompatConfig,
    pub cluster: ClusterConfig,
    pub store: StoreConfig,
    pub runtime: RuntimeConfig,
    pub swarm: SwarmConfig,
    pub labs: LabsConfig,
    pub ai: AiConfig,
    pub callback: CallbackConfig,
    /// `[[webhooks]]`: the operator's endpoints, for every session's events.
    pub webhooks: Vec<WebhookConfig>,
    pub webhook_delivery: WebhookDeliveryConfig,
    pub audit: AuditConfig,
    pub auth: AuthConfig,
    pub timeline: TimelineConfig,
    pub templates: BTreeMap<String, TemplateConfig>,
}

/// `[timeline]`: sessions' timelines (`GET /api/v1/sessions/{id}/timeline`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimelineConfig {
    /// A timeline is kept this many days after its last entry (its session's end).
    pub retention_days: u64,
    /// Every this many seconds the lifecycle leader collects what running sessions' agents
    /// noted (terminal commands, ports, processes ending); also when a timeline is read, a
    /// terminal closes, and before a session hibernates or is deleted.
    pub collect_seconds: u64,
}

impl Default for TimelineConfig {
    fn default() -> Self {
        Self {
            retention_days: 30,
            collect_seconds: 15,
        }
    }
}

/// `[auth]`: signing in with GitHub or an OpenID Connect provider, beside tokens
/// (docs/integration.md).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The address browsers reach Berth at (`https://berth.example.com`): providers send them
    /// back to `<public_url>/api/v1/auth/.../callback`, the address to register with them.
    /// Unset: the scheme and `Host` of the request that began the sign-in.
    pub public_url: Option<String>,
    /// How long a browser stays signed in after a provider's sign-in.
    pub login_hours: u64,
    /// `[auth.github]`: GitHub OAuth (an OAuth app's client id and secret).
    pub github: Option<GithubAuthConfig>,
    /// `[[auth.oidc]]`: OpenID Connect providers (Keycloak, Authentik, Google, ...).
    pub oidc: Vec<OidcAuthConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            login_hours: 168,
            github: None,
            oidc: Vec::new(),
        }
    }
}

/// `[auth.github]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GithubAuthConfig {
    pub client_id: String,
    /// Overridden by the environment's `BERTH_GITHUB_CLIENT_SECRET`.
    #[serde(default)]
    pub client_secret: String,
    /// GitHub Enterprise's (or a test's) addresses instead of github.com's.
    #[serde(default = "github_authorize_url")]
    pub authorize_url: String,
    #[serde(default = "github_token_url")]
    pub token_url: String,
    #[serde(default = "github_api_url")]
    pub api_url: String,
    /// Only members of one of these organisations may sign in (asks for `read:org`).
    #[serde(default)]
    pub allowed_orgs: Vec<String>,
    /// Only these GitHub logins may sign in (with `allowed_orgs`, either admits).
    #[serde(default)]
    pub allowed_users: Vec<String>,
}

fn github_authorize_url() -> String {
    "https://github.com/login/oauth/authorize".into()
}

fn github_token_url() -> String {
    "https://github.com/login/oauth/access_token".into()
}

fn github_api_url() -> String {
    "https://api.github.com".into()
}

/// One `[[auth.oidc]]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcAuthConfig {
    /// In the routes (`/api/v1/auth/oidc/{name}/login`): a-z, 0-9 and `-`.
    pub name: String,
    /// On the sign-in button. Default: the name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The issuer; its `/.well-known/openid-configuration` is read at the first sign-in.
    pub issuer: String,
    pub client_id: String,
    /// Overridden by the environment's `BERTH_OIDC_<NAME>_CLIENT_SECRET` (upper case, `-` as `_`).
    #[serde(default)]
    pub client_secret: String,
    #[serde(default = "oidc_scopes")]
    pub scopes: Vec<String>,
    /// Only verified emails of these domains may sign in.
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// Only these verified emails may sign in (with `allowed_domains`, either admits).
    #[serde(default)]
    pub allowed_emails: Vec<String>,
}

fn oidc_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(String::from).to_vec()
}

impl AuthConfig {
    /// What is wrong with these settings, for `Config::validate`.
    fn problem(&self) -> Option<String> {
        let http = |url: &str| url.starts_with("http://") || url.starts_with("https://");
        if let Some(url) = &self.public_url
            && !http(url)
        {
            return Some(format!(
                "auth.public_url {url:?} must be an http:// or https:// URL"
            ));
        }
        if !(1..=24 * 365).contains(&self.login_hours) {
            return Some(format!(
                "auth.login_hours {} must be from 1 to 8760",
                self.login_hours
            ));
        }
        if let Some(github) = &self.github {
            if github.client_id.is_empty() || github.client_secret.is_empty() {
                return Some(
                    "auth.github needs client_id and client_secret (or \
                     BERTH_GITHUB_CLIENT_SECRET): an OAuth app's, made at \
                     https://github.com/settings/developers"
                        .into(),
                );
            }
            for url in [&github.authorize_url, &github.token_url, &github.api_url] {
                if !http(url) {
                    return Some(format!("auth.github: {url:?} must be an http(s) URL"));
                }
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, provider) in self.oidc.iter().enumerate() {
            let name_ok = (1..=32).contains(&provider.name.len())
                && provider
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !name_ok {
                return Some(format!(
                    "auth.oidc[{i}].name {:?} must be 1 to 32 of a-z, 0-9 and -",
                    provider.name
                ));
            }
            if !names.insert(provider.name.as_str()) {
                return Some(format!(
                    "auth.oidc: the name {:?} is used twice",
                    provider.name
                ));
            }
            if !http(&provider.issuer) {
                return Some(format!(
                    "auth.oidc[{i}].issuer {:?} must be an http(s) URL",
                    provider.issuer
                ));
            }
            if provider.client_id.is_empty() || provider.client_secret.is_empty() {
                return Some(format!(
                    "auth.oidc[{i}] needs client_id and client_secret (or {})",
                    oidc_secret_variable(&provider.name)
                ));
            }
            if !provider.scopes.iter().any(|scope| scope == "openid") {
                return Some(format!("auth.oidc[{i}].scopes must include openid"));
            }
        }
        None
    }

    /// Client secrets from the environment, over the file's.
    fn secrets_from_env(&mut self) {
        let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if let Some(github) = &mut self.github
            && let Some(secret) = from_env("BERTH_GITHUB_CLIENT_SECRET")
        {
            github.client_secret = secret.trim().to_owned();
        }
        for provider in &mut self.oidc {
            if let Some(secret) = from_env(&oidc_secret_variable(&provider.name)) {
                provider.client_secret = secret.trim().to_owned();
            }
        }
    }
}

fn oidc_secret_variable(name: &str) -> String {
    format!(
        "BERTH_OIDC_{}_CLIENT_SECRET",
        name.to_ascii_uppercase().replace('-', "_")
    )
}

/// `[labs]`: hands-on lessons with a judge (docs/labs.md).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabsConfig {
    /// The directory of labs, one subdirectory each (Berth ships its own in `labs/`). Unset:
    /// no labs. Relative to the config file.
    pub dir: Option<PathBuf>,
    /// A judging that has not finished this long after it began is stopped and answered
    /// `504 timeout`.
    pub judge_timeout_seconds: u64,
}

impl Default for LabsConfig {
    fn default() -> Self {
        Self {
            dir: None,
            judge_timeout_seconds: 300,
        }
    }
}

/// `[callback]`: the API code inside a session calls back (docs/integration.md).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallbackConfig {
    /// Give every session `BERTH_API_URL`, `BERTH_SESSION_TOKEN` and the `/api/v1/self`
    /// routes. Served where sessions run on this host's engine (`runtime.kind = "docker"`
    /// with a local engine).
    pub enabled: bool,
    /// How long a session token works; the token file gets a new one every half of this.
    pub token_ttl_seconds: u64,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            token_ttl_seconds: 3600,
        }
    }
}

/// `[audit]`: the log of state-changing calls (`GET /api/v1/audit`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    pub enabled: bool,
    /// Entries older than this many days are forgotten.
    pub retention_days: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            retention_days: 90,
        }
    }
}

/// One `[[webhooks]]` table: an endpoint of the operator's, for every session's events
/// (docs/integration.md).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// `whsec_` and base64 of 24 to 64 bytes: `echo whsec_$(openssl rand -base64 32)`.
    pub secret: String,
    /// Event types, or `["*"]` for all.
    #[serde(default = "every_event")]
    pub events: Vec<String>,
}

fn every_event() -> Vec<String> {
    vec!["*".to_owned()]
}

/// `[webhook_delivery]`: how webhooks are posted.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookDeliveryConfig {
    /// After a failed attempt, the next comes this long after it; when the list is used up the
    /// delivery has failed. The default is Standard Webhooks' (about a day in all).
    pub retry_seconds: Vec<u64>,
    /// An attempt without an answer this long fails.
    pub timeout_seconds: u64,
    /// Users may register webhooks for their own sessions (`POST /api/v1/webhooks`).
    pub user_webhooks: bool,
    /// The most webhooks one user keeps.
    pub max_per_user: usize,
    /// Deliveries that ended (delivered or failed) are kept in the log this many days.
    pub log_days: u64,
}

impl Default for WebhookDeliveryConfig {
    fn default() -> Self {
        Self {
            retry_seconds: vec![5, 300, 1800, 7200, 18_000, 36_000, 36_000],
            timeout_seconds: 10,
            user_webhooks: false,
            max_per_user: 10,
            log_days: 30,
        }
    }
}

/// Why a webhook's URL or events are refused, if they are.
pub fn webhook_problem(url: &str, events: &[String]) -> Option<String> {
    let parsed = match reqwest::Url::parse(url) {
        Ok(parsed) => parsed,
        Err(err) => return Some(format!("webhook url {url:?} is not a URL: {err}")),
    };
    if !matches!(parsed.scheme(), "http" | "https") || url.len() > 2048 {
        return Some(format!(
            "webhook url {url:?} must be http:// or https://, at most 2048 characters"
        ));
    }
    if events.is_empty() {
        return Some("a webhook needs at least one event type, or \"*\"".to_owned());
    }
    events
        .iter()
        .find(|e| *e != "*" && !berth_proto::webhook::EVENT_TYPES.contains(&e.as_str()))
        .map(|bad| {
            format!(
                "unknown event type {bad:?}; use \"*\" or any of {}",
                berth_proto::webhook::EVENT_TYPES.join(", ")
            )
        })
}

/// `[ai]`: the assistant behind labs' hints, one OpenAI-compatible chat-completions endpoint
/// (OpenAI, Gemini's OpenAI endpoint, Ollama, vLLM). Unset `base_url`: static hints only.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AiConfig {
    /// Up to the version, such as `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`;
    /// `/chat/completions` is added.
    pub base_url: Option<String>,
    pub model: String,
    /// The environment variable holding the API key (never the key itself in the file); unset
    /// or empty for a provider without keys (Ollama).
    pub api_key_env: Option<String>,
    /// An answer slower than this is `504 timeout`.
    pub timeout_seconds: u64,
    /// Assistant answers per session per minute; past it `429` with `retry_after`.
    pub rpm_per_session: u32,
    /// Assistant answers per user per day (UTC).
    pub daily_per_user: u32,
}

impl Default for AiConfig {
    fn default() -> Self {
        Self {
            base_url: None,
            model: "gpt-4o-mini".to_owned(),
            api_key_env: None,
            timeout_seconds: 30,
            rpm_per_session: 5,
            daily_per_user: 100,
        }
    }
}

/// `[http]`: what one client connection may hold of a listener (the API's, E2B's).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Open connections a listener serves at once; past it, new ones wait to be accepted.
    /// Terminals, watches and event streams each hold one while open.
    pub max_connections: u32,
    /// A connection that has not sent a whole request head this long after it opened (or after
    /// its last request) is closed: a slow client cannot hold a connection without asking.
    pub request_head_timeout_seconds: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            request_head_timeout_seconds: 30,
        }
    }
}

/// `[runtime]`: where sessions' containers run.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    pub kind: RuntimeKind,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeKind {
    /// The one engine at `docker.host`.
    #[default]
    Docker,
    /// The nodes of a Docker Swarm, each reached through its `berth-node` (docs/swarm.md).
    Swarm,
}

/// `[swarm]`: with `runtime.kind = "swarm"`, the swarm whose nodes run sessions.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SwarmConfig {
    /// The engine of a manager node, which lists the swarm's nodes. Default: `docker.host`
    /// (control planes run on managers with the engine's socket).
    pub manager: Option<String>,
    /// Where `berth-node` listens on every node's swarm address.
    pub relay_port: u16,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        Self {
            manager: None,
            relay_port: crate::reach::DEFAULT_RELAY_PORT,
        }
    }
}

/// `[cluster]`: several instances on one Redis store. One of them leads lifecycle at a time
/// (it holds a lease in the store); the others send it their lifecycle calls. See
/// docs/operations.md.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The URL other instances reach this one's API at (`http://10.0.0.5:8080`). Default:
    /// `http://` and the listen address (`127.0.0.1` for an unspecified one).
    pub advertise: Option<String>,
    /// How long a leader that stopped answering keeps the lease: a failover takes about
    /// this long. Renewed three times per term.
    pub lease_ttl_ms: u64,
    /// Where sessions' host-side files live (their Docker API and callback sockets, which
    /// their containers mount): the leader serves them, so instances sharing an engine must
    /// share this directory for a new leader to serve the sockets the old one made. Default:
    /// the data dir.
    pub host_dir: Option<PathBuf>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            advertise: None,
            lease_ttl_ms: 3000,
            host_dir: None,
        }
    }
}

impl Config {
    /// Secrets from the environment, over the file's: the admin token (`BERTH_ADMIN_TOKEN`, or
    /// the contents of the file `BERTH_ADMIN_TOKEN_FILE` names: a Swarm or Kubernetes secret)
    /// and sign-in providers' client secrets.
    pub fn admin_token_from_env(&mut self) -> Result<(), ConfigError> {
        if let Ok(token) = std::env::var("BERTH_ADMIN_TOKEN")
            && !token.trim().is_empty()
        {
            self.admin_token = Some(token);
        } else if let Ok(path) = std::env::var("BERTH_ADMIN_TOKEN_FILE") {
            let token = std::fs::read_to_string(&path).map_err(|err| {
                ConfigError::Invalid(format!("BERTH_ADMIN_TOKEN_FILE {path}: {err}"))
            })?;
            self.admin_token = Some(token.trim().to_owned());
        }
        self.auth.secrets_from_env();
        Ok(())
    }

    /// Where sessions' host-side files live: `cluster.host_dir`, else the data dir.
    pub fn host_dir(&self) -> &Path {
        self.cluster.host_dir.as_deref().unwrap_or(&self.data_dir)
    }

    /// Where other instances reach this one: `cluster.advertise`, else the listen address.
    pub fn advertise_url(&self) -> String {
        if let Some(url) = &self.cluster.advertise {
            return url.trim_end_matches('/').to_owned();
        }
        let mut listen = self.listen;
        if listen.ip().is_unspecified() {
            listen.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{listen}")
    }
}

/// `[store]`: where sessions, users and timelines are kept.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` or `redis://[:PASSWORD@]HOST:PORT/DB` (`rediss://` for TLS); unset:
    /// `berth.db` in the data dir.
    pub url: Option<String>,
}

/// `[e2b]`: E2B's SDKs, unmodified, against this control plane. Its paths clash with Berth's,
/// so it has listeners of its own: the control-plane REST (`E2B_API_URL`) and the in-sandbox
/// daemon's protocol (`E2B_SANDBOX_URL`). See docs/e2b.md.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct E2bConfig {
    /// Off by default: it opens two more ports.
    pub enabled: bool,
    pub api_listen: SocketAddr,
    pub sandbox_listen: SocketAddr,
    /// E2B template names (what `Sandbox.create(template=...)` sends) to Berth template names.
    /// A name not listed here is taken as a Berth template name.
    pub templates: BTreeMap<String, String>,
}

impl Default for E2bConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            api_listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            sandbox_listen: SocketAddr::from(([127, 0, 0, 1], 49983)),
            // The SDKs' default template is `base`.
            templates: BTreeMap::from([("base".to_owned(), DEFAULT_TEMPLATE.to_owned())]),
        }
    }
}

/// `[compat]`: seed 003's container manager (`/containers`, `/webcontainer/...`, the Socket.IO
/// gateway on `/container`) on the API's listener, for frontends written against it. See
/// docs/compat.md.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompatConfig {
    /// Off by default: it adds routes outside `/api/v1`.
    pub enabled: bool,
    /// What a container is a session of.
    pub template: String,
    /// A container's working directory: where `boot`'s and `mount`'s files go, and where
    /// relative paths and commands start.
    pub workdir: String,
    /// The port `previewUrl` shows (a dev server's).
    pub preview_port: u16,
    /// Local development only: a client with no token gets an anonymous user of its own (kept
    /// in a cookie), who can reach the containers it made and nothing else.
    pub allow_anonymous: bool,
}

impl Default for CompatConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            template: "node".into(),
            workdir: "/workspace".into(),
            preview_port: 3000,
            allow_anonymous: false,
        }
    }
}

/// `[snapshots]`: where sleeping sessions' files go, and for how long.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotsConfig {
    /// A session hibernated this long is deleted with its snapshot (seed 002's seven days).
    pub hibernated_ttl_seconds: u64,
    /// The hibernation that gives a snapshot more layers of its own than this folds them into
    /// one (the engine refuses an image deeper than 125).
    pub compact_after_layers: u64,
    /// A registry (`host:port`) every hibernation's and checkpoint's image is pushed to after
    /// its commit; a restore pulls what the engine lacks.
    pub registry: Option<String>,
    /// With a registry: keep the engine's copy after a push (a restore then needs no pull).
    pub keep_local: bool,
}

impl Default for SnapshotsConfig {
    fn default() -> Self {
        Self {
            hibernated_ttl_seconds: 7 * 24 * 3600,
            compact_after_layers: 32,
            registry: None,
            keep_local: true,
        }
    }
}

/// Berth's own packet-filter rules, which keep sessions off the host, link-local addresses and
/// each other, and apply each template's egress policy.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FirewallConfig {
    /// Off only where the operator's own firewall does the same job: sessions then reach the
    /// host, the metadata service and anything else the host can.
    pub enabled: bool,
    /// How often the rules are checked and put back when something removed them.
    pub check_interval_seconds: u64,
    /// Networks (CIDR) no session reaches whatever its template's egress policy: on a swarm,
    /// the nodes' own network, so sessions reach no node's engine, relay or swarm ports.
    pub blocked: Vec<String>,
}

impl Default for FirewallConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            check_interval_seconds: 5,
            blocked: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PreviewConfig {
    /// With a domain set, `{port}-{session}.{domain}` serves that port of that session (point a
    /// wildcard DNS record and certificate at the control plane). Each preview then has an origin
    /// of its own. It must be a registrable domain of its own: under Berth's, a preview's scripts
    /// could set cookies Berth's pages receive.
    pub domain: Option<String>,
    /// Berth is served over HTTPS (behind a TLS-terminating proxy): host-based preview links use
    /// `https`, and Berth's cookies are `Secure`.
    pub https: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaConfig {
    /// Live sessions (creating, running or stopping) one user may hold at once.
    pub sessions_per_user: u32,
    /// Hibernated sessions one user may keep (they hold an image, not a container).
    pub max_hibernated: u32,
    /// API requests one token (or browser login) may make per second, per instance, after a
    /// burst of `request_burst`; past it, `429 rate_limited` with `Retry-After`. 0: no limit.
    /// The admin token is never limited.
    pub requests_per_second: u32,
    pub request_burst: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerConfig {
    /// Engine address: `unix:///var/run/docker.sock`, `tcp://host:2375`. `DOCKER_HOST` when unset.
    pub host: Option<String>,
    /// Prefix of the bridge networks sessions join, one per egress policy: `{network}-open`,
    /// `{network}-deny`, `{network}-allow-{hash}`. Created with inter-container traffic disabled.
    pub network: String,
    /// Value of the `berth.instance` label. Two Berth installations sharing one engine must use
    /// different instances, since each removes containers of its own instance that it does not know.
    pub instance: String,
    /// Any single engine call taking longer fails with `engine_unavailable`.
    pub timeout_seconds: u64,
    /// Capabilities added back after dropping all of them.
    pub cap_add: Vec<String>,
    /// Bound of each container's json-file log.
    pub log_max_size: String,
    /// Sessions one session network holds on one engine before the next shard of its policy's
    /// networks is made (a Linux bridge takes at most 1,023 ports). The subnet the engine gives
    /// a network may hold fewer: then that is its bound.
    pub sessions_per_network: u32,
    /// Where the networks of sessions' Docker children get their subnets: a /27 each, taken
    /// in order. Outside the engine's own address pools, so they never meet the sessions'.
    pub child_network_pool: crate::networks::Cidr,
    /// Pins each session to the least used of the host's cores, as many as its `cpus` rounds
    /// up to, so that its quota is spent on those alone and a busy session cannot take every
    /// core at once while its neighbours wait.
    pub pin_cpus: bool,
    /// Keeps the control plane's threads off the cores pinned sessions keep busy, while other
    /// cores are left: what it relays to a quiet session then never waits for a busy one's
    /// time slice (`runtime::docker::cpu`).
    pub steer_control_plane: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// How long a new container's agent has to answer before the session fails.
    pub ready_timeout_ms: u64,
    /// Largest file one upload may write inside a session; larger ones get 413.
    pub max_file_mb: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CapacityConfig {
    /// Containers created at once, at most; more wait their turn (50 parallel `docker run`s
    /// make every one of them slow).
    pub create_concurrency: u32,
    /// Live sessions (pooled ones included) the host holds at most; past it, creates queue.
    pub max_sessions: u32,
    /// Creates queue while the host has less memory available than this (0: no check).
    pub min_free_memory_mb: u64,
}

impl Default for CapacityConfig {
    fn default() -> Self {
        Self {
            create_concurrency: 8,
            max_sessions: 1000,
            min_free_memory_mb: 512,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleConfig {
    /// How often sessions past their expiry are looked for.
    pub reap_interval_ms: u64,
    /// How often engine and store are converged. Also done once at every start.
    pub reconcile_interval_seconds: u64,
    /// How long a create may take from its container's creation until it is `running` (start,
    /// agent, workspace seed); past it the create fails and its container is removed.
    pub create_timeout_seconds: u64,
    /// How often the disk watchdog measures running sessions with a `disk_mb` the engine
    /// cannot enforce itself.
    pub disk_check_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemplateConfig {
    pub image: String,
    pub memory_mb: u64,
    pub cpus: f64,
    pub pids: i64,
    pub ttl_seconds: u64,
    pub max_ttl_seconds: u64,
    pub env: BTreeMap<String, String>,
    /// Directory (or `.tar` file) whose contents are placed in `/home/user` before the session
    /// is running; with a persistent home, only when the home is new.
    pub workspace_seed: Option<PathBuf>,
    /// Where `/home/user` lives: in the session, or on a volume of the user's that outlives it.
    pub home: HomeMode,
    /// With `home = "persistent"`: the home's size limit in MiB, where the engine can set one;
    /// 0 is none.
    pub home_size_mb: u64,
    /// The most the session may write to its own files (its container's writable layer, the
    /// home included unless persistent), in MiB; 0 is no limit. Where the engine can set a
    /// size limit, writes past it fail; elsewhere the disk watchdog stops the session with
    /// reason `disk_quota`, warning first.
    pub disk_mb: u64,
    /// The OCI runtime its containers run under (`runsc` for gVisor), one of those `docker
    /// info` lists; unset: the engine's default.
    pub runtime: Option<String>,
    pub pool: PoolConfig,
    /// When a session's container stops without Berth stopping it (an engine restart, say),
    /// start it again: same container, files intact, processes lost. `false` fails the
    /// session instead.
    pub restart_after_engine_restart: bool,
    pub network: TemplateNetworkConfig,
    pub idle: IdleConfig,
    /// A running session whose container is gone (removed by hand, lost with its node) is
    /// recreated from its newest snapshot; `false` fails it.
    pub recover: bool,
    /// Every this many seconds a running session that was worked in is snapshotted (paused
    /// for the copy), the newest snapshot kept: what `recover` restores. 0 turns it off.
    pub checkpoint_interval_seconds: u64,
    /// What reaching `expires_at` does: `delete` the session, or `hibernate` it (it then
    /// sleeps until `max_ttl_seconds` from its creation, and any access wakes it).
    pub on_expiry: ExpiryAction,
    pub docker: TemplateDockerConfig,
    /// On a swarm, only nodes with every one of these labels (`docker node update --label-add`)
    /// run the template's sessions.
    pub node_labels: BTreeMap<String, String>,
}

/// `[templates.NAME.docker]`: a Docker API of its own for each session (docs/docker-in-session.md).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemplateDockerConfig {
    /// Serve the session a policy-checked Docker API at `DOCKER_HOST`; the image must bring
    /// the `docker` CLI (`berth/docker`).
    pub enabled: bool,
    /// Images on the engine the session may run and build `FROM`, besides its own. Without
    /// `allow_pull` nothing is pulled, so they must be on the engine already.
    pub base_images: Vec<String>,
    /// The session may `docker pull` its base images (and only those), where the engine can
    /// reach their registry. A pulled image stays on the engine for every session.
    pub allow_pull: bool,
    /// Containers the session may have at once, running or not.
    pub max_containers: u32,
    /// Tagged images the session may have at once.
    pub max_images: u32,
    /// Networks the session may have at once (`docker network create`, one per compose
    /// project), its default network included.
    pub max_networks: u32,
}

impl Default for TemplateDockerConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            base_images: vec!["berth/busybox:latest".to_owned()],
            allow_pull: false,
            max_containers: 10,
            max_images: 20,
            max_networks: 5,
        }
    }
}

/// `[templates.NAME.idle]`: when a session nobody works in goes to sleep.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdleConfig {
    /// Seconds without counted activity before `action`; 0 never acts.
    pub timeout_seconds: u64,
    /// The warning comes this long before acting; any counted activity cancels it.
    pub warning_seconds: u64,
    pub action: IdleAction,
    /// The session's processes using more CPU than this (percent of one core, over the last
    /// minute) count as activity; 0 ignores CPU.
    pub busy_cpu_percent: u32,
}

impl Default for IdleConfig {
    fn default() -> Self {
        Self {
            // Seed 002's 120 minutes.
            timeout_seconds: 7200,
            warning_seconds: 120,
            action: IdleAction::Hibernate,
            busy_cpu_percent: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdleAction {
    #[default]
    Hibernate,
    Stop,
}

/// `[templates.NAME] home`: whose `/home/user` a session gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HomeMode {
    /// The session's own, gone with it (hibernation keeps it in the snapshot).
    #[default]
    Session,
    /// A named volume per user and template, mounted by one session of theirs at a time and
    /// kept between them.
    Persistent,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryAction {
    #[default]
    Delete,
    Hibernate,
}

/// `[templates.NAME.network]`: what the template's sessions may reach, beyond what is always
/// blocked (the host, link-local addresses, other sessions).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemplateNetworkConfig {
    pub egress: Egress,
    /// With `egress = "allow"`, the only destinations: `"CIDR"` or `"CIDR:port"`.
    pub allow: Vec<String>,
}

/// Warm sessions kept ready for a template.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Ready sessions to keep; 0 turns the pool off.
    pub min_ready: u32,
    /// Most pooled sessions (ready and warming) at once.
    pub max: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            admin_token: None,
            quota: QuotaConfig::default(),
            http: HttpConfig::default(),
            docker: DockerConfig::default(),
            agent: AgentConfig::default(),
            lifecycle: LifecycleConfig::default(),
            capacity: CapacityConfig::default(),
            preview: PreviewConfig::default(),
            snapshots: SnapshotsConfig::default(),
            firewall: FirewallConfig::default(),
            e2b: E2bConfig::default(),
            compat: CompatConfig::default(),
            cluster: ClusterConfig::default(),
            store: StoreConfig::default(),
            runtime: RuntimeConfig::default(),
            swarm: SwarmConfig::default(),
            labs: LabsConfig::default(),
            ai: AiConfig::default(),
            callback: CallbackConfig::default(),
            webhooks: Vec::new(),
            webhook_delivery: WebhookDeliveryConfig::default(),
            audit: AuditConfig::default(),
            auth: AuthConfig::default(),
            timeline: TimelineConfig::default(),
            templates: BTreeMap::new(),
        }
    }
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            sessions_per_user: 3,
            max_hibernated: 10,
            requests_per_second: 0,
            request_burst: 100,
        }
    }
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            host: None,
            network: "berth".to_owned(),
            instance: "default".to_owned(),
            timeout_seconds: 5,
            // Sessions run as uid 1000 with no-new-privileges, so added capabilities could
            // never be used; the list exists for images that need one.
            cap_add: Vec::new(),
            log_max_size: "10m".to_owned(),
            sessions_per_network: MAX_SESSIONS_PER_NETWORK,
            pin_cpus: true,
            steer_control_plane: true,
            child_network_pool: crate::networks::Cidr::new([10, 213, 0, 0].into(), 16)
                .expect("a /16 with no host bits"),
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            ready_timeout_ms: 10_000,
            max_file_mb: 4096,
        }
    }
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            reap_interval_ms: 5_000,
            reconcile_interval_seconds: 30,
            create_timeout_seconds: 120,
            disk_check_seconds: 5,
        }
    }
}

impl Default for TemplateConfig {
    fn default() -> Self {
        Self {
            image: "berth/base:latest".to_owned(),
            memory_mb: 512,
            cpus: 1.0,
            pids: 256,
            ttl_seconds: 1800,
            max_ttl_seconds: 8 * 3600,
            env: BTreeMap::new(),
            workspace_seed: None,
            home: HomeMode::default(),
            home_size_mb: 0,
            disk_mb: 10 * 1024,
            runtime: None,
            pool: PoolConfig::default(),
            restart_after_engine_restart: true,
            idle: IdleConfig::default(),
            recover: true,
            checkpoint_interval_seconds: 300,
            on_expiry: ExpiryAction::default(),
            network: TemplateNetworkConfig::default(),
            docker: TemplateDockerConfig::default(),
            node_labels: BTreeMap::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads a config file. The result still needs [`Config::finish`] once overrides are applied.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::from_toml(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        // Seed and lab directories are written relative to the file that names them.
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(dir) = config.labs.dir.as_mut()
            && dir.is_relative()
        {
            *dir = base.join(&*dir);
        }
        for template in config.templates.values_mut() {
            if let Some(seed) = template.workspace_seed.as_mut()
                && seed.is_relative()
            {
                *seed = base.join(&*seed);
            }
        }
        Ok(config)
    }

    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Adds the built-in `default` template when the file defines none, and checks every value,
    /// so a bad config stops the server at start instead of failing requests later.
    pub fn finish(mut self) -> Result<Self, ConfigError> {
        // The built-in template keeps two sessions warm: creates are pool claims out of the box.
        self.templates
            .entry(DEFAULT_TEMPLATE.to_owned())
            .or_insert_with(|| TemplateConfig {
                pool: PoolConfig {
                    min_ready: 2,
                    max: None,
                },
                ..TemplateConfig::default()
            });
        for (name, template) in &self.templates {
            template
                .validate()
                .map_err(|msg| ConfigError::Invalid(format!("template {name:?}: {msg}")))?;
        }
        if let Some(domain) = &mut self.preview.domain {
            *domain = domain.trim_matches('.').to_ascii_lowercase();
            if domain.is_empty() || domain.contains(['/', ':', ' ']) {
                return Err(ConfigError::Invalid(format!(
                    "preview.domain {domain:?} must be a bare domain such as \"preview.example.com\""
                )));
            }
        }
        if !(1000..=60_000).contains(&self.cluster.lease_ttl_ms) {
            return Err(ConfigError::Invalid(format!(
                "cluster.lease_ttl_ms {} must be from 1000 to 60000",
                self.cluster.lease_ttl_ms
            )));
        }
        // Instances call each other over plain HTTP (a private network's).
        if let Some(url) = &self.cluster.advertise
            && !url.starts_with("http://")
        {
            return Err(ConfigError::Invalid(format!(
                "cluster.advertise {url:?} must be an http:// URL such as \"http://10.0.0.5:8080\""
            )));
        }
        // The engine mounts from it: a relative path would be the engine's, not ours.
        if let Some(dir) = &self.cluster.host_dir
            && !dir.is_absolute()
        {
            return Err(ConfigError::Invalid(format!(
                "cluster.host_dir {} must be an absolute path such as \"/var/lib/berth/host\"",
                dir.display()
            )));
        }
        for (alias, template) in &self.e2b.templates {
            if !self.templates.contains_key(template) {
                return Err(ConfigError::Invalid(format!(
                    "e2b.templates.{alias} names template {template:?}, which is not defined"
                )));
            }
        }
        if self.compat.enabled && !self.templates.contains_key(&self.compat.template) {
            return Err(ConfigError::Invalid(format!(
                "compat.template names template {:?}, which is not defined: add \
                 [templates.{}] (berth.example.toml has a node template on berth/nodejs)",
                self.compat.template, self.compat.template
            )));
        }
        if let Some(url) = &self.ai.base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid(format!(
                "ai.base_url {url:?} must be an http:// or https:// URL such as \
                 \"https://api.openai.com/v1\""
            )));
        }
        if !(1..=600).contains(&self.ai.timeout_seconds) {
            return Err(ConfigError::Invalid(format!(
                "ai.timeout_seconds {} must be from 1 to 600",
                self.ai.timeout_seconds
            )));
        }
        if self.ai.rpm_per_session == 0 || self.ai.daily_per_user == 0 {
            return Err(ConfigError::Invalid(
                "ai.rpm_per_session and ai.daily_per_user must be at least 1 (leave out \
                 ai.base_url for no assistant)"
                    .into(),
            ));
        }
        if !(1..=3600).contains(&self.timeline.collect_seconds) {
            return Err(ConfigError::Invalid(format!(
                "timeline.collect_seconds {} must be from 1 to 3600",
                self.timeline.collect_seconds
            )));
        }
        if !(1..=3650).contains(&self.timeline.retention_days) {
            return Err(ConfigError::Invalid(format!(
                "timeline.retention_days {} must be from 1 to 3650",
                self.timeline.retention_days
            )));
        }
        if let Some(problem) = self.auth.problem() {
            return Err(ConfigError::Invalid(problem));
        }
        for (i, hook) in self.webhooks.iter().enumerate() {
            if let Some(problem) = webhook_problem(&hook.url, &hook.events) {
                return Err(ConfigError::Invalid(format!("webhooks[{i}]: {problem}")));
            }
            if crate::webhooks::signature::key_of(&hook.secret).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "webhooks[{i}].secret must be whsec_ and base64 of 24 to 64 bytes \
                     (`echo whsec_$(openssl rand -base64 32)` makes one)"
                )));
            }
        }
        if !(1..=3650).contains(&self.audit.retention_days) {
            return Err(ConfigError::Invalid(format!(
                "audit.retention_days {} must be from 1 to 3650",
                self.audit.retention_days
            )));
        }
        let delivery = &self.webhook_delivery;
        if delivery.retry_seconds.len() > 20
            || delivery
                .retry_seconds
                .iter()
                .any(|s| !(1..=86_400).contains(s))
            || !(1..=300).contains(&delivery.timeout_seconds)
            || !(1..=3650).contains(&delivery.log_days)
        {
            return Err(ConfigError::Invalid(
                "webhook_delivery: at most 20 retry_seconds, each 1 to 86400; timeout_seconds \
                 1 to 300; log_days 1 to 3650"
                    .into(),
            ));
        }
        if !(10..=86_400).contains(&self.callback.token_ttl_seconds) {
            return Err(ConfigError::Invalid(format!(
                "callback.token_ttl_seconds {} must be from 10 to 86400",
                self.callback.token_ttl_seconds
            )));
        }
        if !(10..=3600).contains(&self.labs.judge_timeout_seconds) {
            return Err(ConfigError::Invalid(format!(
                "labs.judge_timeout_seconds {} must be from 10 to 3600",
                self.labs.judge_timeout_seconds
            )));
        }
        if !self.compat.workdir.starts_with('/') {
            return Err(ConfigError::Invalid(format!(
                "compat.workdir {:?} must be an absolute path",
                self.compat.workdir
            )));
        }
        if self.e2b.enabled && self.e2b.api_listen == self.e2b.sandbox_listen {
            return Err(ConfigError::Invalid(
                "e2b.api_listen and e2b.sandbox_listen must differ".into(),
            ));
        }
        if self.capacity.create_concurrency == 0 {
            return Err(ConfigError::Invalid(
                "capacity.create_concurrency must be at least 1".into(),
            ));
        }
        if self.quota.sessions_per_user == 0 {
            return Err(ConfigError::Invalid(
                "quota.sessions_per_user must be at least 1".into(),
            ));
        }
        if self.quota.requests_per_second > 0 && self.quota.request_burst == 0 {
            return Err(ConfigError::Invalid(
                "quota.request_burst must be at least 1 when quota.requests_per_second limits requests"
                    .into(),
            ));
        }
        // Durations are added to clocks: each is bounded to what anyone could mean.
        for (key, value, max) in [
            ("docker.timeout_seconds", self.docker.timeout_seconds, 3_600),
            (
                "http.request_head_timeout_seconds",
                self.http.request_head_timeout_seconds,
                3_600,
            ),
            (
                "http.max_connections",
                u64::from(self.http.max_connections),
                1_000_000,
            ),
            (
                "agent.ready_timeout_ms",
                self.agent.ready_timeout_ms,
                600_000,
            ),
            (
                "lifecycle.reap_interval_ms",
                self.lifecycle.reap_interval_ms,
                3_600_000,
            ),
            (
                "lifecycle.reconcile_interval_seconds",
                self.lifecycle.reconcile_interval_seconds,
                86_400,
            ),
            (
                "lifecycle.create_timeout_seconds",
                self.lifecycle.create_timeout_seconds,
                86_400,
            ),
            (
                "lifecycle.disk_check_seconds",
                self.lifecycle.disk_check_seconds,
                3_600,
            ),
            (
                "snapshots.hibernated_ttl_seconds",
                self.snapshots.hibernated_ttl_seconds,
                MAX_TTL_SECONDS,
            ),
            // Below the engine's 125 with room for the template's own layers.
            (
                "snapshots.compact_after_layers",
                self.snapshots.compact_after_layers,
                100,
            ),
        ] {
            if !(1..=max).contains(&value) {
                return Err(ConfigError::Invalid(format!(
                    "{key} must be between 1 and {max}"
                )));
            }
        }
        if let Some(registry) = &self.snapshots.registry
            && (registry.is_empty()
                || registry.contains("://")
                || registry.contains('/')
                || registry.chars().any(char::is_whitespace))
        {
            return Err(ConfigError::Invalid(format!(
                "snapshots.registry must be a registry's host[:port], like 127.0.0.1:5000, not {registry:?}"
            )));
        }
        if self.runtime.kind == RuntimeKind::Swarm {
            if self.snapshots.registry.is_none() {
                return Err(ConfigError::Invalid(
                    "runtime.kind = \"swarm\" needs snapshots.registry: a session sleeps on one node and wakes on another through it".into(),
                ));
            }
            if let Some((name, _)) = self.templates.iter().find(|(_, t)| t.docker.enabled) {
                return Err(ConfigError::Invalid(format!(
                    "template {name:?} has docker.enabled, which runtime.kind = \"swarm\" does not serve yet; turn one of them off"
                )));
            }
            // A volume stays on the node that made it, and a session wakes on any node.
            if let Some((name, _)) = self
                .templates
                .iter()
                .find(|(_, t)| t.home == HomeMode::Persistent)
            {
                return Err(ConfigError::Invalid(format!(
                    "template {name:?} has home = \"persistent\", which runtime.kind = \"swarm\" does not serve: a home is a volume on one node, and sessions move between nodes"
                )));
            }
        }
        if let Some(token) = &self.admin_token
            && token.len() < MIN_ADMIN_TOKEN_LEN
        {
            return Err(ConfigError::Invalid(format!(
                "admin_token must be at least {MIN_ADMIN_TOKEN_LEN} characters (it opens everything); \
                 leave it unset to have one generated"
            )));
        }
        if self.firewall.check_interval_seconds == 0 {
            return Err(ConfigError::Invalid(
                "firewall.check_interval_seconds must be at least 1".into(),
            ));
        }
        if !(1..=MAX_SESSIONS_PER_NETWORK).contains(&self.docker.sessions_per_network) {
            return Err(ConfigError::Invalid(format!(
                "docker.sessions_per_network must be 1 to {MAX_SESSIONS_PER_NETWORK} (a Linux bridge \
                 takes at most 1,023 ports, and each network keeps a few for itself)"
            )));
        }
        let pool = self.docker.child_network_pool;
        if !pool.is_ipv4() || pool.prefix() > crate::networks::CHILD_SUBNET_PREFIX {
            return Err(ConfigError::Invalid(format!(
                "docker.child_network_pool must be an IPv4 network of /{} or larger, such as \
                 \"10.213.0.0/16\"; it is {pool}",
                crate::networks::CHILD_SUBNET_PREFIX,
            )));
        }
        if self.docker.instance.is_empty() || self.docker.network.is_empty() {
            return Err(ConfigError::Invalid(
                "docker.instance and docker.network must be set".into(),
            ));
        }
        crate::store::StoreUrl::parse(self.store.url.as_deref(), &self.data_dir)
            .map_err(|msg| ConfigError::Invalid(format!("store.url: {msg}")))?;
        Ok(self)
    }
}

impl TemplateConfig {
    fn validate(&self) -> Result<(), String> {
        if self.image.trim().is_empty() {
            return Err("image must be set".into());
        }
        if self.idle.timeout_seconds > MAX_TTL_SECONDS
            || self.idle.timeout_seconds > 0
                && self.idle.warning_seconds >= self.idle.timeout_seconds
        {
            return Err(
                "idle.timeout_seconds must be at most ten years, and idle.warning_seconds shorter than it"
                    .into(),
            );
        }
        if self.checkpoint_interval_seconds > MAX_TTL_SECONDS {
            return Err("checkpoint_interval_seconds must be at most ten years".into());
        }
        if self.idle.busy_cpu_percent > 100 * 1024 {
            return Err("idle.busy_cpu_percent is a percentage of one core".into());
        }
        if self.memory_mb < 6 {
            return Err("memory_mb must be at least 6 (Docker's minimum)".into());
        }
        if !(self.cpus > 0.0 && self.cpus <= 1024.0) {
            return Err("cpus must be greater than 0".into());
        }
        if self.pids < 1 {
            return Err("pids must be at least 1".into());
        }
        if self.pool.max.is_some_and(|max| max < self.pool.min_ready) {
            return Err("pool.max must be at least pool.min_ready".into());
        }
        if self.max_ttl_seconds > MAX_TTL_SECONDS {
            return Err(format!(
                "max_ttl_seconds must be at most {MAX_TTL_SECONDS} (ten years)"
            ));
        }
        if self.ttl_seconds == 0 || self.ttl_seconds > self.max_ttl_seconds {
            return Err("ttl_seconds must be between 1 and max_ttl_seconds".into());
        }
        if let Some(name) = self.env.keys().find(|name| name.starts_with("BERTH_")) {
            return Err(format!(
                "env {name:?}: names starting with BERTH_ are reserved for Berth itself"
            ));
        }
        match self.home {
            HomeMode::Session if self.home_size_mb > 0 => {
                return Err(
                    "home_size_mb limits a persistent home only: set home = \"persistent\" or leave it out"
                        .into(),
                );
            }
            // A pooled container is made before anyone claims it, so it cannot have its
            // user's home mounted: refused rather than silently never warmed.
            HomeMode::Persistent if self.pool.min_ready > 0 => {
                return Err(
                    "pool.min_ready must be 0 with home = \"persistent\": a warm session is made before its user is known, so it cannot mount their home"
                        .into(),
                );
            }
            _ => {}
        }
        if self.disk_mb > MAX_HOME_SIZE_MB {
            return Err(format!(
                "disk_mb must be at most {MAX_HOME_SIZE_MB} (16 TiB)"
            ));
        }
        if let Some(runtime) = &self.runtime
            && (runtime.is_empty()
                || !runtime
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)))
        {
            return Err(format!(
                "runtime {runtime:?} is not a runtime's name (letters, digits, '.', '_' and '-')"
            ));
        }
        if self.home_size_mb > MAX_HOME_SIZE_MB {
            return Err(format!(
                "home_size_mb must be at most {MAX_HOME_SIZE_MB} (16 TiB)"
            ));
        }
        if let Some(seed) = &self.workspace_seed
            && !(seed.is_dir() || seed.is_file() && seed.extension().is_some_and(|e| e == "tar"))
        {
            return Err(format!(
                "workspace_seed {} is neither a directory nor a .tar file",
                seed.display()
            ));
        }
        EgressPolicy::from_config(&self.network)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_a_working_default_template() {
        let config = Config::from_toml("").unwrap().finish().unwrap();
        assert_eq!(
            config.templates[DEFAULT_TEMPLATE].image,
            "berth/base:latest"
        );
        assert_eq!(config.quota.sessions_per_user, 3);
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn the_cluster_example_instances_share_a_store_and_advertise_their_own_address() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/cluster");
        let [a, b] = ["berth-a.toml", "berth-b.toml"].map(|name| {
            Config::from_file(&dir.join(name))
                .unwrap()
                .finish()
                .unwrap()
        });
        assert_eq!(a.store.url, b.store.url);
        assert!(a.store.url.as_deref().unwrap().starts_with("redis://"));
        assert_ne!(a.listen, b.listen);
        assert_eq!(a.advertise_url(), format!("http://{}", a.listen));
        assert_eq!(b.advertise_url(), format!("http://{}", b.listen));
    }

    #[test]
    fn the_stacks_control_planes_run_on_the_swarm_through_one_store_and_registry() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
        let stack = std::fs::read_to_string(dir.join("stack.yml")).unwrap();
        let [a, b] = ["berth-a.toml", "berth-b.toml"].map(|name| {
            assert!(stack.contains(&format!("file: ./swarm/{name}")), "{name}");
            Config::from_file(&dir.join("swarm").join(name))
                .unwrap()
                .finish()
                .unwrap()
        });
        for config in [&a, &b] {
            assert_eq!(config.runtime.kind, RuntimeKind::Swarm);
            // berth-node listens where the control planes look for it.
            let relay = format!("\"--listen\", \"0.0.0.0:{}\"", config.swarm.relay_port);
            assert!(stack.contains(&relay), "{relay}");
            assert!(!config.firewall.blocked.is_empty());
        }
        assert_eq!(a.store.url, b.store.url);
        assert_eq!(a.snapshots.registry, b.snapshots.registry);
        assert_ne!(a.advertise_url(), b.advertise_url());
    }

    #[test]
    fn a_swarm_needs_a_registry_and_serves_no_docker_api_yet() {
        let mut config = Config::from_toml("[runtime]\nkind = \"swarm\"\n").unwrap();
        let err = config.clone().finish().unwrap_err().to_string();
        assert!(err.contains("snapshots.registry"), "{err}");
        config.snapshots.registry = Some("127.0.0.1:5000".into());
        let mut docker = TemplateConfig::default();
        docker.docker.enabled = true;
        config.templates.insert("docker".into(), docker);
        let err = config.clone().finish().unwrap_err().to_string();
        assert!(err.contains("docker.enabled"), "{err}");
        config.templates.clear();
        assert!(config.finish().is_ok());
    }

    #[test]
    fn the_shipped_example_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../berth.example.toml");
        let config = Config::from_file(&path).unwrap().finish().unwrap();
        assert!(config.templates.contains_key(DEFAULT_TEMPLATE));
        assert!(
            config.templates.len() >= 2,
            "the example shows a second template"
        );
        let modes: std::collections::BTreeSet<Egress> = config
            .templates
            .values()
            .map(|t| t.network.egress)
            .collect();
        assert_eq!(modes.len(), 3, "the example shows every egress mode");
        assert!(config.firewall.enabled);
    }

    #[test]
    fn store_urls_are_checked_at_load_and_errors_name_the_key_and_the_schemes() {
        let config = Config::from_toml("[store]\nurl = \"redis://:pw@127.0.0.1:6379/0\"\n")
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(
            config.store.url.as_deref(),
            Some("redis://:pw@127.0.0.1:6379/0")
        );
        let err = Config::from_toml("[store]\nurl = \"mysql://u:pw@db/berth\"\n")
            .unwrap()
            .finish()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("store.url")
                && err.contains("sqlite://")
                && err.contains("redis://")
                && err.contains("rediss://")
                && !err.contains("pw"),
            "{err}"
        );
    }

    #[test]
    fn network_policies_are_checked_at_load_and_errors_name_the_template() {
        let text = "[templates.locked.network]\negress = \"allow\"\nallow = [\"10.0.0.0/8:443\", \"10.1.2.3/8\"]\n";
        let err = Config::from_toml(text).unwrap().finish().unwrap_err();
        let err = err.to_string();
        assert!(
            err.contains("\"locked\"") && err.contains("10.1.2.3/8"),
            "{err}"
        );
        let err = Config::from_toml("[templates.x.network]\negress = \"closed\"\n").unwrap_err();
        assert!(err.to_string().contains("closed"), "{err}");
        let err = Config::from_toml("[firewall]\ncheck_interval_seconds = 0\n")
            .unwrap()
            .finish()
            .unwrap_err();
        assert!(err.to_string().contains("check_interval_seconds"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err = Config::from_toml("[quota]\nsesions_per_user = 3\n").unwrap_err();
        assert!(err.to_string().contains("sesions_per_user"), "{err}");
    }

    #[test]
    fn values_that_could_break_the_server_later_are_refused_at_start() {
        for (text, needle) in [
            (
                "[templates.t]\nmax_ttl_seconds = 10000000000000\n",
                "max_ttl_seconds",
            ),
            (
                "[templates.t.env]\nBERTH_AGENT_SECRET = \"x\"\n",
                "BERTH_AGENT_SECRET",
            ),
            ("admin_token = \"short\"\n", "admin_token"),
            ("[e2b.templates]\nbase = \"nope\"\n", "e2b.templates.base"),
            (
                "[e2b]\nenabled = true\napi_listen = \"127.0.0.1:1\"\nsandbox_listen = \"127.0.0.1:1\"\n",
                "must differ",
            ),
            (
                "[lifecycle]\ncreate_timeout_seconds = 0\n",
                "create_timeout_seconds",
            ),
            (
                "[lifecycle]\nreconcile_interval_seconds = 9223372036854775807\n",
                "reconcile_interval_seconds",
            ),
            (
                "[agent]\nready_timeout_ms = 99999999999999\n",
                "ready_timeout_ms",
            ),
            (
                "[snapshots]\ncompact_after_layers = 0\n",
                "compact_after_layers",
            ),
            (
                "[snapshots]\nregistry = \"http://127.0.0.1:5000\"\n",
                "snapshots.registry",
            ),
            (
                "[cluster]\nadvertise = \"https://10.0.0.5:8080\"\n",
                "cluster.advertise",
            ),
            ("[cluster]\nlease_ttl_ms = 100\n", "cluster.lease_ttl_ms"),
            ("[cluster]\nhost_dir = \"host\"\n", "cluster.host_dir"),
        ] {
            let err = Config::from_toml(text).unwrap().finish().unwrap_err();
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }

    /// Every key the server reads is in docs/config.md, and every key documented there is one
    /// the server reads: the config is serialised with every optional value set, its key paths
    /// are compared with the first column of the reference's tables.
    #[test]
    fn the_reference_documents_exactly_the_keys_there_are() {
        let mut config = Config::from_toml("").unwrap().finish().unwrap();
        config.admin_token = Some("x".repeat(MIN_ADMIN_TOKEN_LEN));
        config.docker.host = Some("unix:///var/run/docker.sock".into());
        config.preview.domain = Some("preview.example".into());
        config.snapshots.registry = Some("127.0.0.1:5000".into());
        config.cluster.advertise = Some("http://10.0.0.5:8080".into());
        config.store.url = Some("redis://127.0.0.1:6379/0".into());
        config.swarm.manager = Some("unix:///var/run/docker.sock".into());
        config.labs.dir = Some("labs".into());
        config.ai.base_url = Some("http://127.0.0.1:11434/v1".into());
        config.ai.api_key_env = Some("OPENAI_API_KEY".into());
        let template = config.templates.get_mut(DEFAULT_TEMPLATE).unwrap();
        template.workspace_seed = Some("seed".into());
        template.runtime = Some("runsc".into());
        template.pool.max = Some(4);
        template.node_labels = BTreeMap::from([("gpu".into(), "yes".into())]);
        config.auth.public_url = Some("https://berth.example".into());
        config.cluster.host_dir = Some("/var/lib/berth-host".into());
        config.auth.github = Some(GithubAuthConfig {
            client_id: "id".into(),
            client_secret: "secret".into(),
            authorize_url: github_authorize_url(),
            token_url: github_token_url(),
            api_url: github_api_url(),
            allowed_orgs: vec!["acme".into()],
            allowed_users: vec!["octocat".into()],
        });
        config.auth.oidc = vec![OidcAuthConfig {
            name: "keycloak".into(),
            display_name: Some("Keycloak".into()),
            issuer: "https://id.example/realms/berth".into(),
            client_id: "berth".into(),
            client_secret: "secret".into(),
            scopes: oidc_scopes(),
            allowed_domains: vec!["example.com".into()],
            allowed_emails: vec!["ada@example.org".into()],
        }];
        config.webhooks = vec![WebhookConfig {
            url: "https://app.example/hook".into(),
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            events: vec!["*".into()],
        }];
        let value = toml::Value::try_from(&config).unwrap();
        let mut in_code = std::collections::BTreeSet::new();
        collect_keys(&value, "", &mut in_code);

        let reference = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.md"),
        )
        .unwrap();
        let mut documented = std::collections::BTreeSet::new();
        let mut section = String::new();
        for line in reference.lines() {
            if let Some(heading) = line.strip_prefix("## ") {
                section = heading
                    .trim_matches(|c| c == '`' || c == '[' || c == ']')
                    .replace("Top level", "");
            } else if let Some(rest) = line.strip_prefix("| `") {
                let key = rest.split('`').next().unwrap();
                documented.insert(if section.is_empty() {
                    key.to_owned()
                } else {
                    format!("{section}.{key}")
                });
            }
        }
        assert_eq!(in_code, documented, "docs/config.md and the code disagree");
    }

    /// Dotted paths of every leaf; the tables under `templates` are one `NAME`, an array of
    /// tables (`[[webhooks]]`) is its first table's keys, and a template's `env` and
    /// `node_labels` and `e2b.templates` are one key each (their contents are the user's).
    fn collect_keys(
        value: &toml::Value,
        prefix: &str,
        keys: &mut std::collections::BTreeSet<String>,
    ) {
        match value {
            toml::Value::Table(table)
                if !prefix.ends_with(".env")
                    && !prefix.ends_with(".node_labels")
                    && prefix != "e2b.templates" =>
            {
                for (key, value) in table {
                    let key = if prefix == "templates" { "NAME" } else { key };
                    let path = if prefix.is_empty() {
                        key.to_owned()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    collect_keys(value, &path, keys);
                }
            }
            toml::Value::Array(items) if items.first().is_some_and(toml::Value::is_table) => {
                collect_keys(&items[0], prefix, keys);
            }
            _ => {
                keys.insert(prefix.to_owned());
            }
        }
    }

    #[test]
    fn a_persistent_home_is_checked_against_the_pool_its_size_and_the_runtime() {
        let config =
            Config::from_toml("[templates.dev]\nhome = \"persistent\"\nhome_size_mb = 2048\n")
                .unwrap()
                .finish()
                .unwrap();
        assert_eq!(config.templates["dev"].home, HomeMode::Persistent);
        assert_eq!(config.templates["dev"].home_size_mb, 2048);
        assert_eq!(config.templates[DEFAULT_TEMPLATE].home, HomeMode::Session);
        for (text, needle) in [
            ("[templates.t]\nhome_size_mb = 10\n", "home_size_mb"),
            (
                "[templates.t]\nhome = \"persistent\"\n[templates.t.pool]\nmin_ready = 1\n",
                "pool.min_ready",
            ),
            (
                "[templates.t]\nhome = \"persistent\"\nhome_size_mb = 99999999999\n",
                "home_size_mb",
            ),
            (
                "[runtime]\nkind = \"swarm\"\n[snapshots]\nregistry = \"127.0.0.1:5000\"\n[templates.t]\nhome = \"persistent\"\n",
                "swarm",
            ),
        ] {
            let err = Config::from_toml(text).unwrap().finish().unwrap_err();
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
        let err = Config::from_toml("[templates.t]\nhome = \"volume\"\n").unwrap_err();
        assert!(err.to_string().contains("persistent"), "{err}");
    }

    #[test]
    fn a_template_whose_ttl_exceeds_its_maximum_is_refused() {
        let text = "[templates.short]\nttl_seconds = 100\nmax_ttl_seconds = 10\n";
        let err = Config::from_toml(text).unwrap().finish().unwrap_err();
        assert!(err.to_string().contains("short"), "{err}");
    }
}
