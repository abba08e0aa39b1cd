//! Signing in with GitHub or an OpenID Connect provider: the authorization code flow with
//! `state` and PKCE, the identity the provider vouches for, and the Berth user it is.
//!
//! A sign-in in progress is kept in the store (platform state, scope `login`) under its
//! `state`, so any instance can finish what another began, and taken once: a replayed
//! callback finds nothing. The `state` also travels in a cookie of the browser that began, so
//! a callback link planted in someone else's browser does not sign them in (login CSRF).
//! An identity (`github:<id>`, `oidc:<provider>:<sub>`) maps to a user by the store's
//! platform state (scope `identities`), never by name: a provider's login that equals an
//! existing Berth user's name does not become that user.

pub mod github;
pub mod jwt;
pub mod oidc;

use std::sync::Arc;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    auth::{ADMIN_NAME, hash_token},
    config::AuthConfig,
    ids,
    store::{StateScope, Store, StoreError, TokenRecord, UserRecord},
};

/// A sign-in has this long from its start to its callback.
const PENDING_SECONDS: i64 = 600;
/// Sign-ins in progress at once, at most (each a few hundred bytes in the store).
const MAX_PENDING: usize = 10_000;

/// The cookie that binds a callback to the browser that began the sign-in.
pub const STATE_COOKIE: &str = "berth_login_state";

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("no sign-in provider {0:?} is configured")]
    UnknownProvider(String),
    #[error("this sign-in is not valid, has expired or was already used; sign in again")]
    BadState,
    #[error("the provider refused the sign-in: {0}")]
    Refused(String),
    #[error("{0} may not sign in here; ask the admin to allow it")]
    NotAllowed(String),
    #[error("this account is disabled; ask the admin")]
    Disabled,
    #[error("the sign-in provider did not answer as expected: {0}")]
    Provider(String),
    #[error("too many sign-ins are in progress; try again in a few minutes")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LoginError {
    /// Stable, for the page the browser lands on (`/?login_error=<code>`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownProvider(_) => "not_found",
            Self::BadState => "invalid_state",
            Self::Refused(_) => "refused",
            Self::NotAllowed(_) => "not_allowed",
            Self::Disabled => "disabled",
            Self::Provider(_) => "provider_error",
            Self::Busy => "busy",
            Self::Store(_) => "store_unavailable",
        }
    }
}

/// Who a provider says signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `github:<numeric id>` or `oidc:<provider>:<sub>`: stable when the person renames.
    pub key: String,
    /// What a new user's name is made from (a GitHub login, a preferred username).
    pub handle: String,
}

/// What a provider needs to finish a sign-in, kept from its start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub provider: String,
    pub verifier: String,
    pub nonce: String,
    pub redirect_uri: String,
    /// Where the browser goes once signed in: a path of this site.
    pub next: String,
}

/// The providers `[auth]` configures.
#[derive(Debug, Clone, Default)]
pub struct Providers {
    github: Option<Arc<github::Github>>,
    oidc: Vec<Arc<oidc::Oidc>>,
    login_hours: u64,
    public_url: Option<String>,
}

/// A provider's side of the flow.
#[derive(Debug)]
pub enum Provider {
    Github(Arc<github::Github>),
    Oidc(Arc<oidc::Oidc>),
}

impl Provider {
    /// Where the browser is sent to sign in.
    pub async fn authorize_url(
        &self,
        pending: &Pending,
        state: &str,
    ) -> Result<String, LoginError> {
        match self {
            Self::Github(github) => Ok(github.authorize_url(pending, state)),
            Self::Oidc(oidc) => oidc.authorize_url(pending, state).await,
        }
    }

    /// The identity a callback's `code` proves.
    pub async fn identity(&self, pending: &Pending, code: &str) -> Result<Identity, LoginError> {
        match self {
            Self::Github(github) => github.identity(pending, code).await,
            Self::Oidc(oidc) => oidc.identity(pending, code).await,
        }
    }
}

impl Providers {
    pub fn new(config: &AuthConfig) -> Self {
        crate::install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            github: config
                .github
                .clone()
                .map(|github| Arc::new(github::Github::new(github, http.clone()))),
            oidc: config
                .oidc
                .iter()
                .map(|provider| Arc::new(oidc::Oidc::new(provider.clone(), http.clone())))
                .collect(),
            login_hours: config.login_hours,
            public_url: config.public_url.clone(),
        }
    }

    /// `github`, or `oidc:<name>`, as the routes name them.
    pub fn get(&self, id: &str) -> Result<Provider, LoginError> {
        let found = match id.strip_prefix("oidc:") {
            Some(name) => self
                .oidc
                .iter()
                .find(|p| p.name() == name)
                .cloned()
                .map(Provider::Oidc),
            None if id == "github" => self.github.clone().map(Provider::Github),
            None => None,
        };
        found.ok_or_else(|| LoginError::UnknownProvider(id.to_owned()))
    }

    /// What the sign-in page offers: `(id, label)`, GitHub first.
    pub fn offered(&self) -> Vec<(String, String)> {
        let github = self
            .github
            .iter()
            .map(|_| ("github".to_owned(), "GitHub".to_owned()));
        let oidc = self
            .oidc
            .iter()
            .map(|p| (format!("oidc:{}", p.name()), p.label().to_owned()));
        github.chain(oidc).collect()
    }

    /// The configured address browsers reach Berth at, if any.
    pub fn public_url(&self) -> Option<&str> {
        self.public_url
            .as_deref()
            .map(|url| url.trim_end_matches('/'))
    }

    /// How long a sign-in lasts.
    pub fn login_lifetime(&self) -> TimeDelta {
        TimeDelta::hours(i64::try_from(self.login_hours).unwrap_or(i64::MAX / 3_600_000))
    }
}

/// A provider's JSON answer to `request`; `what` names it in errors.
async fn fetch_json<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    what: &str,
) -> Result<T, LoginError> {
    let failed = |err: &dyn std::fmt::Display| LoginError::Provider(format!("{what}: {err}"));
    let response = request.send().await.map_err(|err| failed(&err))?;
    let status = response.status();
    if !status.is_success() {
        return Err(LoginError::Provider(format!("{what} answered {status}")));
    }
    response.json().await.map_err(|err| failed(&err))
}

/// A random URL-safe value of 256 bits: states, PKCE verifiers, nonces.
fn random() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// PKCE's S256 challenge of a verifier (RFC 7636).
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

const PENDING_SCOPE: &str = "login";
/// Which user each provider identity is, and retired names: platform state `berth store copy`
/// carries (sign-ins in progress it leaves).
pub const IDENTITY_SCOPE: &str = "identities";

/// Keeps a new sign-in; its `state`. The state begins with its expiry (Unix seconds), so
/// abandoned sign-ins are swept by their keys alone, when the store holds as many as it may.
pub async fn begin(
    store: &dyn Store,
    provider: &str,
    redirect_uri: String,
    next: String,
) -> Result<(String, Pending), LoginError> {
    let scope = StateScope::Platform(PENDING_SCOPE.into());
    let now = Utc::now().timestamp();
    let state = format!("{}.{}", now + PENDING_SECONDS, random());
    let pending = Pending {
        provider: provider.to_owned(),
        verifier: random(),
        nonce: random(),
        redirect_uri,
        next,
    };
    let value = serde_json::to_string(&pending).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if store.put_state(&scope, &state, &value, MAX_PENDING).await? {
        return Ok((state, pending));
    }
    for kept in store.list_state(&scope).await? {
        let expired = kept
            .key
            .split_once('.')
            .and_then(|(at, _)| at.parse::<i64>().ok())
            .is_none_or(|at| at < now);
        if expired {
            store.delete_state(&scope, &kept.key).await?;
        }
    }
    if store.put_state(&scope, &state, &value, MAX_PENDING).await? {
        Ok((state, pending))
    } else {
        Err(LoginError::Busy)
    }
}

/// Takes the sign-in `state` names, once: a second call with the same state finds nothing.
pub async fn take(store: &dyn Store, state: &str) -> Result<Pending, LoginError> {
    let scope = StateScope::Platform(PENDING_SCOPE.into());
    let expiry = state
        .split_once('.')
        .and_then(|(at, _)| at.parse::<i64>().ok())
        .ok_or(LoginError::BadState)?;
    let Some(kept) = store.get_state(&scope, state).await? else {
        return Err(LoginError::BadState);
    };
    // Deleting is the claim: of two callbacks racing with one state, one deletes it.
    if !store.delete_state(&scope, state).await? || expiry < Utc::now().timestamp() {
        return Err(LoginError::BadState);
    }
    serde_json::from_str(&kept.value).map_err(|_| LoginError::BadState)
}

/// The Berth user an identity is, made at its first sign-in.
pub async fn user_for(store: &dyn Store, identity: &Identity) -> Result<UserRecord, LoginError> {
    let identities = StateScope::Platform(IDENTITY_SCOPE.into());
    let key = format!("id:{}", identity.key);
    // A sign-in that lost the claim finds the winner's user on its next round; one deleted
    // in between (by an admin, at that moment) is why there are rounds at all.
    for _ in 0..3 {
        if let Some(user) = user_of_identity(store, &identities, &key).await? {
            return signed_in(user);
        }
        let user = new_user(store, &identity.handle).await?;
        // The identity is claimed once the user exists: a sign-in racing this one (two tabs)
        // made a user too, and of the two claims one wins; the other's user goes again, unused.
        let name_json = serde_json::to_string(&user.name).unwrap_or_default();
        if !store.insert_state(&identities, &key, &name_json).await? {
            store.delete_user(&user.name).await?;
            continue;
        }
        let of_user = format!("of:{}", user.name);
        let keys = serde_json::to_string(&[&identity.key]).unwrap_or_default();
        store
            .put_state(&identities, &of_user, &keys, usize::MAX)
            .await?;
        tracing::info!(
            user = user.name,
            identity = identity.key,
            "a user signed in for the first time"
        );
        return Ok(user);
    }
    Err(LoginError::Busy)
}

/// A new user named after `handle`, under the first name neither taken nor retired.
async fn new_user(store: &dyn Store, handle: &str) -> Result<UserRecord, LoginError> {
    let base = user_name_from(handle);
    let mut attempt = 1;
    loop {
        let name = match attempt {
            1 => base.clone(),
            n => format!("{}-{n}", &base[..base.len().min(28)]),
        };
        if name_retired(store, &name).await? {
            attempt += 1;
            continue;
        }
        let user = UserRecord {
            id: ids::user_id(),
            name,
            // A login token nobody holds: this user signs in through the provider.
            token_hash: hash_token(&ids::api_token()),
            created_at: Utc::now(),
            role: berth_proto::user::Role::User,
            disabled: false,
        };
        match store.insert_user(&user).await {
            Ok(()) => return Ok(user),
            Err(StoreError::Conflict(_)) if attempt < 50 => attempt += 1,
            Err(err) => return Err(err.into()),
        }
    }
}

/// The user an identity was given. A claim of a user deleted since is let go, so that the
/// identity can be given a new user (the old name stays retired); only that claim, not one a
/// racing sign-in made meanwhile.
async fn user_of_identity(
    store: &dyn Store,
    identities: &StateScope,
    key: &str,
) -> Result<Option<UserRecord>, LoginError> {
    let Some(kept) = store.get_state(identities, key).await? else {
        return Ok(None);
    };
    let name: String = serde_json::from_str(&kept.value).unwrap_or_default();
    let user = store.user_by_name(&name).await?;
    if user.is_none() {
        store.delete_state_if(identities, key, &kept.value).await?;
    }
    Ok(user)
}

fn signed_in(user: UserRecord) -> Result<UserRecord, LoginError> {
    if user.disabled {
        Err(LoginError::Disabled)
    } else {
        Ok(user)
    }
}

/// Keeps a deleted user's name from being given again: their ended sessions, snapshots and
/// timelines still carry it, and a new user of that name would read them.
pub async fn retire_name(store: &dyn Store, name: &str) -> Result<(), StoreError> {
    let identities = StateScope::Platform(IDENTITY_SCOPE.into());
    store
        .put_state(&identities, &format!("retired:{name}"), "true", usize::MAX)
        .await?;
    Ok(())
}

/// Whether `name` belonged to a deleted user ([`retire_name`]).
pub async fn name_retired(store: &dyn Store, name: &str) -> Result<bool, StoreError> {
    let identities = StateScope::Platform(IDENTITY_SCOPE.into());
    let key = format!("retired:{name}");
    Ok(store.get_state(&identities, &key).await?.is_some())
}

/// Forgets which identities are `name` (a deleted user): their next sign-in makes a new user.
pub async fn forget_identities(store: &dyn Store, name: &str) -> Result<(), StoreError> {
    let identities = StateScope::Platform(IDENTITY_SCOPE.into());
    let of_user = format!("of:{name}");
    if let Some(kept) = store.get_state(&identities, &of_user).await? {
        let keys: Vec<String> = serde_json::from_str(&kept.value).unwrap_or_default();
        for key in keys {
            store
                .delete_state(&identities, &format!("id:{key}"))
                .await?;
        }
        store.delete_state(&identities, &of_user).await?;
    }
    Ok(())
}

/// A token for the browser that just signed in: full access (no scopes) for `lifetime`,
/// listed with the user's tokens as `sign-in (<provider>)` and revoked by signing out.
pub async fn sign_in_token(
    store: &dyn Store,
    user: &UserRecord,
    provider_label: &str,
    lifetime: TimeDelta,
) -> Result<(String, DateTime<Utc>), StoreError> {
    let now = Utc::now();
    // Each sign-in adds a token: the user's expired ones go as the next comes.
    for kept in store.list_tokens(Some(&user.name)).await? {
        if kept.token.scopes.is_empty() && kept.token.expires_at.is_some_and(|at| at <= now) {
            store.delete_token(&kept.token.id).await?;
        }
    }
    let secret = ids::api_token();
    let expires_at = now + lifetime;
    let token = berth_proto::token::ApiToken {
        id: format!("tok_{}", ids::user_id()),
        name: format!(
            "sign-in ({provider_label}) {}",
            now.format("%Y-%m-%d %H:%M:%S")
        ),
        owner: user.name.clone(),
        scopes: Vec::new(),
        created_at: now,
        expires_at: Some(expires_at),
        last_used_at: None,
    };
    store
        .put_token(&TokenRecord {
            token,
            hash: hash_token(&secret),
        })
        .await?;
    Ok((secret, expires_at))
}

/// A Berth user name from a provider's handle: lower case, `-` for what a name cannot hold,
/// at most 32 characters, never `admin`.
fn user_name_from(handle: &str) -> String {
    let mut name: String = handle
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    name = name.trim_matches(|c| c == '-' || c == '_').to_owned();
    name.truncate(32);
    if name.is_empty() || name == ADMIN_NAME {
        name = format!("user-{name}").trim_end_matches('-').to_owned();
    }
    name
}

/// `next` when it is a path of this site, else `/`: a sign-in never sends a browser elsewhere.
pub fn local_path(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control) =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_become_user_names_and_never_admin() {
        assert_eq!(user_name_from("Ada.Lovelace"), "ada-lovelace");
        assert_eq!(user_name_from("admin"), "user-admin");
        assert_eq!(user_name_from("..."), "user");
        assert_eq!(user_name_from(&"x".repeat(40)).len(), 32);
    }

    /// Eight sign-ins of `identity` at once: the one user they all became, and the only user
    /// the store holds.
    async fn eight_at_once(store: &dyn Store, identity: &Identity) -> UserRecord {
        let racing = (0..8).map(|_| user_for(store, identity));
        let signed_in: Vec<UserRecord> = futures_util::future::join_all(racing)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert!(
            signed_in.iter().all(|user| user.id == signed_in[0].id),
            "{signed_in:?}"
        );
        let users = store.list_users().await.unwrap();
        assert_eq!(users.len(), 1, "{users:?}");
        assert_eq!(users[0].id, signed_in[0].id);
        signed_in[0].clone()
    }

    #[tokio::test]
    async fn racing_first_sign_ins_of_one_identity_make_one_user() {
        let store = crate::store::SqliteStore::in_memory().await.unwrap();
        let identity = Identity {
            key: "github:42".into(),
            handle: "Ada".into(),
        };
        assert_eq!(eight_at_once(&store, &identity).await.name, "ada");
        // Deleted, the person signs in again as one new user, under another name, however many
        // sign-ins race to let go of the old claim.
        assert!(store.delete_user("ada").await.unwrap());
        retire_name(&store, "ada").await.unwrap();
        let again = eight_at_once(&store, &identity).await;
        assert_eq!(again.name, "ada-2");
        assert_eq!(user_for(&store, &identity).await.unwrap().id, again.id);
    }

    #[test]
    fn only_local_paths_are_followed_after_a_sign_in() {
        assert_eq!(local_path(Some("/#/labs")), "/#/labs");
        for elsewhere in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "x",
        ] {
            assert_eq!(local_path(Some(elsewhere)), "/", "{elsewhere}");
        }
        assert_eq!(local_path(None), "/");
    }
}
