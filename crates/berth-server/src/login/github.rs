//! GitHub's OAuth web flow: authorize, exchange the code (with the PKCE verifier), then ask
//! the REST API who the token belongs to and, when `allowed_orgs` is set, their organisations.

use serde::Deserialize;

use super::{Identity, LoginError, Pending, challenge};
use crate::config::GithubAuthConfig;

#[derive(Debug)]
pub struct Github {
    config: GithubAuthConfig,
    http: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Debug, Deserialize)]
struct GithubUser {
    id: u64,
    login: String,
}

/// One of `/user/memberships/orgs`: private memberships included, unlike `/user/orgs`.
#[derive(Debug, Deserialize)]
struct Membership {
    organization: GithubOrg,
}

#[derive(Debug, Deserialize)]
struct GithubOrg {
    login: String,
}

impl Github {
    pub fn new(config: GithubAuthConfig, http: reqwest::Client) -> Self {
        Self { config, http }
    }

    pub fn authorize_url(&self, pending: &Pending, state: &str) -> String {
        let scope = if self.config.allowed_orgs.is_empty() {
            "read:user"
        } else {
            "read:user read:org"
        };
        let query = serde_urlencoded::to_string([
            ("client_id", self.config.client_id.as_str()),
            ("redirect_uri", &pending.redirect_uri),
            ("scope", scope),
            ("state", state),
            ("code_challenge", &challenge(&pending.verifier)),
            ("code_challenge_method", "S256"),
            ("allow_signup", "false"),
        ])
        .unwrap_or_default();
        format!("{}?{query}", self.config.authorize_url)
    }

    pub async fn identity(&self, pending: &Pending, code: &str) -> Result<Identity, LoginError> {
        let answer: TokenAnswer = self
            .http
            .post(&self.config.token_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&[
                ("client_id", self.config.client_id.as_str()),
                ("client_secret", &self.config.client_secret),
                ("code", code),
                ("redirect_uri", &pending.redirect_uri),
                ("code_verifier", &pending.verifier),
            ])
            .send()
            .await
            .map_err(|err| LoginError::Provider(format!("GitHub's token endpoint: {err}")))?
            .json()
            .await
            .map_err(|err| LoginError::Provider(format!("GitHub's token answer: {err}")))?;
        // GitHub answers a refused code with 200 and an `error` field.
        let token = match (answer.access_token, answer.error) {
            (Some(token), None) => token,
            (_, error) => {
                return Err(LoginError::Refused(
                    answer
                        .error_description
                        .or(error)
                        .unwrap_or_else(|| "no access token".into()),
                ));
            }
        };
        let user: GithubUser = self.api(&token, "/user").await?;
        let listed = |names: &[String]| names.iter().any(|n| n.eq_ignore_ascii_case(&user.login));
        let restricted =
            !self.config.allowed_orgs.is_empty() || !self.config.allowed_users.is_empty();
        if restricted && !listed(&self.config.allowed_users) {
            let member = if self.config.allowed_orgs.is_empty() {
                false
            } else {
                // A hundred active memberships: past that, `allowed_users` is the way.
                let path = "/user/memberships/orgs?state=active&per_page=100";
                let memberships: Vec<Membership> = self.api(&token, path).await?;
                memberships.iter().any(|membership| {
                    self.config
                        .allowed_orgs
                        .iter()
                        .any(|allowed| allowed.eq_ignore_ascii_case(&membership.organization.login))
                })
            };
            if !member {
                return Err(LoginError::NotAllowed(format!(
                    "GitHub user {}",
                    user.login
                )));
            }
        }
        Ok(Identity {
            key: format!("github:{}", user.id),
            handle: user.login,
        })
    }

    async fn api<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        path: &str,
    ) -> Result<T, LoginError> {
        let url = format!("{}{path}", self.config.api_url.trim_end_matches('/'));
        let request = self
            .http
            .get(&url)
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .header(reqwest::header::USER_AGENT, "berth");
        super::fetch_json(request, &format!("GitHub's API ({path})")).await
    }
}
