//! What a session may ask of the Docker API, decided from the request alone: which endpoint it
//! is, and how a container create or a build is checked and rewritten. Pure, so every rule has a
//! unit test; what needs the engine (who owns an object, how many there are) is in `serve.rs`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::runtime::labels;

/// Why a call is not forwarded as asked. The messages go to the `docker` CLI, which prints them
/// as they are: they name the rule and say what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum DockerApiError {
    #[error("refused by Berth's Docker policy (rule `{rule}`): {message}")]
    Refused { rule: &'static str, message: String },
    /// Worded as the engine words it, so the CLI reads it as it reads the engine's: another
    /// session's objects do not exist for this one.
    #[error("No such {kind}: {name}")]
    NotFound { kind: &'static str, name: String },
    #[error("{0}")]
    Quota(String),
    /// A name or a port the session asked for is held already.
    #[error("{0}")]
    Conflict(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("the container engine is unreachable: {0}")]
    Engine(String),
}

fn refused(rule: &'static str, message: impl Into<String>) -> DockerApiError {
    DockerApiError::Refused {
        rule,
        message: message.into(),
    }
}

/// The session a Docker API serves, and what its children may have.
#[derive(Debug, Clone)]
pub struct Scope {
    pub session_id: String,
    pub instance: String,
    /// The session's own network: build steps join it, for the egress its template allows.
    /// Its containers run on networks of their own (`docker_api::networks`).
    pub network: String,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids: i64,
    pub base_images: Vec<String>,
    /// `docker.allow_pull`: base images may be pulled.
    pub allow_pull: bool,
    pub max_containers: u32,
    pub max_images: u32,
    pub max_networks: u32,
    pub log_max_size: String,
}

impl Scope {
    /// `label=value` filters that select this session's children.
    pub fn label_filters(&self) -> [String; 2] {
        [
            format!("{}={}", labels::PARENT, self.session_id),
            format!("{}={}", labels::PARENT_INSTANCE, self.instance),
        ]
    }

    /// Whether an object's labels (`Config.Labels` of a container or image) say it is ours.
    pub fn owns(&self, object_labels: &Value) -> bool {
        object_labels[labels::PARENT] == self.session_id.as_str()
            && object_labels[labels::PARENT_INSTANCE] == self.instance.as_str()
    }

    fn labels(&self) -> Map<String, Value> {
        Map::from_iter([
            (labels::PARENT.to_owned(), self.session_id.clone().into()),
            (
                labels::PARENT_INSTANCE.to_owned(),
                self.instance.clone().into(),
            ),
        ])
    }

    /// The repository prefix of the session's tags: two sessions building `app` get two images.
    pub fn namespace(&self) -> String {
        format!("{}/", self.session_id)
    }

    /// Where a tag the session names lives on the engine.
    pub fn namespaced(&self, reference: &str) -> String {
        // The CLI sends some names in full (`docker tag x app` as `docker.io/library/app`):
        // the short name is what the session meant.
        let reference = reference
            .strip_prefix("docker.io/library/")
            .or_else(|| reference.strip_prefix("docker.io/"))
            .unwrap_or(reference);
        if reference.starts_with(&self.namespace()) {
            reference.to_owned()
        } else {
            format!("{}{reference}", self.namespace())
        }
    }

    /// Where a volume or network the session names lives on the engine: their names are
    /// global, and cannot hold a `/`.
    pub fn scoped_name(&self, name: &str) -> String {
        let prefix = format!("{}_", self.session_id);
        if name.starts_with(&prefix) {
            name.to_owned()
        } else {
            format!("{prefix}{name}")
        }
    }

    /// The network the session's containers join unless they name another: `default`,
    /// `bridge` and no name at all mean it, as they mean the engine's own bridge elsewhere.
    pub fn default_network(&self) -> String {
        self.scoped_name(DEFAULT_NETWORK)
    }

    /// The session's own container, which joins each of its networks to reach its children.
    pub fn session_container(&self) -> String {
        crate::runtime::container_name(&self.session_id)
    }

    /// Whether `reference` names one of the template's base images (`busybox` is
    /// `busybox:latest`).
    pub fn is_base_image(&self, reference: &str) -> bool {
        let wanted = with_tag(reference);
        self.base_images.iter().any(|base| with_tag(base) == wanted)
    }
}

/// What a session calls its default network.
pub const DEFAULT_NETWORK: &str = "default";

/// `busybox`, `busybox:latest` and `docker.io/library/busybox:latest` are one image.
fn with_tag(reference: &str) -> String {
    let reference = reference
        .strip_prefix("docker.io/library/")
        .or_else(|| reference.strip_prefix("docker.io/"))
        .unwrap_or(reference);
    let name = reference.rsplit('/').next().unwrap_or(reference);
    if name.contains(':') || name.contains('@') {
        reference.to_owned()
    } else {
        format!("{reference}:latest")
    }
}

/// The endpoints a session may call, after the `/v1.NN` prefix.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// Answered by the engine as is: `_ping`, `version`.
    Plain,
    /// `GET /info`, narrowed to what describes the engine, not what else it runs.
    Info,
    ListContainers,
    CreateContainer,
    /// `/containers/{id}/...` (and `DELETE /containers/{id}`): the container must be ours.
    Container {
        id: String,
    },
    /// `POST /containers/{id}/exec`: ours, and no privileged exec.
    CreateExec {
        id: String,
    },
    /// `/exec/{id}/...`: its container must be ours.
    Exec {
        id: String,
    },
    Build,
    /// `POST /images/create`: a pull of a base image, where the template allows pulls.
    Pull,
    ListImages,
    /// Read an image: ours or a base image.
    ReadImage {
        name: String,
    },
    DeleteImage {
        name: String,
    },
    TagImage {
        name: String,
    },
    ListVolumes,
    CreateVolume,
    /// Inspect or remove a volume: the session's own.
    Volume {
        name: String,
    },
    ListNetworks,
    CreateNetwork,
    /// Inspect or remove a network: the session's own.
    Network {
        name: String,
    },
    /// `docker network connect|disconnect`: the session's network and container.
    NetworkMembership {
        name: String,
        connect: bool,
    },
}

/// Which endpoint a request is, or why it is refused. Anything not listed is refused: the
/// engine's API grows, and a new endpoint must be looked at before sessions get it.
pub fn route(method: &str, path: &str) -> Result<Route, DockerApiError> {
    let path = strip_version(path);
    // Names as the engine writes them: nothing escaped, so the engine reads the same name in
    // the ownership check and in the call itself.
    if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/_.-:@".contains(*c)))
    {
        return Err(DockerApiError::Invalid(format!(
            "{c:?} in the path: container, exec and image names use letters, digits and /_.-:@"
        )));
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segments.iter().any(|s| matches!(*s, "." | "..")) {
        return Err(DockerApiError::Invalid(
            "no . or .. segments in the path".into(),
        ));
    }
    let route = match (method, segments.as_slice()) {
        ("GET" | "HEAD", ["_ping"]) | ("GET", ["version"]) => Route::Plain,
        ("GET", ["info"]) => Route::Info,
        ("GET", ["containers", "json"]) => Route::ListContainers,
        ("POST", ["containers", "create"]) => Route::CreateContainer,
        ("POST", ["containers", "prune"]) => {
            return Err(refused(
                "scope",
                "prune would reach other sessions' containers; remove yours with `docker rm`",
            ));
        }
        ("POST", ["containers", _, "update"]) => {
            return Err(refused(
                "limits",
                "a container's limits are the session's and cannot be changed",
            ));
        }
        ("POST", ["containers", id, "exec"]) => Route::CreateExec {
            id: (*id).to_owned(),
        },
        ("DELETE", ["containers", id]) => Route::Container {
            id: (*id).to_owned(),
        },
        (
            "GET" | "POST" | "HEAD" | "PUT",
            [
                "containers",
                id,
                "json" | "logs" | "top" | "changes" | "stats" | "start" | "stop" | "restart"
                | "kill" | "pause" | "unpause" | "wait" | "attach" | "resize" | "rename"
                | "archive" | "export",
            ],
        ) => Route::Container {
            id: (*id).to_owned(),
        },
        ("GET" | "POST", ["exec", id, "json" | "start" | "resize"]) => Route::Exec {
            id: (*id).to_owned(),
        },
        ("POST", ["build"]) => Route::Build,
        ("GET", ["images", "json"]) => Route::ListImages,
        ("POST", ["images", "create"]) => Route::Pull,
        (_, ["images", "load" | "get" | "search" | "prune"]) => {
            return Err(refused(
                "scope",
                "only `docker build`, `images`, `inspect`, `tag` and `rmi` work on images here",
            ));
        }
        ("DELETE", ["images", name @ ..]) if !name.is_empty() => Route::DeleteImage {
            name: name.join("/"),
        },
        ("GET", ["images", name @ .., "json" | "history"]) if !name.is_empty() => {
            Route::ReadImage {
                name: name.join("/"),
            }
        }
        ("POST", ["images", name @ .., "tag"]) if !name.is_empty() => Route::TagImage {
            name: name.join("/"),
        },
        // `docker inspect NAME` asks every kind of object in turn: the session has no
        // plugins, so they are not found, and the CLI goes on to the next kind.
        ("GET", ["plugins", name, "json"]) => {
            return Err(DockerApiError::NotFound {
                kind: "plugin",
                name: (*name).to_owned(),
            });
        }
        ("GET", ["networks"]) => Route::ListNetworks,
        ("POST", ["networks", "create"]) => Route::CreateNetwork,
        ("POST", ["networks", "prune"]) => {
            return Err(refused(
                "scope",
                "prune would reach other sessions' networks; remove yours with `docker network rm`",
            ));
        }
        ("GET" | "DELETE", ["networks", name]) => Route::Network {
            name: (*name).to_owned(),
        },
        ("POST", ["networks", name, action @ ("connect" | "disconnect")]) => {
            Route::NetworkMembership {
                name: (*name).to_owned(),
                connect: *action == "connect",
            }
        }
        ("GET", ["volumes"]) => Route::ListVolumes,
        ("POST", ["volumes", "create"]) => Route::CreateVolume,
        ("POST", ["volumes", "prune"]) => {
            return Err(refused(
                "scope",
                "prune would reach other sessions' volumes; remove yours with `docker volume rm`",
            ));
        }
        ("GET" | "DELETE", ["volumes", name]) => Route::Volume {
            name: (*name).to_owned(),
        },
        (_, [first, ..]) => {
            return Err(refused(
                "scope",
                format!(
                    "`{method} /{first}` is outside what a session may do with Docker \
                     (containers, exec, build, images, volumes and networks are)"
                ),
            ));
        }
        _ => return Err(refused("scope", "empty path")),
    };
    Ok(route)
}

/// `/v1.41/containers/json` is `/containers/json`.
fn strip_version(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("/v")
        && let Some((version, tail)) = rest.split_once('/')
        && !version.is_empty()
        && version.chars().all(|c| c.is_ascii_digit() || c == '.')
    {
        return &path[path.len() - tail.len() - 1..];
    }
    path
}

/// The engine's `/info`, cut to fields about the engine itself: the counts, names, addresses
/// and registry settings of the host stay out. The CLI reads it before `inspect` and `info`.
pub fn narrow_info(info: &Value, scope: &Scope) -> Value {
    const KEPT: &[&str] = &[
        "ServerVersion",
        "OperatingSystem",
        "OSType",
        "OSVersion",
        "Architecture",
        "KernelVersion",
        "Driver",
        "CgroupDriver",
        "CgroupVersion",
        "DefaultRuntime",
        "SecurityOptions",
        "NCPU",
        "MemTotal",
    ];
    let mut narrowed: Map<String, Value> = KEPT
        .iter()
        .filter_map(|key| Some(((*key).to_owned(), info.get(*key)?.clone())))
        .collect();
    narrowed.insert("Name".into(), scope.session_id.clone().into());
    narrowed.insert(
        "Swarm".into(),
        serde_json::json!({ "LocalNodeState": "inactive" }),
    );
    Value::Object(narrowed)
}

/// Adds the session's labels to a list call's `filters` (JSON, in either of the engine's
/// forms), so a listing shows its children only, whatever else it filters on.
pub fn scoped_filters(filters: Option<&str>, scope: &Scope) -> Result<String, DockerApiError> {
    let mut value: Value = match filters {
        Some(text) if !text.is_empty() => serde_json::from_str(text)
            .map_err(|e| DockerApiError::Invalid(format!("filters is not JSON: {e}")))?,
        _ => Value::Object(Map::new()),
    };
    let object = value
        .as_object_mut()
        .ok_or_else(|| DockerApiError::Invalid("filters must be a JSON object".into()))?;
    let entry = object
        .entry("label")
        .or_insert_with(|| Value::Array(Vec::new()));
    for label in scope.label_filters() {
        match entry {
            Value::Array(list) => list.push(label.into()),
            Value::Object(set) => {
                set.insert(label, true.into());
            }
            _ => {
                return Err(DockerApiError::Invalid(
                    "filters.label must be a list".into(),
                ));
            }
        }
    }
    Ok(value.to_string())
}

/// The keys of a container create's body, spelt exactly. The engine matches JSON keys without
/// regard to case, and of two spellings takes the later: `hostconfig` after a checked
/// `HostConfig` would be the one obeyed. So every object the policy reads has its keys listed,
/// and any other spelling is refused.
const CREATE_KEYS: &[&str] = &[
    "Hostname",
    "Domainname",
    "User",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "ExposedPorts",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "Env",
    "Cmd",
    "Healthcheck",
    "ArgsEscaped",
    "Image",
    "Volumes",
    "WorkingDir",
    "Entrypoint",
    "NetworkDisabled",
    "MacAddress",
    "OnBuild",
    "Labels",
    "StopSignal",
    "StopTimeout",
    "Shell",
    "HostConfig",
    "NetworkingConfig",
];

const EXEC_KEYS: &[&str] = &[
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "ConsoleSize",
    "Detach",
    "DetachKeys",
    "Tty",
    "Env",
    "Cmd",
    "Privileged",
    "User",
    "WorkingDir",
];

const MOUNT_KEYS: &[&str] = &[
    "Type",
    "Source",
    "Target",
    "ReadOnly",
    "TmpfsOptions",
    "VolumeOptions",
    "Consistency",
];

/// The volume a `-v SOURCE:TARGET[:MODE]` mounts; a host path is refused.
fn bind_volume(bind: &str) -> Result<&str, DockerApiError> {
    let source = bind.split(':').next().unwrap_or_default();
    if source.is_empty()
        || !source
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        return Err(refused(
            "mounts",
            format!(
                "-v {bind} is refused: the host's files are not the session's. Mount a volume \
                 by name (-v data:/path), copy files in with `docker cp`, or use --tmpfs"
            ),
        ));
    }
    Ok(source)
}

/// The volumes a create mounts by name (`-v NAME:/path`, `--mount type=volume`), to be found
/// or made as the session's before `check_create`.
pub fn named_volumes(body: &Value) -> Vec<String> {
    let host = &body["HostConfig"];
    let binds = host["Binds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| bind_volume(b.as_str()?).ok());
    let mounts = host["Mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["Type"] == "volume")
        .filter_map(|m| m["Source"].as_str())
        .filter(|s| !s.is_empty());
    binds.chain(mounts).map(str::to_owned).collect()
}

/// Points binds and mounts at the engine's names of the session's volumes.
fn rename_volumes(
    host: &mut Map<String, Value>,
    volumes: &BTreeMap<String, String>,
) -> Result<(), DockerApiError> {
    let renamed = |name: &str| {
        volumes
            .get(name)
            .cloned()
            .ok_or_else(|| DockerApiError::NotFound {
                kind: "volume",
                name: name.to_owned(),
            })
    };
    if let Some(Value::Array(binds)) = host.get_mut("Binds") {
        for bind in binds.iter_mut() {
            let text = bind.as_str().unwrap_or_default();
            let (source, rest) = text.split_once(':').unwrap_or((text, ""));
            *bind = format!("{}:{rest}", renamed(source)?).into();
        }
    }
    if let Some(Value::Array(mounts)) = host.get_mut("Mounts") {
        for mount in mounts.iter_mut().filter(|m| m["Type"] == "volume") {
            if let Some(source) = mount["Source"].as_str().filter(|s| !s.is_empty()) {
                mount["Source"] = renamed(source)?.into();
            }
        }
    }
    Ok(())
}

/// Refuses any key of `object` not in `known`, exactly as spelt there.
fn only_keys(
    object: &Map<String, Value>,
    known: &[&str],
    within: &str,
) -> Result<(), DockerApiError> {
    match object.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => Err(refused(
            "unknown_option",
            format!("{within}{key} is not one Berth knows to be safe; leave it out"),
        )),
        None => Ok(()),
    }
}

/// `HostConfig` keys that only ever concern the container itself.
const HARMLESS_HOST_CONFIG: &[&str] = &[
    "AutoRemove",
    "CapDrop",
    "ConsoleSize",
    "ContainerIDFile",
    "CpuShares",
    "CpusetCpus",
    "CpusetMems",
    "Dns",
    "DnsOptions",
    "DnsSearch",
    "ExtraHosts",
    "GroupAdd",
    "Init",
    "Isolation",
    "MemoryReservation",
    "MemorySwappiness",
    "KernelMemory",
    "KernelMemoryTCP",
    "ReadonlyRootfs",
    "RestartPolicy",
    "ShmSize",
    "Tmpfs",
    "Ulimits",
    "BlkioWeight",
];

/// `HostConfig` keys Berth sets itself, whatever the request says (after the checks below).
const FORCED_HOST_CONFIG: &[&str] = &[
    "NetworkMode",
    "Memory",
    "MemorySwap",
    "NanoCpus",
    "CpuQuota",
    "CpuPeriod",
    "CpuCount",
    "CpuPercent",
    "PidsLimit",
    "SecurityOpt",
    "Privileged",
    "LogConfig",
    "MaskedPaths",
    "ReadonlyPaths",
];

/// A value the engine reads as "not asked for": the CLI sends every key, most of them empty.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Checks a container create's body against the policy and rewrites it into what runs: on the
/// session's network, within its limits, hardened, labelled as the session's. The image has
/// been resolved by the caller.
/// What a create names, as found on the engine for the session by the caller.
#[derive(Debug, Default)]
pub struct Resolved {
    /// The engine's names of the volumes it mounts, by the session's names for them.
    pub volumes: BTreeMap<String, String>,
    /// The engine's names of the networks it joins, by the session's names for them.
    pub networks: BTreeMap<String, String>,
    /// What the session's own container passes on to its children.
    pub inherited: Inherited,
}

/// What a session's own container passes on to the containers and build steps it makes, as
/// the engine reports it for the session's container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inherited {
    /// The cgroup the session's own container runs under, which its children join, so that
    /// its limits bound them all together; `None` where the host has none.
    pub cgroup_parent: Option<String>,
    /// The cores the session is pinned to (`docker.pin_cpus`), which its children are pinned
    /// to as well, or to some of them; `None` when it runs on every core.
    pub cpuset: Option<String>,
}

impl Inherited {
    /// The cores a child runs on when it `asked` for some: the session's, or those it asked
    /// for when they are among the session's. Anything else is refused.
    fn cpuset_for(&self, asked: Option<&str>) -> Result<Option<String>, DockerApiError> {
        let asked = asked.filter(|list| !list.is_empty());
        let Some(session) = &self.cpuset else {
            return Ok(asked.map(str::to_owned));
        };
        let Some(asked) = asked else {
            return Ok(Some(session.clone()));
        };
        let own = crate::runtime::parse_cpuset(session);
        let wanted = crate::runtime::parse_cpuset(asked);
        if wanted.is_empty() || wanted.iter().any(|core| !own.contains(core)) {
            return Err(refused(
                "cpuset",
                format!(
                    "--cpuset-cpus {asked} is refused: this session runs on cores {session}; \
                     name some of those, or leave the option out"
                ),
            ));
        }
        Ok(Some(asked.to_owned()))
    }
}

impl Resolved {
    /// Every name as the session wrote it: for checking a create before anything is looked up.
    pub fn as_named(volumes: &[String], networks: &[String]) -> Self {
        let same = |names: &[String]| names.iter().map(|n| (n.clone(), n.clone())).collect();
        Self {
            volumes: same(volumes),
            networks: same(networks),
            inherited: Inherited::default(),
        }
    }
}

pub fn check_create(
    body: &mut Value,
    scope: &Scope,
    resolved: &Resolved,
) -> Result<Vec<PublishedPort>, DockerApiError> {
    let config = body
        .as_object_mut()
        .ok_or_else(|| DockerApiError::Invalid("the body must be a JSON object".into()))?;
    only_keys(config, CREATE_KEYS, "")?;
    check_labels(config.get("Labels"))?;
    let host = config
        .entry("HostConfig")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| DockerApiError::Invalid("HostConfig must be an object".into()))?;
    check_host_config(&mut *host)?;
    rename_volumes(host, &resolved.volumes)?;
    let published = published_ports(host)?;
    host.remove("PortBindings");
    host.remove("PublishAllPorts");
    let mode = match host.get("NetworkMode").and_then(Value::as_str) {
        Some(NO_NETWORK) => NO_NETWORK.to_owned(),
        mode => engine_network(&resolved.networks, &network_meant(mode.unwrap_or_default()))?,
    };
    let cpuset = resolved
        .inherited
        .cpuset_for(host.get("CpusetCpus").and_then(Value::as_str))?;
    force_host_config(host, scope, &mode);
    if let Some(parent) = &resolved.inherited.cgroup_parent {
        host.insert("CgroupParent".into(), parent.clone().into());
    }
    if let Some(cpuset) = cpuset {
        host.insert("CpusetCpus".into(), cpuset.into());
    }

    let mut labels = match config.remove("Labels") {
        Some(Value::Object(labels)) => labels,
        _ => Map::new(),
    };
    labels.extend(scope.labels());
    if !published.is_empty() {
        let text: Vec<String> = published.iter().map(ToString::to_string).collect();
        labels.insert(labels::PUBLISHED_PORTS.into(), text.join(",").into());
    }
    config.insert("Labels".into(), Value::Object(labels));
    // Only the session's networks, under the engine's names for them.
    let asked = config
        .remove("NetworkingConfig")
        .and_then(|mut c| c.get_mut("EndpointsConfig").map(Value::take));
    let mut endpoints = Map::new();
    for (name, endpoint) in asked
        .as_ref()
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        endpoints.insert(
            engine_network(&resolved.networks, &network_meant(name))?,
            check_endpoint(endpoint)?,
        );
    }
    if endpoints.is_empty() && mode != NO_NETWORK {
        endpoints.insert(mode, Value::Object(Map::new()));
    }
    config.insert(
        "NetworkingConfig".into(),
        serde_json::json!({ "EndpointsConfig": endpoints }),
    );
    Ok(published)
}

/// The network mode that joins no network at all.
const NO_NETWORK: &str = "none";

/// The session's name for a network a create names: no name, `default` and `bridge` are its
/// default network.
fn network_meant(name: &str) -> String {
    match name {
        "" | "default" | "bridge" => DEFAULT_NETWORK.to_owned(),
        name => name.to_owned(),
    }
}

fn engine_network(
    networks: &BTreeMap<String, String>,
    name: &str,
) -> Result<String, DockerApiError> {
    networks
        .get(name)
        .cloned()
        .ok_or_else(|| DockerApiError::NotFound {
            kind: "network",
            name: name.to_owned(),
        })
}

/// The networks a create joins, as the session names them (`default` for its default
/// network), to be found as the session's, or made for `default`, before `check_create`.
pub fn requested_networks(body: &Value) -> Vec<String> {
    let mode = body["HostConfig"]["NetworkMode"]
        .as_str()
        .unwrap_or_default();
    let endpoints = body["NetworkingConfig"]["EndpointsConfig"]
        .as_object()
        .into_iter()
        .flat_map(|e| e.keys().map(String::as_str));
    let mut names: Vec<String> = std::iter::once(mode)
        .filter(|m| *m != NO_NETWORK)
        .chain(endpoints)
        .map(network_meant)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// One endpoint of a create or a `network connect`: aliases, which other containers on the
/// network resolve to it; no fixed address or link, which the network's own DNS replaces.
pub fn check_endpoint(endpoint: &Value) -> Result<Value, DockerApiError> {
    let mut checked = Map::new();
    for (key, value) in endpoint.as_object().into_iter().flatten() {
        if is_empty(value) {
            continue;
        }
        match key.as_str() {
            "Aliases" => {
                let aliases = value.as_array().ok_or_else(|| {
                    DockerApiError::Invalid("EndpointsConfig.Aliases must be a list".into())
                })?;
                for alias in aliases {
                    check_object_name("alias", alias.as_str().unwrap_or_default())?;
                }
                checked.insert(key.clone(), value.clone());
            }
            key => {
                return Err(refused(
                    "network",
                    format!(
                        "{key} is not available for a network endpoint here; containers get \
                         their addresses from the network and find each other by name"
                    ),
                ));
            }
        }
    }
    Ok(Value::Object(checked))
}

/// A network, volume or alias name as the engine allows them, so it can be prefixed with the
/// session's and still be one.
pub fn check_object_name(kind: &str, name: &str) -> Result<(), DockerApiError> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name.len() <= 128;
    if valid {
        Ok(())
    } else {
        Err(DockerApiError::Invalid(format!(
            "{kind} {name:?}: names start with a letter or digit and hold only letters, digits \
             and _.- (128 at most)"
        )))
    }
}

/// A port published with `-p SESSION_PORT:CONTAINER_PORT`. Nothing listens on the host: the
/// session's agent listens on `SESSION_PORT` inside the session (so `localhost:8080` there, and
/// the preview, reach it) and relays to the container over the session's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PublishedPort {
    pub session_port: u16,
    pub container_port: u16,
}

impl std::fmt::Display for PublishedPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.session_port, self.container_port)
    }
}

impl PublishedPort {
    /// The ports a container's `berth.ports` label lists; what does not parse is left out.
    pub fn parse_label(text: &str) -> Vec<Self> {
        text.split(',')
            .filter_map(|pair| {
                let (session, container) = pair.split_once(':')?;
                Some(Self {
                    session_port: session.parse().ok()?,
                    container_port: container.parse().ok()?,
                })
            })
            .collect()
    }
}

/// The ports a create's `PortBindings` publish (`-p 8080:80`), checked.
fn published_ports(host: &Map<String, Value>) -> Result<Vec<PublishedPort>, DockerApiError> {
    let mut published = Vec::new();
    let bindings = host.get("PortBindings").and_then(Value::as_object);
    for (key, binds) in bindings.into_iter().flatten() {
        let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
        if proto != "tcp" {
            return Err(refused(
                "ports",
                format!("-p ...:{key} is refused: only TCP ports are published into a session"),
            ));
        }
        let container_port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| DockerApiError::Invalid(format!("port {key:?}")))?;
        for bind in binds.as_array().into_iter().flatten() {
            let address = bind["HostIp"].as_str().unwrap_or_default();
            if !matches!(address, "" | "0.0.0.0" | "::" | "127.0.0.1") {
                return Err(refused(
                    "ports",
                    format!(
                        "-p {address}:... is refused: ports are published on the session's own \
                         addresses; leave the address out"
                    ),
                ));
            }
            let session_port = bind["HostPort"]
                .as_str()
                .unwrap_or_default()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| {
                    refused(
                        "ports",
                        format!(
                            "name the session's port for container port {container_port}: \
                             -p 8080:{container_port} makes it localhost:8080 in the session"
                        ),
                    )
                })?;
            if published
                .iter()
                .any(|p: &PublishedPort| p.session_port == session_port)
            {
                return Err(DockerApiError::Conflict(format!(
                    "port {session_port} is published twice"
                )));
            }
            published.push(PublishedPort {
                session_port,
                container_port,
            });
        }
    }
    published.sort();
    Ok(published)
}

fn check_labels(labels: Option<&Value>) -> Result<(), DockerApiError> {
    if let Some(Value::Object(labels)) = labels
        && let Some(name) = labels.keys().find(|k| k.starts_with("berth."))
    {
        return Err(refused(
            "labels",
            format!("label {name} is Berth's own; use another name"),
        ));
    }
    Ok(())
}

/// `HostConfig` keys the policy checks one by one below.
const CHECKED_HOST_CONFIG: &[&str] = &[
    "CapAdd",
    "Binds",
    "Mounts",
    "VolumeDriver",
    "VolumesFrom",
    "PidMode",
    "IpcMode",
    "UTSMode",
    "UsernsMode",
    "CgroupnsMode",
    "Cgroup",
    "PortBindings",
    "PublishAllPorts",
    "Devices",
    "DeviceRequests",
    "DeviceCgroupRules",
    "Sysctls",
    "CgroupParent",
    "Runtime",
    "Links",
    "OomKillDisable",
    "OomScoreAdj",
];

fn check_host_config(host: &mut Map<String, Value>) -> Result<(), DockerApiError> {
    // Keys the policy does not know, spelt exactly, never reach the engine: dropped when empty
    // (a newer CLI sends every key it has), refused otherwise. Of `NetworkMode` and an empty
    // `networkmode`, the engine would obey the latter.
    let known = |key: &str| {
        HARMLESS_HOST_CONFIG.contains(&key)
            || FORCED_HOST_CONFIG.contains(&key)
            || CHECKED_HOST_CONFIG.contains(&key)
    };
    host.retain(|key, value| known(key) || !is_empty(value));
    for (key, value) in host.iter() {
        if is_empty(value) || HARMLESS_HOST_CONFIG.contains(&key.as_str()) {
            continue;
        }
        match key.as_str() {
            "Privileged" => {
                return Err(refused(
                    "privileged",
                    "privileged containers are refused: they are root on the host. Drop \
                     --privileged; containers here get Docker's default capabilities",
                ));
            }
            "CapAdd" => {
                return Err(refused(
                    "capabilities",
                    "--cap-add is refused: containers get Docker's default capabilities at most",
                ));
            }
            "SecurityOpt" => check_security_opt(value)?,
            "Binds" => {
                for bind in value.as_array().into_iter().flatten() {
                    bind_volume(bind.as_str().unwrap_or_default())?;
                }
            }
            "Mounts" => check_mounts(value)?,
            "VolumeDriver" | "VolumesFrom" => {
                return Err(refused(
                    "mounts",
                    format!(
                        "{key} is refused; mount the session's volumes by name (-v NAME:/path)"
                    ),
                ));
            }
            "NetworkMode" => check_network_mode(value)?,
            "PidMode" | "IpcMode" | "UTSMode" | "UsernsMode" | "CgroupnsMode" | "Cgroup" => {
                check_mode(key, value, &["private", "shareable"], "namespaces")?
            }
            // Checked with the ports they name, in `published_ports`.
            "PortBindings" => {}
            "PublishAllPorts" => {
                return Err(refused(
                    "ports",
                    "-P is refused: name each port to publish into the session (-p 8080:80)",
                ));
            }
            "Devices" | "DeviceRequests" | "DeviceCgroupRules" => {
                return Err(refused(
                    "devices",
                    "host devices (--device, --gpus) are refused",
                ));
            }
            "Sysctls" => {
                return Err(refused("sysctls", "--sysctl is refused"));
            }
            "CgroupParent" | "Runtime" => {
                return Err(refused(
                    "runtime",
                    format!(
                        "{key} is refused: children run under the engine's default runtime and cgroup"
                    ),
                ));
            }
            "Links" => {
                return Err(refused(
                    "network",
                    "--link is refused; containers on one network find each other by name",
                ));
            }
            "OomKillDisable" | "OomScoreAdj" => {
                return Err(refused(
                    "limits",
                    format!("{key} is refused: the session's memory limit applies"),
                ));
            }
            key if FORCED_HOST_CONFIG.contains(&key) => {}
            key => {
                return Err(refused(
                    "unknown_option",
                    format!("HostConfig.{key} is not one Berth knows to be safe; leave it out"),
                ));
            }
        }
    }
    Ok(())
}

fn check_security_opt(value: &Value) -> Result<(), DockerApiError> {
    let options = value.as_array().into_iter().flatten();
    for option in options {
        let option = option.as_str().unwrap_or_default();
        if !matches!(option, "no-new-privileges" | "no-new-privileges:true") {
            return Err(refused(
                "security_opt",
                format!(
                    "--security-opt {option} is refused; only no-new-privileges is allowed \
                     (and always on)"
                ),
            ));
        }
    }
    Ok(())
}

fn check_mounts(value: &Value) -> Result<(), DockerApiError> {
    for mount in value.as_array().into_iter().flatten() {
        if !matches!(mount["Type"].as_str(), Some("tmpfs" | "volume")) {
            return Err(refused(
                "mounts",
                format!(
                    "--mount type={} is refused: only volumes and tmpfs mounts are allowed in a \
                     session",
                    mount["Type"].as_str().unwrap_or("?")
                ),
            ));
        }
        if let Some(mount) = mount.as_object() {
            only_keys(mount, MOUNT_KEYS, "HostConfig.Mounts.")?;
        }
        if mount["Type"] == "volume" && mount["Source"].as_str().is_none_or(str::is_empty) {
            return Err(refused(
                "mounts",
                "name the volume (--mount type=volume,source=NAME,...)",
            ));
        }
        if let Some(options) = mount["VolumeOptions"].as_object()
            && options.keys().any(|k| k != "NoCopy")
        {
            return Err(refused(
                "mounts",
                "volume options (driver, labels) are refused; create the volume with \
                 `docker volume create NAME`",
            ));
        }
    }
    Ok(())
}

fn check_mode(
    key: &str,
    value: &Value,
    allowed: &[&str],
    rule: &'static str,
) -> Result<(), DockerApiError> {
    let mode = value.as_str().unwrap_or_default();
    if allowed.contains(&mode) {
        return Ok(());
    }
    Err(refused(
        rule,
        format!(
            "{key} {mode} is refused: a container shares nothing with the host or other \
             containers"
        ),
    ))
}

/// A container joins the session's networks, or none: never the host's, another container's,
/// or a network of the engine's own (a name the session has not made is not found).
fn check_network_mode(value: &Value) -> Result<(), DockerApiError> {
    let mode = value.as_str().unwrap_or_default();
    if mode == "host" || mode.starts_with("container:") {
        return Err(refused(
            "network",
            format!(
                "--network {mode} is refused: a container shares nothing with the host or other \
                 containers; it joins the session's networks only"
            ),
        ));
    }
    if matches!(mode, "" | "default" | "bridge" | NO_NETWORK) {
        return Ok(());
    }
    check_object_name("network", mode)
}

fn force_host_config(host: &mut Map<String, Value>, scope: &Scope, network: &str) {
    let capped = |requested: Option<&Value>, max: i64| -> i64 {
        match requested.and_then(Value::as_i64) {
            Some(n) if n > 0 && n < max => n,
            _ => max,
        }
    };
    let memory = capped(host.get("Memory"), scope.memory_bytes);
    let cpus = capped(host.get("NanoCpus"), scope.nano_cpus);
    let pids = capped(host.get("PidsLimit"), scope.pids);
    for key in FORCED_HOST_CONFIG {
        host.remove(*key);
    }
    let forced = serde_json::json!({
        "NetworkMode": network,
        "Memory": memory,
        // No swap beyond the limit, like the session's own container.
        "MemorySwap": memory,
        "NanoCpus": cpus,
        "PidsLimit": pids,
        "SecurityOpt": ["no-new-privileges:true"],
        "Privileged": false,
        "LogConfig": {
            "Type": "json-file",
            "Config": { "max-size": scope.log_max_size, "max-file": "1" }
        },
    });
    if let Value::Object(forced) = forced {
        host.extend(forced);
    }
}

/// Checks a volume create's body and rewrites it: the local driver with no options (they
/// could name a host path: `device=`), the session's name and labels.
pub fn check_volume_create(body: &mut Value, scope: &Scope) -> Result<(), DockerApiError> {
    let volume = body
        .as_object_mut()
        .ok_or_else(|| DockerApiError::Invalid("the body must be a JSON object".into()))?;
    only_keys(volume, &["Name", "Driver", "DriverOpts", "Labels"], "")?;
    if !matches!(
        volume.get("Driver").and_then(Value::as_str),
        None | Some("" | "local")
    ) {
        return Err(refused(
            "mounts",
            "volume drivers are refused; volumes use the local driver",
        ));
    }
    if volume.get("DriverOpts").is_some_and(|o| !is_empty(o)) {
        return Err(refused(
            "mounts",
            "volume options (--opt) are refused: they can mount host paths and devices",
        ));
    }
    check_labels(volume.get("Labels"))?;
    if let Some(name) = volume
        .get("Name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        let name = scope.scoped_name(name);
        volume.insert("Name".into(), name.into());
    }
    let mut labels = match volume.remove("Labels") {
        Some(Value::Object(labels)) => labels,
        _ => Map::new(),
    };
    labels.extend(scope.labels());
    volume.insert("Labels".into(), Value::Object(labels));
    Ok(())
}

/// Checks a network create's body and rewrites it into the session's network: a bridge whose
/// name the firewall knows (`berth-k…`), internal (nothing is routed in or out: its containers
/// reach each other and the session), on `subnet`, named and labelled as the session's.
pub fn check_network_create(
    body: &mut Value,
    scope: &Scope,
    subnet: &str,
) -> Result<(), DockerApiError> {
    let network = body
        .as_object()
        .ok_or_else(|| DockerApiError::Invalid("the body must be a JSON object".into()))?;
    only_keys(
        network,
        &[
            "Name",
            "CheckDuplicate",
            "Driver",
            "Internal",
            "Attachable",
            "Ingress",
            "IPAM",
            "EnableIPv6",
            "Options",
            "Labels",
            "ConfigOnly",
            "ConfigFrom",
            "Scope",
        ],
        "",
    )?;
    let name = network
        .get("Name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    check_object_name("network", name)?;
    if matches!(name, "bridge" | "host" | NO_NETWORK) {
        return Err(DockerApiError::Conflict(format!(
            "network with name {name} already exists"
        )));
    }
    if !matches!(
        network.get("Driver").and_then(Value::as_str),
        None | Some("" | "bridge")
    ) {
        return Err(refused(
            "network",
            "only bridge networks are made in a session; leave --driver out",
        ));
    }
    let ipam = network.get("IPAM").cloned().unwrap_or_default();
    if !matches!(ipam["Driver"].as_str(), None | Some("" | "default"))
        || !is_empty(&ipam["Config"])
        || !is_empty(&ipam["Options"])
    {
        return Err(refused(
            "network",
            "subnets and address management are Berth's to choose; leave --subnet, --ip-range, \
             --gateway and --ipam-driver out",
        ));
    }
    for key in [
        "Options",
        "Ingress",
        "EnableIPv6",
        "ConfigOnly",
        "ConfigFrom",
        "Scope",
    ] {
        if network.get(key).is_some_and(|v| !is_empty(v)) {
            return Err(refused(
                "network",
                format!("{key} is refused: session networks are plain bridges (no -o, no IPv6)"),
            ));
        }
    }
    check_labels(network.get("Labels"))?;
    let internal_asked = network.get("Internal") == Some(&Value::Bool(true));
    let engine_name = scope.scoped_name(name);
    let mut labels = match network.get("Labels") {
        Some(Value::Object(labels)) => labels.clone(),
        _ => Map::new(),
    };
    labels.extend(scope.labels());
    labels.insert(
        labels::INTERNAL_ASKED.into(),
        internal_asked.to_string().into(),
    );
    *body = serde_json::json!({
        "Name": engine_name,
        "CheckDuplicate": true,
        "Driver": "bridge",
        "Internal": true,
        "IPAM": { "Driver": "default", "Config": [{ "Subnet": subnet }] },
        "Options": { BRIDGE_NAME_OPTION: crate::networks::child_bridge(&engine_name) },
        "Labels": labels,
    });
    Ok(())
}

/// The engine's option naming a bridge network's interface.
const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";

/// A session's network as inspecting it answers: as the session made it, without what Berth
/// added (its bridge's name, `Internal` unless asked, its labels, the session's own container).
/// `docker-compose` compares the network it finds with its file, and would otherwise ask to
/// recreate it.
pub fn narrow_network(network: &mut Value, scope: &Scope) {
    let session = scope.session_container();
    if let Some(containers) = network["Containers"].as_object_mut() {
        containers.retain(|_, container| container["Name"] != session.as_str());
    }
    let internal_asked = network["Labels"][labels::INTERNAL_ASKED] == "true";
    if let Some(options) = network["Options"].as_object_mut() {
        options.remove(BRIDGE_NAME_OPTION);
    }
    if let Some(labels) = network["Labels"].as_object_mut() {
        labels.retain(|key, _| !key.starts_with("berth."));
    }
    network["Internal"] = internal_asked.into();
}

/// A child's name (`--name`, `docker rename`) may not be one Berth gives sessions'
/// containers (`berth-<session>`): taking a future session's name would stop its create.
pub fn check_name(query: Option<&str>) -> Result<(), DockerApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|e| DockerApiError::Invalid(format!("query: {e}")))?;
    match pairs
        .iter()
        .find(|(key, value)| key == "name" && value.trim_start_matches('/').starts_with("berth-"))
    {
        Some((_, name)) => Err(refused(
            "names",
            format!("the name {name} is Berth's (berth-...); choose another"),
        )),
        None => Ok(()),
    }
}

/// Checks an exec's body: no privileged exec (its container's own capabilities apply).
pub fn check_exec(body: &Value) -> Result<(), DockerApiError> {
    let object = body
        .as_object()
        .ok_or_else(|| DockerApiError::Invalid("the body must be a JSON object".into()))?;
    only_keys(object, EXEC_KEYS, "")?;
    if body["Privileged"] == true {
        return Err(refused(
            "privileged",
            "privileged exec is refused; drop --privileged",
        ));
    }
    Ok(())
}

/// Build parameters that change nothing outside the image being built.
const HARMLESS_BUILD: &[&str] = &[
    "dockerfile",
    "q",
    "nocache",
    "rm",
    "forcerm",
    "buildargs",
    "target",
    "extrahosts",
    "shmsize",
    "ulimits",
    "cpushares",
];

/// Checks a build's query and rewrites it: tags into the session's namespace, the session's
/// labels on the image, `RUN` steps on the session's network within its limits. Returns the
/// new query.
pub fn check_build(
    query: Option<&str>,
    scope: &Scope,
    inherited: &Inherited,
) -> Result<String, DockerApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|e| DockerApiError::Invalid(format!("query: {e}")))?;
    let asked_cpuset = pairs
        .iter()
        .find(|(key, _)| key == "cpusetcpus")
        .map(|(_, value)| value.as_str());
    let cpuset = inherited.cpuset_for(asked_cpuset)?;
    let mut out: Vec<(String, String)> = Vec::new();
    let mut labels = scope.labels();
    for (key, value) in pairs {
        match key.as_str() {
            "t" => {
                let tag = scope.namespaced(&value);
                out.push((key, tag));
            }
            "labels" => {
                let asked: Map<String, Value> = serde_json::from_str(&value)
                    .map_err(|e| DockerApiError::Invalid(format!("labels: {e}")))?;
                check_labels(Some(&Value::Object(asked.clone())))?;
                labels.extend(asked);
            }
            "remote" if !value.is_empty() => {
                return Err(refused(
                    "remote",
                    "builds from a URL are refused (the engine would fetch it from the host); \
                     send the context from the session: `docker build .`",
                ));
            }
            "pull" if !matches!(value.as_str(), "" | "0" | "false") => {
                return Err(refused(
                    "pull",
                    "--pull is refused: images are not pulled here; build on a base image",
                ));
            }
            "version" if !matches!(value.as_str(), "" | "1") => {
                return Err(refused(
                    "buildkit",
                    "BuildKit is not available here; build with the legacy builder \
                     (DOCKER_BUILDKIT=0, set in every session)",
                ));
            }
            "networkmode" => {
                if !matches!(value.as_str(), "" | "default" | "bridge") {
                    return Err(refused(
                        "network",
                        format!(
                            "--network {value} is refused: build steps use the session's network"
                        ),
                    ));
                }
            }
            "cgroupparent" if !value.is_empty() => {
                return Err(refused(
                    "runtime",
                    "--cgroup-parent is refused: build steps run within the session's limits",
                ));
            }
            // Replaced below by the session's limits.
            "memory" | "memswap" | "cpuquota" | "cpuperiod" | "cpusetcpus" | "remote" | "pull"
            | "version" => {}
            _ if value.is_empty() || value == "0" || value == "false" => {}
            key if HARMLESS_BUILD.contains(&key) => out.push((key.to_owned(), value)),
            key => {
                return Err(refused(
                    "unknown_option",
                    format!("build option {key} is not one Berth knows to be safe; leave it out"),
                ));
            }
        }
    }
    const PERIOD: i64 = 100_000;
    out.extend([
        ("labels".to_owned(), Value::Object(labels).to_string()),
        ("networkmode".to_owned(), scope.network.clone()),
        ("memory".to_owned(), scope.memory_bytes.to_string()),
        ("memswap".to_owned(), scope.memory_bytes.to_string()),
        ("cpuperiod".to_owned(), PERIOD.to_string()),
        (
            "cpuquota".to_owned(),
            (scope.nano_cpus / (1_000_000_000 / PERIOD)).to_string(),
        ),
    ]);
    if let Some(parent) = &inherited.cgroup_parent {
        out.push(("cgroupparent".to_owned(), parent.clone()));
    }
    if let Some(cpuset) = cpuset {
        out.push(("cpusetcpus".to_owned(), cpuset));
    }

    let query = serde_urlencoded::to_string(&out)
        .map_err(|e| DockerApiError::Invalid(format!("query: {e}")))?;
    Ok(query)
}

/// Checks a pull (`POST /images/create`): only of one of the template's base images, only
/// where it allows pulls, never an import (`fromSrc`, which the engine would fetch from the
/// host's network or read from the request).
pub fn check_pull(query: Option<&str>, scope: &Scope) -> Result<(), DockerApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|e| DockerApiError::Invalid(format!("query: {e}")))?;
    let value = |key: &str| {
        pairs
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    if value("fromSrc").is_some() {
        return Err(refused(
            "import",
            "importing an image (`docker import`) is refused; build on a base image",
        ));
    }
    if !scope.allow_pull {
        return Err(refused(
            "pull",
            "images are not pulled here; use one of the template's base images \
             (`docker.base_images`) or build your own on one",
        ));
    }
    let image = value("fromImage")
        .ok_or_else(|| DockerApiError::Invalid("a pull names its image (fromImage)".into()))?;
    let name = image.rsplit('/').next().unwrap_or(image);
    let reference = match value("tag") {
        Some(tag) if tag.starts_with("sha256:") => format!("{image}@{tag}"),
        Some(tag) => format!("{image}:{tag}"),
        None if name.contains(':') || name.contains('@') => image.to_owned(),
        // The engine reads a name alone as `docker pull --all-tags`.
        None => {
            return Err(refused(
                "pull",
                format!(
                    "pulling every tag of {image} is refused; name one: `docker pull {image}:TAG`"
                ),
            ));
        }
    };
    if !scope.is_base_image(&reference) {
        return Err(refused(
            "pull",
            format!(
                "only the template's base images may be pulled ({}); {reference} is not one",
                scope.base_images.join(", ")
            ),
        ));
    }
    Ok(())
}

/// The images a Dockerfile builds on (`FROM`, `COPY --from`), which the caller checks are the
/// session's or base images: the engine would use any image it has, other sessions' and their
/// snapshots included. `ADD` from a URL is refused: the engine, not the session, would fetch
/// it, from the host's network.
pub fn dockerfile_images(text: &str) -> Result<Vec<String>, DockerApiError> {
    let mut images = Vec::new();
    let mut stages: Vec<String> = Vec::new();
    for instruction in instructions(text) {
        let mut words = instruction.split_whitespace();
        let Some(keyword) = words.next() else {
            continue;
        };
        let mut keyword = keyword.to_ascii_uppercase();
        let mut args: Vec<&str> = words.collect();
        let onbuild = keyword == "ONBUILD";
        if onbuild {
            keyword = args
                .first()
                .map(|k| k.to_ascii_uppercase())
                .unwrap_or_default();
            args.remove(0);
        }
        match keyword.as_str() {
            "FROM" => {
                let mut plain = args.iter().filter(|a| !a.starts_with("--"));
                let image = plain.next().copied().unwrap_or_default();
                if image.contains('$') {
                    return Err(refused(
                        "images",
                        format!("FROM {image}: name the image; variables in FROM are refused"),
                    ));
                }
                if !image.eq_ignore_ascii_case("scratch")
                    && !stages.iter().any(|s| s.eq_ignore_ascii_case(image))
                {
                    images.push(image.to_owned());
                }
                if let (Some(as_), Some(name)) = (plain.next(), plain.next())
                    && as_.eq_ignore_ascii_case("as")
                {
                    stages.push((*name).to_owned());
                }
            }
            // A stage's image keeps its labels: `berth.parent=<another session>` would put it
            // in that session's listings.
            "LABEL" => {
                let keys = args.iter().map(|word| {
                    let key = word.split('=').next().unwrap_or_default();
                    key.trim_matches(|c| c == '"' || c == '\'')
                        .to_ascii_lowercase()
                });
                for key in keys {
                    if key.starts_with("berth.") || key.contains('$') {
                        return Err(refused(
                            "labels",
                            format!(
                                "LABEL {key}: labels starting with berth. are Berth's own, and label names are written out"
                            ),
                        ));
                    }
                }
            }
            "COPY" | "ADD" => {
                for arg in &args {
                    let Some(from) = arg.strip_prefix("--from=") else {
                        continue;
                    };
                    if onbuild {
                        return Err(refused(
                            "images",
                            "ONBUILD COPY --from is refused; copy from a stage of the same build",
                        ));
                    }
                    if from.contains('$') {
                        return Err(refused(
                            "images",
                            format!(
                                "--from={from}: name the stage or image; variables are refused"
                            ),
                        ));
                    }
                    let is_stage = from.parse::<usize>().is_ok()
                        || stages.iter().any(|s| s.eq_ignore_ascii_case(from));
                    if !is_stage {
                        images.push(from.to_owned());
                    }
                }
                let fetches = args.iter().any(|arg| {
                    let arg = arg.trim_matches(|c| matches!(c, '[' | ']' | '"' | ','));
                    arg.contains("://") || arg.starts_with("git@")
                });
                if keyword == "ADD" && fetches {
                    return Err(refused(
                        "remote",
                        "ADD from a URL is refused (the engine would fetch it from the host); \
                         download it in a RUN step (wget, curl), which runs on the session's network",
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(images)
}

/// A Dockerfile's instructions, each on one line: comments and blank lines dropped, lines
/// continued with the escape character (`\\`, or a backtick after `# escape=`) joined.
fn instructions(text: &str) -> Vec<String> {
    let mut escape = '\\';
    let mut out = Vec::new();
    let mut current = String::new();
    let mut directives = true;
    for line in text.lines() {
        let trimmed = line.trim();
        if directives {
            if let Some(value) = trimmed
                .strip_prefix('#')
                .and_then(|d| d.trim().strip_prefix("escape="))
            {
                escape = value.trim().chars().next().unwrap_or('\\');
                continue;
            }
            directives = trimmed.starts_with('#') && trimmed.contains('=');
        }
        if trimmed.starts_with('#') || trimmed.is_empty() && current.is_empty() {
            continue;
        }
        if let Some(continued) = trimmed.strip_suffix(escape) {
            current.push_str(continued);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn scope() -> Scope {
        Scope {
            session_id: "sabc".into(),
            instance: "test".into(),
            network: "berth-open".into(),
            memory_bytes: 256 << 20,
            nano_cpus: 1_000_000_000,
            pids: 128,
            base_images: vec!["berth/busybox:latest".into(), "busybox".into()],
            allow_pull: false,
            max_containers: 3,
            max_images: 3,
            max_networks: 2,
            log_max_size: "10m".into(),
        }
    }

    fn default_network() -> BTreeMap<String, String> {
        BTreeMap::from([(DEFAULT_NETWORK.to_owned(), "sabc_default".to_owned())])
    }

    /// A create with no volumes, on the session's default network.
    fn create(body: &mut Value) -> Result<Vec<PublishedPort>, DockerApiError> {
        let resolved = Resolved {
            networks: default_network(),
            ..Resolved::default()
        };
        check_create(body, &scope(), &resolved)
    }

    fn rule(err: DockerApiError) -> &'static str {
        match err {
            DockerApiError::Refused { rule, .. } => rule,
            other => panic!("not a refusal: {other}"),
        }
    }

    #[test]
    fn routes_are_listed_and_everything_else_is_refused() {
        assert_eq!(route("GET", "/v1.41/_ping").unwrap(), Route::Plain);
        assert_eq!(
            route("GET", "/v1.41/containers/json").unwrap(),
            Route::ListContainers
        );
        assert_eq!(
            route("POST", "/v1.41/containers/abc/attach").unwrap(),
            Route::Container { id: "abc".into() }
        );
        assert_eq!(
            route("GET", "/v1.41/images/sabc/app:1/json").unwrap(),
            Route::ReadImage {
                name: "sabc/app:1".into()
            }
        );
        for path in [
            "/v1.41/containers/..%2Fother/json",
            "/v1.41/containers/../images/x/json",
            "/v1.41/containers/a b/json",
        ] {
            assert!(
                matches!(route("GET", path), Err(DockerApiError::Invalid(_))),
                "{path}"
            );
        }
        assert_eq!(
            route("DELETE", "/images/sabc/app").unwrap(),
            Route::DeleteImage {
                name: "sabc/app".into()
            }
        );
        for (method, path, expected) in [
            ("GET", "/v1.41/events", "scope"),
            ("POST", "/v1.41/swarm/init", "scope"),
            ("GET", "/v1.41/plugins", "scope"),
            ("POST", "/v1.41/containers/prune", "scope"),
            ("POST", "/v1.41/containers/x/update", "limits"),
            ("POST", "/v1.41/networks/prune", "scope"),
            ("POST", "/v1.41/volumes/prune", "scope"),
        ] {
            assert_eq!(rule(route(method, path).unwrap_err()), expected, "{path}");
        }
    }

    #[test]
    fn only_base_images_are_pulled_and_only_where_the_template_allows() {
        assert_eq!(route("POST", "/v1.41/images/create").unwrap(), Route::Pull);
        let pull = |query: &str, allow_pull: bool| {
            check_pull(
                Some(query),
                &Scope {
                    allow_pull,
                    ..scope()
                },
            )
        };
        assert_eq!(
            rule(pull("fromImage=busybox&tag=latest", false).unwrap_err()),
            "pull"
        );
        pull("fromImage=busybox&tag=latest", true).unwrap();
        pull("fromImage=docker.io/library/busybox:latest", true).unwrap();
        // A name alone is every tag to the engine, whatever `busybox` means to the list.
        assert_eq!(rule(pull("fromImage=busybox", true).unwrap_err()), "pull");
        pull("fromImage=berth/busybox&tag=latest", true).unwrap();
        assert_eq!(
            rule(pull("fromImage=busybox&tag=1.36", true).unwrap_err()),
            "pull"
        );
        assert_eq!(
            rule(pull("fromImage=python&tag=3.11", true).unwrap_err()),
            "pull"
        );
        // An import reads from a URL or the request, never allowed.
        assert_eq!(
            rule(pull("fromSrc=http://10.0.0.1/x.tar&repo=busybox", true).unwrap_err()),
            "import"
        );
        assert!(matches!(
            pull("tag=latest", true),
            Err(DockerApiError::Invalid(_))
        ));
    }

    #[test]
    fn a_plain_run_is_rewritten_onto_the_session() {
        let mut body = json!({
            "Image": "berth/busybox",
            "Labels": {"app": "web"},
            "HostConfig": {"NetworkMode": "default", "Memory": 0, "Binds": null, "PidsLimit": null},
            "NetworkingConfig": {"EndpointsConfig": {"bridge": {"Aliases": ["web"], "Links": null}}},
        });
        create(&mut body).unwrap();
        let host = &body["HostConfig"];
        assert_eq!(host["NetworkMode"], "sabc_default");
        assert_eq!(host["Memory"], 256 << 20);
        assert_eq!(host["MemorySwap"], 256 << 20);
        assert_eq!(host["PidsLimit"], 128);
        assert_eq!(host["Privileged"], false);
        assert_eq!(host["SecurityOpt"], json!(["no-new-privileges:true"]));
        assert_eq!(body["Labels"]["app"], "web");
        assert_eq!(body["Labels"]["berth.parent"], "sabc");
        assert_eq!(body["Labels"]["berth.parent-instance"], "test");
        assert_eq!(
            body["NetworkingConfig"],
            json!({"EndpointsConfig": {"sabc_default": {"Aliases": ["web"]}}})
        );
        assert!(body["Labels"].get("berth.ports").is_none());
        // Smaller limits than the session's are kept.
        let mut body = json!({"HostConfig": {"Memory": 64 << 20}});
        create(&mut body).unwrap();
        assert_eq!(body["HostConfig"]["Memory"], 64 << 20);
    }

    #[test]
    fn every_escape_is_refused_by_its_rule() {
        for (host, expected) in [
            (json!({"Privileged": true}), "privileged"),
            (json!({"CapAdd": ["SYS_ADMIN"]}), "capabilities"),
            (
                json!({"SecurityOpt": ["seccomp=unconfined"]}),
                "security_opt",
            ),
            (
                json!({"SecurityOpt": ["apparmor=unconfined"]}),
                "security_opt",
            ),
            (json!({"Binds": ["/:/host"]}), "mounts"),
            (json!({"Binds": ["./here:/data"]}), "mounts"),
            (json!({"Binds": ["~/x:/data"]}), "mounts"),
            (
                json!({"Mounts": [{"Type": "bind", "Source": "/", "Target": "/h"}]}),
                "mounts",
            ),
            (
                json!({"Mounts": [{"Type": "volume", "Target": "/h"}]}),
                "mounts",
            ),
            (
                json!({"Mounts": [{"Type": "volume", "Source": "v", "Target": "/h",
                    "VolumeOptions": {"DriverConfig": {"Name": "local",
                        "Options": {"type": "none", "o": "bind", "device": "/"}}}}]}),
                "mounts",
            ),
            (json!({"VolumesFrom": ["other"]}), "mounts"),
            (json!({"NetworkMode": "host"}), "network"),
            (json!({"NetworkMode": "container:other"}), "network"),
            (json!({"PidMode": "host"}), "namespaces"),
            (json!({"IpcMode": "host"}), "namespaces"),
            (json!({"UTSMode": "host"}), "namespaces"),
            (json!({"UsernsMode": "host"}), "namespaces"),
            (json!({"CgroupnsMode": "host"}), "namespaces"),
            (json!({"PidMode": "container:x"}), "namespaces"),
            (json!({"Devices": [{"PathOnHost": "/dev/sda"}]}), "devices"),
            (json!({"DeviceRequests": [{"Count": -1}]}), "devices"),
            (json!({"Sysctls": {"net.ipv4.ip_forward": "1"}}), "sysctls"),
            (json!({"CgroupParent": "/"}), "runtime"),
            (json!({"Runtime": "runsc"}), "runtime"),
            (
                json!({"PortBindings": {"80/udp": [{"HostPort": "8080"}]}}),
                "ports",
            ),
            (
                json!({"PortBindings": {"80/tcp": [{"HostPort": ""}]}}),
                "ports",
            ),
            (
                json!({"PortBindings": {"80/tcp": [{"HostIp": "10.0.0.1", "HostPort": "8080"}]}}),
                "ports",
            ),
            (json!({"PublishAllPorts": true}), "ports"),
            (json!({"OomKillDisable": true}), "limits"),
            (json!({"SomeFutureOption": "x"}), "unknown_option"),
        ] {
            let mut body = json!({"Image": "x", "HostConfig": host.clone()});
            assert_eq!(rule(create(&mut body).unwrap_err()), expected, "{host}");
        }
        let mut body = json!({"Labels": {"berth.parent": "someone-else"}});
        assert_eq!(rule(create(&mut body).unwrap_err()), "labels");
        // The engine reads keys whatever their case, the later spelling winning: only the
        // exact ones pass.
        for mut body in [
            json!({"HostConfig": {}, "hostconfig": {"Privileged": true}}),
            json!({"HostConfig": {"privileged": true}}),
            json!({"HostConfig": {"Mounts": [{"Type": "tmpfs", "Target": "/t", "type": "bind", "Source": "/"}]}}),
            json!({"labels": {"berth.parent": "x"}}),
        ] {
            assert_eq!(
                rule(create(&mut body).unwrap_err()),
                "unknown_option",
                "{body}"
            );
        }
        // An empty misspelling would reset what Berth forces: it is dropped.
        let mut body = json!({"HostConfig": {"networkmode": "", "maskedpaths": [], "memory": 0}});
        create(&mut body).unwrap();
        let host = body["HostConfig"].as_object().unwrap();
        assert!(
            host.keys()
                .all(|k| k.chars().next().unwrap().is_uppercase()),
            "{host:?}"
        );
        assert_eq!(
            rule(check_exec(&json!({"privileged": true})).unwrap_err()),
            "unknown_option"
        );
        assert_eq!(
            rule(check_exec(&json!({"Privileged": true, "Cmd": ["sh"]})).unwrap_err()),
            "privileged"
        );
        assert!(check_exec(&json!({"Cmd": ["sh"], "User": "root", "Tty": true})).is_ok());
    }

    #[test]
    fn published_ports_become_a_label_and_nothing_is_bound_on_the_host() {
        let mut body = json!({"HostConfig": {
            "PortBindings": {
                "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                "443": [{"HostIp": "0.0.0.0", "HostPort": "8443"}, {"HostIp": "::", "HostPort": "9443"}],
            },
            "PublishAllPorts": false,
        }});
        let published = create(&mut body).unwrap();
        let pairs: Vec<String> = published.iter().map(ToString::to_string).collect();
        assert_eq!(pairs, ["8080:80", "8443:443", "9443:443"]);
        assert_eq!(body["Labels"]["berth.ports"], "8080:80,8443:443,9443:443");
        assert_eq!(
            PublishedPort::parse_label("8080:80,8443:443,9443:443"),
            published
        );
        let host = body["HostConfig"].as_object().unwrap();
        assert!(!host.contains_key("PortBindings") && !host.contains_key("PublishAllPorts"));

        let mut twice = json!({"HostConfig": {"PortBindings": {
            "80/tcp": [{"HostPort": "8080"}], "81/tcp": [{"HostPort": "8080"}],
        }}});
        assert!(matches!(
            create(&mut twice),
            Err(DockerApiError::Conflict(_))
        ));
    }

    #[test]
    fn containers_join_only_networks_the_session_has() {
        let body = json!({
            "HostConfig": {"NetworkMode": "app_default"},
            "NetworkingConfig": {"EndpointsConfig": {"app_default": {"Aliases": ["db"]}}},
        });
        assert_eq!(requested_networks(&body), ["app_default"]);
        assert_eq!(requested_networks(&json!({})), [DEFAULT_NETWORK]);
        assert!(requested_networks(&json!({"HostConfig": {"NetworkMode": "none"}})).is_empty());

        let networks = BTreeMap::from([("app_default".to_owned(), "sabc_app_default".to_owned())]);
        let mut joined = body;
        let resolved = Resolved {
            networks,
            inherited: Inherited {
                cgroup_parent: Some("/berth/sabc".into()),
                cpuset: Some("1".into()),
            },
            ..Resolved::default()
        };
        check_create(&mut joined, &scope(), &resolved).unwrap();
        assert_eq!(
            joined["HostConfig"]["CgroupParent"], "/berth/sabc",
            "the session's limits"
        );
        assert_eq!(
            joined["HostConfig"]["CpusetCpus"], "1",
            "the session's cores"
        );
        assert_eq!(joined["HostConfig"]["NetworkMode"], "sabc_app_default");
        assert_eq!(
            joined["NetworkingConfig"]["EndpointsConfig"],
            json!({"sabc_app_default": {"Aliases": ["db"]}})
        );
        // A network the session has not made (another session's, the engine's) is not found.
        let mut other = json!({"HostConfig": {"NetworkMode": "berth-open"}});
        assert!(matches!(
            create(&mut other),
            Err(DockerApiError::NotFound {
                kind: "network",
                ..
            })
        ));
        // No network at all is allowed, and joins nothing.
        let mut none = json!({"HostConfig": {"NetworkMode": "none"}});
        create(&mut none).unwrap();
        assert_eq!(none["NetworkingConfig"], json!({"EndpointsConfig": {}}));
        for endpoint in [
            json!({"IPAMConfig": {"IPv4Address": "10.213.0.9"}}),
            json!({"Links": ["db:db"]}),
            json!({"DriverOpts": {"x": "y"}}),
        ] {
            let mut body = json!({"NetworkingConfig": {"EndpointsConfig": {"default": endpoint}}});
            assert_eq!(rule(create(&mut body).unwrap_err()), "network");
        }
    }

    #[test]
    fn a_network_create_is_rewritten_into_an_internal_bridge_of_the_sessions() {
        let mut body = json!({
            "Name": "app_default", "CheckDuplicate": true, "Driver": "bridge",
            "Internal": false, "Attachable": false, "IPAM": {"Driver": "default", "Config": [], "Options": {}},
            "EnableIPv6": false, "Options": {}, "Labels": {"com.docker.compose.project": "app"},
        });
        check_network_create(&mut body, &scope(), "10.213.0.32/27").unwrap();
        assert_eq!(body["Name"], "sabc_app_default");
        assert_eq!(body["Internal"], true);
        assert_eq!(
            body["IPAM"]["Config"],
            json!([{"Subnet": "10.213.0.32/27"}])
        );
        let bridge = body["Options"]["com.docker.network.bridge.name"]
            .as_str()
            .unwrap();
        assert!(bridge.starts_with(crate::networks::CHILD_BRIDGE_PREFIX) && bridge.len() <= 15);
        assert_eq!(body["Labels"]["berth.parent"], "sabc");
        assert_eq!(body["Labels"]["com.docker.compose.project"], "app");

        // Inspected, it is what was asked for, as compose compares it.
        let mut inspected = json!({
            "Name": "sabc_app_default", "Internal": true,
            "Options": body["Options"].clone(), "Labels": body["Labels"].clone(),
            "Containers": {"a1": {"Name": "berth-sabc"}, "b2": {"Name": "app_web_1"}},
        });
        narrow_network(&mut inspected, &scope());
        assert_eq!(inspected["Internal"], false);
        assert_eq!(inspected["Options"], json!({}));
        assert_eq!(
            inspected["Labels"],
            json!({"com.docker.compose.project": "app"})
        );
        assert_eq!(
            inspected["Containers"],
            json!({"b2": {"Name": "app_web_1"}})
        );

        for (asked, expected) in [
            (json!({"Name": "n", "Driver": "macvlan"}), "network"),
            (
                json!({"Name": "n", "Options": {"parent": "eth0"}}),
                "network",
            ),
            (
                json!({"Name": "n", "IPAM": {"Config": [{"Subnet": "10.0.0.0/8"}]}}),
                "network",
            ),
            (json!({"Name": "n", "EnableIPv6": true}), "network"),
            (
                json!({"Name": "n", "Labels": {"berth.parent": "x"}}),
                "labels",
            ),
            (json!({"Name": "n", "Something": 1}), "unknown_option"),
        ] {
            let mut body = asked.clone();
            assert_eq!(
                rule(check_network_create(&mut body, &scope(), "10.213.0.0/27").unwrap_err()),
                expected,
                "{asked}"
            );
        }
        let mut bad_name = json!({"Name": "../x"});
        assert!(matches!(
            check_network_create(&mut bad_name, &scope(), "10.213.0.0/27"),
            Err(DockerApiError::Invalid(_))
        ));
        let mut taken = json!({"Name": "host"});
        assert!(matches!(
            check_network_create(&mut taken, &scope(), "10.213.0.0/27"),
            Err(DockerApiError::Conflict(_))
        ));
    }

    #[test]
    fn volumes_are_the_sessions_own_and_never_a_host_path() {
        let mut body = json!({"HostConfig": {
            "Binds": ["data:/data:ro"],
            "Mounts": [{"Type": "volume", "Source": "cache", "Target": "/c"}],
        }});
        assert_eq!(named_volumes(&body), ["data", "cache"]);
        let volumes = BTreeMap::from([
            ("data".to_owned(), "sabc_data".to_owned()),
            ("cache".to_owned(), "sabc_cache".to_owned()),
        ]);
        check_create(
            &mut body,
            &scope(),
            &Resolved {
                volumes,
                networks: default_network(),
                inherited: Inherited::default(),
            },
        )
        .unwrap();
        assert_eq!(body["HostConfig"]["Binds"], json!(["sabc_data:/data:ro"]));
        assert_eq!(body["HostConfig"]["Mounts"][0]["Source"], "sabc_cache");

        let mut volume = json!({"Name": "data", "Labels": {"a": "b"}});
        check_volume_create(&mut volume, &scope()).unwrap();
        assert_eq!(volume["Name"], "sabc_data");
        assert_eq!(volume["Labels"]["berth.parent"], "sabc");
        assert_eq!(volume["Labels"]["a"], "b");
        for (mut volume, expected) in [
            (
                json!({"Name": "v", "DriverOpts": {"device": "/", "o": "bind"}}),
                "mounts",
            ),
            (json!({"Name": "v", "Driver": "nfs"}), "mounts"),
            (
                json!({"Name": "v", "driveropts": {"device": "/"}}),
                "unknown_option",
            ),
            (
                json!({"Name": "v", "Labels": {"berth.parent": "x"}}),
                "labels",
            ),
        ] {
            assert_eq!(
                rule(check_volume_create(&mut volume, &scope()).unwrap_err()),
                expected
            );
        }
    }

    #[test]
    fn berths_own_container_names_are_kept_for_it() {
        assert_eq!(
            rule(check_name(Some("name=berth-sabc")).unwrap_err()),
            "names"
        );
        assert_eq!(
            rule(check_name(Some("name=%2Fberth-x")).unwrap_err()),
            "names"
        );
        assert!(check_name(Some("name=web")).is_ok());
        assert!(check_name(None).is_ok());
    }

    #[test]
    fn children_run_on_the_sessions_cores_or_some_of_them() {
        let pinned = Inherited {
            cpuset: Some("0-2".into()),
            ..Inherited::default()
        };
        assert_eq!(pinned.cpuset_for(None).unwrap().as_deref(), Some("0-2"));
        assert_eq!(pinned.cpuset_for(Some("")).unwrap().as_deref(), Some("0-2"));
        assert_eq!(
            pinned.cpuset_for(Some("1,2")).unwrap().as_deref(),
            Some("1,2")
        );
        for outside in ["3", "1,5", "0-7", "x", "0-99999999999"] {
            assert_eq!(
                rule(pinned.cpuset_for(Some(outside)).unwrap_err()),
                "cpuset"
            );
        }
        let unpinned = Inherited::default();
        assert_eq!(unpinned.cpuset_for(None).unwrap(), None);
        assert_eq!(
            unpinned.cpuset_for(Some("3")).unwrap().as_deref(),
            Some("3")
        );
    }

    #[test]
    fn masked_paths_cannot_be_unmasked() {
        let mut body = json!({"HostConfig": {"MaskedPaths": [], "ReadonlyPaths": []}});
        create(&mut body).unwrap();
        assert!(body["HostConfig"].get("MaskedPaths").is_none());
        assert!(body["HostConfig"].get("ReadonlyPaths").is_none());
    }

    #[test]
    fn builds_are_tagged_labelled_and_limited_as_the_session() {
        let query = check_build(
            Some("t=app%3A1&t=sabc%2Fother&dockerfile=Dockerfile&rm=1&networkmode=default"),
            &scope(),
            &Inherited {
                cgroup_parent: Some("/berth/sabc".into()),
                cpuset: Some("2,3".into()),
            },
        )
        .unwrap();
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&query).unwrap();
        let tags: Vec<&str> = pairs
            .iter()
            .filter(|(k, _)| k == "t")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(tags, ["sabc/app:1", "sabc/other"]);
        let get = |k: &str| pairs.iter().find(|(key, _)| key == k).unwrap().1.clone();
        assert_eq!(get("networkmode"), "berth-open");
        assert_eq!(get("memory"), (256 << 20).to_string());
        assert_eq!(get("cpuquota"), "100000");
        assert_eq!(get("cgroupparent"), "/berth/sabc");
        assert_eq!(get("cpusetcpus"), "2,3");
        let labels: Value = serde_json::from_str(&get("labels")).unwrap();
        assert_eq!(labels["berth.parent"], "sabc");
        for (query, expected) in [
            ("remote=https://example.com/ctx.tar", "remote"),
            ("pull=1", "pull"),
            ("version=2", "buildkit"),
            ("networkmode=host", "network"),
            ("cgroupparent=/", "runtime"),
            ("labels=%7B%22berth.parent%22%3A%22x%22%7D", "labels"),
        ] {
            assert_eq!(
                rule(check_build(Some(query), &scope(), &Inherited::default()).unwrap_err()),
                expected,
                "{query}"
            );
        }
    }

    #[test]
    fn info_says_what_the_engine_is_not_what_it_runs() {
        let info = json!({"ServerVersion": "20.10", "Containers": 40, "Name": "host-1",
            "RegistryConfig": {"Mirrors": ["m"]}, "Swarm": {"NodeAddr": "10.0.0.1"}});
        let narrowed = narrow_info(&info, &scope());
        assert_eq!(
            narrowed,
            json!({"ServerVersion": "20.10", "Name": "sabc", "Swarm": {"LocalNodeState": "inactive"}})
        );
    }

    #[test]
    fn listings_are_narrowed_to_the_session_in_both_filter_forms() {
        let scoped = scoped_filters(Some(r#"{"status":["running"]}"#), &scope()).unwrap();
        let value: Value = serde_json::from_str(&scoped).unwrap();
        assert_eq!(value["status"], json!(["running"]));
        assert_eq!(
            value["label"],
            json!(["berth.parent=sabc", "berth.parent-instance=test"])
        );
        let scoped = scoped_filters(Some(r#"{"label":{"a=b":true}}"#), &scope()).unwrap();
        let value: Value = serde_json::from_str(&scoped).unwrap();
        assert_eq!(value["label"]["berth.parent=sabc"], true);
        assert_eq!(value["label"]["a=b"], true);
    }

    #[test]
    fn base_images_match_with_or_without_their_tag() {
        let scope = scope();
        assert!(scope.is_base_image("berth/busybox"));
        assert!(scope.is_base_image("busybox:latest"));
        assert!(scope.is_base_image("docker.io/library/busybox"));
        assert!(!scope.is_base_image("busybox:1.36"));
        assert!(!scope.is_base_image("berth/base"));
        assert_eq!(scope.namespaced("app"), "sabc/app");
        assert_eq!(scope.namespaced("sabc/app"), "sabc/app");
        assert_eq!(scope.namespaced("docker.io/library/app"), "sabc/app");
        assert_eq!(scope.namespaced("docker.io/sabc/app"), "sabc/app");
    }

    #[test]
    fn a_dockerfile_names_the_images_it_builds_on() {
        let text = "# syntax comment\nFROM berth/busybox AS build\nRUN echo \\\n  hi\n\
                    FROM --platform=linux/amd64 sabc/app:1\nCOPY --from=build /a /a\n\
                    COPY --from=0 /b /b\nCOPY --from=berth-snapshot/other:1 /home /h\n\
                    FROM build\nFROM scratch\n";
        assert_eq!(
            dockerfile_images(text).unwrap(),
            ["berth/busybox", "sabc/app:1", "berth-snapshot/other:1"]
        );
        for (text, expected) in [
            (
                "FROM busybox\nADD https://169.254.169.254/latest /x\n",
                "remote",
            ),
            (
                "FROM busybox\nADD [\"http://127.0.0.1:8080/\", \"/x\"]\n",
                "remote",
            ),
            ("ARG B=x\nFROM $B\n", "images"),
            ("FROM busybox\nONBUILD COPY --from=other /a /a\n", "images"),
            (
                "FROM busybox\nONBUILD ADD http://example.com/x /x\n",
                "remote",
            ),
            ("FROM busybox\nLABEL berth.parent=sother\n", "labels"),
            ("FROM busybox\nLABEL a=b \"Berth.Parent\"=x\n", "labels"),
            ("FROM busybox\nARG K=berth.parent\nLABEL ${K}=x\n", "labels"),
        ] {
            assert_eq!(
                rule(dockerfile_images(text).unwrap_err()),
                expected,
                "{text}"
            );
        }
        // A continued line is one instruction, whatever escape character the file chose.
        let text = "# escape=`\nFROM busybox\nADD `\n  http://example.com/x /x\n";
        assert_eq!(rule(dockerfile_images(text).unwrap_err()), "remote");
        // ADD from the context is fine.
        assert!(dockerfile_images("FROM busybox\nADD app.tar /app\n").is_ok());
        assert!(dockerfile_images("FROM busybox\nLABEL version=$V app=web\n").is_ok());
    }
}
