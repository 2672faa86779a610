//! A FHIR R4 Patient (as JSON) mapped onto a `Record`: the official name (or the first),
//! the home address (or the first), the first phone, the US SSN identifier as `ssn`
//! and every other identifier with its system.

use serde_json::Value;

use crate::record::{Identifier, Record};

/// The identifier system of US Social Security numbers.
pub const US_SSN_SYSTEM: &str = "http://hl7.org/fhir/sid/us-ssn";

/// The record of a Patient resource; missing elements stay empty.
pub fn record_from_patient(patient: &Value) -> Record {
    let text = |value: Option<&Value>| value.and_then(Value::as_str).unwrap_or("").to_string();
    let mut record = Record {
        id: text(patient.get("id")),
        birthdate: text(patient.get("birthDate")),
        sex: text(patient.get("gender")),
        ..Record::default()
    };
    if let Some(name) = preferred(patient.get("name"), "official") {
        record.family = text(name.get("family"));
        record.given = strings(name.get("given")).join(" ");
    }
    if let Some(address) = preferred(patient.get("address"), "home") {
        record.address = strings(address.get("line"));
        record.city = text(address.get("city"));
        record.state = text(address.get("state"));
        record.postcode = text(address.get("postalCode"));
    }
    if let Some(phone) = patient
        .get("telecom")
        .and_then(Value::as_array)
        .and_then(|telecom| {
            telecom
                .iter()
                .find(|point| point.get("system").and_then(Value::as_str) == Some("phone"))
        })
    {
        record.phone = text(phone.get("value"));
    }
    for identifier in patient
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let system = text(identifier.get("system"));
        let value = text(identifier.get("value"));
        if value.is_empty() {
            continue;
        }
        if system == US_SSN_SYSTEM && record.ssn.is_empty() {
            record.ssn = value;
        } else {
            record.identifiers.push(Identifier { system, value });
        }
    }
    record
}

/// The element of the array `list` whose `use` is `wanted`, or else its first element.
fn preferred<'a>(list: Option<&'a Value>, wanted: &str) -> Option<&'a Value> {
    let items = list?.as_array()?;
    items
        .iter()
        .find(|item| item.get("use").and_then(Value::as_str) == Some(wanted))
        .or_else(|| items.first())
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patient_maps_onto_a_record() {
        let patient = serde_json::json!({
            "resourceType": "Patient",
            "id": "p1",
            "name": [{"use": "nickname", "given": ["Bob"]}, {"use": "official", "family": "Chalmers", "given": ["Peter", "James"]}],
            "gender": "male",
            "birthDate": "1974-12-25",
            "telecom": [{"system": "email", "value": "p@example.org"}, {"system": "phone", "value": "(03) 5555 6473"}],
            "address": [{"use": "home", "line": ["534 Erewhon St"], "city": "PleasantVille", "state": "Vic", "postalCode": "3999"}],
            "identifier": [
                {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789"},
                {"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}
            ]
        });
        let record = record_from_patient(&patient);
        assert_eq!(record.id, "p1");
        assert_eq!(record.given, "Peter James");
        assert_eq!(record.family, "Chalmers");
        assert_eq!(record.sex, "male");
        assert_eq!(record.address, vec!["534 Erewhon St".to_string()]);
        assert_eq!(record.postcode, "3999");
        assert_eq!(record.phone, "(03) 5555 6473");
        assert_eq!(record.ssn, "123-45-6789");
        assert_eq!(record.identifiers.len(), 1);
        assert_eq!(
            record_from_patient(&serde_json::json!({})),
            Record::default()
        );
    }
}
