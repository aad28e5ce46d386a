//! The one HTTP error type: bad input becomes a 4xx with a JSON body naming the field;
//! internal failures become a logged 500 whose body says nothing of the internals.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tollgate_core::engine::RequestError;
use tollgate_core::ledger::LedgerError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_field",
            message: message.into(),
            field: Some(field.into()),
        }
    }

    pub fn with_field(mut self, field: &str) -> ApiError {
        self.field = Some(field.to_string());
        self
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// A failure that is ours, not the caller's: logged here, hidden from the body.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> ApiError {
        tracing::error!(%error, "{context}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error (see the service log)",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> ApiError {
        let message = error.to_string();
        match error {
            RequestError::UnknownExtension(_) => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "unknown_extension",
                message,
                field: Some("extension".into()),
            },
            RequestError::UnknownAccount { .. } => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "unknown_account",
                message,
                field: Some("extension".into()),
            },
            RequestError::Number(_) => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_number",
                message,
                field: Some("number".into()),
            },
            RequestError::Ledger(LedgerError::DuplicateCall(_)) => ApiError {
                status: StatusCode::CONFLICT,
                code: "duplicate_call",
                message,
                field: Some("call_id".into()),
            },
            RequestError::Ledger(LedgerError::UnknownCall(_)) => ApiError {
                status: StatusCode::NOT_FOUND,
                code: "unknown_call",
                message,
                field: Some("call_id".into()),
            },
            RequestError::BadCallId => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_field",
                message,
                field: Some("call_id".into()),
            },
            RequestError::BadPbxRef => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_field",
                message,
                field: Some("pbx_ref".into()),
            },
            RequestError::EndBeforeStart => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_field",
                message,
                field: Some("at".into()),
            },
        }
    }
}
