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
    #[error("{0}")]
    NameTaken(String),
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
    /// The session's own network: its children join it, and so do build steps.
    pub network: String,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids: i64,
    pub base_images: Vec<String>,
    /// `docker.allow_pull`: base images may be pulled.
    pub allow_pull: bool,
    pub max_containers: u32,
    pub max_images: u32,
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

    /// Where a volume the session names lives on the engine: volume names are global, and
    /// cannot hold a `/`.
    pub fn volume_name(&self, name: &str) -> String {
        let prefix = format!("{}_", self.session_id);
        if name.starts_with(&prefix) {
            name.to_owned()
        } else {
            format!("{prefix}{name}")
        }
    }

    /// Whether `reference` names one of the template's base images (`busybox` is
    /// `busybox:latest`).
    pub fn is_base_image(&self, reference: &str) -> bool {
        let wanted = with_tag(reference);
        self.base_images.iter().any(|base| with_tag(base) == wanted)
    }
}

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
        // `docker inspect NAME` asks every kind of object in turn: the session has none of
        // these, so they are not found, and the CLI goes on to the next kind.
        ("GET", [kind @ "networks", name]) | ("GET", [kind @ "plugins", name, "json"]) => {
            return Err(DockerApiError::NotFound {
                kind: if *kind == "networks" {
                    "network"
                } else {
                    "plugin"
                },
                name: (*name).to_owned(),
            });
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
        (_, ["networks", ..]) => {
            return Err(refused(
                "networks",
                "networks are not available in a session yet: containers join the session's \
                 network",
            ));
        }
        (_, [first, ..]) => {
            return Err(refused(
                "scope",
                format!(
                    "`{method} /{first}` is outside what a session may do with Docker \
                     (containers, exec, build and images are)"
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
pub fn check_create(
    body: &mut Value,
    scope: &Scope,
    volumes: &BTreeMap<String, String>,
) -> Result<(), DockerApiError> {
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
    rename_volumes(host, volumes)?;
    force_host_config(host, scope);

    let mut labels = match config.remove("Labels") {
        Some(Value::Object(labels)) => labels,
        _ => Map::new(),
    };
    labels.extend(scope.labels());
    config.insert("Labels".into(), Value::Object(labels));
    // Only the session's network, whatever endpoints the request names.
    config.insert(
        "NetworkingConfig".into(),
        serde_json::json!({ "EndpointsConfig": { scope.network.clone(): {} } }),
    );
    Ok(())
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
            "NetworkMode" => check_mode(key, value, &["default", "bridge"], "network")?,
            "PidMode" | "IpcMode" | "UTSMode" | "UsernsMode" | "CgroupnsMode" | "Cgroup" => {
                check_mode(key, value, &["private", "shareable"], "namespaces")?
            }
            "PortBindings" | "PublishAllPorts" => {
                return Err(refused(
                    "ports",
                    "publishing ports (-p, -P) on the host is refused; reach the container from \
                     its own processes with `docker exec`",
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
                    "--link is refused; containers find each other on the session's network",
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
             containers, and joins the session's network only"
        ),
    ))
}

fn force_host_config(host: &mut Map<String, Value>, scope: &Scope) {
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
        "NetworkMode": scope.network,
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
        let name = scope.volume_name(name);
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
    "cpusetcpus",
];

/// Checks a build's query and rewrites it: tags into the session's namespace, the session's
/// labels on the image, `RUN` steps on the session's network within its limits. Returns the
/// new query.
pub fn check_build(query: Option<&str>, scope: &Scope) -> Result<String, DockerApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|e| DockerApiError::Invalid(format!("query: {e}")))?;
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
            // Replaced below by the session's limits.
            "memory" | "memswap" | "cpuquota" | "cpuperiod" | "remote" | "pull" | "version" => {}
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
            log_max_size: "10m".into(),
        }
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
            ("POST", "/v1.41/networks/create", "networks"),
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
            "NetworkingConfig": {"EndpointsConfig": {"other": {}}},
        });
        check_create(&mut body, &scope(), &Default::default()).unwrap();
        let host = &body["HostConfig"];
        assert_eq!(host["NetworkMode"], "berth-open");
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
            json!({"EndpointsConfig": {"berth-open": {}}})
        );
        // Smaller limits than the session's are kept.
        let mut body = json!({"HostConfig": {"Memory": 64 << 20}});
        check_create(&mut body, &scope(), &Default::default()).unwrap();
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
            (json!({"NetworkMode": "berth-other"}), "network"),
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
                json!({"PortBindings": {"80/tcp": [{"HostPort": "8080"}]}}),
                "ports",
            ),
            (json!({"PublishAllPorts": true}), "ports"),
            (json!({"OomKillDisable": true}), "limits"),
            (json!({"SomeFutureOption": "x"}), "unknown_option"),
        ] {
            let mut body = json!({"Image": "x", "HostConfig": host.clone()});
            assert_eq!(
                rule(check_create(&mut body, &scope(), &Default::default()).unwrap_err()),
                expected,
                "{host}"
            );
        }
        let mut body = json!({"Labels": {"berth.parent": "someone-else"}});
        assert_eq!(
            rule(check_create(&mut body, &scope(), &Default::default()).unwrap_err()),
            "labels"
        );
        // The engine reads keys whatever their case, the later spelling winning: only the
        // exact ones pass.
        for mut body in [
            json!({"HostConfig": {}, "hostconfig": {"Privileged": true}}),
            json!({"HostConfig": {"privileged": true}}),
            json!({"HostConfig": {"Mounts": [{"Type": "tmpfs", "Target": "/t", "type": "bind", "Source": "/"}]}}),
            json!({"labels": {"berth.parent": "x"}}),
        ] {
            assert_eq!(
                rule(check_create(&mut body, &scope(), &Default::default()).unwrap_err()),
                "unknown_option",
                "{body}"
            );
        }
        // An empty misspelling would reset what Berth forces: it is dropped.
        let mut body = json!({"HostConfig": {"networkmode": "", "maskedpaths": [], "memory": 0}});
        check_create(&mut body, &scope(), &Default::default()).unwrap();
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
        check_create(&mut body, &scope(), &volumes).unwrap();
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
    fn masked_paths_cannot_be_unmasked() {
        let mut body = json!({"HostConfig": {"MaskedPaths": [], "ReadonlyPaths": []}});
        check_create(&mut body, &scope(), &Default::default()).unwrap();
        assert!(body["HostConfig"].get("MaskedPaths").is_none());
        assert!(body["HostConfig"].get("ReadonlyPaths").is_none());
    }

    #[test]
    fn builds_are_tagged_labelled_and_limited_as_the_session() {
        let query = check_build(
            Some("t=app%3A1&t=sabc%2Fother&dockerfile=Dockerfile&rm=1&networkmode=default"),
            &scope(),
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
        let labels: Value = serde_json::from_str(&get("labels")).unwrap();
        assert_eq!(labels["berth.parent"], "sabc");
        for (query, expected) in [
            ("remote=https://example.com/ctx.tar", "remote"),
            ("pull=1", "pull"),
            ("version=2", "buildkit"),
            ("networkmode=host", "network"),
            ("cgroupparent=/", "unknown_option"),
            ("labels=%7B%22berth.parent%22%3A%22x%22%7D", "labels"),
        ] {
            assert_eq!(
                rule(check_build(Some(query), &scope()).unwrap_err()),
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
