//! The router without a socket: every request goes through `tower::ServiceExt::oneshot`, on
//! the fake runtime and an in-memory store.

use std::{sync::Arc, sync::atomic::Ordering, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{Method, Request, StatusCode, header},
};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

mod login;

use crate::{
    config::{Config, TemplateConfig},
    runtime::fake::FakeRuntime,
    store::SqliteStore,
};

const ADMIN: &str = "admin-token-for-tests";

struct Api {
    router: Router,
    runtime: Arc<FakeRuntime>,
    _app: crate::App,
}

async fn api() -> Api {
    api_with(|_| {}).await
}

async fn api_with(customise: impl FnOnce(&mut Config)) -> Api {
    let mut config = Config::default();
    customise(&mut config);
    config.templates.insert(
        "default".into(),
        TemplateConfig {
            image: "berth/tiny:latest".into(),
            max_ttl_seconds: 3600,
            ..TemplateConfig::default()
        },
    );
    let config = config.finish().unwrap();
    let runtime = Arc::new(FakeRuntime::default());
    let store = Arc::new(SqliteStore::in_memory().await.unwrap());
    let coordination = Arc::new(crate::cluster::LocalCoordination::default());
    let app = crate::app(
        &config,
        store,
        coordination,
        runtime.clone(),
        ADMIN,
        Default::default(),
    )
    .await;
    Api {
        router: app.router.clone(),
        runtime,
        _app: app,
    }
}

impl Api {
    async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value)
    }

    async fn user(&self, name: &str) -> String {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/users",
                Some(ADMIN),
                Some(&json!({"name": name}).to_string()),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not a Berth error body: {body}"))
}

#[tokio::test]
async fn session_lifecycle_over_http() {
    let api = api().await;
    let alice = api.user("alice").await;
    let create = json!({"template": "default", "ttl_seconds": 600, "env": {"A": "1"}, "labels": {"course": "d101"}});
    let (status, session) = api
        .call(
            Method::POST,
            "/api/v1/sessions",
            Some(&alice),
            Some(&create.to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    for field in [
        "id",
        "state",
        "template",
        "owner",
        "created_at",
        "expires_at",
    ] {
        assert!(session.get(field).is_some(), "missing {field} in {session}");
    }
    assert_eq!(session["state"], "running");
    assert!(session.get("agent_secret").is_none() && !session.to_string().contains("secret"));
    let id = session["id"].as_str().unwrap();

    let (status, got) = api
        .call(
            Method::GET,
            &format!("/api/v1/sessions/{id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!((status, &got["id"]), (StatusCode::OK, &session["id"]));

    let (_, listed) = api
        .call(
            Method::GET,
            "/api/v1/sessions?label=course=d101",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 1);
    let (_, listed) = api
        .call(
            Method::GET,
            "/api/v1/sessions?label=course=other",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 0);

    let (status, extended) = api
        .call(
            Method::POST,
            &format!("/api/v1/sessions/{id}/extend"),
            Some(&alice),
            Some(r#"{"ttl_seconds": 1200}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{extended}");
    assert!(extended["expires_at"].as_str() > session["expires_at"].as_str());

    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("/api/v1/sessions/{id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(api.runtime.container_count(), 0);
    let (_, listed) = api
        .call(Method::GET, "/api/v1/sessions", Some(&alice), None)
        .await;
    assert!(listed["sessions"].as_array().unwrap().is_empty());
    let (_, listed) = api
        .call(Method::GET, "/api/v1/sessions?all=true", Some(&alice), None)
        .await;
    assert_eq!(listed["sessions"][0]["state"], "stopped");
}

/// Routes anyone may call, by design. Every other route in the OpenAPI document must demand a
/// token; a new public route has to be added here on purpose.
const PUBLIC_ROUTES: [(&str, &str); 11] = [
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/logout"),
    ("get", "/api/v1/auth/providers"),
    ("get", "/api/v1/auth/github/login"),
    ("get", "/api/v1/auth/github/callback"),
    ("get", "/api/v1/auth/oidc/{name}/login"),
    ("get", "/api/v1/auth/oidc/{name}/callback"),
    ("get", "/api/v1/previews/{token}/{rest}"),
];

#[tokio::test]
async fn every_route_in_the_openapi_document_needs_a_valid_token() {
    let api = api().await;
    let (_, spec) = api.call(Method::GET, "/openapi.json", None, None).await;
    let mut checked = 0;
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let secured = operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty());
            if !secured {
                assert!(
                    PUBLIC_ROUTES.contains(&(method.as_str(), path.as_str())),
                    "{method} {path} demands no token in the OpenAPI document"
                );
                continue;
            }
            for status in ["401", "429", "503"] {
                assert!(
                    operation["responses"].get(status).is_some(),
                    "{method} {path} does not document {status}"
                );
            }
            // Any value fits a path parameter: the token is checked before the parameters.
            let uri = path
                .split('/')
                .map(|segment| match segment {
                    "{port}" => "8000",
                    s if s.starts_with('{') => "x1",
                    s => s,
                })
                .collect::<Vec<_>>()
                .join("/");
            let method: Method = method.to_uppercase().parse().unwrap();
            for token in [None, Some("wrong")] {
                let (status, body) = api.call(method.clone(), &uri, token, Some("{}")).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}: {body}");
                assert_eq!(error_code(&body), "unauthorized", "{method} {uri}");
            }
            checked += 1;
        }
    }
    assert!(checked > 30, "only {checked} routes were checked");
}

#[tokio::test]
async fn bad_input_gets_json_errors_with_stable_codes() {
    let api = api().await;
    let alice = api.user("alice").await;
    let cases: &[(&str, StatusCode, &str)] = &[
        ("{not json", StatusCode::BAD_REQUEST, "invalid_json"),
        (
            r#"{"template": 5}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            r#"{"tempalte": "default"}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            r#"{"template": "nope"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_template",
        ),
        (
            r#"{"ttl_seconds": 999999}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_ttl",
        ),
        (
            r#"{"env": {"1BAD": "x"}}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (body, status, code) in cases {
        let (got, answer) = api
            .call(Method::POST, "/api/v1/sessions", Some(&alice), Some(body))
            .await;
        assert_eq!((got, error_code(&answer)), (*status, *code), "{body}");
        assert!(!answer["error"]["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(
        api.runtime.container_count(),
        0,
        "no bad request may leave a container"
    );

    let (status, body) = api
        .call(
            Method::GET,
            "/api/v1/sessions/snosuchsession",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, body) = api
        .call(Method::GET, "/api/v1/sessions?bogus=1", Some(&alice), None)
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let (status, body) = api
        .call(Method::GET, "/api/v1/nothing-here", Some(&alice), None)
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, body) = api
        .call(Method::PATCH, "/api/v1/sessions", Some(&alice), None)
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
}

#[tokio::test]
async fn users_quota_and_tenancy() {
    let api = api().await;
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;

    let (status, body) = api
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&alice),
            Some(r#"{"name":"mallory"}"#),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let (status, body) = api
        .call(
            Method::POST,
            "/api/v1/users",
            Some(ADMIN),
            Some(r#"{"name":"alice"}"#),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "conflict")
    );
    let (status, body) = api
        .call(
            Method::POST,
            "/api/v1/users",
            Some(ADMIN),
            Some(r#"{"name":"Not Valid"}"#),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );

    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, s) = api
            .call(Method::POST, "/api/v1/sessions", Some(&alice), Some("{}"))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        ids.push(s["id"].as_str().unwrap().to_owned());
    }
    let (status, body) = api
        .call(Method::POST, "/api/v1/sessions", Some(&alice), Some("{}"))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded")
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("delete one")
    );

    let (status, _) = api
        .call(
            Method::GET,
            &format!("/api/v1/sessions/{}", ids[0]),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("/api/v1/sessions/{}", ids[0]),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, bobs) = api
        .call(Method::GET, "/api/v1/sessions", Some(&bob), None)
        .await;
    assert!(bobs["sessions"].as_array().unwrap().is_empty());
    let (_, all) = api
        .call(Method::GET, "/api/v1/sessions", Some(ADMIN), None)
        .await;
    assert_eq!(all["sessions"].as_array().unwrap().len(), 3);
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("/api/v1/sessions/{}", ids[0]),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn engine_down_is_503_quickly_and_readyz_says_why() {
    let api = api().await;
    let alice = api.user("alice").await;
    api.runtime.down.store(true, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let (status, body) = api
        .call(Method::POST, "/api/v1/sessions", Some(&alice), Some("{}"))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "engine_unavailable")
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let (status, body) = api.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["store"], "ok");
    assert_ne!(body["engine"], "ok");

    api.runtime.down.store(false, Ordering::SeqCst);
    let (status, body) = api.call(Method::GET, "/readyz", None, None).await;
    assert_eq!((status, &body["ready"]), (StatusCode::OK, &json!(true)));
}

#[tokio::test]
async fn service_routes_openapi_and_metrics() {
    let api = api().await;
    let (status, body) = api.call(Method::GET, "/healthz", None, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!("ok")));

    let (status, spec) = api.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let paths = spec["paths"].as_object().unwrap();
    for path in [
        "/api/v1/sessions",
        "/api/v1/sessions/{id}",
        "/api/v1/sessions/{id}/extend",
        "/api/v1/sessions/{id}/docker/run",
        "/api/v1/sessions/{id}/docker/exec",
        "/api/v1/templates",
        "/api/v1/users",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(path), "openapi.json lacks {path}");
    }
    assert!(spec["components"]["schemas"]["Session"].is_object());
    // Generated clients name a method per operation: no two may share an id.
    let mut ids: Vec<&str> = paths
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|operation| operation["operationId"].as_str())
        .collect();
    let count = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), count, "every operationId is unique");

    let (status, page) = api.call(Method::GET, "/docs/", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.as_str().unwrap().contains("swagger"), "{page}");

    let (status, _) = api
        .call(Method::POST, "/api/v1/sessions", Some(ADMIN), Some("{}"))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, metrics) = api.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains(r#"berth_sessions{state="running"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("berth_session_create_duration_seconds"),
        "{metrics}"
    );

    let (status, templates) = api
        .call(Method::GET, "/api/v1/templates", Some(ADMIN), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(templates["templates"][0]["name"], "default");
}

#[tokio::test]
async fn at_capacity_a_create_answers_202_and_its_ticket_follows_it() {
    let api = api_with(|c| c.capacity.max_sessions = 1).await;
    let (status, first) = api
        .call(Method::POST, "/api/v1/sessions", Some(ADMIN), Some("{}"))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let alice = api.user("alice").await;
    let (status, queued) = api
        .call(
            Method::POST,
            "/api/v1/sessions?wait=1",
            Some(&alice),
            Some("{}"),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(
        (queued["state"].as_str(), queued["position"].as_u64()),
        (Some("queued"), Some(1))
    );
    assert!(queued["estimated_wait_seconds"].is_u64());
    let url = queued["status_url"].as_str().unwrap().to_owned();
    let (status, _) = api.call(Method::GET, &url, Some(&alice), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = api.call(Method::GET, &url, Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "the admin sees every ticket");
    let (status, capacity) = api
        .call(Method::GET, "/api/v1/capacity", Some(ADMIN), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{capacity}");
    assert_eq!(
        (
            &capacity["max_sessions"],
            &capacity["live"],
            &capacity["by_state"]["running"]
        ),
        (&json!(1), &json!(1), &json!(1))
    );
    let ticket = queued["ticket"].as_str().unwrap();
    assert_eq!(
        capacity["queued"],
        json!([{"ticket": ticket, "owner": "alice", "template": "default", "position": 1}])
    );
    let (status, _) = api
        .call(Method::GET, "/api/v1/capacity", Some(&alice), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the admin's alone");

    let id = first["id"].as_str().unwrap();
    api.call(
        Method::DELETE,
        &format!("/api/v1/sessions/{id}"),
        Some(ADMIN),
        None,
    )
    .await;
    let mut answer = (StatusCode::ACCEPTED, Value::Null);
    for _ in 0..100 {
        answer = api.call(Method::GET, &url, Some(&alice), None).await;
        if answer.0 != StatusCode::ACCEPTED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(answer.0, StatusCode::CREATED, "{}", answer.1);
    assert_eq!(
        (answer.1["owner"].as_str(), answer.1["state"].as_str()),
        (Some("alice"), Some("running"))
    );
    let (status, body) = api
        .call(Method::GET, "/api/v1/queue/qnope", Some(&alice), None)
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
}

#[tokio::test]
async fn disabling_a_user_ends_their_sessions_asleep_or_awake_and_their_queued_creates() {
    let api = api_with(|c| c.capacity.max_sessions = 2).await;
    let alice = api.user("alice").await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, session) = api
            .call(Method::POST, "/api/v1/sessions", Some(&alice), Some("{}"))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{session}");
        ids.push(session["id"].as_str().unwrap().to_owned());
    }
    let asleep = format!("/api/v1/sessions/{}/hibernate", ids[1]);
    let (status, body) = api.call(Method::POST, &asleep, Some(&alice), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = api
        .call(Method::POST, "/api/v1/sessions", Some(ADMIN), Some("{}"))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, queued) = api
        .call(Method::POST, "/api/v1/sessions", Some(&alice), Some("{}"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "at capacity: {queued}");

    let (status, user) = api
        .call(
            Method::PATCH,
            "/api/v1/users/alice",
            Some(ADMIN),
            Some(r#"{"disabled":true}"#),
        )
        .await;
    assert_eq!((status, &user["disabled"]), (StatusCode::OK, &json!(true)));
    for id in &ids {
        let (_, session) = api
            .call(
                Method::GET,
                &format!("/api/v1/sessions/{id}"),
                Some(ADMIN),
                None,
            )
            .await;
        assert_eq!(session["state"], "stopped", "{session}");
    }
    let (_, capacity) = api
        .call(Method::GET, "/api/v1/capacity", Some(ADMIN), None)
        .await;
    assert_eq!(
        capacity["queued"],
        json!([]),
        "the queued create is given up"
    );
    let (status, _) = api
        .call(Method::GET, "/api/v1/sessions", Some(&alice), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "their token fails");
}

#[tokio::test]
async fn a_token_over_its_rate_is_answered_429_with_retry_after_and_the_admin_never_is() {
    let api = api_with(|config| {
        config.quota.requests_per_second = 2;
        config.quota.request_burst = 3;
    })
    .await;
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;
    for _ in 0..3 {
        let (status, _) = api
            .call(Method::GET, "/api/v1/sessions", Some(&alice), None)
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let request = Request::get("/api/v1/sessions")
        .header(header::AUTHORIZATION, format!("Bearer {alice}"))
        .body(Body::empty())
        .unwrap();
    let response = api.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(error_code(&body), "rate_limited");
    assert_eq!(body["error"]["retry_after"], 1);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 2 a second"),
        "{body}"
    );

    // Others keep their own rate; the admin has none.
    let (status, _) = api
        .call(Method::GET, "/api/v1/sessions", Some(&bob), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    for _ in 0..20 {
        let (status, _) = api
            .call(Method::GET, "/api/v1/sessions", Some(ADMIN), None)
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    // After the wait it said, the token is let through again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, _) = api
        .call(Method::GET, "/api/v1/sessions", Some(&alice), None)
        .await;
    assert_eq!(status, StatusCode::OK);
}

/// Every bearer route of the OpenAPI document against scoped tokens: one without the scope
/// the route needs is refused before the handler, one with only that scope is let through.
#[tokio::test]
async fn every_route_takes_a_scoped_token_only_with_its_scope() {
    use berth_proto::token::Scope;
    let api = api().await;
    let token = |scopes: Vec<Scope>| {
        let api = &api;
        async move {
            let request = json!({ "name": crate::ids::user_id(), "scopes": scopes });
            let (status, body) = api
                .call(
                    Method::POST,
                    "/api/v1/tokens",
                    Some(ADMIN),
                    Some(&request.to_string()),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            body["secret"].as_str().unwrap().to_owned()
        }
    };
    let (_, spec) = api.call(Method::GET, "/openapi.json", None, None).await;
    let mut checked = 0;
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let bearer = operation["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s.get("bearer").is_some()));
            if !bearer {
                continue;
            }
            let uri = path
                .split('/')
                .map(|segment| match segment {
                    "{port}" => "8000",
                    s if s.starts_with('{') => "x1",
                    s => s,
                })
                .collect::<Vec<_>>()
                .join("/");
            let method: Method = method.to_uppercase().parse().unwrap();
            let need = super::scopes::needed(&method, &uri);
            let without: Vec<Scope> = Scope::ALL
                .into_iter()
                .filter(|s| Some(*s) != need)
                .collect();
            let (status, body) = api
                .call(
                    method.clone(),
                    &uri,
                    Some(&token(without).await),
                    Some("{}"),
                )
                .await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{method} {uri} without {need:?}: {body}"
            );
            assert!(
                body.to_string().contains("this token"),
                "{method} {uri}: {body}"
            );
            if let Some(need) = need {
                let (status, body) = api
                    .call(
                        method.clone(),
                        &uri,
                        Some(&token(vec![need]).await),
                        Some("{}"),
                    )
                    .await;
                assert!(
                    status != StatusCode::FORBIDDEN || !body.to_string().contains("this token"),
                    "{method} {uri} with {need}: {body}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 30, "only {checked} routes were checked");
}

#[tokio::test]
async fn api_tokens_are_named_listed_without_secrets_expire_and_are_revoked() {
    let api = api().await;
    let alice = api.user("alice").await;
    let create = |body: Value| {
        let (api, alice) = (&api, alice.clone());
        async move {
            api.call(
                Method::POST,
                "/api/v1/tokens",
                Some(&alice),
                Some(&body.to_string()),
            )
            .await
        }
    };
    let (status, made) =
        create(json!({"name": "ci", "scopes": ["sessions:read"], "expires_in_seconds": 3600}))
            .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let secret = made["secret"].as_str().unwrap().to_owned();
    let expires: chrono::DateTime<chrono::Utc> =
        made["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(
        (expires - chrono::Utc::now() - chrono::TimeDelta::hours(1))
            .num_seconds()
            .abs()
            < 60
    );
    for (bad, code) in [
        (json!({"name": "ci", "scopes": ["files"]}), "conflict"),
        (json!({"name": "x", "scopes": []}), "invalid_request"),
        (json!({"name": "x", "scopes": ["admin"]}), "invalid_request"),
        (json!({"name": "x", "scopes": ["root"]}), "invalid_request"),
        (
            json!({"name": "x", "scopes": ["files"], "expires_in_seconds": 1}),
            "invalid_request",
        ),
    ] {
        let (_, body) = create(bad.clone()).await;
        assert_eq!(error_code(&body), code, "{bad}: {body}");
    }

    // It works within its scope, as alice, and says when it was used.
    let (status, _) = api
        .call(Method::GET, "/api/v1/sessions", Some(&secret), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api
        .call(Method::POST, "/api/v1/sessions", Some(&secret), Some("{}"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.to_string().contains("sessions:write"), "{body}");
    let (_, listed) = api
        .call(Method::GET, "/api/v1/tokens", Some(&alice), None)
        .await;
    assert!(!listed.to_string().contains(&secret), "no secret is listed");
    let id = listed["tokens"][0]["id"].as_str().unwrap().to_owned();
    for _ in 0..50 {
        let (_, listed) = api
            .call(Method::GET, "/api/v1/tokens", Some(&alice), None)
            .await;
        if listed["tokens"][0]["last_used_at"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, listed) = api
        .call(Method::GET, "/api/v1/tokens", Some(&alice), None)
        .await;
    assert!(listed["tokens"][0]["last_used_at"].is_string(), "{listed}");

    // A scoped token cannot manage tokens; bob cannot revoke alice's; alice can.
    let (status, _) = api
        .call(Method::GET, "/api/v1/tokens", Some(&secret), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let bob = api.user("bob").await;
    let uri = format!("/api/v1/tokens/{id}");
    let (status, _) = api.call(Method::DELETE, &uri, Some(&bob), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api.call(Method::DELETE, &uri, Some(&alice), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api
        .call(Method::GET, "/api/v1/sessions", Some(&secret), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked");
}

#[tokio::test]
async fn every_change_is_in_the_audit_log_with_who_what_and_how_it_ended() {
    let api = api().await;
    let alice = api.user("alice").await;
    let (status, session) = api
        .call(Method::POST, "/api/v1/sessions", Some(&alice), Some("{}"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let id = session["id"].as_str().unwrap().to_owned();
    let hibernate = format!("/api/v1/sessions/{id}/hibernate");
    api.call(Method::POST, &hibernate, Some("wrong"), None)
        .await;
    api.call(Method::GET, "/api/v1/sessions", Some(&alice), None)
        .await;

    let mut entries = Value::Null;
    for _ in 0..100 {
        let (_, body) = api
            .call(Method::GET, "/api/v1/audit", Some(ADMIN), None)
            .await;
        entries = body["entries"].clone();
        if entries.as_array().is_some_and(|e| e.len() >= 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let entries = entries.as_array().unwrap();
    let summary: Vec<(String, String, String, u64)> = entries
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_owned(),
                e["method"].as_str().unwrap().to_owned(),
                e["path"].as_str().unwrap().to_owned(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let row = |actor: &str, method: &str, path: &str, status: u64| {
        (actor.to_owned(), method.to_owned(), path.to_owned(), status)
    };
    assert_eq!(
        summary,
        [
            row("-", "POST", &hibernate, 401),
            row("alice", "POST", "/api/v1/sessions", 201),
            row("admin", "POST", "/api/v1/users", 201),
        ],
        "newest first; reads are not kept"
    );
    assert_eq!(entries[1]["session_id"], Value::Null);
    assert_eq!(entries[0]["session_id"], id.as_str());

    let (_, alices) = api
        .call(Method::GET, "/api/v1/audit?actor=alice", Some(ADMIN), None)
        .await;
    assert_eq!(alices["entries"].as_array().unwrap().len(), 1);
    let uri = format!("/api/v1/audit?session={id}&limit=5");
    let (_, on_session) = api.call(Method::GET, &uri, Some(ADMIN), None).await;
    assert_eq!(on_session["entries"].as_array().unwrap().len(), 1);
    let (status, _) = api
        .call(Method::GET, "/api/v1/audit", Some(&alice), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
