//! The preview proxy: passes any HTTP request, WebSocket upgrades included, to one port of one
//! session's container, streaming both ways (chunked bodies and server-sent events arrive as
//! they are written). The target address is always built from the session's own container IP
//! and the port in the route, never from the request's `Host` or URI, so no request can make the
//! proxy dial anything else.

use std::{net::SocketAddr, time::Duration};

use axum::{
    body::Body,
    http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, header},
    response::{IntoResponse, Response},
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioIo,
};

/// A server that accepted the connection but has not started its answer by then gets a 504.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// Cookies the control plane sets for itself; the session's server never sees them.
const OWN_COOKIE_PREFIX: &str = "berth_";

/// Headers that belong to one hop, plus the caller's credentials.
const DROPPED_REQUEST_HEADERS: [HeaderName; 9] = [
    header::CONNECTION,
    header::UPGRADE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::PROXY_AUTHORIZATION,
    header::AUTHORIZATION,
    header::HOST,
    header::COOKIE,
];

const DROPPED_RESPONSE_HEADERS: [HeaderName; 4] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::TRAILER,
    header::UPGRADE,
];

/// Where a request goes and how it was addressed, for the forwarding headers.
#[derive(Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// Path and query on the session's server.
    pub path_and_query: String,
    /// The path prefix the control plane strips (`X-Forwarded-Prefix`).
    pub prefix: String,
    /// Serve the answer as an opaque origin (`Content-Security-Policy: sandbox`): for previews
    /// opened on the control plane's own origin by someone other than the owner, so the
    /// session's scripts cannot use the visitor's login.
    pub sandbox: bool,
}

#[derive(Debug, Clone)]
pub struct PreviewProxy {
    http: Client<HttpConnector, Body>,
}

impl Default for PreviewProxy {
    fn default() -> Self {
        Self {
            http: crate::agent_client::container_network_client(Duration::from_secs(3)),
        }
    }
}

impl PreviewProxy {
    pub async fn forward(&self, target: Target, mut request: Request<Body>) -> Response {
        let port = target.addr.port();
        let upgrade = wants_upgrade(request.headers());
        let client_side = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut request));
        let (parts, body) = request.into_parts();
        let original_host = parts.headers.get(header::HOST).cloned();
        let mut upstream = Request::builder()
            .method(parts.method)
            .uri(format!("http://{}{}", target.addr, target.path_and_query));
        let headers = upstream.headers_mut().expect("a fresh builder has headers");
        copy_request_headers(&parts.headers, headers);
        headers.insert(
            header::HOST,
            HeaderValue::from_str(&format!("localhost:{port}")).expect("a valid host"),
        );
        if let Some(host) = original_host {
            headers.insert("x-forwarded-host", host);
        }
        if let Ok(prefix) = HeaderValue::from_str(&target.prefix) {
            headers.insert("x-forwarded-prefix", prefix);
        }
        if let Some(protocol) = upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, protocol);
        }
        let upstream = match upstream.body(body) {
            Ok(request) => request,
            Err(err) => return page(StatusCode::BAD_REQUEST, "Bad request", &err.to_string()),
        };
        let mut response =
            match tokio::time::timeout(RESPONSE_TIMEOUT, self.http.request(upstream)).await {
                Ok(Ok(response)) => response,
                Ok(Err(_)) => {
                    return page(
                        StatusCode::BAD_GATEWAY,
                        "Nothing is listening here yet",
                        &format!(
                            "No server in this session answers on port {port}. Start one that \
                             listens on 0.0.0.0:{port} (for example python3 -m http.server \
                             {port}), then reload."
                        ),
                    );
                }
                Err(_) => {
                    return page(
                        StatusCode::GATEWAY_TIMEOUT,
                        "The server did not answer",
                        &format!(
                            "The server on port {port} accepted the connection but sent nothing \
                             for {} seconds.",
                            RESPONSE_TIMEOUT.as_secs()
                        ),
                    );
                }
            };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_side) = client_side
        {
            let server_side = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                if let (Ok(client), Ok(server)) = (client_side.await, server_side.await) {
                    let (mut client, mut server) = (TokioIo::new(client), TokioIo::new(server));
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
        let (parts, body) = response.into_parts();
        let mut relayed = Response::new(Body::new(body));
        *relayed.status_mut() = parts.status;
        for (name, value) in &parts.headers {
            let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS
                && (name == header::CONNECTION || name == header::UPGRADE);
            if switching || !DROPPED_RESPONSE_HEADERS.contains(name) {
                relayed.headers_mut().append(name, value.clone());
            }
        }
        if target.sandbox {
            relayed.headers_mut().append(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads",
                ),
            );
        }
        relayed
    }
}

/// The protocol a request asks to upgrade to (`Connection: upgrade` + `Upgrade: websocket`).
fn wants_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

fn copy_request_headers(from: &HeaderMap, to: &mut HeaderMap) {
    // Headers the `Connection` header names are hop-by-hop too.
    let named: Vec<String> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    for (name, value) in from {
        if DROPPED_REQUEST_HEADERS.contains(name) || named.iter().any(|n| n == name.as_str()) {
            continue;
        }
        to.append(name, value.clone());
    }
    if let Some(cookies) = foreign_cookies(from) {
        to.insert(header::COOKIE, cookies);
    }
}

/// The request's cookies minus the control plane's own.
fn foreign_cookies(headers: &HeaderMap) -> Option<HeaderValue> {
    let kept: Vec<&str> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.starts_with(OWN_COOKIE_PREFIX))
        .collect();
    (!kept.is_empty())
        .then(|| HeaderValue::from_str(&kept.join("; ")).ok())
        .flatten()
}

/// A small HTML page for people looking at a preview, with the status it describes.
pub fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font:16px system-ui,sans-serif;margin:3rem auto;max-width:40rem;\
         padding:0 1rem;color:#333}}code{{background:#eee;padding:0 .2em}}</style></head>\
         <body><h1>{title}</h1><p>{message}</p><p><small>Berth preview proxy · HTTP {code}\
         </small></p></body></html>",
        title = escape(title),
        message = escape(message),
        code = status.as_u16(),
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_own_cookies_stay_behind() {
        let mut from = HeaderMap::new();
        from.insert(header::AUTHORIZATION, "Bearer secret".parse().unwrap());
        from.insert(
            header::COOKIE,
            "berth_token=secret; app=1; berth_preview=x"
                .parse()
                .unwrap(),
        );
        from.insert(header::CONNECTION, "keep-alive, x-hop".parse().unwrap());
        from.insert("x-hop", "1".parse().unwrap());
        from.insert(header::ACCEPT, "text/html".parse().unwrap());
        let mut to = HeaderMap::new();
        copy_request_headers(&from, &mut to);
        assert_eq!(to.get(header::COOKIE).unwrap(), "app=1");
        assert!(to.get(header::AUTHORIZATION).is_none());
        assert!(to.get("x-hop").is_none());
        assert_eq!(to.get(header::ACCEPT).unwrap(), "text/html");
    }

    #[test]
    fn only_a_connection_upgrade_is_an_upgrade() {
        let mut headers = HeaderMap::new();
        headers.insert(header::UPGRADE, "websocket".parse().unwrap());
        assert!(wants_upgrade(&headers).is_none());
        headers.insert(header::CONNECTION, "keep-alive, Upgrade".parse().unwrap());
        assert_eq!(wants_upgrade(&headers).unwrap(), "websocket");
    }
}
