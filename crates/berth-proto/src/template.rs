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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TemplateList {
    pub templates: Vec<Template>,
}
