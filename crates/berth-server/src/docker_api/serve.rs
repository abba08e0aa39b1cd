//! One session's Docker API: each request is routed and checked (`policy`), objects it names
//! are looked up on the engine and must be the session's, and then it goes to the engine as the
//! client sent it, rewritten where the policy says. Upgraded connections (attach, exec) are
//! joined byte for byte once the engine answers 101.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::{
    context,
    engine::Engine,
    policy::{self, DockerApiError, PublishedPort, Resolved, Route, Scope},
    published,
};
use crate::api::error::ApiError;

/// Largest JSON body (a container create, an exec) read to be checked.
const MAX_JSON_BODY: usize = 1 << 20;
/// Most of a refused request's body read before answering; past it the client may see its
/// connection closed instead of the refusal.
const MAX_UNREAD_BODY: usize = 64 << 20;

#[derive(Debug)]
pub struct SessionApi {
    pub scope: Scope,
    pub engine: Engine,
    /// The directory of every session's socket directory (`docker_api::session_dir`).
    pub sockets_dir: std::path::PathBuf,
    /// `docker.child_network_pool`.
    pub network_pool: crate::networks::Cidr,
    /// Held while a network's subnet is chosen and made, by every session of this control
    /// plane.
    pub network_lock: Arc<tokio::sync::Mutex<()>>,
}

/// Every path of the session's socket.
pub async fn handle(State(api): State<Arc<SessionApi>>, mut request: Request) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    match api.handle(&mut request).await {
        Ok(response) => response,
        Err(err) => {
            // Read what the client is still sending, or it meets a closed connection (a broken
            // pipe) instead of the answer.
            let unread = std::mem::take(request.body_mut());
            let _ = http_body_util::Limited::new(unread, MAX_UNREAD_BODY)
                .collect()
                .await;
            if let DockerApiError::Refused { rule, .. } = &err {
                crate::metrics::docker_api_refused(rule);
                tracing::info!(session = %api.scope.session_id, %method, %path, %err, "docker call refused");
            }
            ApiError::from(err).into_docker_response()
        }
    }
}

/// Whether a listed image is the session's own or one of the template's base images.
#[derive(Debug, PartialEq, Eq)]
enum Owner {
    Session,
    Base,
}

impl SessionApi {
    async fn handle(&self, request: &mut Request) -> Result<Response, DockerApiError> {
        let path = request.uri().path().to_owned();
        let version = version_prefix(&path).to_owned();
        match policy::route(request.method().as_str(), &path)? {
            Route::Plain => {}
            Route::Info => {
                let info = self
                    .engine
                    .get_json(&path)
                    .await?
                    .ok_or_else(|| DockerApiError::Engine("the engine has no /info".into()))?;
                return Ok(axum::Json(policy::narrow_info(&info, &self.scope)).into_response());
            }
            Route::ListContainers
            | Route::ListImages
            | Route::ListVolumes
            | Route::ListNetworks => {
                let mut pairs = query_pairs(request.uri())?;
                let filters = pairs
                    .iter()
                    .position(|(k, _)| k == "filters")
                    .map(|i| pairs.remove(i).1);
                pairs.push((
                    "filters".into(),
                    policy::scoped_filters(filters.as_deref(), &self.scope)?,
                ));
                set_uri(request, &path, &pairs)?;
            }
            Route::CreateContainer => return self.create_container(request).await,
            Route::Container { id } => {
                if path.ends_with("/rename") {
                    policy::check_name(request.uri().query())?;
                }
                let container = self.own_container(&id).await?;
                // Only a container that publishes ports changes what the session's agent
                // relays when it starts or stops.
                let publishes = container["Config"]["Labels"]
                    .get(crate::runtime::labels::PUBLISHED_PORTS)
                    .is_some();
                let changes_what_runs = request.method() == axum::http::Method::DELETE
                    || ["start", "stop", "restart", "kill", "pause", "unpause"]
                        .iter()
                        .any(|action| path.ends_with(&format!("/{action}")));
                let response = self.forward(std::mem::take(request)).await?;
                if publishes && changes_what_runs && response.status().is_success() {
                    self.publish_ports().await;
                }
                return Ok(response);
            }
            Route::CreateNetwork => {
                let body = read_json(request).await?;
                let answer = self.create_network(body).await?;
                return Ok((StatusCode::CREATED, axum::Json(answer)).into_response());
            }
            Route::Network { name } if request.method() == axum::http::Method::DELETE => {
                self.remove_network(&name).await?;
                return Ok(StatusCode::NO_CONTENT.into_response());
            }
            Route::Network { name } => {
                let (_, mut network) = self.own_network(&name).await?;
                policy::narrow_network(&mut network, &self.scope);
                return Ok(axum::Json(network).into_response());
            }
            Route::NetworkMembership { name, connect } => {
                let (engine_name, _) = self.own_network(&name).await?;
                let mut body = read_json(request).await?;
                let container = body["Container"].as_str().unwrap_or_default().to_owned();
                self.own_container(&container).await?;
                if connect {
                    body["EndpointConfig"] = policy::check_endpoint(&body["EndpointConfig"])?;
                }
                let action = if connect { "connect" } else { "disconnect" };
                let body = serde_json::json!({
                    "Container": container,
                    "EndpointConfig": body["EndpointConfig"],
                    "Force": body["Force"] == true,
                });
                set_json(request, &body)?;
                *request.uri_mut() = uri(&format!("{version}/networks/{engine_name}/{action}"))?;
                let response = self.forward(std::mem::take(request)).await?;
                self.publish_ports().await;
                return Ok(response);
            }
            Route::CreateVolume => {
                let mut body = read_json(request).await?;
                policy::check_volume_create(&mut body, &self.scope)?;
                set_json(request, &body)?;
            }
            Route::Volume { name } => {
                let engine_name = self.own_volume(&name, false).await?;
                let query = request.uri().query().map(|q| format!("?{q}"));
                *request.uri_mut() = uri(&format!(
                    "{version}/volumes/{engine_name}{}",
                    query.unwrap_or_default()
                ))?;
            }
            Route::CreateExec { id } => {
                self.own_container(&id).await?;
                let body = read_json(request).await?;
                policy::check_exec(&body)?;
                set_json(request, &body)?;
            }
            Route::Exec { id } => {
                let exec = self
                    .engine
                    .get_json(&format!("{version}/exec/{id}/json"))
                    .await?;
                let container = exec
                    .as_ref()
                    .and_then(|e| e["ContainerID"].as_str())
                    .ok_or_else(|| DockerApiError::NotFound {
                        kind: "exec instance",
                        name: id.clone(),
                    })?;
                self.own_container(container)
                    .await
                    .map_err(|_| DockerApiError::NotFound {
                        kind: "exec instance",
                        name: id.clone(),
                    })?;
            }
            Route::Pull => policy::check_pull(request.uri().query(), &self.scope)?,
            Route::Build => {
                let dockerfile = query_pairs(request.uri())?
                    .into_iter()
                    .find(|(k, v)| k == "dockerfile" && !v.is_empty())
                    .map(|(_, v)| v);
                let inherited = self.inherited().await?;
                let query = policy::check_build(request.uri().query(), &self.scope, &inherited)?;
                let count = self.list_own("images/json", false).await?.len();
                if count >= self.scope.max_images as usize {
                    return Err(DockerApiError::Quota(format!(
                        "this session has {count} images, its most (docker.max_images); \
                         remove one with `docker rmi` first"
                    )));
                }
                let context = self.spool(std::mem::take(request.body_mut())).await?;
                let (context, text) = tokio::task::spawn_blocking(move || {
                    let text = context::dockerfile(&context, dockerfile.as_deref());
                    (context, text)
                })
                .await
                .map_err(|e| DockerApiError::Engine(e.to_string()))?;
                for image in policy::dockerfile_images(&text?)? {
                    self.check_build_image(&image).await?;
                }
                *request.body_mut() = context::stream(context);
                request.headers_mut().remove(header::CONTENT_LENGTH);
                *request.uri_mut() = uri(&format!("{path}?{query}"))?;
            }
            Route::ReadImage { name } => {
                let (resolved, _) = self.resolve_image(&name).await?;
                let tail = path.rsplit('/').next().unwrap_or("json");
                *request.uri_mut() = uri(&format!("{version}/images/{resolved}/{tail}"))?;
            }
            Route::DeleteImage { name } => {
                let (resolved, owner) = self.resolve_image(&name).await?;
                // A base image is shared: the session may only drop its own tag of one.
                if owner == Owner::Base && !resolved.starts_with(&self.scope.namespace()) {
                    return Err(DockerApiError::Refused {
                        rule: "scope",
                        message: format!(
                            "{name} is a base image shared by every session; it cannot be removed"
                        ),
                    });
                }
                let query = request.uri().query().map(|q| format!("?{q}"));
                *request.uri_mut() = uri(&format!(
                    "{version}/images/{resolved}{}",
                    query.unwrap_or_default()
                ))?;
            }
            Route::TagImage { name } => {
                let (resolved, _) = self.resolve_image(&name).await?;
                let mut pairs = query_pairs(request.uri())?;
                for (key, value) in &mut pairs {
                    if key == "repo" {
                        *value = self.scope.namespaced(value);
                    }
                }
                set_uri(request, &format!("{version}/images/{resolved}/tag"), &pairs)?;
            }
        }
        self.forward(std::mem::take(request)).await
    }

    /// `docker create` (and `run`): checked whole first, so a refused create makes nothing (no
    /// volume, no network) and says why before anything about its image; then its volumes and
    /// networks are found or made as the session's, and it goes to the engine rewritten.
    async fn create_container(&self, request: &mut Request) -> Result<Response, DockerApiError> {
        policy::check_name(request.uri().query())?;
        let mut body = read_json(request).await?;
        let volume_names = policy::named_volumes(&body);
        let network_names = policy::requested_networks(&body);
        let published = policy::check_create(
            &mut body.clone(),
            &self.scope,
            &Resolved::as_named(&volume_names, &network_names),
        )?;
        if let Some(image) = body["Image"].as_str().map(str::to_owned) {
            let (resolved, _) = self.resolve_image(&image).await?;
            body["Image"] = resolved.into();
        }
        let containers = self.list_own("containers/json", true).await?;
        if containers.len() >= self.scope.max_containers as usize {
            return Err(DockerApiError::Quota(format!(
                "this session has {} containers, its most (docker.max_containers); remove one \
                 with `docker rm` first",
                containers.len()
            )));
        }
        check_ports_free(&published, &containers)?;
        let mut resolved = Resolved {
            inherited: self.inherited().await?,
            ..Resolved::default()
        };
        for name in volume_names {
            let engine_name = self.own_volume(&name, true).await?;
            resolved.volumes.insert(name, engine_name);
        }
        for name in network_names {
            let engine_name = self.network_for_create(&name).await?;
            resolved.networks.insert(name, engine_name);
        }
        policy::check_create(&mut body, &self.scope, &resolved)?;
        set_json(request, &body)?;
        let response = self.forward(std::mem::take(request)).await?;
        if response.status() == StatusCode::CONFLICT {
            // The engine's message would name the container holding the name, which may be
            // another session's.
            return Err(DockerApiError::Conflict(
                "that container name is taken on this engine; choose another (--name)".into(),
            ));
        }
        Ok(response)
    }

    /// What the session's container passes on to its children and build steps, as it is now:
    /// its cgroup, which bounds them all (`runtime::docker::budget`), and its cores, chosen
    /// again when a session that slept wakes in a new container.
    async fn inherited(&self) -> Result<policy::Inherited, DockerApiError> {
        let path = format!("/containers/{}/json", self.scope.session_container());
        let session =
            self.engine.get_json(&path).await?.ok_or_else(|| {
                DockerApiError::Engine("the session's own container is gone".into())
            })?;
        let set = |key: &str| {
            session["HostConfig"][key]
                .as_str()
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        };
        Ok(policy::Inherited {
            cgroup_parent: set("CgroupParent"),
            cpuset: set("CpusetCpus"),
        })
    }

    /// Brings the session's published ports up to date with what runs now; a failure is the
    /// periodic update's to mend.
    async fn publish_ports(&self) {
        let session = Some(self.scope.session_id.as_str());
        if let Err(err) = published::publish(
            &self.engine,
            &self.sockets_dir,
            &self.scope.instance,
            session,
        )
        .await
        {
            tracing::debug!(session = %self.scope.session_id, %err, "docker api: ports not published yet");
        }
    }

    /// Sends the request on and relays the answer; a 101 joins the two connections.
    async fn forward(&self, mut request: Request) -> Result<Response, DockerApiError> {
        let wants_upgrade = request.headers().contains_key(header::UPGRADE);
        let client_side = wants_upgrade.then(|| hyper::upgrade::on(&mut request));
        let mut response = self.engine.send(request).await?;
        if response.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_side) = client_side
        {
            let engine_side = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                let (Ok(client), Ok(engine)) = (client_side.await, engine_side.await) else {
                    return;
                };
                let (mut client, mut engine) = (TokioIo::new(client), TokioIo::new(engine));
                // Ends when both sides are done; either closing is the normal end.
                let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
            });
        }
        Ok(response.map(Body::new))
    }

    /// Writes a build context to a file, to read its Dockerfile before the engine sees any of
    /// it; the file is unlinked at once, the open handle keeping it until the build has read it.
    async fn spool(&self, body: Body) -> Result<std::fs::File, DockerApiError> {
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;
        let failed =
            |e: std::io::Error| DockerApiError::Engine(format!("spooling the context: {e}"));
        // Where build contexts wait while their Dockerfile is checked: beside the sessions'
        // directories, never in one (each is mounted in a session).
        let spool_dir = self.sockets_dir.join(".contexts");
        std::fs::create_dir_all(&spool_dir).map_err(failed)?;
        let path = spool_dir.join(crate::ids::secret());
        let mut file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(failed)?;
        let _ = tokio::fs::remove_file(&path).await;
        let mut written: u64 = 0;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| DockerApiError::Invalid(format!("context: {e}")))?;
            written += chunk.len() as u64;
            if written > context::MAX_BYTES {
                return Err(DockerApiError::Invalid(format!(
                    "the build context is larger than {} GiB; leave files out with .dockerignore",
                    context::MAX_BYTES >> 30
                )));
            }
            file.write_all(&chunk).await.map_err(failed)?;
        }
        file.flush().await.map_err(failed)?;
        let mut file = file.into_std().await;
        std::io::Seek::rewind(&mut file).map_err(failed)?;
        Ok(file)
    }

    /// An image a Dockerfile builds on must be a base image or the session's own, named as the
    /// engine knows it (the build cannot be rewritten, so `FROM app` is not `SESSION/app`).
    async fn check_build_image(&self, image: &str) -> Result<(), DockerApiError> {
        if self.scope.is_base_image(image) {
            return Ok(());
        }
        match self.resolve_image(image).await {
            Ok((resolved, _)) if resolved == image => Ok(()),
            Ok((resolved, _)) => Err(DockerApiError::Refused {
                rule: "images",
                message: format!("{image} is this session's {resolved}: write that name"),
            }),
            Err(_) => Err(DockerApiError::Refused {
                rule: "images",
                message: format!(
                    "{image} is neither a base image ({}) nor one of this session's; \
                     nothing is pulled here",
                    self.scope.base_images.join(", ")
                ),
            }),
        }
    }

    /// The engine's name of a volume the session names: its own (`data` is `SESSION_data`, and
    /// an unnamed one is found by its labels); made as its own when `create` and missing, as
    /// the engine would make it for `-v data:/path`.
    async fn own_volume(&self, name: &str, create: bool) -> Result<String, DockerApiError> {
        let not_found = || DockerApiError::NotFound {
            kind: "volume",
            name: name.to_owned(),
        };
        for candidate in [self.scope.scoped_name(name), name.to_owned()] {
            if let Some(volume) = self
                .engine
                .get_json(&format!("/volumes/{candidate}"))
                .await?
                && self.scope.owns(&volume["Labels"])
            {
                return Ok(candidate);
            }
        }
        if !create {
            return Err(not_found());
        }
        let mut body = serde_json::json!({ "Name": name });
        policy::check_volume_create(&mut body, &self.scope)?;
        let request = axum::http::Request::post("/volumes/create")
            .header(header::HOST, "docker")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .map_err(|e| DockerApiError::Invalid(e.to_string()))?;
        let response = self.engine.send(request).await?;
        if !response.status().is_success() {
            return Err(DockerApiError::Engine(format!(
                "creating volume {name}: {}",
                response.status()
            )));
        }
        Ok(body["Name"].as_str().unwrap_or(name).to_owned())
    }

    /// The container `id` names, as the engine describes it, if it is the session's.
    async fn own_container(&self, id: &str) -> Result<Value, DockerApiError> {
        let container = self
            .engine
            .get_json(&format!("/containers/{id}/json"))
            .await?;
        match container {
            Some(c) if self.scope.owns(&c["Config"]["Labels"]) => Ok(c),
            _ => Err(DockerApiError::NotFound {
                kind: "container",
                name: id.to_owned(),
            }),
        }
    }

    /// Finds the image a session means by `name`: its own tag (`app` is `SESSION/app`), a base
    /// image, or its own image by id. Anything else does not exist for it.
    async fn resolve_image(&self, name: &str) -> Result<(String, Owner), DockerApiError> {
        let owner_of = |image: &Value| {
            if self.scope.owns(&image["Config"]["Labels"]) {
                Some(Owner::Session)
            } else if image["RepoTags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .any(|tag| self.scope.is_base_image(tag))
            {
                Some(Owner::Base)
            } else {
                None
            }
        };
        // A name with a registry (`127.0.0.1:5000/lab/app`) is never the session's own: its
        // namespace cannot prefix one (the engine would refuse the reference).
        let namespaced = match crate::runtime::registry_of(name) {
            Some(_) => String::new(),
            None => self.scope.namespaced(name),
        };
        for candidate in [namespaced.as_str(), name] {
            if candidate.is_empty() {
                continue;
            }
            if let Some(image) = self
                .engine
                .get_json(&format!("/images/{candidate}/json"))
                .await?
                && let Some(owner) = owner_of(&image)
            {
                // A base image is used under the name the session gave, which the policy
                // checked; its own images under the engine's name for them.
                return Ok((candidate.to_owned(), owner));
            }
        }
        Err(DockerApiError::NotFound {
            kind: "image",
            name: name.to_owned(),
        })
    }

    /// The session's objects of one kind as the engine lists them (`containers/json`,
    /// `images/json`, `networks`); `all` counts stopped containers too.
    pub(super) async fn list_own(
        &self,
        listing: &str,
        all: bool,
    ) -> Result<Vec<Value>, DockerApiError> {
        let filters = policy::scoped_filters(None, &self.scope)?;
        let query = serde_urlencoded::to_string([
            ("filters", filters.as_str()),
            ("all", if all { "1" } else { "0" }),
        ])
        .map_err(|e| DockerApiError::Invalid(e.to_string()))?;
        let listed = self.engine.get_json(&format!("/{listing}?{query}")).await?;
        Ok(match listed {
            Some(Value::Array(objects)) => objects,
            _ => Vec::new(),
        })
    }
}

/// A port is published by one of the session's containers at a time, running or not, as the
/// engine allows one container per host port.
fn check_ports_free(wanted: &[PublishedPort], containers: &[Value]) -> Result<(), DockerApiError> {
    for container in containers {
        let held = container["Labels"][crate::runtime::labels::PUBLISHED_PORTS]
            .as_str()
            .map(PublishedPort::parse_label)
            .unwrap_or_default();
        if let Some(port) = wanted
            .iter()
            .find(|w| held.iter().any(|h| h.session_port == w.session_port))
        {
            let name = container["Names"][0].as_str().unwrap_or_default();
            return Err(DockerApiError::Conflict(format!(
                "port {} is published by container {} already; remove it or choose another \
                 port (-p OTHER:{})",
                port.session_port,
                name.trim_start_matches('/'),
                port.container_port
            )));
        }
    }
    Ok(())
}

/// `/v1.41` of `/v1.41/containers/json`, or nothing.
fn version_prefix(path: &str) -> &str {
    match path
        .strip_prefix("/v")
        .and_then(|rest| rest.split_once('/'))
    {
        Some((version, _)) if version.chars().all(|c| c.is_ascii_digit() || c == '.') => {
            &path[..version.len() + 2]
        }
        _ => "",
    }
}

fn uri(text: &str) -> Result<Uri, DockerApiError> {
    text.parse()
        .map_err(|e| DockerApiError::Invalid(format!("{text}: {e}")))
}

fn query_pairs(uri: &Uri) -> Result<Vec<(String, String)>, DockerApiError> {
    serde_urlencoded::from_str(uri.query().unwrap_or_default())
        .map_err(|e| DockerApiError::Invalid(format!("query: {e}")))
}

fn set_uri(
    request: &mut Request,
    path: &str,
    pairs: &[(String, String)],
) -> Result<(), DockerApiError> {
    let query =
        serde_urlencoded::to_string(pairs).map_err(|e| DockerApiError::Invalid(e.to_string()))?;
    *request.uri_mut() = uri(&format!("{path}?{query}"))?;
    Ok(())
}

async fn read_json(request: &mut Request) -> Result<Value, DockerApiError> {
    let body = std::mem::take(request.body_mut());
    let bytes = http_body_util::Limited::new(body, MAX_JSON_BODY)
        .collect()
        .await
        .map_err(|e| DockerApiError::Invalid(format!("body: {e}")))?
        .to_bytes();
    if bytes.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_slice(&bytes).map_err(|e| DockerApiError::Invalid(format!("body: {e}")))
}

fn set_json(request: &mut Request, body: &Value) -> Result<(), DockerApiError> {
    let bytes = serde_json::to_vec(body).map_err(|e| DockerApiError::Invalid(e.to_string()))?;
    let headers = request.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.remove(header::TRANSFER_ENCODING);
    *request.body_mut() = Body::from(bytes);
    Ok(())
}
