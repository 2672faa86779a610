//! The duplicate worklist. After a Patient is created or updated, the index finds the
//! Patients it may be a duplicate of; each probable pair (and each certain one, unless
//! certain matches are linked at once) becomes an item: a `Task` (code
//! `urn:custodian:mpi|possible-duplicate`, `focus` the Patient written, `for` the one
//! it matched, the pair as an identifier of system [`PAIR_SYSTEM`]). Items are stored
//! resources, so they persist on either backend, have history, and are searchable.
//!
//! A pair gets one item ever: an open item is not queued again, and a decision (the
//! Task `completed` for "same-person", `rejected` for "not-duplicate") is remembered.
//!
//! - `GET [base]/Patient/$duplicates` lists the open items: the Task, both Patients,
//!   the score, the match grade and the per-comparison explanation (`_count`, default
//!   the page size).
//! - `POST [base]/Patient/$duplicate-decision` with `item` (a reference to the Task),
//!   `decision` (`same-person` or `not-duplicate`) and, for a same person, `merge`
//!   (boolean: also merge the item's Patient into the one it matched).
//!   "same-person" links the two records by the enterprise identifier.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use fhir::IssueType;
use serde_json::{Map, Value, json};
use store::{Method, Version, Write};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::FhirRequest;
use crate::mpi::enterprise::{current_patient, enterprise_id, link};
use crate::mpi::matching::{grade, score};
use crate::mpi::params::{Params, parameter, unprocessable};
use crate::mpi::repoint::search_all;
use crate::mpi::{is_replaced, merge};
use crate::response::json_response;

/// The code system of the worklist's Tasks.
pub const TASK_SYSTEM: &str = "urn:custodian:mpi";
/// The Task code of an item.
pub const TASK_CODE: &str = "possible-duplicate";
/// The identifier system naming the pair of an item: `<id>_<id>`, the smaller first.
pub const PAIR_SYSTEM: &str = "urn:custodian:mpi:pair";

/// The pair identifier of `a` and `b` (ids never hold `_`).
fn pair(a: &str, b: &str) -> String {
    if a <= b {
        format!("{a}_{b}")
    } else {
        format!("{b}_{a}")
    }
}

/// The item of the pair, open or decided.
async fn find_pair(state: &AppState, a: &str, b: &str) -> Result<Option<Version>, ApiError> {
    let params = [(
        "identifier".to_string(),
        format!("{PAIR_SYSTEM}|{}", pair(a, b)),
    )];
    Ok(search_all(state, "Task", &params, 1).await?.pop())
}

/// Looks for duplicates of Patient `id` and queues (or links) what it finds.
pub async fn check(state: &AppState, id: &str) -> Result<(), ApiError> {
    let Ok((_, patient)) = current_patient(state, id).await else {
        return Ok(());
    };
    if is_replaced(&patient) {
        return Ok(());
    }
    let system = &state.config.mpi.enterprise_system;
    let record = mpi::record_from_patient(&patient);
    for candidate in state.mpi.search(&record) {
        if candidate.class > mpi::MatchClass::Probable {
            continue;
        }
        if find_pair(state, id, &candidate.id).await?.is_some() {
            continue;
        }
        let Ok((_, other)) = current_patient(state, &candidate.id).await else {
            continue;
        };
        let mine = enterprise_id(&patient, system);
        if mine.is_some() && mine == enterprise_id(&other, system) {
            continue;
        }
        if candidate.class == mpi::MatchClass::Certain && state.config.mpi.auto_link {
            link(state, id, &candidate.id).await?;
            continue;
        }
        let task = item(id, &candidate);
        let Value::Object(resource) = task else {
            continue;
        };
        crate::audit::write(&state.store, Write::Create { resource, id: None }).await?;
    }
    Ok(())
}

/// The worklist item of Patient `id` and the `candidate` it matched.
fn item(id: &str, candidate: &mpi::Candidate) -> Value {
    json!({
        "resourceType": "Task",
        "identifier": [{"system": PAIR_SYSTEM, "value": pair(id, &candidate.id)}],
        "status": "requested",
        "intent": "proposal",
        "code": {"coding": [{
            "system": TASK_SYSTEM,
            "code": TASK_CODE,
            "display": "Possible duplicate patient records"
        }]},
        "description": "Review whether these two records are the same person",
        "focus": {"reference": format!("Patient/{id}")},
        "for": {"reference": format!("Patient/{}", candidate.id)},
        "authoredOn": store::Instant::now().to_fhir(),
        "input": [
            {"type": {"text": "score"}, "valueDecimal": score(candidate.probability)},
            {"type": {"text": "match-grade"}, "valueCode": grade(candidate.class)}
        ]
    })
}

/// `GET [base]/Patient/$duplicates`
pub(crate) async fn list(
    State(state): State<AppState>,
    request: FhirRequest,
) -> Result<Response, ApiError> {
    let mut count = state.config.limits.page_size_default;
    for (name, value) in &request.params {
        match name.as_str() {
            "_count" => {
                count = value
                    .parse::<usize>()
                    .map_err(|_| ApiError::bad_request("_count must be a whole number"))?
                    .min(state.config.limits.page_size_max);
            }
            "_format" | "_pretty" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "$duplicates has no parameter {other}"
                )));
            }
        }
    }
    state.mpi.flush().await;
    let params = [
        ("code".to_string(), format!("{TASK_SYSTEM}|{TASK_CODE}")),
        ("status".to_string(), "requested".to_string()),
    ];
    // An item naming a Patient hidden from the caller (labels, consents) is left out.
    let view = crate::restrict::View::of(&state, &request.principal).await?;
    let mut items = Vec::new();
    for task in search_all(&state, "Task", &params, count).await? {
        if let Some(item) = describe(&state, &view, &task).await? {
            items.push(item);
        }
    }
    let body = json!({"resourceType": "Parameters", "parameter": items});
    Ok(json_response(
        StatusCode::OK,
        body.to_string(),
        request.output,
    ))
}

/// The two Patient ids of an item: (`focus`, `for`).
fn patients_of(task: &Value, base: &str) -> Option<(String, String)> {
    let id = |element: &str| {
        task.get(element)
            .and_then(|reference| reference.get("reference"))
            .and_then(Value::as_str)
            .and_then(|reference| super::params::patient_id(reference, base))
    };
    Some((id("focus")?, id("for")?))
}

/// An open item as a Parameters `item`; `None` when one of its Patients is gone.
async fn describe(
    state: &AppState,
    view: &crate::restrict::View,
    task: &Version,
) -> Result<Option<Value>, ApiError> {
    let Some(content) = task
        .body
        .as_deref()
        .and_then(|body| serde_json::from_str::<Value>(body).ok())
    else {
        return Ok(None);
    };
    let Some((a, b)) = patients_of(&content, &state.config.base_url) else {
        return Ok(None);
    };
    let (Ok((_, patient_a)), Ok((_, patient_b))) = (
        current_patient(state, &a).await,
        current_patient(state, &b).await,
    ) else {
        return Ok(None);
    };
    if !view.sees_resource("Patient", &a, &patient_a)
        || !view.sees_resource("Patient", &b, &patient_b)
    {
        return Ok(None);
    }
    let Some(explanation) = state.mpi.explain(&mpi::record_from_patient(&patient_a), &b) else {
        return Ok(None);
    };
    let patient_part = |name: &str, id: &str, resource: Value| {
        json!({"name": name, "part": [
            parameter("reference", "valueReference", json!({"reference": format!("Patient/{id}")})),
            parameter("resource", "resource", resource),
        ]})
    };
    let terms: Vec<Value> = explanation
        .terms
        .iter()
        .map(|term| {
            let mut parts = vec![parameter("name", "valueString", json!(term.comparison))];
            match &term.level {
                Some(level) => parts.push(parameter("level", "valueString", json!(level))),
                None => parts.push(parameter("level", "valueString", json!("missing"))),
            }
            parts.push(parameter("weight", "valueDecimal", decimal(term.weight)));
            parts.push(parameter("m", "valueDecimal", decimal(term.m)));
            parts.push(parameter("u", "valueDecimal", decimal(term.u)));
            json!({"name": "comparison", "part": parts})
        })
        .collect();
    let mut explanation_parts = vec![parameter(
        "prior-weight",
        "valueDecimal",
        decimal(explanation.prior_weight),
    )];
    explanation_parts.extend(terms);
    explanation_parts.push(parameter(
        "weight",
        "valueDecimal",
        decimal(explanation.weight),
    ));
    Ok(Some(json!({"name": "item", "part": [
        parameter("task", "valueReference", json!({"reference": format!("Task/{}", task.id)})),
        patient_part("patient", &a, patient_a),
        patient_part("candidate", &b, patient_b),
        parameter("score", "valueDecimal", score(explanation.probability)),
        parameter("grade", "valueCode", json!(grade(explanation.class))),
        {"name": "explanation", "part": explanation_parts},
    ]})))
}

/// A weight as a decimal of four places.
fn decimal(value: f64) -> Value {
    let rounded = (value * 10_000.0).round() / 10_000.0;
    serde_json::Number::from_f64(rounded).map_or(Value::Null, Value::Number)
}

/// `POST [base]/Patient/$duplicate-decision`
pub(crate) async fn decide(
    State(state): State<AppState>,
    request: FhirRequest,
    body: Body,
) -> Result<Response, ApiError> {
    let params = Params::read(&state, &request, body, "$duplicate-decision").await?;
    let task_id = params
        .value("item", "valueReference")?
        .and_then(|reference| reference.get("reference"))
        .and_then(Value::as_str)
        .and_then(|reference| reference.strip_prefix("Task/"))
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                IssueType::Required,
                "$duplicate-decision needs item, a reference to the worklist Task (Task/id)",
            )
        })?;
    let decision = params
        .value("decision", "valueCode")?
        .and_then(Value::as_str)
        .unwrap_or("");
    let same = match decision {
        "same-person" => true,
        "not-duplicate" => false,
        _ => {
            return Err(ApiError::bad_request(
                "decision must be same-person or not-duplicate",
            ));
        }
    };
    let merge_too = params.boolean("merge")?.unwrap_or(false);
    if merge_too && !same {
        return Err(ApiError::bad_request(
            "merge goes only with the decision same-person",
        ));
    }
    state.mpi.flush().await;
    let task = state
        .store
        .read("Task", &task_id)
        .await?
        .filter(|version| !version.is_deleted())
        .ok_or_else(|| unprocessable(IssueType::NotFound, format!("there is no Task/{task_id}")))?;
    let Some(Value::Object(mut content)) = task
        .body
        .as_deref()
        .and_then(|body| serde_json::from_str::<Value>(body).ok())
    else {
        return Err(unprocessable(IssueType::Exception, "the Task is not JSON"));
    };
    let is_item = content
        .get("code")
        .and_then(|code| code.get("coding"))
        .and_then(Value::as_array)
        .is_some_and(|codings| {
            codings.iter().any(|coding| {
                coding.get("system").and_then(Value::as_str) == Some(TASK_SYSTEM)
                    && coding.get("code").and_then(Value::as_str) == Some(TASK_CODE)
            })
        });
    if !is_item {
        return Err(unprocessable(
            IssueType::Invalid,
            format!("Task/{task_id} is not a duplicate worklist item"),
        ));
    }
    if content.get("status").and_then(Value::as_str) != Some("requested") {
        return Err(unprocessable(
            IssueType::Processing,
            format!("Task/{task_id} has already been decided"),
        ));
    }
    let value = Value::Object(content.clone());
    let Some((a, b)) = patients_of(&value, &state.config.base_url) else {
        return Err(unprocessable(
            IssueType::Invalid,
            "the item does not name two Patients",
        ));
    };
    let mut output = Vec::new();
    if same {
        // Check the merge first, so a refused merge records no decision.
        if merge_too {
            merge::prepare(&state, &a, &b, None).await?;
        }
        let enterprise = link(&state, &a, &b).await?;
        output.push(parameter(
            "enterprise-identifier",
            "valueIdentifier",
            json!({"system": state.config.mpi.enterprise_system, "value": enterprise}),
        ));
    }
    content.insert(
        "status".into(),
        json!(if same { "completed" } else { "rejected" }),
    );
    content.insert("businessStatus".into(), json!({"text": decision}));
    content.insert(
        "lastModified".into(),
        json!(store::Instant::now().to_fhir()),
    );
    let written = crate::audit::write(
        &state.store,
        Write::Update {
            resource_type: "Task".into(),
            id: task_id,
            resource: strip_meta(content),
            if_match: Some(task.version),
            method: Method::Update,
        },
    )
    .await?;
    if let Some(version) = written.version.and_then(|version| version.body) {
        let task: Value = serde_json::from_str(&version).unwrap_or(Value::Null);
        output.insert(0, parameter("item", "resource", task));
    }
    if merge_too {
        let requester = super::audit::requester(&request.principal);
        let merged = merge::run(&state, &requester, &a, &b, None, None).await?;
        output.push(parameter("merge", "resource", merged));
    }
    let body = json!({"resourceType": "Parameters", "parameter": output});
    Ok(json_response(
        StatusCode::OK,
        body.to_string(),
        request.output,
    ))
}

/// A resource without the store's `meta.versionId` and `meta.lastUpdated` (the store
/// sets them again).
fn strip_meta(mut resource: Map<String, Value>) -> Map<String, Value> {
    if let Some(Value::Object(meta)) = resource.get_mut("meta") {
        meta.shift_remove("versionId");
        meta.shift_remove("lastUpdated");
    }
    resource
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_is_a_valid_task_naming_its_pair_either_way_round() {
        let candidate = mpi::Candidate {
            id: "b".into(),
            weight: 12.0,
            probability: 0.9997,
            class: mpi::MatchClass::Certain,
        };
        let task = item("a", &candidate);
        let issues = validation::validate(&task);
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(task["identifier"][0]["value"], "a_b");
        assert_eq!(pair("b", "a"), "a_b");
        assert_eq!(task["input"][1]["valueCode"], "certain");
    }
}
