//! Templates: named recipes for sessions, defined in the control plane's config.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A template as the API shows it (`GET /api/v1/templates`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Template {
    pub name: String,
    pub image: String,
    pub memory_mb: u64,
    pub cpus: f64,
    pub pids: i64,
    pub ttl_seconds: u64,
    pub max_ttl_seconds: u64,
    pub env: BTreeMap<String, String>,
    /// What the template's sessions may reach. Defaulted so a newer client reads an older server.
    #[serde(default)]
    pub network: TemplateNetwork,
    /// The user's `/home/user` outlives their sessions (`home = "persistent"`): one session of
    /// theirs at a time, listed at `GET /api/v1/homes`.
    #[serde(default)]
    pub persistent_home: bool,
}

/// A template's network policy (`[templates.NAME.network]` in the config). Whatever it says,
/// a session never reaches the host, link-local addresses (cloud metadata) or other sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TemplateNetwork {
    pub egress: Egress,
    /// With `egress = "allow"`, the only destinations: `CIDR` (any port) or `CIDR:port` (TCP
    /// and UDP).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
}

/// Where a session may open connections to, beyond what is always blocked.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Egress {
    /// Anywhere else: the internet.
    #[default]
    Open,
    /// Nowhere: no outbound connection at all.
    Deny,
    /// Only the template's `allow` list.
    Allow,
}

impl Egress {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Deny => "deny",
            Self::Allow => "allow",
        }
    }
}

impl std::fmt::Display for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TemplateList {
    pub templates: Vec<Template>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_from_a_server_without_network_policies_reads_as_open() {
        let json = r#"{"name":"t","image":"i","memory_mb":1,"cpus":1.0,"pids":1,
            "ttl_seconds":1,"max_ttl_seconds":1,"env":{}}"#;
        let template: Template = serde_json::from_str(json).unwrap();
        assert_eq!(template.network.egress, Egress::Open);
    }
}
