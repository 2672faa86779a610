//! What a request does, read from its method, path and query: the interaction, the
//! resources it names and the patient, for its audit record. Handlers add what only
//! they learn (the patient of a resource read, a Bundle's type).

/// What an audited request did.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct What {
    /// The `restful-interaction` code (`read`, `search-type`, `operation`...), or
    /// `login` for the token endpoint.
    pub subtype: &'static str,
    /// The operation's name (`$export`), for `operation`.
    pub operation: Option<String>,
    /// `C`, `R`, `U`, `D` or `E`.
    pub action: &'static str,
    /// The resources concerned, `Type/id`.
    pub entities: Vec<String>,
    /// The patient concerned, `Patient/id`.
    pub patient: Option<String>,
    /// The search's query string, for searches.
    pub query: Option<String>,
}

/// Paths whose requests are not audited: they carry no record and no identity.
pub(crate) fn is_unaudited(path: &str) -> bool {
    matches!(
        path,
        "/health"
            | "/fhir/metadata"
            | "/.well-known/smart-configuration"
            | "/fhir/.well-known/smart-configuration"
            | "/auth/jwks"
    )
}

fn is_type(segment: &str) -> bool {
    segment.starts_with(|c: char| c.is_ascii_uppercase())
}

/// The request's interaction; `token_path` is the token endpoint's path.
pub(crate) fn classify(method: &str, path: &str, query: Option<&str>, token_path: &str) -> What {
    if path == token_path {
        return What {
            subtype: "login",
            action: "E",
            ..What::default()
        };
    }
    let relative = path.strip_prefix("/fhir").unwrap_or(path).trim_matches('/');
    let segments: Vec<&str> = if relative.is_empty() {
        Vec::new()
    } else {
        relative.split('/').collect()
    };
    let method = if method == "HEAD" { "GET" } else { method };
    let operation = |name: &str| What {
        subtype: "operation",
        operation: Some(name.to_string()),
        action: "E",
        ..What::default()
    };
    let search = |subtype: &'static str| What {
        subtype,
        action: "E",
        query: query.filter(|query| !query.is_empty()).map(str::to_string),
        ..What::default()
    };
    let mut what = match (method, segments.as_slice()) {
        ("GET", []) => search("search-system"),
        ("POST", []) => What {
            subtype: "batch",
            action: "E",
            ..What::default()
        },
        (_, ["_search"]) => search("search-system"),
        (_, ["_history"]) => What {
            subtype: "history-system",
            action: "R",
            ..What::default()
        },
        (_, [op, ..]) if op.starts_with('$') => operation(op),
        ("GET", [t]) | (_, [t, "_search"]) if is_type(t) => search("search-type"),
        ("POST", [t]) if is_type(t) => What {
            subtype: "create",
            action: "C",
            ..What::default()
        },
        ("PUT", [t]) if is_type(t) => What {
            subtype: "update",
            action: "U",
            query: query.map(str::to_string),
            ..What::default()
        },
        ("PATCH", [t]) if is_type(t) => What {
            subtype: "patch",
            action: "U",
            query: query.map(str::to_string),
            ..What::default()
        },
        ("DELETE", [t]) if is_type(t) => What {
            subtype: "delete",
            action: "D",
            query: query.map(str::to_string),
            ..What::default()
        },
        (_, [t, "_history"]) if is_type(t) => What {
            subtype: "history-type",
            action: "R",
            ..What::default()
        },
        (_, [t, op]) if is_type(t) && op.starts_with('$') => operation(op),
        (_, [t, id]) if is_type(t) => What {
            entities: vec![format!("{t}/{id}")],
            ..match method {
                "PUT" => What {
                    subtype: "update",
                    action: "U",
                    ..What::default()
                },
                "PATCH" => What {
                    subtype: "patch",
                    action: "U",
                    ..What::default()
                },
                "DELETE" => What {
                    subtype: "delete",
                    action: "D",
                    ..What::default()
                },
                _ => What {
                    subtype: "read",
                    action: "R",
                    ..What::default()
                },
            }
        },
        (_, [t, id, "_history"]) if is_type(t) => What {
            subtype: "history-instance",
            action: "R",
            entities: vec![format!("{t}/{id}")],
            ..What::default()
        },
        (_, [t, id, "_history", version]) if is_type(t) => What {
            subtype: "vread",
            action: "R",
            entities: vec![format!("{t}/{id}/_history/{version}")],
            ..What::default()
        },
        (_, [t, id, op, ..]) if is_type(t) && op.starts_with('$') => What {
            entities: vec![format!("{t}/{id}")],
            ..operation(op)
        },
        (_, [t, id, _compartment]) if is_type(t) => What {
            entities: vec![format!("{t}/{id}")],
            ..search("search-type")
        },
        _ => What {
            subtype: "operation",
            action: "E",
            ..What::default()
        },
    };
    if let Some((t, id)) = segments.first().zip(segments.get(1))
        && *t == "Patient"
        && !id.starts_with('$')
        && !id.starts_with('_')
    {
        what.patient = Some(format!("Patient/{id}"));
    } else if let Some(query) = what.query.as_deref() {
        what.patient = patient_in_query(segments.first().copied(), query);
    }
    what
}

/// The patient a search names: `patient=`, `subject=Patient/...` (and their
/// `:Patient` forms), or `_id` on a Patient search.
fn patient_in_query(resource_type: Option<&str>, query: &str) -> Option<String> {
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = value.split(',').next().unwrap_or("").trim();
        if value.is_empty() {
            continue;
        }
        let name = name.split(':').next().unwrap_or("");
        let id = match name {
            "patient" => value.strip_prefix("Patient/").unwrap_or(value),
            "subject" | "beneficiary" => match value.strip_prefix("Patient/") {
                Some(id) => id,
                None => continue,
            },
            "_id" if resource_type == Some("Patient") => value,
            _ => continue,
        };
        if fhir::is_valid_id(id) {
            return Some(format!("Patient/{id}"));
        }
    }
    None
}

/// The patient a stored resource belongs to: itself for a Patient, else the first
/// `subject` or `patient` reference to a Patient. A text scan of the stored JSON
/// (compact, as the store writes it), so a read is not parsed again.
pub(crate) fn patient_in_body(resource_type: &str, id: &str, body: &str) -> Option<String> {
    if resource_type == "Patient" {
        return Some(format!("Patient/{id}"));
    }
    for key in [r#""subject":{"#, r#""patient":{"#, r#""beneficiary":{"#] {
        let Some(start) = body.find(key) else {
            continue;
        };
        let rest = &body[start + key.len()..];
        let end = rest.find('}').unwrap_or(rest.len());
        let object = &rest[..end];
        let marker = r#""reference":"Patient/"#;
        if let Some(at) = object.find(marker) {
            let id_start = &object[at + marker.len()..];
            let id = &id_start[..id_start.find('"').unwrap_or(id_start.len())];
            if fhir::is_valid_id(id) {
                return Some(format!("Patient/{id}"));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn what(method: &str, path: &str, query: Option<&str>) -> What {
        classify(method, path, query, "/auth/token")
    }

    #[test]
    fn paths_map_to_interactions() {
        let read = what("GET", "/fhir/Observation/o1", None);
        assert_eq!((read.subtype, read.action), ("read", "R"));
        assert_eq!(read.entities, ["Observation/o1"]);
        let vread = what("GET", "/fhir/Patient/p1/_history/2", None);
        assert_eq!(vread.subtype, "vread");
        assert_eq!(vread.patient.as_deref(), Some("Patient/p1"));
        assert_eq!(what("POST", "/fhir/Observation", None).subtype, "create");
        assert_eq!(what("DELETE", "/fhir/Observation/o1", None).action, "D");
        assert_eq!(what("PATCH", "/fhir/Observation/o1", None).subtype, "patch");
        assert_eq!(
            what("GET", "/fhir/_history", None).subtype,
            "history-system"
        );
        assert_eq!(what("POST", "/fhir", None).subtype, "batch");
        assert_eq!(what("POST", "/auth/token", None).subtype, "login");
        let export = what("GET", "/fhir/Patient/$export", None);
        assert_eq!(
            (export.subtype, export.operation.as_deref()),
            ("operation", Some("$export"))
        );
        let everything = what("GET", "/fhir/Patient/p1/$everything", None);
        assert_eq!(everything.patient.as_deref(), Some("Patient/p1"));
    }

    #[test]
    fn a_search_keeps_its_query_and_the_patient_it_names() {
        let search = what(
            "GET",
            "/fhir/Observation",
            Some("subject=Patient%2Fp9&code=1234"),
        );
        assert_eq!(search.subtype, "search-type");
        assert_eq!(
            search.query.as_deref(),
            Some("subject=Patient%2Fp9&code=1234")
        );
        assert_eq!(search.patient.as_deref(), Some("Patient/p9"));
        let by_patient = what("GET", "/fhir/Condition", Some("patient=p2"));
        assert_eq!(by_patient.patient.as_deref(), Some("Patient/p2"));
        let by_id = what("GET", "/fhir/Patient", Some("_id=p3"));
        assert_eq!(by_id.patient.as_deref(), Some("Patient/p3"));
        let other = what("GET", "/fhir/Observation", Some("subject=Group/g1"));
        assert_eq!(other.patient, None);
    }

    #[test]
    fn the_patient_of_a_stored_resource_is_found_in_its_text() {
        let body = r#"{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p7","display":"x"}}"#;
        assert_eq!(
            patient_in_body("Observation", "o1", body).as_deref(),
            Some("Patient/p7")
        );
        let group = r#"{"resourceType":"Observation","subject":{"reference":"Group/g"}}"#;
        assert_eq!(patient_in_body("Observation", "o1", group), None);
        assert_eq!(
            patient_in_body("Patient", "p1", "{}").as_deref(),
            Some("Patient/p1")
        );
    }
}
