//! Authorisation of every FHIR route: what interactions a request stands for, decided
//! by `privacy::decide` for the request's principal.
//!
//! The route layer knows the interaction and type from the route template and path;
//! what it cannot see (the types of a system search or an export, a bundle's entries,
//! what `$everything` returns) is checked by those handlers with `authorize` and
//! `authorize_types`, so every decision still comes from the one function.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fhir::IssueType;
use privacy::{Decision, Interaction, Principal, decide};

use crate::error::ApiError;

/// 403 with the decision's reason.
pub(crate) fn forbidden(reason: String) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        IssueType::Security,
        format!("access denied: {reason}"),
    )
}

/// Ok when `principal` may do `interaction` on `resource_type`, else 403.
pub(crate) fn authorize(
    principal: &Principal,
    interaction: Interaction,
    resource_type: &str,
) -> Result<(), ApiError> {
    match decide(principal, interaction, resource_type) {
        Decision::Allow(_) => Ok(()),
        Decision::Deny(reason) => Err(forbidden(reason)),
    }
}

/// `authorize` for each of `types`; no types means every type.
pub(crate) fn authorize_types(
    principal: &Principal,
    interaction: Interaction,
    types: &[String],
) -> Result<(), ApiError> {
    if principal.unchecked {
        return Ok(());
    }
    if types.is_empty() {
        for resource_type in fhir::definitions().resource_types() {
            if let Decision::Deny(reason) = decide(principal, interaction, resource_type) {
                // System history takes no `_type`: the way around is a type's history.
                let advice = if interaction == Interaction::HistoryType {
                    "the system history covers every type, so read the history of each type instead"
                        .to_string()
                } else {
                    format!(
                        "without _type this {} covers every type, so name the types with _type",
                        interaction.as_str()
                    )
                };
                return Err(forbidden(format!("{reason}; {advice}")));
            }
        }
        return Ok(());
    }
    types
        .iter()
        .try_for_each(|resource_type| authorize(principal, interaction, resource_type))
}

/// What the route layer checks for a request.
#[derive(Debug, PartialEq)]
enum Check<'a> {
    /// These interactions on this type.
    On(&'static [Interaction], &'a str),
    /// Every type (system history).
    AllTypes(Interaction),
    /// Following up a bulk release (export status, files).
    Release,
    /// A patient merge, unmerge or worklist decision: it repoints references in every
    /// type of record, so it needs update on every type but AuditEvent (which the server
    /// alone writes).
    RecordWide,
    /// The handler checks (system search, bundles, export kick-offs), or there is
    /// nothing to check (metadata).
    Handler,
}

/// The checks of a request to `template` (the route as written in `router`, relative to
/// the FHIR base) at `path` (relative too, without its leading `/`).
fn classify<'a>(method: &Method, template: &str, path: &'a str) -> Check<'a> {
    // `{type}` is the first segment of every route that has it.
    let resource_type = if template.starts_with("/{type}") {
        path.split('/').next().unwrap_or("")
    } else {
        ""
    };
    // HEAD is GET without the body: the same check.
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    use Interaction::*;
    match (template, method) {
        ("/_history", _) => Check::AllTypes(HistoryType),
        ("/$export-status/{job}" | "/$export-file/{job}/{file}", _) => Check::Release,
        ("/{type}", "GET") | ("/{type}/_search", _) => Check::On(&[Search], resource_type),
        ("/{type}", "POST") => Check::On(&[Create], resource_type),
        ("/{type}", "PUT") => Check::On(&[Search, Update], resource_type),
        ("/{type}", "PATCH") => Check::On(&[Search, Patch], resource_type),
        ("/{type}", "DELETE") => Check::On(&[Search, Delete], resource_type),
        ("/{type}/_history", _) => Check::On(&[HistoryType], resource_type),
        ("/{type}/$validate" | "/{type}/{id}/$validate", _) => {
            Check::On(&[Validate], resource_type)
        }
        ("/{type}/{id}", "GET") => Check::On(&[Read], resource_type),
        ("/{type}/{id}", "PUT") => Check::On(&[Update], resource_type),
        ("/{type}/{id}", "PATCH") => Check::On(&[Patch], resource_type),
        ("/{type}/{id}", "DELETE") => Check::On(&[Delete], resource_type),
        ("/{type}/{id}/_history", _) => Check::On(&[HistoryInstance], resource_type),
        ("/{type}/{id}/_history/{version}", _) => Check::On(&[Vread], resource_type),
        ("/{type}/{id}/$everything", _) => Check::On(&[Everything], resource_type),
        // The compartment's owner must be readable; the searched types are checked by
        // the search.
        ("/{type}/{id}/{compartment}", _) => Check::On(&[Read], resource_type),
        ("/{type}/$export" | "/{type}/{id}/$export", _) => Check::On(&[Export], resource_type),
        // The terminology operations read the built-in code systems.
        (
            "/{type}/$lookup" | "/{type}/$validate-code" | "/{type}/$subsumes" | "/{type}/$expand",
            _,
        ) => Check::On(&[Read], resource_type),
        // `$drg` reads the Encounter; the Conditions, Procedures and Patient it reads are
        // checked by the handler's own reads.
        ("/{type}/{id}/$drg", _) => Check::On(&[Read], resource_type),
        // The master patient index: matching and the worklist search Patients; a merge,
        // an unmerge or a decision (which may merge) repoints references in every type.
        ("/Patient/$match" | "/Patient/$duplicates", _) => Check::On(&[Search], "Patient"),
        ("/Patient/$merge" | "/Patient/$unmerge" | "/Patient/$duplicate-decision", _) => {
            Check::RecordWide
        }
        // Any other route under `{type}` (none today) is refused rather than let through.
        (template, _) if template.starts_with("/{type}") => Check::On(&[Delete, Create], ""),
        _ => Check::Handler,
    }
}

/// A path under the FHIR base, starting with `/`.
fn relative(path: &str) -> &str {
    match path.strip_prefix("/fhir") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        _ => path,
    }
}

/// The route layer over `/fhir`: refuses with 403 what the principal may not do.
pub(crate) async fn guard(request: Request, next: Next) -> Response {
    let Some(principal) = request.extensions().get::<Arc<Principal>>() else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            IssueType::Security,
            "authentication required",
        )
        .into_response();
    };
    if principal.unchecked {
        return next.run(request).await;
    }
    // Inside the nested `/fhir` router the URI has lost its `/fhir`; the matched path
    // may keep it. Both are taken relative to the FHIR base.
    let template = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("", |path| relative(path.as_str()));
    let path = relative(request.uri().path()).trim_start_matches('/');
    // A conditional create searches first.
    let conditional = request.headers().contains_key("if-none-exist");
    let result = match classify(request.method(), template, path) {
        Check::On(interactions, resource_type) => interactions
            .iter()
            .chain(conditional.then_some(&Interaction::Search))
            .try_for_each(|interaction| authorize(principal, *interaction, resource_type)),
        Check::AllTypes(interaction) => authorize_types(principal, interaction, &[]),
        Check::RecordWide => fhir::definitions()
            .resource_types()
            .iter()
            .filter(|resource_type| *resource_type != "AuditEvent")
            .try_for_each(|resource_type| {
                authorize(principal, Interaction::Update, resource_type).map_err(|_| {
                    forbidden(format!(
                        "a patient merge repoints references in every type of record, and the update of {resource_type} is not allowed"
                    ))
                })
            }),
        Check::Release => match privacy::access::may_release(principal) {
            Decision::Allow(_) => Ok(()),
            Decision::Deny(reason) => Err(forbidden(reason)),
        },
        Check::Handler => Ok(()),
    };
    match result {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Interaction::*;

    fn check<'a>(method: Method, template: &str, path: &'a str) -> Check<'a> {
        classify(&method, template, path)
    }

    #[test]
    fn operations_map_to_what_they_do() {
        assert_eq!(
            check(Method::GET, "/{type}/$expand", "ValueSet/$expand"),
            Check::On(&[Read], "ValueSet")
        );
        assert_eq!(
            check(Method::GET, "/{type}/{id}/$drg", "Encounter/e1/$drg"),
            Check::On(&[Read], "Encounter")
        );
        assert_eq!(
            check(Method::POST, "/Patient/$match", "Patient/$match"),
            Check::On(&[Search], "Patient")
        );
        assert_eq!(
            check(Method::POST, "/Patient/$merge", "Patient/$merge"),
            Check::RecordWide
        );
        assert_eq!(
            check(Method::POST, "/{type}/$unknown-op", "Patient/$unknown-op"),
            Check::On(&[Delete, Create], "")
        );
    }

    #[test]
    fn routes_map_to_interactions_on_their_type() {
        assert_eq!(
            check(Method::GET, "/{type}/{id}", "Patient/1"),
            Check::On(&[Read], "Patient")
        );
        assert_eq!(
            check(
                Method::GET,
                "/{type}/{id}/_history/{version}",
                "Patient/1/_history/2"
            ),
            Check::On(&[Vread], "Patient")
        );
        assert_eq!(
            check(Method::POST, "/{type}", "Observation"),
            Check::On(&[Create], "Observation")
        );
        assert_eq!(
            check(Method::DELETE, "/{type}", "Observation"),
            Check::On(&[Search, Delete], "Observation")
        );
        assert_eq!(
            check(Method::GET, "/_history", "_history"),
            Check::AllTypes(HistoryType)
        );
        assert_eq!(check(Method::GET, "/", ""), Check::Handler);
        assert_eq!(
            check(Method::HEAD, "/{type}/{id}", "Patient/1"),
            Check::On(&[Read], "Patient")
        );
        assert_eq!(
            check(Method::GET, "/$export-status/{job}", "$export-status/x"),
            Check::Release
        );
    }
}
