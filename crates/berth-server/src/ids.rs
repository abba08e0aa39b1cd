//! Random identifiers and secrets.

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// `len` random characters from a lowercase base32 alphabet: safe in container names, DNS
/// labels (`session-<id>` on Swarm) and URLs.
fn random_base32(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    // The OS random source failing means the machine is unusable; there is nothing to recover.
    getrandom::fill(&mut bytes).expect("the OS random number generator failed");
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
        .collect()
}

/// `s` + 12 characters: 60 random bits, plenty for sessions that are never enumerable anyway
/// (every lookup is authorised).
pub fn session_id() -> String {
    format!("s{}", random_base32(12))
}

/// A named snapshot: `k` + 12 characters, usable as an image tag.
pub fn snapshot_id() -> String {
    format!("k{}", random_base32(12))
}

pub fn user_id() -> String {
    format!("u{}", random_base32(12))
}

/// An attempt at a lab: `a` + 12 characters.
pub fn attempt_id() -> String {
    format!("a{}", random_base32(12))
}

/// A class: `c` + 12 characters.
pub fn class_id() -> String {
    format!("c{}", random_base32(12))
}

/// One run of a control plane, as the lifecycle lease names its holder: `i` + 12 characters.
pub fn instance_id() -> String {
    format!("i{}", random_base32(12))
}

/// 160 random bits: agent secrets, WebSocket and queue tickets.
pub fn secret() -> String {
    random_base32(32)
}

/// An API token: `berth_` + 260 random bits.
pub fn api_token() -> String {
    format!("berth_{}", random_base32(52))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_dns_safe_and_distinct() {
        let a = session_id();
        let b = session_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 13);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
            "{a}"
        );
        assert!(api_token().starts_with("berth_"));
    }
}
