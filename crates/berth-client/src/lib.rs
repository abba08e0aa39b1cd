//! A typed client for Berth's HTTP API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), berth_client::ClientError> {
//! let client = berth_client::Client::new("http://127.0.0.1:8080", "berth_...")?;
//! let session = client.create_session(&Default::default()).await?;
//! client.delete_session(&session.id).await?;
//! # Ok(()) }
//! ```

mod files;
mod process;
mod processes;

pub use files::FileWatch;
pub use process::{Terminal, TerminalEvent, TerminalInput, TerminalOutput};
pub use processes::{ExecEvent, ExecStream};

use berth_proto::{
    CreateSession, CreateUser, ErrorBody, ErrorCode, ExtendSession, Session, SessionList, Template,
    TemplateList, UserCreated,
    user::{Role, User, UserList},
};
use reqwest::{Method, StatusCode, header};
use serde::{Serialize, de::DeserializeOwned};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        status: u16,
        code: ErrorCode,
        message: String,
    },
    /// The server could not be reached or answered something that is not Berth's API.
    #[error("cannot reach Berth at {url}: {source}")]
    Transport { url: String, source: reqwest::Error },
    #[error("invalid server URL {0:?}: expected something like http://127.0.0.1:8080")]
    InvalidUrl(String),
    #[error("WebSocket: {0}")]
    WebSocket(String),
}

impl ClientError {
    /// The API error code, when the server answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// Filters for [`Client::list_sessions`].
#[derive(Debug, Clone, Default)]
pub struct ListSessions {
    /// `(key, value)` pairs every listed session must carry.
    pub labels: Vec<(String, String)>,
    /// Include stopped and failed sessions.
    pub all: bool,
}

impl Client {
    pub fn new(base_url: &str, token: &str) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::InvalidUrl(base_url.to_owned()));
        }
        // reqwest is built without a default crypto provider; install ring once per process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .build()
            .map_err(|source| ClientError::Transport {
                url: base.clone(),
                source,
            })?;
        Ok(Self {
            http,
            base,
            token: token.to_owned(),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// A request to `path` with the token, for callers that stream bodies.
    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    fn transport(&self, path: &str) -> impl Fn(reqwest::Error) -> ClientError {
        let url = format!("{}{path}", self.base);
        move |source| ClientError::Transport {
            url: url.clone(),
            source,
        }
    }

    /// Sends a request and turns an error status into `ClientError::Api`.
    async fn checked(
        &self,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let response = request.send().await.map_err(self.transport(path))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let is_json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let bytes = response.bytes().await.map_err(self.transport(path))?;
        Err(api_error(status, is_json, &bytes))
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<Option<T>, ClientError> {
        let mut request = self.request(method, path).query(query);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = self.checked(path, request).await?;
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let bytes = response.bytes().await.map_err(self.transport(path))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|err| ClientError::Api {
                status: status.as_u16(),
                code: ErrorCode::Unknown,
                message: format!("unexpected answer: {err}"),
            })
    }

    async fn expect<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ClientError> {
        self.send(method, path, query, body)
            .await?
            .ok_or_else(|| ClientError::Api {
                status: 204,
                code: ErrorCode::Unknown,
                message: "expected a body, got none".to_owned(),
            })
    }

    pub async fn create_session(&self, request: &CreateSession) -> Result<Session, ClientError> {
        self.expect(Method::POST, "/api/v1/sessions", &[], Some(request))
            .await
    }

    pub async fn list_sessions(&self, filter: &ListSessions) -> Result<Vec<Session>, ClientError> {
        let mut query: Vec<(&str, String)> = filter
            .labels
            .iter()
            .map(|(k, v)| ("label", format!("{k}={v}")))
            .collect();
        if filter.all {
            query.push(("all", "true".to_owned()));
        }
        let list: SessionList = self
            .expect(Method::GET, "/api/v1/sessions", &query, None::<&()>)
            .await?;
        Ok(list.sessions)
    }

    pub async fn get_session(&self, id: &str) -> Result<Session, ClientError> {
        self.expect(
            Method::GET,
            &format!("/api/v1/sessions/{}", encode(id)),
            &[],
            None::<&()>,
        )
        .await
    }

    /// What happened to a session that its user should know, oldest first.
    pub async fn timeline(&self, id: &str) -> Result<Vec<berth_proto::TimelineEvent>, ClientError> {
        let timeline: berth_proto::Timeline = self
            .expect(
                Method::GET,
                &format!("/api/v1/sessions/{}/timeline", encode(id)),
                &[],
                None::<&()>,
            )
            .await?;
        Ok(timeline.events)
    }

    pub async fn delete_session(&self, id: &str) -> Result<(), ClientError> {
        self.send::<serde_json::Value>(
            Method::DELETE,
            &format!("/api/v1/sessions/{}", encode(id)),
            &[],
            None::<&()>,
        )
        .await
        .map(drop)
    }

    pub async fn extend_session(&self, id: &str, ttl_seconds: u64) -> Result<Session, ClientError> {
        let path = format!("/api/v1/sessions/{}/extend", encode(id));
        self.expect(
            Method::POST,
            &path,
            &[],
            Some(&ExtendSession { ttl_seconds }),
        )
        .await
    }

    /// Puts a running session to sleep; answers once it is hibernated.
    pub async fn hibernate_session(&self, id: &str) -> Result<Session, ClientError> {
        let path = format!("/api/v1/sessions/{}/hibernate", encode(id));
        self.expect(Method::POST, &path, &[], None::<&()>).await
    }

    /// Wakes a hibernated session; answers once it is running.
    pub async fn resume_session(&self, id: &str) -> Result<Session, ClientError> {
        let path = format!("/api/v1/sessions/{}/resume", encode(id));
        self.expect(Method::POST, &path, &[], None::<&()>).await
    }

    /// Copies a running session's files into a named snapshot.
    pub async fn create_snapshot(
        &self,
        session_id: &str,
        name: &str,
    ) -> Result<berth_proto::snapshot::Snapshot, ClientError> {
        let path = format!("/api/v1/sessions/{}/snapshots", encode(session_id));
        let request = berth_proto::snapshot::CreateSnapshot {
            name: name.to_owned(),
        };
        self.expect(Method::POST, &path, &[], Some(&request)).await
    }

    pub async fn list_snapshots(
        &self,
        session_id: &str,
    ) -> Result<Vec<berth_proto::snapshot::Snapshot>, ClientError> {
        let path = format!("/api/v1/sessions/{}/snapshots", encode(session_id));
        let list: berth_proto::snapshot::SnapshotList =
            self.expect(Method::GET, &path, &[], None::<&()>).await?;
        Ok(list.snapshots)
    }

    pub async fn delete_snapshot(&self, id: &str) -> Result<(), ClientError> {
        let path = format!("/api/v1/snapshots/{}", encode(id));
        self.send::<serde_json::Value>(Method::DELETE, &path, &[], None::<&()>)
            .await
            .map(drop)
    }

    /// The caller's persistent homes (the admin's: everyone's, or `user`'s only).
    pub async fn homes(
        &self,
        user: Option<&str>,
    ) -> Result<Vec<berth_proto::home::Home>, ClientError> {
        let query: Vec<(&str, String)> = user.map(|u| ("user", u.to_owned())).into_iter().collect();
        let list: berth_proto::home::HomeList = self
            .expect(Method::GET, "/api/v1/homes", &query, None::<&()>)
            .await?;
        Ok(list.homes)
    }

    /// Deletes a persistent home and its files; refused (409) while a session uses it.
    pub async fn delete_home(&self, name: &str) -> Result<(), ClientError> {
        let path = format!("/api/v1/homes/{}", encode(name));
        self.send::<serde_json::Value>(Method::DELETE, &path, &[], None::<&()>)
            .await
            .map(drop)
    }

    /// Runs a container in the session's Docker (`docker run`), as its policy allows: its
    /// output once it exits, or its id once started with `detach`.
    pub async fn docker_run(
        &self,
        session_id: &str,
        request: &berth_proto::docker::DockerRun,
    ) -> Result<berth_proto::docker::DockerOutcome, ClientError> {
        let path = format!("/api/v1/sessions/{}/docker/run", encode(session_id));
        self.expect(Method::POST, &path, &[], Some(request)).await
    }

    /// Runs a command in one of the session's containers (`docker exec`): its output once it
    /// exits.
    pub async fn docker_exec(
        &self,
        session_id: &str,
        request: &berth_proto::docker::DockerExec,
    ) -> Result<berth_proto::docker::DockerOutcome, ClientError> {
        let path = format!("/api/v1/sessions/{}/docker/exec", encode(session_id));
        self.expect(Method::POST, &path, &[], Some(request)).await
    }

    pub async fn templates(&self) -> Result<Vec<Template>, ClientError> {
        let list: TemplateList = self
            .expect(Method::GET, "/api/v1/templates", &[], None::<&()>)
            .await?;
        Ok(list.templates)
    }

    /// Every template's warm pool (admin only).
    pub async fn pool(&self) -> Result<Vec<berth_proto::pool::PoolStatus>, ClientError> {
        let list: berth_proto::pool::PoolList = self
            .expect(Method::GET, "/api/v1/pool", &[], None::<&()>)
            .await?;
        Ok(list.pools)
    }

    /// Makes an API token for the caller, with `scopes`, lasting `expires_in_seconds` (or
    /// forever); its secret is in the answer only.
    pub async fn create_token(
        &self,
        name: &str,
        scopes: Vec<berth_proto::token::Scope>,
        expires_in_seconds: Option<u64>,
    ) -> Result<berth_proto::token::TokenCreated, ClientError> {
        let request = berth_proto::token::CreateToken {
            name: name.to_owned(),
            scopes,
            expires_in_seconds,
        };
        self.expect(Method::POST, "/api/v1/tokens", &[], Some(&request))
            .await
    }

    /// The caller's API tokens (the admin's: everyone's), without their secrets.
    pub async fn tokens(&self) -> Result<Vec<berth_proto::token::ApiToken>, ClientError> {
        let list: berth_proto::token::TokenList = self
            .expect(Method::GET, "/api/v1/tokens", &[], None::<&()>)
            .await?;
        Ok(list.tokens)
    }

    /// Revokes a token.
    pub async fn delete_token(&self, id: &str) -> Result<(), ClientError> {
        let path = format!("/api/v1/tokens/{}", encode(id));
        self.send::<serde_json::Value>(Method::DELETE, &path, &[], None::<&()>)
            .await
            .map(drop)
    }

    pub async fn create_user(&self, name: &str) -> Result<UserCreated, ClientError> {
        self.create_user_with_role(name, Role::User).await
    }

    pub async fn create_user_with_role(
        &self,
        name: &str,
        role: Role,
    ) -> Result<UserCreated, ClientError> {
        self.expect(
            Method::POST,
            "/api/v1/users",
            &[],
            Some(&CreateUser {
                name: name.to_owned(),
                role,
            }),
        )
        .await
    }

    /// Every user, without their tokens (admin).
    pub async fn users(&self) -> Result<Vec<User>, ClientError> {
        let list: UserList = self
            .expect(Method::GET, "/api/v1/users", &[], None::<&()>)
            .await?;
        Ok(list.users)
    }

    /// Changes a user's role, or disables or enables them (admin).
    pub async fn update_user(
        &self,
        name: &str,
        change: &berth_proto::user::UpdateUser,
    ) -> Result<User, ClientError> {
        let path = format!("/api/v1/users/{}", encode(name));
        self.expect(Method::PATCH, &path, &[], Some(change)).await
    }

    /// Deletes a user: their sessions end, their tokens and homes go (admin).
    pub async fn delete_user(&self, name: &str) -> Result<(), ClientError> {
        let path = format!("/api/v1/users/{}", encode(name));
        self.send::<serde_json::Value>(Method::DELETE, &path, &[], None::<&()>)
            .await
            .map(drop)
    }
}

fn api_error(status: StatusCode, is_json: bool, bytes: &[u8]) -> ClientError {
    let error = is_json
        .then(|| serde_json::from_slice::<ErrorBody>(bytes).ok())
        .flatten();
    match error {
        Some(body) => ClientError::Api {
            status: status.as_u16(),
            code: body.error.code,
            message: body.error.message,
        },
        None => ClientError::Api {
            status: status.as_u16(),
            code: ErrorCode::Unknown,
            message: String::from_utf8_lossy(bytes).chars().take(200).collect(),
        },
    }
}

/// Percent-encodes a path segment, so ids with unusual characters cannot reach another route.
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode("sabc123"), "sabc123");
        assert_eq!(encode("../users"), "..%2Fusers");
    }

    #[test]
    fn urls_without_a_scheme_are_refused() {
        assert!(matches!(
            Client::new("localhost:8080", "t"),
            Err(ClientError::InvalidUrl(_))
        ));
    }
}
