//! The one place where domain errors become HTTP status codes.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use guard_user::{control::model::ErrorBody, engine::EngineError, verdicts::DynError};

use crate::state::ReloadError;

/// Every error answer: a status code and `{"error": "..."}`.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

pub fn bad_request(msg: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg)
}

pub fn internal(e: &dyn std::error::Error) -> ApiError {
    ApiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        guard_user::error_chain(e),
    )
}

impl From<DynError> for ApiError {
    fn from(e: DynError) -> ApiError {
        let code = match e {
            DynError::CoveredByAllow { .. }
            | DynError::Protected { .. }
            | DynError::VouchOverEntry { .. } => StatusCode::CONFLICT,
            DynError::NotOneAddress { .. } => StatusCode::BAD_REQUEST,
            DynError::BansFull { .. }
            | DynError::AllowsFull { .. }
            | DynError::VouchesFull { .. }
            | DynError::TooManyLengths { .. }
            | DynError::RemoteLengths { .. } => StatusCode::INSUFFICIENT_STORAGE,
            DynError::NotFound { .. } => StatusCode::NOT_FOUND,
            DynError::Kernel(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, guard_user::error_chain(&e))
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            EngineError::Verdicts(e) => e.into(),
            EngineError::NoSuchRule { .. } => {
                ApiError(StatusCode::NOT_FOUND, guard_user::error_chain(&e))
            }
            EngineError::NoRules => ApiError(StatusCode::CONFLICT, e.to_string()),
            other => internal(&other),
        }
    }
}

impl From<ReloadError> for ApiError {
    fn from(e: ReloadError) -> ApiError {
        let code = match e {
            ReloadError::Config(_) | ReloadError::Refused(_) => StatusCode::BAD_REQUEST,
            ReloadError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, e.to_string())
    }
}
