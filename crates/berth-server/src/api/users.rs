//! `/api/v1/users`.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::IntoResponse,
};
use berth_proto::{
    CreateUser, ErrorBody, UserCreated,
    user::{UpdateUser, User, UserList},
};
use chrono::Utc;

use super::{AppState, error::ApiError, extract::ApiJson};
use crate::{
    auth::{ADMIN_NAME, Principal, hash_token},
    config::HomeMode,
    ids,
    sessions::SessionError,
    store::{SessionFilter, StateScope, UserRecord},
};

/// Create a user and its API token (admin only). The token is shown in this answer only.
#[utoipa::path(
    post, path = "/api/v1/users", tag = "users", operation_id = "create_user",
    request_body = CreateUser,
    responses(
        (status = 201, body = UserCreated),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Principal,
    ApiJson(request): ApiJson<CreateUser>,
) -> Result<impl IntoResponse, ApiError> {
    if !caller.admin {
        return Err(ApiError::forbidden("only the admin can create users"));
    }
    let name = request.name;
    let well_formed = (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !well_formed {
        return Err(ApiError::invalid_request(format!(
            "user name {name:?} is invalid: 1 to 32 of a-z, 0-9, '-', '_', starting with a letter or digit"
        )));
    }
    if name == ADMIN_NAME {
        return Err(ApiError::coded(
            berth_proto::ErrorCode::Conflict,
            "the name admin is reserved",
        ));
    }
    if crate::login::name_retired(state.store.as_ref(), &name).await? {
        return Err(ApiError::coded(
            berth_proto::ErrorCode::Conflict,
            format!(
                "the name {name} belonged to a deleted user, whose ended sessions and \
                 snapshots still carry it; pick another"
            ),
        ));
    }
    let token = ids::api_token();
    let user = UserRecord {
        id: ids::user_id(),
        name,
        token_hash: hash_token(&token),
        created_at: Utc::now(),
        role: request.role,
        disabled: false,
    };
    state.store.insert_user(&user).await?;
    let created = UserCreated {
        id: user.id,
        name: user.name,
        role: user.role,
        token,
        created_at: user.created_at,
    };
    Ok((StatusCode::CREATED, Json(created)))
}

/// Every user, without their tokens (admin only).
#[utoipa::path(
    get, path = "/api/v1/users", tag = "users", operation_id = "list_users",
    responses((status = 200, body = UserList), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Principal,
) -> Result<Json<UserList>, ApiError> {
    if !caller.admin {
        return Err(ApiError::forbidden("only the admin can list users"));
    }
    let users = state
        .store
        .list_users()
        .await?
        .into_iter()
        .map(view)
        .collect();
    Ok(Json(UserList { users }))
}

/// Change a user's role or disable them (admin only): `instructor` may keep classes; a
/// disabled user's sessions stop and their tokens and logins are refused until enabled again.
#[utoipa::path(
    patch, path = "/api/v1/users/{name}", tag = "users", operation_id = "update_user",
    params(("name" = String, Path)),
    request_body = UpdateUser,
    responses(
        (status = 200, body = User),
        (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Principal,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<UpdateUser>,
) -> Result<Json<User>, ApiError> {
    if !caller.admin {
        return Err(ApiError::forbidden("only the admin can change users"));
    }
    let user = state.store.update_user(&name, &request).await?;
    if user.disabled {
        state.auth.forget(&user.name);
        end_sessions_of(&state, &user.name).await?;
    }
    Ok(Json(view(user)))
}

/// Delete a user (admin only): their sessions and queued creates end, their tokens, webhooks,
/// callback state, sign-in links and persistent homes go. Their snapshots and ended sessions
/// stay (the admin's to delete), so the name is never given to anyone again.
#[utoipa::path(
    delete, path = "/api/v1/users/{name}", tag = "users", operation_id = "delete_user",
    params(("name" = String, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Principal,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !caller.admin {
        return Err(ApiError::forbidden("only the admin can delete users"));
    }
    if state.store.user_by_name(&name).await?.is_none() {
        return Err(ApiError::not_found(format!("user {name}")));
    }
    // Disabled first, so nothing of theirs starts while the rest goes.
    let disable = UpdateUser {
        role: None,
        disabled: Some(true),
    };
    state.store.update_user(&name, &disable).await?;
    state.auth.forget(&name);
    end_sessions_of(&state, &name).await?;
    if state
        .templates
        .values()
        .any(|t| t.home == HomeMode::Persistent)
    {
        state.sessions.delete_user_homes(&name).await?;
    }
    for token in state.store.list_tokens(Some(&name)).await? {
        state.store.delete_token(&token.token.id).await?;
    }
    for hook in state.store.list_webhooks().await? {
        if hook.webhook.owner.as_deref() == Some(name.as_str()) {
            state.store.delete_webhook(&hook.webhook.id).await?;
        }
    }
    state
        .store
        .clear_state(&StateScope::User(name.clone()))
        .await?;
    // Retired before the user goes: a sign-in meanwhile cannot take the name.
    crate::login::retire_name(state.store.as_ref(), &name).await?;
    crate::login::forget_identities(state.store.as_ref(), &name).await?;
    state.store.delete_user(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends every session `owner` keeps (hibernated ones too) and gives up their queued creates,
/// as the admin would one by one. A session in the middle of hibernating or waking is asked
/// again until it can be deleted; the others are deleted all the same when one fails.
async fn end_sessions_of(state: &AppState, owner: &str) -> Result<(), ApiError> {
    let capacity = state.sessions.capacity().await?;
    for queued in capacity.queued.into_iter().filter(|q| q.owner == owner) {
        match state
            .sessions
            .cancel_queued(Principal::admin(), queued.ticket)
            .await
        {
            Ok(()) | Err(SessionError::NotFound(_)) => {}
            Err(err) => return Err(err.into()),
        }
    }
    let filter = SessionFilter {
        owner: Some(owner.to_owned()),
        ..SessionFilter::kept()
    };
    let mut first_error = None;
    for session in state.store.list_sessions(&filter).await? {
        let mut tries = 0;
        loop {
            let deleted = state
                .sessions
                .delete(Principal::admin(), session.id.clone())
                .await;
            match deleted {
                Ok(()) | Err(SessionError::NotFound(_)) => break,
                Err(SessionError::Unavailable { .. }) if tries < UNAVAILABLE_TRIES => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                Err(err) => {
                    first_error.get_or_insert(err);
                    break;
                }
            }
        }
    }
    first_error.map_or(Ok(()), |err| Err(err.into()))
}

/// How often a session between states (hibernating, waking) is asked again, half a second
/// apart, before a user's removal gives up on it.
const UNAVAILABLE_TRIES: u32 = 120;

fn view(user: UserRecord) -> User {
    User {
        id: user.id,
        name: user.name,
        role: user.role,
        created_at: user.created_at,
        disabled: user.disabled,
    }
}
