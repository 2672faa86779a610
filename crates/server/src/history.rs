//! History at instance, type and system level, as `history` Bundles.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use serde_json::value::RawValue;
use store::{HistoryPage, HistoryQuery, HistoryScope, Instant, Method, Version};

use crate::error::ApiError;
use crate::extract::{FhirRequest, InstancePath, TypePath};
use crate::response::json_response;
use crate::{AppState, Limits};

pub(crate) async fn system(
    State(state): State<AppState>,
    request: FhirRequest,
) -> Result<Response, ApiError> {
    respond(state, HistoryScope::System, request).await
}

pub(crate) async fn type_level(
    State(state): State<AppState>,
    request: FhirRequest,
    TypePath(resource_type): TypePath,
) -> Result<Response, ApiError> {
    respond(state, HistoryScope::Type(resource_type), request).await
}

pub(crate) async fn instance(
    State(state): State<AppState>,
    request: FhirRequest,
    path: InstancePath,
) -> Result<Response, ApiError> {
    let InstancePath { resource_type, id } = path;
    let current = state.store.read(&resource_type, &id).await?;
    let principal = &request.principal;
    let hidden = match principal.patient().filter(|_| !principal.unchecked) {
        Some(patient) => current
            .as_ref()
            .is_some_and(|version| !crate::access::visible(patient, version)),
        None => false,
    };
    let view = crate::restrict::View::of(&state, principal).await?;
    let hidden = hidden || current.as_ref().is_some_and(|version| !view.sees(version));
    if current.is_none() || hidden {
        return Err(ApiError::not_found(format!(
            "{resource_type}/{id} is not known"
        )));
    }
    respond(state, HistoryScope::Instance(resource_type, id), request).await
}

/// The parameters a history request may carry, parsed.
struct HistoryParams {
    query: HistoryQuery,
    /// The parameters to repeat in paging links.
    carried: Vec<(String, String)>,
}

fn parse(
    scope: HistoryScope,
    pairs: &[(String, String)],
    limits: &Limits,
) -> Result<HistoryParams, ApiError> {
    let mut query = HistoryQuery {
        scope,
        since: None,
        at: None,
        before: None,
        count: limits.page_size_default,
    };
    let mut carried = Vec::new();
    for (name, value) in pairs {
        match name.as_str() {
            "_count" => {
                let count: usize = value.parse().map_err(|_| {
                    ApiError::bad_request(format!("_count must be a whole number, not {value:?}"))
                })?;
                query.count = count.min(limits.page_size_max);
                carried.push((name.clone(), query.count.to_string()));
            }
            "_since" => {
                let period = Instant::parse_fhir_period(value)
                    .map_err(|error| ApiError::bad_request(format!("_since: {error}")))?;
                query.since = Some(period.start);
                carried.push((name.clone(), value.clone()));
            }
            "_at" => {
                let period = Instant::parse_fhir_period(value)
                    .map_err(|error| ApiError::bad_request(format!("_at: {error}")))?;
                query.at = Some(period);
                carried.push((name.clone(), value.clone()));
            }
            "_cursor" => {
                let before = value.parse().map_err(|_| {
                    ApiError::bad_request(format!("_cursor {value:?} is not a paging cursor"))
                })?;
                query.before = Some(before);
            }
            "_format" | "_pretty" => carried.push((name.clone(), value.clone())),
            other => {
                return Err(ApiError::not_supported(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "history does not support the parameter {other:?} (supported: _count, _since, _at)"
                    ),
                ));
            }
        }
    }
    Ok(HistoryParams { query, carried })
}

async fn respond(
    state: AppState,
    scope: HistoryScope,
    request: FhirRequest,
) -> Result<Response, ApiError> {
    let path = match &scope {
        HistoryScope::System => "_history".to_string(),
        HistoryScope::Type(resource_type) => format!("{resource_type}/_history"),
        HistoryScope::Instance(resource_type, id) => format!("{resource_type}/{id}/_history"),
    };
    // A principal limited to one patient sees the history of that patient's resources
    // one by one; a type's or the system's history would mix in everyone else's.
    let principal = &request.principal;
    let patient = principal.patient().filter(|_| !principal.unchecked);
    if patient.is_some() && !matches!(scope, HistoryScope::Instance(..)) {
        return Err(crate::auth::forbidden(
            "a token limited to one patient reads the history of one resource at a time".into(),
        ));
    }
    let HistoryParams { query, carried } = parse(scope, &request.params, &state.config.limits)?;
    let before = query.before;
    let mut page = state.store.history(query).await?;
    if let Some(patient) = patient {
        // Versions from before the resource entered the compartment stay out of sight.
        page.versions
            .retain(|version| crate::access::visible(patient, version));
    }
    // Versions that carry a label the principal may not see, or that a consent denies
    // it, stay out of sight too.
    let view = crate::restrict::View::of(&state, principal).await?;
    page.versions.retain(|version| view.sees(version));
    // The store's total counts every version; where some may be out of sight, it is
    // given only when this page is the whole history (then it is what the page shows),
    // so that the count gives no hint of what is hidden on other pages.
    let total = if patient.is_none() && view.hides_nothing() {
        Some(page.total)
    } else if before.is_none() && page.next_cursor.is_none() {
        Some(page.versions.len() as u64)
    } else {
        None
    };
    let base = &state.config.base_url;
    let text = bundle(base, &path, &carried, before, &page, total)
        .map_err(|error| ApiError::bad_request(format!("cannot build the history: {error}")))?;
    Ok(json_response(StatusCode::OK, text, request.output))
}

#[derive(Serialize)]
struct Bundle<'a> {
    #[serde(rename = "resourceType")]
    resource_type: &'static str,
    meta: BundleMeta,
    #[serde(rename = "type")]
    bundle_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
    link: Vec<Link>,
    entry: Vec<Entry<'a>>,
}

/// `Bundle.meta`, as history and search Bundles carry it.
#[derive(Serialize)]
pub(crate) struct BundleMeta {
    #[serde(rename = "lastUpdated")]
    pub(crate) last_updated: String,
}

/// One `Bundle.link`.
#[derive(Serialize)]
pub(crate) struct Link {
    pub(crate) relation: &'static str,
    pub(crate) url: String,
}

#[derive(Serialize)]
struct Entry<'a> {
    #[serde(rename = "fullUrl")]
    full_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<&'a RawValue>,
    request: EntryRequest,
    response: EntryResponse,
}

#[derive(Serialize)]
struct EntryRequest {
    method: &'static str,
    url: String,
}

#[derive(Serialize)]
struct EntryResponse {
    status: &'static str,
    etag: String,
    #[serde(rename = "lastModified")]
    last_modified: String,
}

fn link_url(base: &str, path: &str, carried: &[(String, String)], cursor: Option<i64>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in carried {
        query.append_pair(name, value);
    }
    if let Some(cursor) = cursor {
        query.append_pair("_cursor", &cursor.to_string());
    }
    let query = query.finish();
    if query.is_empty() {
        format!("{base}/{path}")
    } else {
        format!("{base}/{path}?{query}")
    }
}

fn entry<'a>(base: &str, version: &'a Version) -> Result<Entry<'a>, serde_json::Error> {
    let resource = match &version.body {
        Some(body) => Some(serde_json::from_str::<&RawValue>(body)?),
        None => None,
    };
    let instance_url = format!("{}/{}", version.resource_type, version.id);
    let (url, status) = match version.method {
        Method::Create => (version.resource_type.clone(), "201 Created"),
        Method::Delete => (instance_url, "204 No Content"),
        Method::Update | Method::Patch if version.created => (instance_url, "201 Created"),
        Method::Update | Method::Patch => (instance_url, "200 OK"),
    };
    Ok(Entry {
        full_url: format!("{base}/{}/{}", version.resource_type, version.id),
        resource,
        request: EntryRequest {
            method: version.method.verb(),
            url,
        },
        response: EntryResponse {
            status,
            etag: version.etag(),
            last_modified: version.last_updated.to_fhir(),
        },
    })
}

fn bundle(
    base: &str,
    path: &str,
    carried: &[(String, String)],
    before: Option<i64>,
    page: &HistoryPage,
    total: Option<u64>,
) -> Result<String, serde_json::Error> {
    let mut link = vec![Link {
        relation: "self",
        url: link_url(base, path, carried, before),
    }];
    if before.is_some() {
        link.push(Link {
            relation: "first",
            url: link_url(base, path, carried, None),
        });
    }
    if let Some(cursor) = page.next_cursor {
        link.push(Link {
            relation: "next",
            url: link_url(base, path, carried, Some(cursor)),
        });
    }
    let entry = page
        .versions
        .iter()
        .map(|version| entry(base, version))
        .collect::<Result<Vec<_>, _>>()?;
    serde_json::to_string(&Bundle {
        resource_type: "Bundle",
        meta: BundleMeta {
            last_updated: Instant::now().to_fhir(),
        },
        bundle_type: "history",
        total,
        link,
        entry,
    })
}
