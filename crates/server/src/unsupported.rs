//! Interactions that later work brings; until then they say so plainly.

use axum::http::StatusCode;
use axum::response::Response;

use crate::error::ApiError;
use crate::extract::{FhirRequest, TypePath};

pub(crate) async fn search(_: FhirRequest, _: TypePath) -> Result<Response, ApiError> {
    Err(ApiError::not_supported(
        StatusCode::NOT_IMPLEMENTED,
        "search is not supported yet; read resources by id or use _history",
    ))
}
