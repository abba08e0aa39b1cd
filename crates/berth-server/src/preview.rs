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
use hyper_util::{client::legacy::Client, rt::TokioIo};

/// A server that accepted the connection but has not started its answer by then gets a 504.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// Cookies the control plane sets for itself; the session's server never sees them, nor sets
/// them.
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

/// Hop-by-hop headers, plus `Clear-Site-Data`: it clears the whole site's cookies, so a preview
/// on Berth's origin (or a host preview, for its registrable domain) could log the visitor out.
const DROPPED_RESPONSE_HEADERS: [HeaderName; 5] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::TRAILER,
    header::UPGRADE,
    HeaderName::from_static("clear-site-data"),
];

/// Scripts run, forms post and popups open, all in an opaque origin: without
/// `allow-same-origin` the page is never Berth's origin, reads none of its cookies and storage,
/// and its requests to Berth are cross-site.
const SANDBOX: &str = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads";

/// Where a request goes and how it was addressed, for the forwarding headers.
#[derive(Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// Path and query on the session's server.
    pub path_and_query: String,
    /// The path prefix the control plane strips (`X-Forwarded-Prefix`), and below which the
    /// server's cookies are kept; empty on a preview's own host.
    pub prefix: String,
    /// Serve the answer as an opaque origin (`Content-Security-Policy: sandbox`): for previews
    /// on the control plane's own origin (the owner's route and links), so the session's
    /// scripts never run as that origin with the visitor's login.
    pub sandbox: bool,
}

#[derive(Debug, Clone)]
pub struct PreviewProxy {
    http: Client<crate::reach::ContainerConnector, Body>,
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
        copy_response_headers(&parts.headers, parts.status, &target, relayed.headers_mut());
        relayed
    }
}

/// The server's answer headers as the browser gets them: hop-by-hop ones stay behind (except
/// the upgrade of a 101), cookies go through `relayed_cookie`, and the answer is never sniffed
/// into another type, and sandboxed when the target says so.
fn copy_response_headers(
    from: &HeaderMap,
    status: StatusCode,
    target: &Target,
    to: &mut HeaderMap,
) {
    for (name, value) in from {
        let switching = status == StatusCode::SWITCHING_PROTOCOLS
            && (name == header::CONNECTION || name == header::UPGRADE);
        if !switching && DROPPED_RESPONSE_HEADERS.contains(name) {
            continue;
        }
        if name == header::SET_COOKIE {
            if let Some(cookie) = relayed_cookie(value, &target.prefix) {
                to.append(name, cookie);
            }
            continue;
        }
        to.append(name, value.clone());
    }
    to.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if target.sandbox {
        // Appended: a page's own policy still applies too.
        to.append(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(SANDBOX),
        );
    }
}

/// A `Set-Cookie` of the session's server as the browser may get it, or `None` to drop it. The
/// browser keeps a cookie for the host it asked, which for path-based previews is Berth's own.
/// So Berth's own names are dropped (a forged login would be sent to Berth before the real one),
/// and so is any `Domain` (it reaches every preview host, or Berth's); under a `prefix` the
/// cookie's path moves below it, so each preview keeps its own cookies instead of sharing one
/// jar with every other preview on Berth's origin. On its own host (no prefix) a preview's
/// paths are its own.
fn relayed_cookie(value: &HeaderValue, prefix: &str) -> Option<HeaderValue> {
    let value = value.to_str().ok()?;
    let mut attributes = value.split(';').map(str::trim);
    let pair = attributes.next()?;
    if is_own_cookie(pair) {
        return None;
    }
    let mut kept = vec![pair];
    let mut path = "/";
    for attribute in attributes.filter(|a| !a.is_empty()) {
        let (key, val) = attribute
            .split_once('=')
            .map_or((attribute, ""), |(key, val)| (key.trim(), val.trim()));
        if key.eq_ignore_ascii_case("domain") {
            return None;
        }
        if key.eq_ignore_ascii_case("path") && !prefix.is_empty() {
            // The last one counts, as in browsers.
            path = val;
            continue;
        }
        kept.push(attribute);
    }
    let mut cookie = kept.join("; ");
    if !prefix.is_empty() {
        // A path not starting with `/` means the default path to browsers: the prefix here.
        let below = path.strip_prefix('/').unwrap_or_default();
        cookie = format!("{cookie}; Path={prefix}{below}");
    }
    HeaderValue::from_str(&cookie).ok()
}

/// Whether a cookie (its `name=value`) is one of the control plane's. A pair without a name
/// (`=berth_token=x`, or no `=` at all) reaches servers as its bare value, so that is what
/// is checked.
fn is_own_cookie(pair: &str) -> bool {
    let sent = pair.trim_start_matches(['=', ' ', '\t']);
    sent.get(..OWN_COOKIE_PREFIX.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(OWN_COOKIE_PREFIX))
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
        .filter(|c| !c.is_empty() && !is_own_cookie(c))
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

    fn relayed(cookie: &str, prefix: &str) -> Option<String> {
        let cookie = HeaderValue::from_str(cookie).unwrap();
        relayed_cookie(&cookie, prefix).map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn a_server_sets_no_cookie_of_berths_nor_for_a_domain() {
        for tossed in [
            "berth_token=attacker; Path=/api/v1",
            "BERTH_TOKEN=x",
            "=berth_token=x",
            " berth_preview",
            "app=1; Domain=example.com",
            "app=1; path=/; domain=.preview.test",
        ] {
            assert_eq!(relayed(tossed, "/api/v1/previews/t/"), None, "{tossed}");
            assert_eq!(relayed(tossed, ""), None, "{tossed}");
        }
    }

    #[test]
    fn a_servers_cookies_stay_below_its_preview() {
        let prefix = "/api/v1/sessions/s1/ports/8000/";
        assert_eq!(
            relayed("app=1; Path=/; HttpOnly", prefix).unwrap(),
            "app=1; HttpOnly; Path=/api/v1/sessions/s1/ports/8000/"
        );
        assert_eq!(
            relayed("app=1; path=/x; Path=/admin; SameSite=Lax", prefix).unwrap(),
            "app=1; SameSite=Lax; Path=/api/v1/sessions/s1/ports/8000/admin"
        );
        for default_path in ["app=1", "app=1; Path=relative", "app=1; Path="] {
            assert_eq!(
                relayed(default_path, prefix).unwrap(),
                "app=1; Path=/api/v1/sessions/s1/ports/8000/"
            );
        }
        // On its own host a preview's paths are its own.
        assert_eq!(
            relayed("app=1; Path=/admin; Secure", "").unwrap(),
            "app=1; Path=/admin; Secure"
        );
    }

    #[test]
    fn answers_are_not_sniffed_sandboxed_on_berths_origin_and_clear_no_cookies() {
        let mut from = HeaderMap::new();
        from.append(header::SET_COOKIE, "berth_token=x".parse().unwrap());
        from.append(header::SET_COOKIE, "app=1".parse().unwrap());
        from.insert("clear-site-data", "\"cookies\"".parse().unwrap());
        from.insert(header::CONNECTION, "close".parse().unwrap());
        from.insert(header::CONTENT_TYPE, "text/html".parse().unwrap());
        let target = |prefix: &str, sandbox| Target {
            addr: "127.0.0.1:8000".parse().unwrap(),
            path_and_query: "/".into(),
            prefix: prefix.into(),
            sandbox,
        };
        let relayed = |target: &Target| {
            let mut to = HeaderMap::new();
            copy_response_headers(&from, StatusCode::OK, target, &mut to);
            to
        };

        let on_berths_origin = relayed(&target("/p/", true));
        let cookies: Vec<_> = on_berths_origin
            .get_all(header::SET_COOKIE)
            .iter()
            .collect();
        assert_eq!(cookies, ["app=1; Path=/p/"]);
        assert!(on_berths_origin.get("clear-site-data").is_none());
        assert!(on_berths_origin.get(header::CONNECTION).is_none());
        assert_eq!(on_berths_origin[header::CONTENT_TYPE], "text/html");
        assert_eq!(on_berths_origin[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(on_berths_origin[header::CONTENT_SECURITY_POLICY], SANDBOX);

        let on_its_own_host = relayed(&target("", false));
        let cookies: Vec<_> = on_its_own_host.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(cookies, ["app=1"]);
        assert!(on_its_own_host.get("clear-site-data").is_none());
        assert_eq!(on_its_own_host[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(
            on_its_own_host
                .get(header::CONTENT_SECURITY_POLICY)
                .is_none()
        );
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
