//! One audit record: the AuditEvent JSON, in the style of IHE Basic Audit Log Patterns
//! (BALP), and the columns the store searches on.

use base64::Engine;
use serde_json::{Value, json};
use store::{AuditRecord, Instant};

use super::classify::What;

const EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const DICOM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const INTERACTION: &str = "http://hl7.org/fhir/restful-interaction";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const SEVERITY: &str = "urn:custodian:audit-severity";
const BTG_REASON: &str = "urn:custodian:break-the-glass-reason";

/// Severity of an ordinary event.
pub(crate) const INFORMATIONAL: &str = "informational";
/// Severity of a refusal (401, 403).
pub(crate) const WARNING: &str = "warning";
/// Severity of a break-the-glass access: the highest the trail uses.
pub(crate) const ALERT: &str = "alert";

/// Who asked, from where and why: what the request tells about its caller.
#[derive(Clone, Debug, Default)]
pub(crate) struct Who {
    /// The user, else the client (`anonymous` when unknown).
    pub agent: String,
    pub client: Option<String>,
    pub user: Option<String>,
    pub roles: Vec<String>,
    /// The address the request came from.
    pub address: Option<String>,
    pub purpose: Option<String>,
    /// The reason given with a break-the-glass purpose.
    pub btg_reason: Option<String>,
}

impl Who {
    pub(crate) fn is_btg(&self) -> bool {
        self.purpose
            .as_deref()
            .is_some_and(|purpose| purpose.eq_ignore_ascii_case("BTG"))
    }
}

/// `0` for success, `4` for a refusal or bad request, `8` for a server failure.
pub(crate) fn outcome_of(status: u16) -> &'static str {
    match status {
        0..400 => "0",
        400..500 => "4",
        _ => "8",
    }
}

/// The record of `what` done by `who`, with HTTP status `status`.
pub(crate) fn record(who: &Who, what: &What, status: u16, recorded: Instant) -> AuditRecord {
    let login = what.subtype == "login";
    let outcome = outcome_of(status);
    let severity = if who.is_btg() {
        ALERT
    } else if status == 401 || status == 403 {
        WARNING
    } else {
        INFORMATIONAL
    };
    let (type_coding, subtype) = if login {
        (
            json!({"system": DICOM, "code": "110114", "display": "User Authentication"}),
            json!([{"system": DICOM, "code": "110122", "display": "Login"}]),
        )
    } else {
        let mut subtype = vec![json!({"system": INTERACTION, "code": what.subtype})];
        if let Some(operation) = &what.operation {
            subtype.push(json!({"system": "urn:custodian:operation", "code": operation}));
        }
        (
            json!({"system": EVENT_TYPE, "code": "rest", "display": "Restful Operation"}),
            Value::Array(subtype),
        )
    };
    let purpose = who.purpose.as_ref().map(|purpose| {
        let mut concept = json!({"coding": [{"system": ACT_REASON, "code": purpose}]});
        if let Some(reason) = &who.btg_reason {
            concept["text"] = Value::String(reason.clone());
        }
        concept
    });
    let mut agent = json!({
        "type": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
            "code": if who.user.is_some() { "humanuser" } else { "dataprocessor" },
        }]},
        "who": {"identifier": {"system": "urn:custodian:agent", "value": who.agent}},
        "requestor": true,
    });
    if let Some(client) = &who.client {
        agent["altId"] = Value::String(client.clone());
    }
    if !who.roles.is_empty() {
        agent["role"] = Value::Array(
            who.roles
                .iter()
                .map(|role| json!({"coding": [{"system": "urn:custodian:role", "code": role}]}))
                .collect(),
        );
    }
    if let Some(address) = &who.address {
        agent["network"] = json!({"address": address, "type": "2"});
    }
    if let Some(purpose) = &purpose {
        agent["purposeOfUse"] = json!([purpose]);
    }
    let mut entities = Vec::new();
    if let Some(patient) = &what.patient {
        entities.push(json!({
            "what": {"reference": patient},
            "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
            "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
        }));
    }
    for reference in &what.entities {
        if Some(reference) == what.patient.as_ref() {
            continue;
        }
        entities.push(json!({
            "what": {"reference": reference},
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
        }));
    }
    if let Some(query) = &what.query {
        entities.push(json!({
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
            "query": base64::engine::general_purpose::STANDARD.encode(query.as_bytes()),
        }));
    }
    let mut extensions = vec![json!({"url": SEVERITY, "valueCode": severity})];
    if let Some(reason) = who.btg_reason.as_ref().filter(|_| who.is_btg()) {
        extensions.push(json!({"url": BTG_REASON, "valueString": reason}));
    }
    let mut event = serde_json::Map::new();
    event.insert("resourceType".into(), json!("AuditEvent"));
    event.insert("extension".into(), Value::Array(extensions));
    event.insert("type".into(), type_coding);
    event.insert("subtype".into(), subtype);
    event.insert("action".into(), json!(what.action));
    event.insert("recorded".into(), json!(recorded.to_fhir()));
    event.insert("outcome".into(), json!(outcome));
    event.insert("outcomeDesc".into(), json!(format!("HTTP {status}")));
    if let Some(purpose) = purpose {
        event.insert("purposeOfEvent".into(), json!([purpose]));
    }
    event.insert("agent".into(), json!([agent]));
    event.insert(
        "source".into(),
        json!({
            "observer": {"display": "custodian"},
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}],
        }),
    );
    if !entities.is_empty() {
        event.insert("entity".into(), Value::Array(entities));
    }
    let mut references = what.entities.clone();
    if let Some(patient) = &what.patient
        && !references.contains(patient)
    {
        references.push(patient.clone());
    }
    AuditRecord {
        recorded,
        type_code: if login { "110114" } else { "rest" }.to_string(),
        subtype: if login { "110122" } else { what.subtype }.to_string(),
        action: what.action.to_string(),
        outcome: outcome.to_string(),
        severity: severity.to_string(),
        agent: who.agent.clone(),
        patient: what.patient.clone(),
        purpose: who.purpose.clone(),
        entities: references,
        body: Value::Object(event).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_break_the_glass_read_is_an_alert_with_its_reason() {
        let who = Who {
            agent: "dr-who".into(),
            client: Some("ehr".into()),
            user: Some("dr-who".into()),
            roles: vec!["clinician".into()],
            address: Some("10.0.0.1".into()),
            purpose: Some("BTG".into()),
            btg_reason: Some("unconscious patient".into()),
        };
        let what = What {
            subtype: "read",
            action: "R",
            entities: vec!["Observation/o1".into()],
            patient: Some("Patient/p1".into()),
            ..What::default()
        };
        let record = record(&who, &what, 200, Instant(0));
        assert_eq!(record.severity, ALERT);
        assert_eq!(record.purpose.as_deref(), Some("BTG"));
        assert_eq!(record.patient.as_deref(), Some("Patient/p1"));
        assert_eq!(record.entities, ["Observation/o1", "Patient/p1"]);
        let body: Value = serde_json::from_str(&record.body).unwrap();
        assert_eq!(body["purposeOfEvent"][0]["text"], "unconscious patient");
        assert_eq!(body["agent"][0]["network"]["address"], "10.0.0.1");
        assert_eq!(body["entity"][0]["what"]["reference"], "Patient/p1");
        assert!(record.body.starts_with(r#"{"resourceType":"AuditEvent","#));
    }

    #[test]
    fn refusals_and_failures_have_their_outcomes() {
        let who = Who {
            agent: "anonymous".into(),
            ..Who::default()
        };
        let login = What {
            subtype: "login",
            action: "E",
            ..What::default()
        };
        let record = record(&who, &login, 401, Instant(0));
        assert_eq!(
            (record.type_code.as_str(), record.outcome.as_str()),
            ("110114", "4")
        );
        assert_eq!(record.severity, WARNING);
        assert_eq!(outcome_of(500), "8");
        assert_eq!(outcome_of(201), "0");
    }
}
