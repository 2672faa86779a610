//! Conditional entries and conditional references, resolved by search before anything
//! is written: `request.ifNoneExist`, `PUT`/`PATCH`/`DELETE Type?criteria`, and references
//! such as `Patient?identifier=system|value`.

use std::collections::HashMap;

use axum::http::StatusCode;
use fhir::IssueType;
use serde_json::{Map, Value};

use super::{Action, Entry, rewrite_in_map};
use crate::AppState;
use crate::conditional::{MAX_CONDITIONAL_DELETE, criteria, find, find_one};
use crate::error::ApiError;
use crate::restrict::View;

/// Turns a conditional entry into the plain action its criteria resolve to:
/// an `ifNoneExist` create that matched becomes [`Action::Existing`], a conditional
/// update an update (or a create), a conditional patch a patch of its one match (404
/// when none), a conditional delete [`Action::DeleteMany`].
pub(super) async fn conditional(
    state: &AppState,
    view: &View,
    entry: &mut Entry,
) -> Result<(), ApiError> {
    if !entry.is_conditional() {
        return Ok(());
    }
    let resource_type = entry.resource_type.clone();
    let action = std::mem::replace(&mut entry.action, Action::placeholder());
    entry.action = match action {
        Action::Create {
            resource,
            if_none_exist: Some(criteria),
        } => match find_one(state, view, &resource_type, &criteria, "ifNoneExist").await? {
            Some(version) => Action::Existing { version },
            None => Action::Create {
                resource,
                if_none_exist: None,
            },
        },
        Action::ConditionalUpdate {
            criteria,
            mut resource,
            if_match,
        } => {
            let body_id = resource
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            match (
                find_one(state, view, &resource_type, &criteria, "conditional update").await?,
                body_id,
            ) {
                (Some(existing), Some(body_id)) if body_id != existing.id => {
                    return Err(ApiError::bad_request(format!(
                        "the resource id {body_id:?} differs from the id of the matching resource {resource_type}/{}",
                        existing.id
                    )));
                }
                (Some(existing), _) => {
                    resource.insert("id".into(), Value::String(existing.id.clone()));
                    Action::Update {
                        id: existing.id,
                        resource,
                        if_match,
                    }
                }
                (None, Some(body_id)) => {
                    if state
                        .store
                        .read(&resource_type, &body_id)
                        .await?
                        .is_some_and(|current| !current.is_deleted())
                    {
                        return Err(ApiError::new(
                            StatusCode::CONFLICT,
                            IssueType::Conflict,
                            format!(
                                "no {resource_type} matches the criteria, but {resource_type}/{body_id} (the resource's id) exists"
                            ),
                        ));
                    }
                    Action::Update {
                        id: body_id,
                        resource,
                        if_match: None,
                    }
                }
                (None, None) => Action::Create {
                    resource,
                    if_none_exist: None,
                },
            }
        }
        Action::ConditionalPatch {
            criteria,
            patch,
            if_match,
        } => match find_one(state, view, &resource_type, &criteria, "conditional patch").await? {
            Some(target) => Action::Patch {
                id: target.id,
                patch,
                if_match,
            },
            None => {
                return Err(ApiError::not_found(format!(
                    "conditional patch: no {resource_type} matches the criteria"
                )));
            }
        },
        Action::ConditionalDelete { criteria, if_match } => {
            let found = find(
                state,
                view,
                &resource_type,
                &criteria,
                MAX_CONDITIONAL_DELETE + 1,
            )
            .await?;
            if found.len() > MAX_CONDITIONAL_DELETE {
                return Err(ApiError::multiple_matches(format!(
                    "conditional delete: the criteria match more than {MAX_CONDITIONAL_DELETE} {resource_type} resources"
                )));
            }
            if found.len() > 1 && if_match.is_some() {
                return Err(ApiError::multiple_matches(format!(
                    "conditional delete with ifMatch: the criteria match {} {resource_type} resources",
                    found.len()
                )));
            }
            Action::DeleteMany {
                ids: found.into_iter().map(|version| version.id).collect(),
                if_match,
            }
        }
        other => other,
    };
    Ok(())
}

/// A conditional reference (`Patient?identifier=x`) split into its type and criteria.
fn conditional_reference(reference: &str) -> Option<(&str, &str)> {
    let (resource_type, query) = reference.split_once('?')?;
    fhir::definitions()
        .is_resource_type(resource_type)
        .then_some((resource_type, query))
}

fn collect<'v>(value: &'v Value, found: &mut Vec<&'v str>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                match (key.as_str(), child) {
                    ("reference", Value::String(reference))
                        if conditional_reference(reference).is_some() =>
                    {
                        found.push(reference);
                    }
                    _ => collect(child, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect(item, found)),
        _ => {}
    }
}

/// Replaces every conditional reference in `resource` with the `Type/id` of the one
/// resource its criteria match; 400 when none or several match.
pub(super) async fn references(
    state: &AppState,
    resource: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    let mut references: Vec<String> = Vec::new();
    {
        let mut found = Vec::new();
        for child in resource.values() {
            collect(child, &mut found);
        }
        for reference in found {
            if !references.iter().any(|known| known == reference) {
                references.push(reference.to_string());
            }
        }
    }
    if references.is_empty() {
        return Ok(());
    }
    let mut resolved = HashMap::new();
    for reference in references {
        let Some((resource_type, query)) = conditional_reference(&reference) else {
            continue;
        };
        // A conditional reference resolves against every resource: it reveals only the
        // id it resolves to, which the write needs.
        let found = find(state, &View::open(), resource_type, &criteria(query), 2).await?;
        let target = match found.as_slice() {
            [one] => format!("{resource_type}/{}", one.id),
            [] => {
                return Err(ApiError::bad_request(format!(
                    "the conditional reference {reference:?} matches no {resource_type}"
                )));
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "the conditional reference {reference:?} matches more than one {resource_type}"
                )));
            }
        };
        resolved.insert(reference, target);
    }
    rewrite_in_map(resource, &resolved);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditional_references_are_recognised() {
        assert_eq!(
            conditional_reference("Patient?identifier=a|b"),
            Some(("Patient", "identifier=a|b"))
        );
        assert_eq!(conditional_reference("Patient/1"), None);
        assert_eq!(conditional_reference("http://x/Patient?x=1"), None);
        assert_eq!(conditional_reference("Nope?x=1"), None);
    }
}
