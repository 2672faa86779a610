//! Writes by a principal limited to one patient (a `patient/` token) keep to that
//! patient's compartment: a resource outside it cannot be changed or deleted (404: for
//! that principal it does not exist), and nothing can be created or changed so that it
//! lies outside it (403). Likewise nobody changes or deletes a resource hidden from it
//! by a label or a consent (404).

use privacy::Principal;
use serde_json::{Map, Value};
use store::Version;

use crate::AppState;
use crate::error::ApiError;
use crate::restrict::View;

fn limited(principal: &Principal) -> Option<&str> {
    principal.patient().filter(|_| !principal.unchecked)
}

/// 404 when `resource_type/id` exists but is not there for `principal`: outside the
/// compartment of the patient it is limited to, or hidden from it (`restrict`).
pub(crate) async fn check_target(
    state: &AppState,
    principal: &Principal,
    resource_type: &str,
    id: &str,
) -> Result<(), ApiError> {
    if principal.unchecked {
        return Ok(());
    }
    match state.store.read(resource_type, id).await? {
        Some(existing) => check_found(state, principal, &existing).await,
        None => Ok(()),
    }
}

/// 404 when `existing` is not there for `principal`: outside the compartment of the
/// patient it is limited to, or hidden from it.
pub(crate) async fn check_found(
    state: &AppState,
    principal: &Principal,
    existing: &Version,
) -> Result<(), ApiError> {
    if principal.unchecked || existing.is_deleted() {
        return Ok(());
    }
    let outside =
        limited(principal).is_some_and(|patient| !crate::access::visible(patient, existing));
    if outside || !View::of(state, principal).await?.sees(existing) {
        return Err(ApiError::not_found(format!(
            "{}/{} is not known",
            existing.resource_type, existing.id
        )));
    }
    Ok(())
}

/// 403 when `resource` (to be stored as `resource_type`) lies outside the compartment
/// of the patient `principal` is limited to.
pub(crate) fn check_resource(
    principal: &Principal,
    resource_type: &str,
    resource: &Map<String, Value>,
) -> Result<(), ApiError> {
    let Some(patient) = limited(principal) else {
        return Ok(());
    };
    let id = resource.get("id").and_then(Value::as_str).unwrap_or("");
    let value = Value::Object(resource.clone());
    if crate::access::in_compartment(patient, resource_type, id, &value) {
        Ok(())
    } else {
        Err(crate::auth::forbidden(format!(
            "a token limited to one patient writes only in that patient's compartment; this {resource_type} does not refer to the patient"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patient_token_writes_only_its_compartment() {
        let mut principal = Principal::anonymous();
        principal.patient = Some("p1".into());
        let own = json!({"resourceType": "Observation", "subject": {"reference": "Patient/p1"}});
        let other = json!({"resourceType": "Observation", "subject": {"reference": "Patient/p2"}});
        let (Value::Object(own), Value::Object(other)) = (own, other) else {
            panic!("not objects")
        };
        assert!(check_resource(&principal, "Observation", &own).is_ok());
        let Err(refused) = check_resource(&principal, "Observation", &other) else {
            panic!("allowed")
        };
        assert_eq!(refused.status, axum::http::StatusCode::FORBIDDEN);
        assert!(check_resource(&Principal::unchecked(), "Observation", &other).is_ok());
    }
}
