//! Extractors: what every FHIR request carries besides its body, parsed and checked
//! once, so handlers only extract, call the store, and answer.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use fhir::{definitions, is_valid_id};
use privacy::Principal;

use crate::error::ApiError;
use crate::format::{Output, negotiate};
use crate::response::{Return, parse_etag, prefer_return};

/// The request's query, negotiated output, `Prefer` and `If-Match`.
pub struct FhirRequest {
    pub params: Vec<(String, String)>,
    pub output: Output,
    pub prefer: Return,
    /// The version `If-Match` demands.
    pub if_match: Option<u64>,
    pub headers: HeaderMap,
    /// Who asks (`auth::authenticate` put it there; without it, nobody: every access
    /// check refuses).
    pub principal: Arc<Principal>,
}

impl<S: Send + Sync> FromRequestParts<S> for FhirRequest {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<FhirRequest, ApiError> {
        let params: Vec<(String, String)> = parts
            .uri
            .query()
            .map(|raw| {
                form_urlencoded::parse(raw.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let output = negotiate(&parts.headers, &params)?;
        let prefer = prefer_return(&parts.headers);
        let if_match = match parts.headers.get(axum::http::header::IF_MATCH) {
            None => None,
            Some(value) => {
                let text = value.to_str().unwrap_or("").trim();
                Some(parse_etag(text).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "If-Match {text:?} is not a version ETag such as W/\"3\""
                    ))
                })?)
            }
        };
        let principal = parts
            .extensions
            .get::<Arc<Principal>>()
            .cloned()
            .unwrap_or_else(|| Arc::new(Principal::anonymous()));
        Ok(FhirRequest {
            principal,
            params,
            output,
            prefer,
            if_match,
            headers: parts.headers.clone(),
        })
    }
}

/// 404 unless `name` is an R4 resource type.
pub fn check_type(name: &str) -> Result<(), ApiError> {
    if definitions().is_resource_type(name) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "{name:?} is not a FHIR R4 resource type"
        )))
    }
}

/// 400 unless `id` is a valid FHIR id.
pub fn check_id(id: &str) -> Result<(), ApiError> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{id:?} is not a valid FHIR id ([A-Za-z0-9-.]{{1,64}})"
        )))
    }
}

async fn path_segments(parts: &mut Parts) -> Result<Vec<String>, ApiError> {
    Path::<Vec<String>>::from_request_parts(parts, &())
        .await
        .map(|Path(segments)| segments)
        .map_err(|rejection| ApiError::bad_request(format!("bad path: {rejection}")))
}

/// `/{type}`: a known resource type.
pub struct TypePath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for TypePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<TypePath, ApiError> {
        let mut segments = path_segments(parts).await?.into_iter();
        let resource_type = segments.next().unwrap_or_default();
        check_type(&resource_type)?;
        Ok(TypePath(resource_type))
    }
}

/// `/{type}/{id}`: a known resource type and a valid id.
pub struct InstancePath {
    pub resource_type: String,
    pub id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for InstancePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<InstancePath, ApiError> {
        let mut segments = path_segments(parts).await?.into_iter();
        let resource_type = segments.next().unwrap_or_default();
        let id = segments.next().unwrap_or_default();
        check_type(&resource_type)?;
        check_id(&id)?;
        Ok(InstancePath { resource_type, id })
    }
}

/// `/{type}/{id}/_history/{version}`.
pub struct VersionPath {
    pub resource_type: String,
    pub id: String,
    pub version: u64,
}

impl<S: Send + Sync> FromRequestParts<S> for VersionPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<VersionPath, ApiError> {
        let mut segments = path_segments(parts).await?.into_iter();
        let resource_type = segments.next().unwrap_or_default();
        let id = segments.next().unwrap_or_default();
        let version = segments.next().unwrap_or_default();
        check_type(&resource_type)?;
        check_id(&id)?;
        let version = version
            .parse()
            .map_err(|_| ApiError::bad_request(format!("{version:?} is not a version number")))?;
        Ok(VersionPath {
            resource_type,
            id,
            version,
        })
    }
}

/// `/{compartment}/{id}/{type}`: a compartment's resources of one type (`*`: of every type).
pub struct CompartmentPath {
    pub compartment: String,
    pub id: String,
    /// `None` for `*`.
    pub resource_type: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for CompartmentPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<CompartmentPath, ApiError> {
        let mut segments = path_segments(parts).await?.into_iter();
        let compartment = segments.next().unwrap_or_default();
        let id = segments.next().unwrap_or_default();
        let resource_type = segments.next().unwrap_or_default();
        check_type(&compartment)?;
        check_id(&id)?;
        let resource_type = if resource_type == "*" {
            None
        } else {
            check_type(&resource_type)?;
            Some(resource_type)
        };
        Ok(CompartmentPath {
            compartment,
            id,
            resource_type,
        })
    }
}
