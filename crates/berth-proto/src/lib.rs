//! Wire types shared by every Berth component.
//!
//! Only data lives here: no I/O, no logic beyond (de)serialisation and small validations that
//! both sides of a connection must agree on. The control plane derives its OpenAPI document
//! from these types (feature `openapi`), so a change here is a change of the public API.

pub mod agent;
pub mod audit;
pub mod callback;
pub mod docker;
pub mod error;
pub mod files;
pub mod home;
pub mod json;
pub mod lab;
pub mod pool;
pub mod ports;
pub mod process;
pub mod queue;
#[cfg(feature = "openapi")]
pub mod schemas;
pub mod session;
pub mod snapshot;
pub mod template;
pub mod token;
pub mod user;
pub mod webhook;

pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use session::{
    CreateSession, ExtendSession, Keepalive, Session, SessionList, SessionState, Timeline,
    TimelineEvent,
};
pub use template::{Egress, Template, TemplateList, TemplateNetwork};
pub use user::{CreateUser, UserCreated};
