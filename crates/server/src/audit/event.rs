//! One audit record: the AuditEvent JSON, in the style of IHE Basic Audit Log Patterns
//! (BALP), and the columns the store searches on.

use base64::Engine;
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

/// Appends `text` as a JSON string.
fn string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends `{"system":SYSTEM,"code":CODE}`.
fn coding(out: &mut String, system: &str, code: &str) {
    out.push_str(r#"{"system":"#);
    string(out, system);
    out.push_str(r#","code":"#);
    string(out, code);
    out.push('}');
}

/// Appends an entity naming `reference` as `type_code`/`role_code`.
fn entity(out: &mut String, reference: &str, type_code: &str, role_code: &str) {
    out.push_str(r#"{"what":{"reference":"#);
    string(out, reference);
    out.push_str(r#"},"type":"#);
    coding(out, ENTITY_TYPE, type_code);
    out.push_str(r#","role":"#);
    coding(out, OBJECT_ROLE, role_code);
    out.push('}');
}

/// The record of `what` done by `who`, with HTTP status `status`. The JSON is written
/// directly (no `Value` tree): one is made for every request.
pub(crate) fn record(who: &Who, what: &What, status: u16, recorded: Instant) -> AuditRecord {
    let login = what.subtype == "login";
    let outcome = outcome_of(status);
    let btg = who.is_btg();
    let severity = if btg {
        ALERT
    } else if status == 401 || status == 403 {
        WARNING
    } else {
        INFORMATIONAL
    };
    let mut out = String::with_capacity(768);
    out.push_str(r#"{"resourceType":"AuditEvent","extension":[{"url":"#);
    string(&mut out, SEVERITY);
    out.push_str(r#","valueCode":"#);
    string(&mut out, severity);
    out.push('}');
    if let Some(reason) = who.btg_reason.as_ref().filter(|_| btg) {
        out.push_str(r#",{"url":"#);
        string(&mut out, BTG_REASON);
        out.push_str(r#","valueString":"#);
        string(&mut out, reason);
        out.push('}');
    }
    out.push_str(r#"],"type":"#);
    if login {
        coding(&mut out, DICOM, "110114");
        out.push_str(r#","subtype":["#);
        coding(&mut out, DICOM, "110122");
    } else {
        coding(&mut out, EVENT_TYPE, "rest");
        out.push_str(r#","subtype":["#);
        coding(&mut out, INTERACTION, what.subtype);
        if let Some(operation) = &what.operation {
            out.push(',');
            coding(&mut out, "urn:custodian:operation", operation);
        }
    }
    out.push_str(r#"],"action":"#);
    string(&mut out, what.action);
    out.push_str(r#","recorded":"#);
    string(&mut out, &recorded.to_fhir());
    out.push_str(r#","outcome":"#);
    string(&mut out, outcome);
    out.push_str(&format!(r#","outcomeDesc":"HTTP {status}""#));
    let purpose = |out: &mut String| {
        if let Some(purpose) = &who.purpose {
            out.push_str(r#"[{"coding":["#);
            coding(out, ACT_REASON, purpose);
            out.push(']');
            if let Some(reason) = &who.btg_reason {
                out.push_str(r#","text":"#);
                string(out, reason);
            }
            out.push_str("}]");
        }
    };
    if who.purpose.is_some() {
        out.push_str(r#","purposeOfEvent":"#);
        purpose(&mut out);
    }
    out.push_str(r#","agent":[{"type":{"coding":["#);
    coding(
        &mut out,
        "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
        if who.user.is_some() {
            "humanuser"
        } else {
            "dataprocessor"
        },
    );
    out.push_str(r#"]},"who":{"identifier":{"system":"urn:custodian:agent","value":"#);
    string(&mut out, &who.agent);
    out.push_str("}}");
    if let Some(client) = &who.client {
        out.push_str(r#","altId":"#);
        string(&mut out, client);
    }
    out.push_str(r#","requestor":true"#);
    if !who.roles.is_empty() {
        out.push_str(r#","role":["#);
        for (index, role) in who.roles.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push_str(r#"{"coding":["#);
            coding(&mut out, "urn:custodian:role", role);
            out.push_str("]}");
        }
        out.push(']');
    }
    if let Some(address) = &who.address {
        out.push_str(r#","network":{"address":"#);
        string(&mut out, address);
        out.push_str(r#","type":"2"}"#);
    }
    if who.purpose.is_some() {
        out.push_str(r#","purposeOfUse":"#);
        purpose(&mut out);
    }
    out.push_str(r#"}],"source":{"observer":{"display":"custodian"},"type":["#);
    coding(
        &mut out,
        "http://terminology.hl7.org/CodeSystem/security-source-type",
        "4",
    );
    out.push_str("]}");
    let mut entities = 0;
    let mut next_entity = |out: &mut String| {
        out.push_str(if entities == 0 { r#","entity":["# } else { "," });
        entities += 1;
    };
    if let Some(patient) = &what.patient {
        next_entity(&mut out);
        entity(&mut out, patient, "1", "1");
    }
    for reference in &what.entities {
        if Some(reference) == what.patient.as_ref() {
            continue;
        }
        next_entity(&mut out);
        entity(&mut out, reference, "2", "4");
    }
    if let Some(query) = &what.query {
        next_entity(&mut out);
        out.push_str(r#"{"type":"#);
        coding(&mut out, ENTITY_TYPE, "2");
        out.push_str(r#","role":"#);
        coding(&mut out, OBJECT_ROLE, "24");
        out.push_str(r#","query":"#);
        string(
            &mut out,
            &base64::engine::general_purpose::STANDARD.encode(query.as_bytes()),
        );
        out.push('}');
    }
    if entities > 0 {
        out.push(']');
    }
    out.push('}');
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
        body: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

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
        assert_eq!(
            body["agent"][0]["role"][0]["coding"][0]["code"],
            "clinician"
        );
        assert_eq!(body["extension"][1]["valueString"], "unconscious patient");
        assert_eq!(body["entity"][1]["what"]["reference"], "Observation/o1");
        assert_eq!(body["subtype"][0]["code"], "read");
    }

    #[test]
    fn text_is_escaped_as_json() {
        let who = Who {
            agent: "quote \" backslash \\ newline \n tab \t é".into(),
            ..Who::default()
        };
        let what = What {
            subtype: "read",
            action: "R",
            query: Some("name=\"x\"".into()),
            ..What::default()
        };
        let record = record(&who, &what, 200, Instant(0));
        let body: Value = serde_json::from_str(&record.body).unwrap();
        assert_eq!(body["agent"][0]["who"]["identifier"]["value"], who.agent);
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
