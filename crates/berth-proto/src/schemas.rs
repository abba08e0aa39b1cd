//! OpenAPI schemas serde's types cannot say by themselves: maps whose keys are checked.

use utoipa::openapi::schema::{ObjectBuilder, Type};

/// Environment variables: what `berth-server`'s `sessions::validate::env` accepts.
pub fn env() -> utoipa::openapi::Object {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[A-Za-z_][A-Za-z0-9_]*$")),
        ))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[^\\u0000]*$")),
        ))
        .max_properties(Some(128))
        .build()
}

/// A process's environment: what the kernel takes (no NUL anywhere, no `=` in a name).
pub fn process_env() -> utoipa::openapi::Object {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[^\\u0000=]+$")),
        ))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[^\\u0000]*$")),
        ))
        .build()
}

/// Labels: what `berth-server`'s `sessions::validate::labels` accepts.
pub fn labels() -> utoipa::openapi::Object {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")),
        ))
        .additional_properties(Some(ObjectBuilder::new().schema_type(Type::String)))
        .max_properties(Some(32))
        .build()
}

/// A webhook's event types: at least one of `EVENT_TYPES`, or `*`.
pub fn webhook_events() -> utoipa::openapi::schema::Array {
    let names = crate::webhook::EVENT_TYPES.iter().copied().chain(["*"]);
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(names)),
        )
        .min_items(Some(1))
        .build()
}
