//! Search at type, system and compartment level (`GET` and `POST .../_search`), answered
//! with a `searchset` Bundle.
//!
//! `search::parse` turns the parameters into a query (`Prefer: handling=strict` makes an
//! unknown parameter an error; by default it is ignored and named in an OperationOutcome
//! entry); the store runs it one page at a time; paging links carry the store's cursor.

use std::collections::HashSet;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use search::{Clause, ParseOptions, Parsed, Summary, Total};
use store::SearchRequest;

use crate::AppState;
use crate::body::read_limited;
use crate::error::ApiError;
use crate::extract::{CompartmentPath, FhirRequest, TypePath};
use crate::response::{handling_strict, json_response};
use crate::searchset::{Links, Shape, bundle};
use crate::subset::Subset;

/// Where a search looks.
#[derive(Clone, Debug)]
pub enum Scope {
    /// Every type, or those `_type` names.
    System,
    /// One type.
    Type(String),
    /// The resources of one type (`None`: of every type) in a compartment, e.g. the
    /// Observations of `Patient/1`.
    Compartment {
        compartment: String,
        id: String,
        resource_type: Option<String>,
    },
}

impl Scope {
    /// The search's URL without parameters.
    fn url(&self, base: &str) -> String {
        match self {
            Scope::System => base.to_string(),
            Scope::Type(resource_type) => format!("{base}/{resource_type}"),
            Scope::Compartment {
                compartment,
                id,
                resource_type,
            } => format!(
                "{base}/{compartment}/{id}/{}",
                resource_type.as_deref().unwrap_or("*")
            ),
        }
    }
}

/// Parameters about the response format, not the search: kept in links, never parsed.
fn is_presentation(name: &str) -> bool {
    matches!(name, "_format" | "_pretty")
}

/// The compartment clause, with the query's types narrowed to the compartment.
fn add_compartment(parsed: &mut Parsed, scope: &Scope) -> Result<(), ApiError> {
    let Scope::Compartment {
        compartment,
        id,
        resource_type,
    } = scope
    else {
        return Ok(());
    };
    let not_in = |resource_type: &str| {
        if compartment == "Patient" {
            ApiError::bad_request(format!(
                "{resource_type} is not in the {compartment} compartment"
            ))
        } else {
            ApiError::not_found(format!(
                "this server has no {compartment} compartment to search"
            ))
        }
    };
    match resource_type {
        Some(resource_type) => {
            let clause = search::compartment(compartment, id, resource_type)
                .ok_or_else(|| not_in(resource_type))?;
            parsed.query.clauses.push(clause);
        }
        None => {
            let asked: Vec<String> = std::mem::take(&mut parsed.query.types);
            let mut any_of = Vec::new();
            let mut types = Vec::new();
            for candidate in fhir::definitions().resource_types() {
                if !asked.is_empty() && !asked.contains(candidate) {
                    continue;
                }
                if let Some(clause) = search::compartment(compartment, id, candidate) {
                    any_of.extend(clause.any_of);
                    types.push(candidate.clone());
                }
            }
            if types.is_empty() {
                return Err(not_in(&asked.join(",")));
            }
            parsed.query.types = types;
            parsed.query.clauses.push(Clause { any_of });
        }
    }
    Ok(())
}

/// Checks the other types a query reaches: those its chains and `_has` test (searched),
/// those `_include` brings in (read) and those `_revinclude` brings in (searched).
fn authorize_reach(principal: &privacy::Principal, query: &search::Query) -> Result<(), ApiError> {
    use privacy::Interaction;
    if principal.unchecked {
        return Ok(());
    }
    for clause in &query.clauses {
        for criterion in &clause.any_of {
            if !criterion.path.is_empty()
                && let Some(resource_type) = &criterion.resource_type
            {
                crate::auth::authorize(principal, Interaction::Search, resource_type)?;
            }
        }
    }
    for include in &query.revincludes {
        crate::auth::authorize(principal, Interaction::Search, &include.source_type)?;
    }
    for include in &query.includes {
        let targets: Vec<String> = match &include.target_type {
            Some(target) => vec![target.clone()],
            None => search::params_for(&include.source_type)
                .iter()
                .filter(|param| {
                    include
                        .param
                        .as_ref()
                        .is_none_or(|code| *code == param.code)
                })
                .flat_map(|param| param.targets.iter().cloned())
                .collect(),
        };
        for target in targets {
            crate::auth::authorize(principal, Interaction::Read, &target)?;
        }
    }
    Ok(())
}

/// Runs a search and builds its searchset Bundle (JSON text).
pub(crate) async fn run(
    state: &AppState,
    principal: &privacy::Principal,
    scope: &Scope,
    params: &[(String, String)],
    strict: bool,
) -> Result<String, ApiError> {
    let criteria: Vec<(String, String)> = params
        .iter()
        .filter(|(name, _)| !is_presentation(name))
        .cloned()
        .collect();
    let types = match scope {
        Scope::Type(resource_type)
        | Scope::Compartment {
            resource_type: Some(resource_type),
            ..
        } => vec![resource_type.clone()],
        Scope::System
        | Scope::Compartment {
            resource_type: None,
            ..
        } => Vec::new(),
    };
    let mut parsed = search::parse(&types, &criteria, ParseOptions { strict })?;
    add_compartment(&mut parsed, scope)?;
    // Every type searched, including each one `_type` names (a system search without
    // `_type` searches every type).
    crate::auth::authorize_types(principal, privacy::Interaction::Search, &parsed.query.types)?;
    authorize_reach(principal, &parsed.query)?;
    // A principal limited to one patient searches that patient's compartment only.
    let patient = principal.patient().filter(|_| !principal.unchecked);
    if let Some(patient) = patient
        && !crate::access::restrict(&mut parsed.query, patient)
    {
        return Err(crate::auth::forbidden(
            "a token limited to one patient searches only the types of the Patient compartment"
                .into(),
        ));
    }
    // Labelled data the principal may not see, and what consents deny it, are left out
    // of the query itself, chains and `_has` included.
    let view = crate::restrict::View::of(state, principal).await?;
    view.narrow(&mut parsed.query);

    let limits = &state.config.limits;
    let page_size = parsed
        .count
        .unwrap_or(limits.page_size_default)
        .min(limits.page_size_max);
    let count_only = page_size == 0 || parsed.summary == Some(Summary::Count);
    if count_only && parsed.query.total == Total::Unspecified {
        parsed.query.total = Total::Accurate;
    }
    let mut page = state
        .store
        .search(SearchRequest {
            query: parsed.query,
            count: if count_only { 0 } else { page_size },
            cursor: parsed.cursor.clone(),
        })
        .await?;
    if let Some(patient) = patient {
        // What `_include` and `_revinclude` bring in keeps to the compartment too.
        page.included
            .retain(|version| crate::access::visible(patient, version));
    }
    page.included.retain(|version| view.sees(version));

    // Links repeat what the search applied: not what it ignored, and `_count` as capped.
    let ignored: HashSet<&str> = parsed.ignored.iter().map(String::as_str).collect();
    let carried: Vec<(String, String)> = params
        .iter()
        .filter(|(name, value)| {
            name != "_cursor" && !ignored.contains(format!("{name}={value}").as_str())
        })
        .map(|(name, value)| {
            if name == "_count" {
                (name.clone(), page_size.to_string())
            } else {
                (name.clone(), value.clone())
            }
        })
        .collect();
    let base = state.config.base_url.as_str();
    let shape = Shape {
        base,
        links: Links {
            url: scope.url(base),
            carried: &carried,
            cursor: parsed.cursor.as_deref(),
        },
        count_only,
        subset: Subset::of(parsed.summary, &parsed.elements),
        ignored: &parsed.ignored,
    };
    bundle(&shape, &page).map_err(|error| {
        tracing::error!(%error, "a stored resource is not JSON");
        ApiError::from(store::StoreError::Backend(error.to_string()))
    })
}

async fn respond(
    state: &AppState,
    request: &FhirRequest,
    scope: Scope,
    params: &[(String, String)],
) -> Result<Response, ApiError> {
    let text = run(
        state,
        &request.principal,
        &scope,
        params,
        handling_strict(&request.headers),
    )
    .await?;
    Ok(json_response(StatusCode::OK, text, request.output))
}

/// The URL's parameters followed by those of an `application/x-www-form-urlencoded` body.
async fn form_params(
    state: &AppState,
    request: &FhirRequest,
    body: Body,
) -> Result<Vec<(String, String)>, ApiError> {
    check_form(&request.headers)?;
    let bytes = read_limited(&request.headers, body, state.config.limits.body_bytes).await?;
    let mut params = request.params.clone();
    params.extend(form_urlencoded::parse(&bytes).into_owned());
    Ok(params)
}

fn check_form(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let value = value.to_str().unwrap_or("");
    let essence = value.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Ok(())
    } else {
        Err(ApiError::not_supported(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {value:?} is not supported for _search; send application/x-www-form-urlencoded"
            ),
        ))
    }
}

/// `GET [base]/[type]?...`
pub(crate) async fn type_get(
    State(state): State<AppState>,
    request: FhirRequest,
    TypePath(resource_type): TypePath,
) -> Result<Response, ApiError> {
    let params = request.params.clone();
    if resource_type == "CodeSystem"
        && let Some(bundle) = crate::terminology::builtin_search(&state.config.base_url, &params)
    {
        return Ok(json_response(
            StatusCode::OK,
            bundle.to_string(),
            request.output,
        ));
    }
    respond(&state, &request, Scope::Type(resource_type), &params).await
}

/// `POST [base]/[type]/_search`
pub(crate) async fn type_post(
    State(state): State<AppState>,
    request: FhirRequest,
    TypePath(resource_type): TypePath,
    body: Body,
) -> Result<Response, ApiError> {
    let params = form_params(&state, &request, body).await?;
    respond(&state, &request, Scope::Type(resource_type), &params).await
}

/// `GET [base]?...`
pub(crate) async fn system_get(
    State(state): State<AppState>,
    request: FhirRequest,
) -> Result<Response, ApiError> {
    let params = request.params.clone();
    respond(&state, &request, Scope::System, &params).await
}

/// `POST [base]/_search`
pub(crate) async fn system_post(
    State(state): State<AppState>,
    request: FhirRequest,
    body: Body,
) -> Result<Response, ApiError> {
    let params = form_params(&state, &request, body).await?;
    respond(&state, &request, Scope::System, &params).await
}

/// `GET [base]/[compartment]/[id]/[type]` and `.../*`
pub(crate) async fn compartment_get(
    State(state): State<AppState>,
    request: FhirRequest,
    path: CompartmentPath,
) -> Result<Response, ApiError> {
    let CompartmentPath {
        compartment,
        id,
        resource_type,
    } = path;
    let params = request.params.clone();
    let scope = Scope::Compartment {
        compartment,
        id,
        resource_type,
    };
    respond(&state, &request, scope, &params).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_urls() {
        let base = "http://x/fhir";
        assert_eq!(Scope::System.url(base), base);
        assert_eq!(
            Scope::Type("Patient".into()).url(base),
            "http://x/fhir/Patient"
        );
        let compartment = Scope::Compartment {
            compartment: "Patient".into(),
            id: "1".into(),
            resource_type: None,
        };
        assert_eq!(compartment.url(base), "http://x/fhir/Patient/1/*");
    }

    #[test]
    fn form_content_type() {
        let mut headers = HeaderMap::new();
        assert!(check_form(&headers).is_ok());
        headers.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=utf-8"
                .parse()
                .unwrap_or(axum::http::HeaderValue::from_static("")),
        );
        assert!(check_form(&headers).is_ok());
        headers.insert(
            header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        assert!(check_form(&headers).is_err());
    }
}
