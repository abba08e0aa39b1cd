//! Who is calling: bearer tokens, the admin token and the principal a request acts as.

use std::{io, path::Path, sync::Arc};

use berth_proto::token::Scope;
use sha2::{Digest, Sha256};

use crate::{
    cluster::Coordination,
    store::{Store, StoreError},
};

/// The owner name of sessions the admin creates; no user may take it.
pub const ADMIN_NAME: &str = "admin";

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Principal {
    pub name: String,
    pub admin: bool,
    /// What a user may do beyond their own sessions (the admin may do everything).
    #[serde(default)]
    pub role: berth_proto::user::Role,
    /// What an API token may do (`/api/v1/tokens`); `None`: everything its owner may (a login
    /// token, the admin token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<Scope>>,
}

impl Principal {
    pub fn admin() -> Self {
        Self {
            name: ADMIN_NAME.to_owned(),
            admin: true,
            role: berth_proto::user::Role::User,
            scopes: None,
        }
    }

    /// Whether this caller may keep classes: an instructor, or the admin.
    pub fn teaches(&self) -> bool {
        self.admin || self.role == berth_proto::user::Role::Instructor
    }

    /// A learner, as an instructor acts for them on their own sessions (`api/labs/classes.rs`).
    pub fn user(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            admin: false,
            role: berth_proto::user::Role::User,
            scopes: None,
        }
    }

    /// Why this caller may not make a request that needs `need` (`None`: full access).
    pub fn lacks(&self, need: Option<Scope>) -> Option<String> {
        let scopes = self.scopes.as_ref()?;
        let listed: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
        match need {
            Some(need) if scopes.contains(&need) => None,
            Some(need) => Some(format!(
                "this token's scopes ({}) do not include {need}, which this route needs",
                listed.join(", ")
            )),
            None => Some(format!(
                "this token is limited to {}; this route needs full access (a login token)",
                listed.join(", ")
            )),
        }
    }

    /// Whether this caller may see and act on a session owned by `owner`.
    pub fn may_access(&self, owner: &str) -> bool {
        self.admin || self.name == owner
    }
}

/// SHA-256 of a token, hex. Only hashes are stored or compared.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[derive(Debug, Clone)]
pub struct Authenticator {
    admin_token_hash: String,
    store: Arc<dyn Store>,
    /// Users this instance has authenticated, by token hash: while the store does not answer,
    /// they keep working in their running sessions. A token revoked or a user disabled
    /// meanwhile is known to the store only, so during an outage it still works here (a user
    /// disabled through this instance is forgotten at once: `forget`).
    known: Arc<std::sync::Mutex<std::collections::HashMap<String, Principal>>>,
}

impl Authenticator {
    pub fn new(admin_token: &str, store: Arc<dyn Store>) -> Self {
        Self {
            admin_token_hash: hash_token(admin_token),
            store,
            known: Arc::default(),
        }
    }

    /// The name of a token this instance has authenticated (`None`: never, or it failed).
    pub fn seen(&self, token: &str) -> Option<String> {
        let hash = hash_token(token);
        if hash == self.admin_token_hash {
            return Some(ADMIN_NAME.to_owned());
        }
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.get(&hash).map(|principal| principal.name.clone())
    }

    /// Drops what this instance remembers of `name`'s tokens (a user just disabled), so a
    /// store outage cannot let them back in.
    pub fn forget(&self, name: &str) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.retain(|_, principal| principal.name != name);
    }

    /// Whether `token` is the admin token (compared as hashes, as `authenticate` does).
    pub fn is_admin_token(&self, token: &str) -> bool {
        hash_token(token) == self.admin_token_hash
    }

    /// The principal a full-access token stands for (the admin's, a user's login token), or
    /// `None` for an unknown token or a scoped one: APIs that do not check scopes (E2B's, seed
    /// 003's) take only these.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, StoreError> {
        Ok(self
            .authenticate_scoped(token)
            .await?
            .filter(|principal| principal.scopes.is_none()))
    }

    /// An API token's principal, limited to its scopes: `None` when unknown or expired, or
    /// when its owner is gone.
    async fn by_api_token(&self, hash: &str) -> Result<Option<Principal>, StoreError> {
        let Some(record) = self.store.token_by_hash(hash).await? else {
            return Ok(None);
        };
        let token = record.token;
        let now = chrono::Utc::now();
        if token.expires_at.is_some_and(|at| at <= now) {
            return Ok(None);
        }
        let (admin, role) = if token.owner == ADMIN_NAME {
            (true, berth_proto::user::Role::User)
        } else {
            match self.store.user_by_name(&token.owner).await? {
                Some(user) if !user.disabled => (false, user.role),
                _ => return Ok(None),
            }
        };
        // To the minute: one write a minute per busy token, outside the request's path.
        if token
            .last_used_at
            .is_none_or(|at| now - at > chrono::TimeDelta::minutes(1))
        {
            let store = self.store.clone();
            tokio::spawn(async move {
                if let Err(err) = store.touch_token(&token.id, now).await {
                    tracing::debug!(%err, "a token's last use was not recorded");
                }
            });
        }
        // A token without scopes is a browser's sign-in (`login/`): everything its owner may.
        let scopes = (!token.scopes.is_empty()).then_some(token.scopes);
        Ok(Some(Principal {
            name: token.owner,
            admin,
            role,
            scopes,
        }))
    }

    /// The principal any bearer token stands for, scoped ones included (the main API, which
    /// checks scopes route by route), or `None` for an unknown token.
    pub async fn authenticate_scoped(&self, token: &str) -> Result<Option<Principal>, StoreError> {
        let hash = hash_token(token);
        // Comparing hashes, not tokens, keeps this comparison free of timing leaks about the token.
        if hash == self.admin_token_hash {
            return Ok(Some(Principal::admin()));
        }
        let found = match self.store.user_by_token_hash(&hash).await {
            Ok(found) => found,
            Err(err @ StoreError::Unavailable(_)) => {
                let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
                return known.get(&hash).cloned().map(Some).ok_or(err);
            }
            Err(err) => return Err(err),
        };
        let principal = match found {
            Some(user) if user.disabled => None,
            Some(user) => Some(Principal {
                name: user.name,
                admin: false,
                role: user.role,
                scopes: None,
            }),
            None => self.by_api_token(&hash).await?,
        };
        if let Some(principal) = &principal {
            self.known
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(hash, principal.clone());
        }
        Ok(principal)
    }
}

/// Short-lived, single-use tickets that stand in for a bearer token where a header cannot be
/// sent: a browser's WebSocket. A ticket is bound to one session and lives one minute, so it is
/// harmless in a URL or a log. They are kept by the store's coordination: one issued by any
/// instance is spent, once, on any instance.
#[derive(Debug, Clone)]
pub struct Tickets {
    coordination: Arc<dyn Coordination>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Ticket {
    principal: Principal,
    session_id: String,
}

pub const TICKET_LIFETIME: std::time::Duration = std::time::Duration::from_secs(60);

impl Tickets {
    pub fn new(coordination: Arc<dyn Coordination>) -> Self {
        Self { coordination }
    }

    pub async fn issue(
        &self,
        principal: Principal,
        session_id: &str,
    ) -> Result<String, StoreError> {
        let ticket = crate::ids::secret();
        let value = serde_json::to_string(&Ticket {
            principal,
            session_id: session_id.to_owned(),
        })
        .map_err(|err| StoreError::Corrupt(err.to_string()))?;
        self.coordination
            .put_ticket(&ticket, &value, TICKET_LIFETIME)
            .await?;
        Ok(ticket)
    }

    /// The principal a ticket was issued to, once: redeeming consumes it.
    pub async fn redeem(
        &self,
        ticket: &str,
        session_id: &str,
    ) -> Result<Option<Principal>, StoreError> {
        let Some(value) = self.coordination.take_ticket(ticket).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_str::<Ticket>(&value)
            .ok()
            .filter(|found| found.session_id == session_id)
            .map(|found| found.principal))
    }
}

/// Where the generated admin token is kept, readable by its owner only.
pub fn admin_token_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("admin-token")
}

/// The configured admin token, else the one generated into the data dir at an earlier start,
/// else a new one written there. Returns the token and whether it was generated just now.
pub fn load_or_generate_admin_token(
    data_dir: &Path,
    configured: Option<&str>,
) -> io::Result<(String, bool)> {
    if let Some(token) = configured.filter(|t| !t.trim().is_empty()) {
        return Ok((token.trim().to_owned(), false));
    }
    let path = admin_token_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok((token.trim().to_owned(), false)),
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let token = crate::ids::api_token();
    write_private(&path, &token)?;
    Ok((token, true))
}

fn write_private(path: &Path, contents: &str) -> io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tickets_are_single_use_and_bound_to_their_session() {
        let tickets = Tickets::new(Arc::new(crate::cluster::LocalCoordination::default()));
        let ticket = tickets.issue(Principal::admin(), "sone").await.unwrap();
        assert_eq!(tickets.redeem(&ticket, "stwo").await.unwrap(), None);
        let ticket = tickets.issue(Principal::admin(), "sone").await.unwrap();
        assert_eq!(
            tickets.redeem(&ticket, "sone").await.unwrap(),
            Some(Principal::admin())
        );
        assert_eq!(tickets.redeem(&ticket, "sone").await.unwrap(), None);
    }

    #[test]
    fn the_admin_token_is_generated_once_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (first, generated) = load_or_generate_admin_token(dir.path(), None).unwrap();
        assert!(generated);
        let (second, generated_again) = load_or_generate_admin_token(dir.path(), None).unwrap();
        assert_eq!(first, second);
        assert!(!generated_again);
        let (configured, _) = load_or_generate_admin_token(dir.path(), Some("from-env")).unwrap();
        assert_eq!(configured, "from-env");
    }

    #[tokio::test]
    async fn an_expired_token_or_one_whose_owner_is_gone_is_unknown() {
        use berth_proto::token::ApiToken;

        use crate::store::{SqliteStore, TokenRecord};
        let store = Arc::new(SqliteStore::in_memory().await.unwrap());
        let auth = Authenticator::new("admin-secret", store.clone());
        let now = chrono::Utc::now();
        for (id, owner, expires) in [
            ("t-live", "admin", Some(now + chrono::TimeDelta::hours(1))),
            ("t-old", "admin", Some(now - chrono::TimeDelta::seconds(1))),
            ("t-orphan", "nobody", None),
        ] {
            let token = ApiToken {
                id: id.into(),
                name: id.into(),
                owner: owner.into(),
                scopes: vec![Scope::Files],
                created_at: now,
                expires_at: expires,
                last_used_at: None,
            };
            let hash = hash_token(id);
            store.put_token(&TokenRecord { token, hash }).await.unwrap();
        }
        let live = auth.authenticate_scoped("t-live").await.unwrap().unwrap();
        assert_eq!(live.scopes, Some(vec![Scope::Files]));
        assert!(
            live.admin,
            "the admin's token acts as the admin within its scopes"
        );
        assert_eq!(
            auth.authenticate("t-live").await.unwrap(),
            None,
            "not full access"
        );
        assert_eq!(auth.authenticate_scoped("t-old").await.unwrap(), None);
        assert_eq!(auth.authenticate_scoped("t-orphan").await.unwrap(), None);
    }
}
