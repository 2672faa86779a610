//! Errors as FHIR clients see them: an HTTP status and an OperationOutcome.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir::{IssueType, Severity, operation_outcome};
use store::StoreError;

use crate::format::FHIR_JSON;

/// A failed request.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: IssueType,
    pub diagnostics: String,
    /// A full OperationOutcome to send instead of the single issue above (validation).
    pub outcome: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: IssueType, diagnostics: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            diagnostics: diagnostics.into(),
            outcome: None,
        }
    }

    /// An error answered with a whole OperationOutcome.
    pub fn with_outcome(
        status: StatusCode,
        code: IssueType,
        outcome: serde_json::Value,
    ) -> ApiError {
        ApiError {
            status,
            code,
            diagnostics: String::new(),
            outcome: Some(outcome),
        }
    }

    pub fn bad_request(diagnostics: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, IssueType::Invalid, diagnostics)
    }

    pub fn not_found(diagnostics: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, IssueType::NotFound, diagnostics)
    }

    /// 412: a conditional interaction's criteria matched more resources than it can act on.
    pub fn multiple_matches(diagnostics: impl Into<String>) -> ApiError {
        let diagnostics = diagnostics.into();
        let outcome = serde_json::json!({
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "error",
                "code": "multiple-matches",
                "diagnostics": diagnostics,
            }]
        });
        ApiError {
            status: StatusCode::PRECONDITION_FAILED,
            code: IssueType::Conflict,
            diagnostics,
            outcome: Some(outcome),
        }
    }

    pub fn not_supported(status: StatusCode, diagnostics: impl Into<String>) -> ApiError {
        ApiError::new(status, IssueType::NotSupported, diagnostics)
    }
}

impl From<search::SearchError> for ApiError {
    fn from(error: search::SearchError) -> ApiError {
        let code = match error {
            search::SearchError::UnknownParameter { .. } => IssueType::NotSupported,
            search::SearchError::BadValue { .. } => IssueType::Invalid,
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, error.to_string())
    }
}

/// 503 with an OperationOutcome of code `transient`: the request may succeed later,
/// or elsewhere.
fn unavailable(diagnostics: &str) -> ApiError {
    let outcome = serde_json::json!({
        "resourceType": "OperationOutcome",
        "issue": [{
            "severity": "error",
            "code": "transient",
            "diagnostics": diagnostics,
        }]
    });
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: IssueType::Exception,
        diagnostics: diagnostics.into(),
        outcome: Some(outcome),
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::NotFound => ApiError::not_found(error.to_string()),
            StoreError::VersionMismatch { .. } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                IssueType::Conflict,
                error.to_string(),
            ),
            StoreError::Invalid(message) => ApiError::bad_request(message),
            StoreError::ReadOnly(_) => {
                tracing::warn!(%error, "write refused by a read-only database");
                unavailable(
                    "the record store is read-only here (a read replica): nothing was written; \
                     send writes to the primary server",
                )
            }
            StoreError::Unavailable(_) => {
                tracing::error!(%error, "store unavailable");
                unavailable("the record store is unavailable; try again shortly")
            }
            StoreError::Config(_) | StoreError::Backend(_) => {
                tracing::error!(%error, "store failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    IssueType::Exception,
                    "the record store failed; the request was not applied",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let outcome = self
            .outcome
            .unwrap_or_else(|| operation_outcome(Severity::Error, self.code, &self.diagnostics));
        let body = serde_json::to_string(&outcome).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}
