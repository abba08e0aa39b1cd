//! Values the control plane signs so it can trust them back without storing them: the CSRF
//! token of a browser login and preview links. The key is derived from the admin token, so it
//! survives restarts and rotating the admin token revokes every link and login at once.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone)]
pub struct Signer {
    key: [u8; 32],
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

/// What a preview token grants: one port of one session, until `expires` (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewGrant {
    pub session_id: String,
    pub port: u16,
    pub expires: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PreviewDenied {
    #[error("this preview link is not valid; ask the session's owner for a new one")]
    Invalid,
    #[error("this preview link has expired; ask the session's owner for a new one")]
    Expired,
}

/// Why a session's callback token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenDenied {
    #[error("this session token is not valid")]
    Invalid,
    #[error("this session token has expired; read the current one from the token file")]
    Expired,
}

impl Signer {
    pub fn from_secret(secret: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"berth signing key v1\0");
        hasher.update(secret.as_bytes());
        Self {
            key: hasher.finalize().into(),
        }
    }

    fn mac(&self, purpose: &str, message: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(message.as_bytes());
        mac
    }

    fn sign(&self, purpose: &str, message: &str) -> String {
        hex::encode(self.mac(purpose, message).finalize().into_bytes())
    }

    fn verify(&self, purpose: &str, message: &str, signature: &str) -> bool {
        hex::decode(signature)
            .is_ok_and(|bytes| self.mac(purpose, message).verify_slice(&bytes).is_ok())
    }

    /// The CSRF token that goes with a browser login made with `login_token`.
    pub fn csrf_token(&self, login_token: &str) -> String {
        self.sign("csrf", &crate::auth::hash_token(login_token))
    }

    pub fn csrf_matches(&self, login_token: &str, presented: &str) -> bool {
        self.verify("csrf", &crate::auth::hash_token(login_token), presented)
    }

    /// The `envdAccessToken` of an E2B sandbox: it lets its holder work in that one session as
    /// its owner (the E2B SDKs send it as `X-Access-Token`), and needs no storage.
    pub fn e2b_access_token(&self, session_id: &str) -> String {
        self.sign("e2b-envd", session_id)
    }

    pub fn e2b_access_token_matches(&self, session_id: &str, presented: &str) -> bool {
        self.verify("e2b-envd", session_id, presented)
    }

    /// A session's callback token (`berth_proto::callback`): `bst_{session}.{expires}.{signature}`.
    /// It needs no storage; whether its session still runs is checked where it is used.
    pub fn session_token(&self, session_id: &str, expires: i64) -> String {
        let message = format!("{session_id}.{expires}");
        let signature = self.sign("session-callback", &message);
        format!(
            "{}{message}.{signature}",
            berth_proto::callback::TOKEN_PREFIX
        )
    }

    /// The session and expiry (Unix seconds) a callback token carries, if this control plane
    /// signed it and it has not expired.
    pub fn check_session_token(&self, token: &str, now: i64) -> Result<(String, i64), TokenDenied> {
        let body = token
            .strip_prefix(berth_proto::callback::TOKEN_PREFIX)
            .ok_or(TokenDenied::Invalid)?;
        let (message, signature) = body.rsplit_once('.').ok_or(TokenDenied::Invalid)?;
        if !self.verify("session-callback", message, signature) {
            return Err(TokenDenied::Invalid);
        }
        let (session, expires) = message.split_once('.').ok_or(TokenDenied::Invalid)?;
        let expires: i64 = expires.parse().map_err(|_| TokenDenied::Invalid)?;
        if expires <= now {
            return Err(TokenDenied::Expired);
        }
        Ok((session.to_owned(), expires))
    }

    /// `{session}.{port}.{expires}.{signature}`: safe in a URL path and a host name's cookie.
    pub fn preview_token(&self, grant: &PreviewGrant) -> String {
        let message = format!("{}.{}.{}", grant.session_id, grant.port, grant.expires);
        let signature = self.sign("preview", &message);
        format!("{message}.{signature}")
    }

    /// The grant a preview token carries, if this control plane signed it and it has not expired.
    pub fn check_preview(&self, token: &str, now: i64) -> Result<PreviewGrant, PreviewDenied> {
        let (message, signature) = token.rsplit_once('.').ok_or(PreviewDenied::Invalid)?;
        if !self.verify("preview", message, signature) {
            return Err(PreviewDenied::Invalid);
        }
        let mut parts = message.split('.');
        let grant = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(id), Some(port), Some(expires), None) => PreviewGrant {
                session_id: id.to_owned(),
                port: port.parse().map_err(|_| PreviewDenied::Invalid)?,
                expires: expires.parse().map_err(|_| PreviewDenied::Invalid)?,
            },
            _ => return Err(PreviewDenied::Invalid),
        };
        if grant.expires <= now {
            return Err(PreviewDenied::Expired);
        }
        Ok(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(expires: i64) -> PreviewGrant {
        PreviewGrant {
            session_id: "s_abc".into(),
            port: 8000,
            expires,
        }
    }

    #[test]
    fn a_preview_token_round_trips_until_it_expires() {
        let signer = Signer::from_secret("admin");
        let token = signer.preview_token(&grant(100));
        assert_eq!(signer.check_preview(&token, 99), Ok(grant(100)));
        assert_eq!(
            signer.check_preview(&token, 100),
            Err(PreviewDenied::Expired)
        );
    }

    #[test]
    fn a_changed_or_foreign_preview_token_is_refused() {
        let signer = Signer::from_secret("admin");
        let token = signer.preview_token(&grant(100));
        let other_port = token.replacen(".8000.", ".8001.", 1);
        assert_eq!(
            signer.check_preview(&other_port, 0),
            Err(PreviewDenied::Invalid)
        );
        let foreign = Signer::from_secret("other").preview_token(&grant(100));
        assert_eq!(
            signer.check_preview(&foreign, 0),
            Err(PreviewDenied::Invalid)
        );
        assert_eq!(signer.check_preview("junk", 0), Err(PreviewDenied::Invalid));
    }

    #[test]
    fn a_session_token_names_its_session_until_it_expires_and_cannot_be_changed() {
        let signer = Signer::from_secret("admin");
        let token = signer.session_token("sabc", 100);
        assert!(token.starts_with("bst_sabc.100."), "{token}");
        assert_eq!(
            signer.check_session_token(&token, 99),
            Ok(("sabc".into(), 100))
        );
        assert_eq!(
            signer.check_session_token(&token, 100),
            Err(TokenDenied::Expired)
        );
        let other = token.replacen("sabc", "sabd", 1);
        assert_eq!(
            signer.check_session_token(&other, 0),
            Err(TokenDenied::Invalid)
        );
        let longer = token.replacen(".100.", ".999.", 1);
        assert_eq!(
            signer.check_session_token(&longer, 0),
            Err(TokenDenied::Invalid)
        );
        let foreign = Signer::from_secret("other").session_token("sabc", 100);
        assert_eq!(
            signer.check_session_token(&foreign, 0),
            Err(TokenDenied::Invalid)
        );
        // A preview token's signature is for another purpose.
        let preview = signer.preview_token(&grant(100));
        assert_eq!(
            signer.check_session_token(&format!("bst_{preview}"), 0),
            Err(TokenDenied::Invalid)
        );
    }

    #[test]
    fn csrf_tokens_belong_to_one_login() {
        let signer = Signer::from_secret("admin");
        let csrf = signer.csrf_token("user-token");
        assert!(signer.csrf_matches("user-token", &csrf));
        assert!(!signer.csrf_matches("other-token", &csrf));
        assert!(!signer.csrf_matches("user-token", "00"));
    }
}
