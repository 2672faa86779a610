//! The audit record of a merge or unmerge: an AuditEvent appended to the audit trail
//! (`crate::audit`) in the same store transaction as the change. Every MPI audit
//! record is made here.

use serde_json::{Map, Value, json};

use crate::mpi::merge::LIFECYCLE;

/// Who asked for a merge or an unmerge, as its records name them: the user, else the
/// client, else the token's subject.
pub fn requester(principal: &privacy::Principal) -> String {
    if principal.unchecked {
        return "anonymous (the server runs without authentication)".into();
    }
    principal
        .user
        .clone()
        .or_else(|| principal.client_id.clone())
        .unwrap_or_else(|| principal.subject.clone())
}

/// The AuditEvent of `action` (`merge` or `unmerge`) asked for by `requester` on the
/// resources `entities` (references).
pub fn audit_event(action: &str, entities: &[String], requester: &str) -> Map<String, Value> {
    let entity: Vec<Value> = entities
        .iter()
        .map(|reference| json!({"what": {"reference": reference}}))
        .collect();
    let event = json!({
        "resourceType": "AuditEvent",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation"
        },
        "subtype": [{"system": LIFECYCLE, "code": action}],
        "action": "E",
        "recorded": store::Instant::now().to_fhir(),
        "outcome": "0",
        "agent": [
            {"who": {"display": requester}, "requestor": true},
            {"who": {"display": "Custodian master patient index"}, "requestor": false}
        ],
        "source": {"observer": {"display": "Custodian"}},
        "entity": entity
    });
    match event {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
