//! Previews of the servers a session runs: the ports listening, their events, signed links,
//! and the proxy routes (path-based for the owner, path-based by signed link, host-based under
//! the configured preview domain).

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{Path, RawPathParams, RawQuery, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use berth_proto::token::Scope;
use berth_proto::{
    ErrorBody,
    agent::AGENT_PORT,
    ports::{CreatePreviewLink, ListeningPort, PortList, PreviewLink, SessionEvent},
};
use chrono::{TimeZone, Utc};

use super::{
    AppState,
    error::ApiError,
    extract::{ApiJson, Csrf, bearer, caller_needing, cookie, secure},
};
use crate::{
    auth::Principal,
    preview::{Target, page},
    signing::{PreviewDenied, PreviewGrant},
};

/// Host-based previews keep their link's token in this cookie, on the preview's own host.
const PREVIEW_COOKIE: &str = "berth_preview";
/// The query parameter a host-based preview link carries its token in, on first visit.
const PREVIEW_PARAM: &str = "berth_preview";
const DEFAULT_LINK_SECONDS: u64 = 3600;
pub(super) const MAX_LINK_SECONDS: u64 = 7 * 24 * 3600;

fn owner_path(id: &str, port: u16) -> String {
    format!("/api/v1/sessions/{id}/ports/{port}/")
}

fn checked_port(port: u16) -> Result<u16, ApiError> {
    match port {
        0 => Err(ApiError::invalid_request(
            "port must be between 1 and 65535",
        )),
        AGENT_PORT => Err(ApiError::forbidden(format!(
            "port {AGENT_PORT} is Berth's agent; previews cannot reach it"
        ))),
        port => Ok(port),
    }
}

/// Ports that servers in the session listen on now, each with its preview path.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}/ports", tag = "previews",
    params(("id" = String, Path)),
    responses((status = 200, body = PortList), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list_ports(
    State(s): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<axum::Json<PortList>, ApiError> {
    let (addr, secret) = s.sessions.agent_endpoint(&caller, &id).await?;
    let found = s.agent.ports(addr, &secret).await?;
    let ports = found
        .ports
        .into_iter()
        .map(|p| ListeningPort {
            preview_path: Some(owner_path(&id, p.port)),
            port: p.port,
        })
        .collect();
    Ok(axum::Json(PortList { ports }))
}

/// WebSocket of the session's events: text frames `{"type":"port-open","port":8000}` and
/// `{"type":"port-closed",...}`; on connect, one `port-open` per port already listening.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}/events", tag = "previews",
    params(("id" = String, Path),
           ("ticket" = Option<String>, Query, description = "From POST .../tickets, for browsers")),
    responses(
        (status = 101, description = "Switching to WebSocket; frames are SessionEvent", body = SessionEvent),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn events(
    State(s): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: axum::http::HeaderMap,
    upgrade: crate::proxy::WebSocketRequest,
) -> Result<Response, ApiError> {
    let (caller, _) =
        super::extract::websocket_caller(&s, &headers, &id, query.as_deref(), Scope::Previews)
            .await?;
    let endpoint = s.sessions.agent_endpoint(&caller, &id).await?;
    let tap = s.sessions.tap(&id, true);
    crate::proxy::websocket(endpoint, "/ports/watch", upgrade, tap).await
}

/// A signed link to one port of the session that works without logging in until it expires.
/// Pages opened by a link run as an opaque origin (a sandbox), so they cannot act as the
/// visitor on Berth.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/preview-links", tag = "previews",
    params(("id" = String, Path)),
    request_body = CreatePreviewLink,
    responses((status = 201, body = PreviewLink), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn create_link(
    State(s): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<CreatePreviewLink>,
) -> Result<(StatusCode, axum::Json<PreviewLink>), ApiError> {
    let port = checked_port(request.port)?;
    let ttl = request.ttl_seconds.unwrap_or(DEFAULT_LINK_SECONDS);
    if ttl == 0 || ttl > MAX_LINK_SECONDS {
        return Err(ApiError::invalid_request(format!(
            "ttl_seconds must be between 1 and {MAX_LINK_SECONDS}"
        )));
    }
    s.sessions.get(&caller, &id).await?;
    let expires = Utc::now().timestamp() + ttl as i64;
    Ok((
        StatusCode::CREATED,
        axum::Json(signed_link(&s, &id, port, expires)),
    ))
}

/// A link to `port` of session `id` that works for anyone holding it until `expires` (Unix
/// seconds); the caller has checked the session is theirs.
pub(super) fn signed_link(s: &AppState, id: &str, port: u16, expires: i64) -> PreviewLink {
    let token = s.signer.preview_token(&PreviewGrant {
        session_id: id.to_owned(),
        port,
        expires,
    });
    let url = s.preview.domain.as_ref().map(|domain| {
        let scheme = if s.preview.https { "https" } else { "http" };
        format!("{scheme}://{port}-{id}.{domain}/?{PREVIEW_PARAM}={token}")
    });
    PreviewLink {
        path: format!("/api/v1/previews/{token}/"),
        url,
        expires_at: Utc
            .timestamp_opt(expires, 0)
            .single()
            .unwrap_or_else(Utc::now),
    }
}

/// `.../ports/{port}` without the slash: relative links in the page need it.
pub async fn add_slash(RawQuery(query): RawQuery, request: Request) -> Redirect {
    let path = request.uri().path();
    match query {
        Some(query) => Redirect::permanent(&format!("{path}/?{query}")),
        None => Redirect::permanent(&format!("{path}/")),
    }
}

/// The owner's path-based preview: any method, WebSocket upgrades included, relayed to the
/// port inside the session. The owner's bearer token authenticates it, or their login cookie
/// from Berth's own pages or the address bar only; the proxied server sees neither. The answer
/// is sandboxed like a link's, so the page never runs as Berth's origin with the login.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}/ports/{port}/{rest}", tag = "previews",
    params(("id" = String, Path), ("port" = u16, Path),
           ("rest" = String, Path, description = "Path on the session's server")),
    responses(
        (status = 200, description = "Whatever the session's server answers"),
        (status = 403, body = ErrorBody, description = "The login cookie came from another site or a preview's page"),
        (status = 404, body = ErrorBody),
        (status = 502, description = "No server listens on that port (an HTML page)"),
        (status = 503, body = ErrorBody, description = "The session's container does not answer as the session's"),
    ),
    security(("bearer" = []))
)]
pub async fn proxy_owner(
    State(s): State<AppState>,
    params: RawPathParams,
    request: Request,
) -> Result<Response, ApiError> {
    let id = param(&params, "id");
    let port = param(&params, "port")
        .parse()
        .map_err(|_| ApiError::invalid_request("port must be between 1 and 65535"))
        .and_then(checked_port)?;
    let caller = caller_needing(
        &s,
        request.headers(),
        Csrf::SameOrigin,
        Some(Scope::Previews),
    )
    .await?;
    let ip = session_ip(&s, &caller, id).await?;
    let prefix = owner_path(id, port);
    let target = Target {
        addr: SocketAddr::new(ip, port),
        path_and_query: upstream_path(&request, &prefix, None),
        prefix,
        sandbox: true,
    };
    Ok(s.proxy.forward(target, request).await)
}

/// The running session's container IP, once the agent there has answered with the session's
/// secret. Previews carry no secret of the session's, so without this a session whose container
/// stopped (its row still `running` until the next reconcile) would have its previews reach
/// whichever container Docker gives that address next: another user's.
async fn session_ip(s: &AppState, caller: &Principal, id: &str) -> Result<IpAddr, ApiError> {
    let (addr, secret) = s.sessions.agent_endpoint(caller, id).await?;
    s.agent.confirm(addr, &secret).await?;
    s.sessions.touch(id);
    Ok(addr.ip())
}

/// A preview opened by signed link: `/api/v1/previews/{token}/...`. The token in the path
/// authorises the page and everything it loads by relative URL.
#[utoipa::path(
    get, path = "/api/v1/previews/{token}/{rest}", tag = "previews",
    params(("token" = String, Path, description = "From POST .../preview-links"),
           ("rest" = String, Path, description = "Path on the session's server")),
    responses(
        (status = 200, description = "Whatever the session's server answers, sandboxed"),
        (status = 403, description = "The link expired or was changed (an HTML page)"),
        (status = 404, description = "The session is gone (an HTML page)"),
        (status = 502, description = "No server listens on that port (an HTML page)"),
        (status = 503, description = "The session's container does not answer as the session's (an HTML page)"),
    )
)]
pub async fn proxy_link(
    State(s): State<AppState>,
    params: RawPathParams,
    request: Request,
) -> Response {
    let token = param(&params, "token");
    let grant = match s.signer.check_preview(token, Utc::now().timestamp()) {
        Ok(grant) => grant,
        Err(denied) => return denied_page(denied),
    };
    let prefix = format!("/api/v1/previews/{token}/");
    let path_and_query = upstream_path(&request, &prefix, None);
    forward_granted(&s, &grant, prefix, path_and_query, true, request).await
}

async fn forward_granted(
    s: &AppState,
    grant: &PreviewGrant,
    prefix: String,
    path_and_query: String,
    sandbox: bool,
    request: Request,
) -> Response {
    if let Err(err) = checked_port(grant.port) {
        return err.into_response();
    }
    match session_ip(s, &Principal::admin(), &grant.session_id).await {
        Ok(ip) => {
            let target = Target {
                addr: SocketAddr::new(ip, grant.port),
                path_and_query,
                prefix,
                sandbox,
            };
            s.proxy.forward(target, request).await
        }
        // The session is there but its container is not, or the store is down: say why.
        Err(err) if err.status.is_server_error() => {
            page(err.status, "This session is not reachable", &err.message)
        }
        Err(_) => page(
            StatusCode::NOT_FOUND,
            "This session is not running",
            "The session this preview belongs to has ended or is not running now.",
        ),
    }
}

fn denied_page(denied: PreviewDenied) -> Response {
    page(
        StatusCode::FORBIDDEN,
        "Preview link refused",
        &denied.to_string(),
    )
}

fn param<'a>(params: &'a RawPathParams, name: &str) -> &'a str {
    params
        .iter()
        .find(|(key, _)| *key == name)
        .map_or("", |(_, value)| value)
}

/// The request's path below `prefix` and its query, without the parameter named `drop`.
fn upstream_path(request: &Request, prefix: &str, drop: Option<&str>) -> String {
    let path = request.uri().path();
    let rest = path
        .strip_prefix(prefix.trim_end_matches('/'))
        .unwrap_or(path);
    let rest = if rest.is_empty() { "/" } else { rest };
    let query = request.uri().query().map(|query| match drop {
        Some(drop) => query
            .split('&')
            .filter(|pair| pair.split('=').next() != Some(drop))
            .collect::<Vec<_>>()
            .join("&"),
        None => query.to_owned(),
    });
    match query.filter(|q| !q.is_empty()) {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    }
}

/// `{port}-{session}` from a `Host` under the preview domain; anything else is not a preview.
fn preview_host(host: &str, domain: &str) -> Option<(u16, String)> {
    let host = host.rsplit_once(':').map_or(host, |(name, _)| name);
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let label = host.strip_suffix(domain)?.strip_suffix('.')?;
    let (port, id) = label.split_once('-')?;
    let valid_id = !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric());
    valid_id.then_some(())?;
    Some((port.parse().ok()?, id.to_owned()))
}

/// Host-based previews: with `preview.domain` set, a request for `{port}-{id}.{domain}` goes to
/// that port of that session, whatever its path. Every other host reaches the API as usual.
pub async fn host_route(State(s): State<AppState>, request: Request, next: Next) -> Response {
    let Some(domain) = s.preview.domain.as_deref() else {
        return next.run(request).await;
    };
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let Some((port, id)) = preview_host(host, domain) else {
        return next.run(request).await;
    };
    let from_query = request.uri().query().and_then(|query| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .ok()?
            .into_iter()
            .find(|(key, _)| key == PREVIEW_PARAM)
            .map(|(_, token)| token)
    });
    let token = from_query
        .clone()
        .or_else(|| cookie(request.headers(), PREVIEW_COOKIE).map(str::to_owned));
    let path_and_query = upstream_path(&request, "", Some(PREVIEW_PARAM));
    let grant = match (bearer(request.headers()), token) {
        (Some(_), _) => {
            let caller = match caller_needing(
                &s,
                request.headers(),
                Csrf::NotRequired,
                Some(Scope::Previews),
            )
            .await
            {
                Ok(caller) => caller,
                Err(err) => return err.into_response(),
            };
            if s.sessions.get(&caller, &id).await.is_err() {
                return page(
                    StatusCode::NOT_FOUND,
                    "No such preview",
                    "There is no session of yours with this name.",
                );
            }
            PreviewGrant {
                session_id: id.clone(),
                port,
                expires: i64::MAX,
            }
        }
        (None, Some(token)) => match s.signer.check_preview(&token, Utc::now().timestamp()) {
            Ok(grant) if grant.session_id == id && grant.port == port => grant,
            Ok(_) => return denied_page(PreviewDenied::Invalid),
            Err(denied) => return denied_page(denied),
        },
        (None, None) => {
            return page(
                StatusCode::UNAUTHORIZED,
                "This preview needs a link",
                "Open it through a preview link from the session's owner.",
            );
        }
    };
    let secure = secure(&s, request.headers());
    let mut response =
        forward_granted(&s, &grant, String::new(), path_and_query, false, request).await;
    if let Some(token) = from_query
        && let Ok(cookie) = HeaderValue::from_str(&format!(
            "{PREVIEW_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax{secure}"
        ))
    {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_hosts_under_the_domain_are_previews() {
        let domain = "preview.example.com";
        assert_eq!(
            preview_host("8000-sabc.preview.example.com", domain),
            Some((8000, "sabc".into()))
        );
        assert_eq!(
            preview_host("8000-SABC.Preview.Example.com:8080", domain),
            Some((8000, "sabc".into()))
        );
        for host in [
            "preview.example.com",
            "8000-sabc.preview.example.com.evil.com",
            "8000-sabc.evilpreview.example.com",
            "x.8000-sabc.preview.example.com",
            "99999-sabc.preview.example.com",
            "8000-.preview.example.com",
            "8000-s/../b.preview.example.com",
        ] {
            assert_eq!(preview_host(host, domain), None, "{host}");
        }
    }

    #[test]
    fn the_upstream_path_is_what_follows_the_prefix() {
        let request = |uri: &str| {
            Request::builder()
                .uri(uri)
                .body(Default::default())
                .unwrap()
        };
        let prefix = "/api/v1/sessions/s1/ports/8000/";
        assert_eq!(
            upstream_path(
                &request("/api/v1/sessions/s1/ports/8000/a/b?x=1"),
                prefix,
                None
            ),
            "/a/b?x=1"
        );
        assert_eq!(
            upstream_path(&request("/api/v1/sessions/s1/ports/8000/"), prefix, None),
            "/"
        );
        assert_eq!(
            upstream_path(
                &request("/p?berth_preview=t&y=2"),
                "",
                Some("berth_preview")
            ),
            "/p?y=2"
        );
    }
}
