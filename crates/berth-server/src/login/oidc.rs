//! OpenID Connect's authorization code flow: discovery, the code exchanged with the PKCE
//! verifier, the ID token's signature checked against the provider's key set and its claims
//! (issuer, audience, expiry, nonce) against this sign-in.

use serde::Deserialize;
use tokio::sync::Mutex;

use super::{
    Identity, LoginError, Pending, challenge,
    jwt::{self, JwkSet, JwtError},
};
use crate::config::OidcAuthConfig;

/// Clocks of Berth and the provider may differ by this much.
const SKEW_SECONDS: i64 = 60;

#[derive(Debug)]
pub struct Oidc {
    config: OidcAuthConfig,
    http: reqwest::Client,
    /// Read at the first sign-in; read again when a token's key is not in it (rotation).
    discovered: Mutex<Option<Discovered>>,
}

#[derive(Debug, Clone, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Vec<String>,
}

#[derive(Debug, Clone)]
struct Discovered {
    metadata: Metadata,
    keys: JwkSet,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: i64,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    email: Option<String>,
    /// A boolean, or (some providers) the string `"true"`.
    #[serde(default)]
    email_verified: Option<serde_json::Value>,
    #[serde(default)]
    preferred_username: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn includes(&self, client_id: &str) -> bool {
        match self {
            Self::One(aud) => aud == client_id,
            Self::Many(auds) => auds.iter().any(|aud| aud == client_id),
        }
    }
}

impl Oidc {
    pub fn new(config: OidcAuthConfig, http: reqwest::Client) -> Self {
        Self {
            config,
            http,
            discovered: Mutex::new(None),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn label(&self) -> &str {
        self.config
            .display_name
            .as_deref()
            .unwrap_or(&self.config.name)
    }

    pub async fn authorize_url(
        &self,
        pending: &Pending,
        state: &str,
    ) -> Result<String, LoginError> {
        let metadata = self.discovered(false).await?.metadata;
        let query = serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", self.config.client_id.as_str()),
            ("redirect_uri", &pending.redirect_uri),
            ("scope", &self.config.scopes.join(" ")),
            ("state", state),
            ("nonce", &pending.nonce),
            ("code_challenge", &challenge(&pending.verifier)),
            ("code_challenge_method", "S256"),
        ])
        .unwrap_or_default();
        let separator = if metadata.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        Ok(format!(
            "{}{separator}{query}",
            metadata.authorization_endpoint
        ))
    }

    pub async fn identity(&self, pending: &Pending, code: &str) -> Result<Identity, LoginError> {
        let discovered = self.discovered(false).await?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &pending.redirect_uri),
            ("code_verifier", &pending.verifier),
            ("client_id", &self.config.client_id),
        ];
        let mut request = self.http.post(&discovered.metadata.token_endpoint);
        // The specification's default is HTTP Basic; a provider that lists only the post
        // method gets the secret in the form instead (RFC 6749 allows one method at a time).
        let methods = &discovered.metadata.token_endpoint_auth_methods_supported;
        let post_only = !methods.is_empty()
            && !methods.iter().any(|m| m == "client_secret_basic")
            && methods.iter().any(|m| m == "client_secret_post");
        request = if post_only {
            let mut with_secret = form.to_vec();
            with_secret.push(("client_secret", &self.config.client_secret));
            request.form(&with_secret)
        } else {
            request
                .basic_auth(
                    form_encode(&self.config.client_id),
                    Some(form_encode(&self.config.client_secret)),
                )
                .form(&form)
        };
        let response = request
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|err| LoginError::Provider(format!("the token endpoint: {err}")))?;
        let status = response.status();
        let answer: TokenAnswer = response.json().await.map_err(|err| {
            LoginError::Provider(format!("the token endpoint answered {status}: {err}"))
        })?;
        let id_token = match (answer.id_token, answer.error) {
            (Some(token), None) if status.is_success() => token,
            (_, error) => {
                return Err(LoginError::Refused(
                    answer
                        .error_description
                        .or(error)
                        .unwrap_or_else(|| format!("no ID token ({status})")),
                ));
            }
        };
        let claims = match jwt::verify(&id_token, &discovered.keys.keys) {
            Err(JwtError::UnknownKey) => {
                let fresh = self.discovered(true).await?;
                jwt::verify(&id_token, &fresh.keys.keys)
            }
            other => other,
        }
        .map_err(|err| LoginError::Refused(err.to_string()))?;
        let claims: Claims = serde_json::from_value(claims)
            .map_err(|err| LoginError::Refused(format!("the ID token's claims: {err}")))?;
        self.check(&claims, &discovered.metadata.issuer, pending)?;
        let handle = claims
            .preferred_username
            .clone()
            .or_else(|| {
                claims
                    .email
                    .as_deref()
                    .and_then(|email| email.split('@').next())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| claims.sub.clone());
        Ok(Identity {
            key: format!("oidc:{}:{}", self.config.name, claims.sub),
            handle,
        })
    }

    fn check(&self, claims: &Claims, issuer: &str, pending: &Pending) -> Result<(), LoginError> {
        let now = chrono::Utc::now().timestamp();
        let refused = |why: &str| Err(LoginError::Refused(format!("the ID token {why}")));
        if claims.iss != issuer {
            return refused("is from another issuer");
        }
        if !claims.aud.includes(&self.config.client_id) {
            return refused("is for another client");
        }
        if claims.exp + SKEW_SECONDS < now {
            return refused("has expired");
        }
        if claims.nonce.as_deref() != Some(pending.nonce.as_str()) {
            return refused("belongs to another sign-in (its nonce differs)");
        }
        let allowed = (&self.config.allowed_domains, &self.config.allowed_emails);
        if allowed.0.is_empty() && allowed.1.is_empty() {
            return Ok(());
        }
        let email_verified = match &claims.email_verified {
            Some(serde_json::Value::Bool(verified)) => *verified,
            Some(serde_json::Value::String(verified)) => verified == "true",
            _ => false,
        };
        let verified = claims
            .email
            .as_deref()
            .filter(|_| email_verified)
            .map(str::to_ascii_lowercase);
        let admitted = verified.as_deref().is_some_and(|email| {
            allowed.1.iter().any(|e| e.eq_ignore_ascii_case(email))
                || email.rsplit_once('@').is_some_and(|(_, domain)| {
                    allowed.0.iter().any(|d| d.eq_ignore_ascii_case(domain))
                })
        });
        if admitted {
            Ok(())
        } else {
            Err(LoginError::NotAllowed(verified.unwrap_or_else(|| {
                "an account without a verified email".into()
            })))
        }
    }

    async fn discovered(&self, refresh: bool) -> Result<Discovered, LoginError> {
        let mut kept = self.discovered.lock().await;
        if let Some(discovered) = kept.as_ref().filter(|_| !refresh) {
            return Ok(discovered.clone());
        }
        let issuer = self.config.issuer.trim_end_matches('/');
        let url = format!("{issuer}/.well-known/openid-configuration");
        let metadata: Metadata = self.fetch(&url).await?;
        if metadata.issuer.trim_end_matches('/') != issuer {
            return Err(LoginError::Provider(format!(
                "{url} names the issuer {:?}, not {issuer:?}",
                metadata.issuer
            )));
        }
        let keys: JwkSet = self.fetch(&metadata.jwks_uri).await?;
        let discovered = Discovered { metadata, keys };
        *kept = Some(discovered.clone());
        Ok(discovered)
    }

    async fn fetch<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, LoginError> {
        super::fetch_json(self.http.get(url), url).await
    }
}

/// RFC 6749 section 2.3.1: the client's id and secret are form-encoded before Basic.
fn form_encode(value: &str) -> String {
    serde_urlencoded::to_string([("", value)])
        .unwrap_or_default()
        .trim_start_matches('=')
        .to_owned()
}
