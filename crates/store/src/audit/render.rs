//! A stored audit record as AuditEvent JSON, in the style of IHE Basic Audit Log
//! Patterns (BALP). Ordinary records keep only their columns and a few details
//! (`AuditDetail`), and their JSON is written here when the trail is read; an
//! AuditEvent an operation made itself is stored whole and given back as it is.

use base64::Engine;

use super::{StoredAudit, StoredDetail, expand};
use crate::Instant;

const EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const DICOM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const INTERACTION: &str = "http://hl7.org/fhir/restful-interaction";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const SEVERITY: &str = "urn:custodian:audit-severity";
const BTG_REASON: &str = "urn:custodian:break-the-glass-reason";
/// The event type of a login (DICOM "User Authentication").
pub const LOGIN_TYPE: &str = "110114";
/// The subtype of a login (DICOM "Login").
pub const LOGIN_SUBTYPE: &str = "110122";

/// Appends `text` as a JSON string.
pub(crate) fn string(out: &mut String, text: &str) {
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

/// The AuditEvent JSON of a stored record.
pub(crate) fn render(stored: &StoredAudit) -> String {
    if stored.body.starts_with(r#"{"resourceType""#) {
        return expand(&stored.body);
    }
    // The details were written by `AuditDetail::to_text`; a text that does not parse
    // (only a change made around the store) still gives the columns.
    let detail: StoredDetail = serde_json::from_str(&stored.body).unwrap_or_default();
    let login = stored.type_code == LOGIN_TYPE;
    let btg = stored
        .purpose
        .as_deref()
        .is_some_and(|purpose| purpose.eq_ignore_ascii_case("BTG"));
    let mut out = String::with_capacity(1024);
    out.push_str(r#"{"resourceType":"AuditEvent","id":"#);
    string(&mut out, &stored.seq.to_string());
    out.push_str(r#","extension":[{"url":"#);
    string(&mut out, SEVERITY);
    out.push_str(r#","valueCode":"#);
    string(&mut out, &stored.severity);
    out.push('}');
    if let Some(reason) = detail.reason.as_ref().filter(|_| btg) {
        out.push_str(r#",{"url":"#);
        string(&mut out, BTG_REASON);
        out.push_str(r#","valueString":"#);
        string(&mut out, reason);
        out.push('}');
    }
    out.push_str(r#"],"type":"#);
    if login {
        coding(&mut out, DICOM, &stored.type_code);
        out.push_str(r#","subtype":["#);
        coding(&mut out, DICOM, &stored.subtype);
    } else {
        coding(&mut out, EVENT_TYPE, &stored.type_code);
        out.push_str(r#","subtype":["#);
        coding(&mut out, INTERACTION, &stored.subtype);
        if let Some(operation) = &detail.operation {
            out.push(',');
            coding(&mut out, "urn:custodian:operation", operation);
        }
    }
    out.push_str(r#"],"action":"#);
    string(&mut out, &stored.action);
    out.push_str(r#","recorded":"#);
    string(&mut out, &Instant(stored.recorded).to_fhir());
    out.push_str(r#","outcome":"#);
    string(&mut out, &stored.outcome);
    out.push_str(&format!(r#","outcomeDesc":"HTTP {}""#, detail.status));
    let purpose = |out: &mut String| {
        if let Some(purpose) = &stored.purpose {
            out.push_str(r#"[{"coding":["#);
            coding(out, ACT_REASON, purpose);
            out.push(']');
            if let Some(reason) = &detail.reason {
                out.push_str(r#","text":"#);
                string(out, reason);
            }
            out.push_str("}]");
        }
    };
    if stored.purpose.is_some() {
        out.push_str(r#","purposeOfEvent":"#);
        purpose(&mut out);
    }
    out.push_str(r#","agent":[{"type":{"coding":["#);
    coding(
        &mut out,
        "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
        if detail.user {
            "humanuser"
        } else {
            "dataprocessor"
        },
    );
    out.push_str(r#"]},"who":{"identifier":{"system":"urn:custodian:agent","value":"#);
    string(&mut out, &stored.agent);
    out.push_str("}}");
    if let Some(client) = &detail.client {
        out.push_str(r#","altId":"#);
        string(&mut out, client);
    }
    out.push_str(r#","requestor":true"#);
    if !detail.roles.is_empty() {
        out.push_str(r#","role":["#);
        for (index, role) in detail.roles.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push_str(r#"{"coding":["#);
            coding(&mut out, "urn:custodian:role", role);
            out.push_str("]}");
        }
        out.push(']');
    }
    if let Some(address) = &detail.address {
        out.push_str(r#","network":{"address":"#);
        string(&mut out, address);
        out.push_str(r#","type":"2"}"#);
    }
    if stored.purpose.is_some() {
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
    if let Some(patient) = &stored.patient {
        next_entity(&mut out);
        entity(&mut out, patient, "1", "1");
    }
    for reference in stored
        .entity
        .split(' ')
        .filter(|reference| !reference.is_empty())
    {
        if Some(reference) == stored.patient.as_deref() {
            continue;
        }
        next_entity(&mut out);
        entity(&mut out, reference, "2", "4");
    }
    if let Some(query) = &detail.query {
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
    out
}
