//! `POST /internal/v1/calls`: lifecycle calls from the other instances on the store, run here
//! when this instance leads. Not part of the public API (not in the OpenAPI document): only
//! instances that share the admin secret hold the key.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use berth_proto::{ErrorBody, ErrorCode};

use super::{AppState, error::ApiError};
use crate::{
    cluster::{Call, KEY_HEADER, WireAnswer, key_matches},
    sessions::SessionError,
};

pub async fn calls(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let presented = headers
        .get(KEY_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !key_matches(&s.cluster_key, presented) {
        return ApiError::unauthorized().into_response();
    }
    let call: Call = match serde_json::from_slice(&body) {
        Ok(call) => call,
        Err(err) => {
            return ApiError::coded(ErrorCode::InvalidJson, format!("a lifecycle call: {err}"))
                .into_response();
        }
    };
    match s.sessions.serve(call).await {
        Ok(answer) => Json(WireAnswer::from(answer)).into_response(),
        // The sender asks the leader of the moment again.
        Err(err @ SessionError::NotLeader) => (
            StatusCode::MISDIRECTED_REQUEST,
            Json(ErrorBody::new(ErrorCode::StoreUnavailable, err.to_string())),
        )
            .into_response(),
        Err(err) => ApiError::from(err).into_response(),
    }
}
