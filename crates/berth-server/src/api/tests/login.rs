//! Signing in with GitHub and OpenID Connect, against a stand-in provider on loopback that
//! plays GitHub's OAuth and REST API and an OIDC provider: single-use codes, PKCE checked,
//! ID tokens signed ES256 with a key of its JWKS.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    body::Body,
    extract::{Query, State},
    http::{HeaderMap, Method, Request, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{ADMIN, Api, api_with};
use crate::{
    config::{GithubAuthConfig, OidcAuthConfig},
    login::jwt::testing::SigningKey,
};

const CLIENT_ID: &str = "berth-client";
const CLIENT_SECRET: &str = "berth-secret";

/// Who signs in at the stand-in's authorize page next.
#[derive(Debug, Clone)]
struct Person {
    github_id: u64,
    login: String,
    orgs: Vec<String>,
    email: String,
    email_verified: bool,
}

fn person(github_id: u64, login: &str, orgs: &[&str], email: &str) -> Person {
    Person {
        github_id,
        login: login.into(),
        orgs: orgs.iter().map(|o| o.to_string()).collect(),
        email: email.into(),
        email_verified: true,
    }
}

/// How the stand-in misbehaves in its next ID token.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Forgery {
    None,
    ForeignKey,
    WrongNonce,
    Expired,
}

struct Grant {
    challenge: String,
    redirect_uri: String,
    nonce: Option<String>,
    person: Person,
}

struct StandIn {
    base: String,
    key: SigningKey,
    signing_in: Mutex<Person>,
    forgery: Mutex<Forgery>,
    /// Says `email_verified` as the string `"true"`, as some providers do.
    verified_as_text: Mutex<bool>,
    codes: Mutex<HashMap<String, Grant>>,
    tokens: Mutex<HashMap<String, Person>>,
    counter: Mutex<u64>,
}

type Shared = Arc<StandIn>;

async fn authorize(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    if q.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || q.get("code_challenge_method").map(String::as_str) != Some("S256")
    {
        return (StatusCode::BAD_REQUEST, "bad client or no PKCE").into_response();
    }
    let code = {
        let mut counter = s.counter.lock().unwrap();
        *counter += 1;
        format!("code-{counter}")
    };
    let redirect_uri = q["redirect_uri"].clone();
    s.codes.lock().unwrap().insert(
        code.clone(),
        Grant {
            challenge: q["code_challenge"].clone(),
            redirect_uri: redirect_uri.clone(),
            nonce: q.get("nonce").cloned(),
            person: s.signing_in.lock().unwrap().clone(),
        },
    );
    let query =
        serde_urlencoded::to_string([("code", code.as_str()), ("state", &q["state"])]).unwrap();
    (
        StatusCode::FOUND,
        [(header::LOCATION, format!("{redirect_uri}?{query}"))],
    )
        .into_response()
}

fn form(body: &str) -> HashMap<String, String> {
    serde_urlencoded::from_str(body).unwrap_or_default()
}

/// A code is good once, for the redirect and verifier it was issued with.
fn redeem(s: &StandIn, form: &HashMap<String, String>) -> Option<Grant> {
    let grant = s.codes.lock().unwrap().remove(form.get("code")?)?;
    let verifier = form.get("code_verifier")?;
    // Computed here apart from Berth's own code: SHA-256, then base64url without padding.
    let computed = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ));
    (computed == grant.challenge && form.get("redirect_uri") == Some(&grant.redirect_uri))
        .then_some(grant)
}

async fn github_token(State(s): State<Shared>, body: String) -> Json<Value> {
    let form = form(&body);
    if form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET) {
        return Json(json!({"error": "incorrect_client_credentials"}));
    }
    match redeem(&s, &form) {
        Some(grant) => {
            let token = format!("gho_{}", form["code"]);
            s.tokens.lock().unwrap().insert(token.clone(), grant.person);
            Json(json!({"access_token": token, "token_type": "bearer", "scope": "read:user"}))
        }
        // GitHub answers 200 with an error for a used or wrong code.
        None => Json(json!({"error": "bad_verification_code",
                            "error_description": "The code passed is incorrect or expired."})),
    }
}

fn bearer_person(s: &StandIn, headers: &HeaderMap) -> Option<Person> {
    let token = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    s.tokens.lock().unwrap().get(token).cloned()
}

async fn github_user(State(s): State<Shared>, headers: HeaderMap) -> Response {
    match bearer_person(&s, &headers) {
        Some(p) => Json(json!({"id": p.github_id, "login": p.login})).into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn github_orgs(State(s): State<Shared>, headers: HeaderMap) -> Response {
    match bearer_person(&s, &headers) {
        Some(p) => {
            let memberships: Vec<Value> = p
                .orgs
                .iter()
                .map(|o| json!({"state": "active", "role": "member", "organization": {"login": o}}))
                .collect();
            Json(memberships).into_response()
        }
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn discovery(State(s): State<Shared>) -> Json<Value> {
    Json(json!({
        "issuer": format!("{}/oidc", s.base),
        "authorization_endpoint": format!("{}/authorize", s.base),
        "token_endpoint": format!("{}/oidc/token", s.base),
        "jwks_uri": format!("{}/oidc/jwks", s.base),
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
    }))
}

async fn jwks(State(s): State<Shared>) -> Json<Value> {
    Json(json!({"keys": [s.key.jwk()]}))
}

async fn oidc_token(State(s): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let form = form(&body);
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(basic.as_str())
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let Some(grant) = redeem(&s, &form) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        )
            .into_response();
    };
    let forgery = *s.forgery.lock().unwrap();
    let now = chrono::Utc::now().timestamp();
    let p = grant.person;
    let claims = json!({
        "iss": format!("{}/oidc", s.base),
        "sub": format!("sub-{}", p.github_id),
        "aud": CLIENT_ID,
        "iat": now,
        "exp": if forgery == Forgery::Expired { now - 3600 } else { now + 300 },
        "nonce": if forgery == Forgery::WrongNonce { Some("another".into()) } else { grant.nonce },
        "email": p.email,
        "email_verified": if *s.verified_as_text.lock().unwrap() {
            json!(p.email_verified.to_string())
        } else {
            json!(p.email_verified)
        },
        "preferred_username": p.login,
    });
    let id_token = if forgery == Forgery::ForeignKey {
        SigningKey::generate(&s.key.kid).sign(&claims)
    } else {
        s.key.sign(&claims)
    };
    Json(json!({"access_token": "at", "token_type": "Bearer", "id_token": id_token}))
        .into_response()
}

async fn stand_in() -> Shared {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shared = Arc::new(StandIn {
        base: format!("http://{}", listener.local_addr().unwrap()),
        key: SigningKey::generate("stand-in-1"),
        signing_in: Mutex::new(person(1, "octocat", &["acme"], "octo@example.com")),
        forgery: Mutex::new(Forgery::None),
        verified_as_text: Mutex::new(false),
        codes: Mutex::default(),
        tokens: Mutex::default(),
        counter: Mutex::new(0),
    });
    let app = Router::new()
        .route("/authorize", get(authorize))
        .route("/github/token", post(github_token))
        .route("/github/api/user", get(github_user))
        .route("/github/api/user/memberships/orgs", get(github_orgs))
        .route("/oidc/.well-known/openid-configuration", get(discovery))
        .route("/oidc/jwks", get(jwks))
        .route("/oidc/token", post(oidc_token))
        .with_state(shared.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    shared
}

async fn berth_with(provider: &StandIn) -> Api {
    let base = provider.base.clone();
    api_with(move |config| {
        config.auth.github = Some(GithubAuthConfig {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            authorize_url: format!("{base}/authorize"),
            token_url: format!("{base}/github/token"),
            api_url: format!("{base}/github/api"),
            allowed_orgs: vec!["acme".into()],
            allowed_users: Vec::new(),
        });
        config.auth.oidc = vec![OidcAuthConfig {
            name: "corp".into(),
            display_name: Some("Corp SSO".into()),
            issuer: format!("{base}/oidc"),
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            scopes: vec!["openid".into(), "email".into(), "profile".into()],
            allowed_domains: vec!["example.com".into()],
            allowed_emails: Vec::new(),
        }];
    })
    .await
}

/// One request to Berth as a browser makes it: a Host and cookies.
async fn browse(api: &Api, method: Method, uri: &str, cookies: &[(&str, &str)]) -> Response {
    let cookie = cookies
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("; ");
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "berth.test")
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    api.router.clone().oneshot(request).await.unwrap()
}

fn location(response: &Response) -> String {
    assert_eq!(response.status(), StatusCode::FOUND, "{response:?}");
    response.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned()
}

fn set_cookie(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// What the browser was left with after the callback.
struct Landing {
    /// Where Berth sent it.
    to: String,
    /// The sign-in's token, when it worked.
    token: Option<String>,
    /// The callback, to replay.
    callback: String,
    state: String,
}

/// Begins at Berth, signs in at the stand-in, comes back to Berth's callback.
async fn sign_in(api: &Api, login_path: &str) -> Landing {
    let begun = browse(api, Method::GET, login_path, &[]).await;
    let to_provider = location(&begun);
    let state = set_cookie(&begun, "berth_login_state").expect("the state cookie");
    let provider = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let back = provider.get(&to_provider).send().await.unwrap();
    assert_eq!(
        back.status(),
        StatusCode::FOUND,
        "{}",
        back.text().await.unwrap()
    );
    let callback = back.headers()[header::LOCATION].to_str().unwrap();
    let callback = callback
        .strip_prefix("http://berth.test")
        .expect("the redirect_uri is Berth's");
    let landed = browse(api, Method::GET, callback, &[("berth_login_state", &state)]).await;
    Landing {
        to: location(&landed),
        token: set_cookie(&landed, "berth_token"),
        callback: callback.to_owned(),
        state,
    }
}

async fn me(api: &Api, token: &str) -> (StatusCode, Value) {
    let response = browse(
        api,
        Method::GET,
        "/api/v1/auth/me",
        &[("berth_token", token)],
    )
    .await;
    let status = response.status();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn login_error(to: &str) -> String {
    let query = to
        .strip_prefix("/?")
        .unwrap_or_else(|| panic!("not an error landing: {to}"));
    let pairs: HashMap<String, String> = serde_urlencoded::from_str(query).unwrap();
    pairs["login_error"].clone()
}

#[tokio::test]
async fn github_sign_in_makes_the_user_once_and_refuses_forged_replayed_and_outsiders() {
    let provider = stand_in().await;
    let api = berth_with(&provider).await;

    let (status, offered) = api
        .call(Method::GET, "/api/v1/auth/providers", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        offered["providers"],
        json!([{"id": "github", "name": "GitHub", "login_url": "/api/v1/auth/github/login"},
               {"id": "oidc:corp", "name": "Corp SSO", "login_url": "/api/v1/auth/oidc/corp/login"}])
    );

    let first = sign_in(&api, "/api/v1/auth/github/login?next=%2F%23%2Flabs").await;
    assert_eq!(first.to, "/#/labs", "back where the sign-in began");
    let token = first.token.clone().expect("signed in");
    let (status, who) = me(&api, &token).await;
    assert_eq!(
        (status, who["name"].as_str()),
        (StatusCode::OK, Some("octocat"))
    );
    assert_eq!(who["admin"], false);

    // The same GitHub account again is the same user, with a second sign-in of its own.
    let again = sign_in(&api, "/api/v1/auth/github/login").await;
    assert_eq!(again.to, "/");
    assert_eq!(
        me(&api, again.token.as_deref().unwrap()).await.1["name"],
        "octocat"
    );
    let (_, users) = api
        .call(Method::GET, "/api/v1/users", Some(ADMIN), None)
        .await;
    assert_eq!(users["users"].as_array().unwrap().len(), 1, "{users}");
    let (_, tokens) = api
        .call(Method::GET, "/api/v1/tokens", Some(&token), None)
        .await;
    let sign_ins = tokens["tokens"].as_array().unwrap();
    assert_eq!(sign_ins.len(), 2, "{tokens}");
    assert!(
        sign_ins
            .iter()
            .all(|t| t["scopes"] == json!([]) && t["expires_at"].is_string())
    );

    // The callback replayed, state and code as they were: the state was taken.
    let replayed = browse(
        &api,
        Method::GET,
        &first.callback,
        &[("berth_login_state", &first.state)],
    )
    .await;
    assert_eq!(login_error(&location(&replayed)), "invalid_state");
    assert!(set_cookie(&replayed, "berth_token").is_none());

    // A used code under a fresh state: the provider refuses it.
    let begun = browse(&api, Method::GET, "/api/v1/auth/github/login", &[]).await;
    let state = set_cookie(&begun, "berth_login_state").unwrap();
    let old_code: HashMap<String, String> =
        serde_urlencoded::from_str(first.callback.split_once('?').unwrap().1).unwrap();
    let uri = format!(
        "/api/v1/auth/github/callback?code={}&state={state}",
        old_code["code"]
    );
    let reused = browse(&api, Method::GET, &uri, &[("berth_login_state", &state)]).await;
    assert_eq!(login_error(&location(&reused)), "refused");

    // A callback in a browser that did not begin the sign-in (login CSRF), and a made-up state.
    let begun = browse(&api, Method::GET, "/api/v1/auth/github/login", &[]).await;
    let state = set_cookie(&begun, "berth_login_state").unwrap();
    let uri = format!("/api/v1/auth/github/callback?code=code-1&state={state}");
    let planted = browse(&api, Method::GET, &uri, &[]).await;
    assert_eq!(login_error(&location(&planted)), "invalid_state");
    let uri = "/api/v1/auth/github/callback?code=code-1&state=9999999999.made-up";
    let made_up = browse(
        &api,
        Method::GET,
        uri,
        &[("berth_login_state", "9999999999.made-up")],
    )
    .await;
    assert_eq!(login_error(&location(&made_up)), "invalid_state");

    // Outside the allowed organisation: refused, and no user is made.
    *provider.signing_in.lock().unwrap() = person(2, "outsider", &["other"], "o@example.com");
    let outsider = sign_in(&api, "/api/v1/auth/github/login").await;
    assert_eq!(login_error(&outsider.to), "not_allowed");
    assert!(outsider.token.is_none());

    // A GitHub login that is an existing user's name does not become that user.
    api.user("mallory").await;
    *provider.signing_in.lock().unwrap() = person(3, "Mallory", &["acme"], "m@example.com");
    let namesake = sign_in(&api, "/api/v1/auth/github/login").await;
    assert_eq!(
        me(&api, namesake.token.as_deref().unwrap()).await.1["name"],
        "mallory-2"
    );

    // Disabled: every sign-in of theirs stops working and a new one is refused.
    let (status, changed) = api
        .call(
            Method::PATCH,
            "/api/v1/users/octocat",
            Some(ADMIN),
            Some(r#"{"disabled":true}"#),
        )
        .await;
    assert_eq!(
        (status, &changed["disabled"]),
        (StatusCode::OK, &json!(true))
    );
    assert_eq!(me(&api, &token).await.0, StatusCode::UNAUTHORIZED);
    *provider.signing_in.lock().unwrap() = person(1, "octocat", &["acme"], "octo@example.com");
    assert_eq!(
        login_error(&sign_in(&api, "/api/v1/auth/github/login").await.to),
        "disabled"
    );
    api.call(
        Method::PATCH,
        "/api/v1/users/octocat",
        Some(ADMIN),
        Some(r#"{"disabled":false}"#),
    )
    .await;
    assert_eq!(me(&api, &token).await.0, StatusCode::OK, "enabled again");

    // Signing out revokes the browser's sign-in, not the others.
    let out = browse(
        &api,
        Method::POST,
        "/api/v1/auth/logout",
        &[("berth_token", &token)],
    )
    .await;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert_eq!(me(&api, &token).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        me(&api, again.token.as_deref().unwrap()).await.0,
        StatusCode::OK
    );

    // Deleted: their identity is forgotten; the same account signs in as a new user, under
    // another name: the old one still names the deleted user's ended sessions and snapshots.
    let (status, _) = api
        .call(Method::DELETE, "/api/v1/users/octocat", Some(ADMIN), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        me(&api, again.token.as_deref().unwrap()).await.0,
        StatusCode::UNAUTHORIZED
    );
    let reborn = sign_in(&api, "/api/v1/auth/github/login").await;
    assert_eq!(
        me(&api, reborn.token.as_deref().unwrap()).await.1["name"],
        "octocat-2"
    );
    let (status, body) = api
        .call(
            Method::POST,
            "/api/v1/users",
            Some(ADMIN),
            Some(r#"{"name":"octocat"}"#),
        )
        .await;
    assert_eq!(
        (status, super::error_code(&body)),
        (StatusCode::CONFLICT, "conflict"),
        "{body}"
    );

    // An unknown provider is a JSON 404.
    let (status, body) = api
        .call(Method::GET, "/api/v1/auth/oidc/nope/login", None, None)
        .await;
    assert_eq!(
        (status, super::error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
}

#[tokio::test]
async fn oidc_sign_in_takes_only_a_genuine_fresh_id_token_for_this_sign_in() {
    let provider = stand_in().await;
    let api = berth_with(&provider).await;
    *provider.signing_in.lock().unwrap() = person(7, "ada", &[], "ada@example.com");

    let landing = sign_in(&api, "/api/v1/auth/oidc/corp/login").await;
    let token = landing
        .token
        .unwrap_or_else(|| panic!("not signed in: {}", landing.to));
    assert_eq!(me(&api, &token).await.1["name"], "ada");
    *provider.verified_as_text.lock().unwrap() = true;
    let as_text = sign_in(&api, "/api/v1/auth/oidc/corp/login").await;
    assert_eq!(
        me(&api, as_text.token.as_deref().unwrap()).await.1["name"],
        "ada"
    );
    *provider.verified_as_text.lock().unwrap() = false;

    for (forgery, why) in [
        (
            Forgery::ForeignKey,
            "signed with a key not in the provider's set",
        ),
        (Forgery::WrongNonce, "minted for another sign-in"),
        (Forgery::Expired, "expired"),
    ] {
        *provider.forgery.lock().unwrap() = forgery;
        let landing = sign_in(&api, "/api/v1/auth/oidc/corp/login").await;
        assert_eq!(login_error(&landing.to), "refused", "{why}");
        assert!(landing.token.is_none(), "{why}");
    }
    *provider.forgery.lock().unwrap() = Forgery::None;

    let mut unverified = person(8, "eve", &[], "eve@example.com");
    unverified.email_verified = false;
    for outsider in [person(9, "bob", &[], "bob@elsewhere.org"), unverified] {
        *provider.signing_in.lock().unwrap() = outsider;
        let landing = sign_in(&api, "/api/v1/auth/oidc/corp/login").await;
        assert_eq!(login_error(&landing.to), "not_allowed");
    }
    let (_, users) = api
        .call(Method::GET, "/api/v1/users", Some(ADMIN), None)
        .await;
    let names: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ada"]);
}
