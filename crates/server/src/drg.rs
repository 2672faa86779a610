//! `GET` and `POST [base]/Encounter/[id]/$drg`: groups an inpatient encounter with the
//! MS-DRG v43.1 grouper and edits it with the Medicare Code Editor, from what the record
//! holds, and answers a Parameters resource with both, so a coder sees why the case
//! groups as it does.
//!
//! The claim is built so:
//! - Diagnoses: the `Encounter.diagnosis` entries whose Condition has an ICD-10-CM coding
//!   (the first one). Admission diagnoses (`use` AD) are left out. When some entries have
//!   `use` billing, only those count. They are ordered by `rank` (entries without a rank
//!   last, in their order); the first is the principal diagnosis, the rest secondary.
//!   Present on admission comes from the QI-Core or US Quality Core extension on the
//!   entry (`...-diagnosisPresentOnAdmission`, `...-diagnosis-present-on-admission`),
//!   a `valueCodeableConcept` or `valueCode` of Y, N, U, W or 1.
//! - Procedures: the ICD-10-PCS coding of every Procedure whose `encounter` is this one,
//!   except those `not-done` or `entered-in-error`, ordered by performed date (then id).
//! - Age: whole years from `Patient.birthDate` (a missing month or day counts as the
//!   first) to `Encounter.period.start`; sex from `Patient.gender` (`male` M, `female` F,
//!   anything else U).
//! - Discharge status ([`discharge_status`]): a NUBC code (`https://www.nubc.org/CodeSystem/PatDischargeStatus`)
//!   in `Encounter.hospitalization.dischargeDisposition` as it is; else the HL7 code
//!   mapped (home and alt-home 01, snf 03, other-hcf 05, aadvice 07, exp 20, hosp 50,
//!   rehab 62, long 63, psy 65, oth 70); else 01, home.
//! - The MCE edits as of `Encounter.period.end` (else its start).
//!
//! Errors: 404 for an unknown Encounter (410 if deleted); 422 when the record cannot make
//! a claim (no coded diagnoses, no patient, birth date or admission date, a Condition
//! that is not there, more than 24 secondary diagnoses or 25 procedures).

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use coding::drg::{DiagnosisResult, ProcedureResult, Sex};
use coding::{Claim, ClaimDiagnosis, Date, GroupResult, MceResult};
use fhir::IssueType;
use search::ParseOptions;
use serde_json::{Map, Value, json};
use store::SearchRequest;

use crate::AppState;
use crate::body::{parse_object, read_limited};
use crate::error::ApiError;
use crate::extract::{FhirRequest, InstancePath};
use crate::instance::gone;
use crate::response::json_response;
use crate::restrict::View;
use crate::terminology::{System, parameter, parameter_parts, parameters};

/// The canonical URL the CapabilityStatement names for the operation.
pub const DEFINITION: &str = "urn:custodian:OperationDefinition/Encounter-drg";

const SECONDARY_MAX: usize = 24;
const PROCEDURES_MAX: usize = 25;
/// Most Procedures of one encounter read.
const PROCEDURES_READ_MAX: usize = 200;
const NUBC: &str = "https://www.nubc.org/CodeSystem/PatDischargeStatus";
const HL7_DISPOSITION: &str = "http://terminology.hl7.org/CodeSystem/discharge-disposition";

fn unprocessable(message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        IssueType::Processing,
        message,
    )
}

pub(crate) async fn get(
    State(state): State<AppState>,
    request: FhirRequest,
    path: InstancePath,
) -> Result<Response, ApiError> {
    run(&state, &request, path).await
}

pub(crate) async fn post(
    State(state): State<AppState>,
    request: FhirRequest,
    path: InstancePath,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_limited(&request.headers, body, state.config.limits.body_bytes).await?;
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        let resource = parse_object(&bytes)?;
        let empty = resource.get("resourceType").and_then(Value::as_str) == Some("Parameters")
            && resource
                .get("parameter")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
        if !empty {
            return Err(ApiError::bad_request(
                "$drg takes no parameters; send no body or an empty Parameters",
            ));
        }
    }
    run(&state, &request, path).await
}

async fn run(
    state: &AppState,
    request: &FhirRequest,
    path: InstancePath,
) -> Result<Response, ApiError> {
    if path.resource_type != "Encounter" {
        return Err(ApiError::not_found(format!(
            "the operation $drg is not defined on {} (it is on Encounter)",
            path.resource_type
        )));
    }
    if let Some((name, _)) = request
        .params
        .iter()
        .find(|(name, _)| !matches!(name.as_str(), "_format" | "_pretty"))
    {
        return Err(ApiError::bad_request(format!(
            "$drg takes no parameters, not {name:?}"
        )));
    }
    let id = path.id;
    // What is hidden from the caller (labels, consents) is not there for the grouping.
    let view = crate::restrict::View::of(state, &request.principal).await?;
    let encounter = match view.keep(state.store.read("Encounter", &id).await?) {
        None => {
            return Err(ApiError::not_found(format!("Encounter/{id} is not known")));
        }
        Some(version) if version.is_deleted() => return Ok(gone(&version)),
        Some(version) => body_of(&version)?,
    };
    let case = build(state, &view, &id, &encounter).await?;
    let result = coding::grouper().group(&case.claim);
    let edits = coding::mce().edit(&case.claim, case.discharge_date);
    let answer = answer(&case, &result, &edits);
    Ok(json_response(
        StatusCode::OK,
        answer.to_string(),
        request.output,
    ))
}

fn body_of(version: &store::Version) -> Result<Map<String, Value>, ApiError> {
    let text = version.body.as_deref().unwrap_or("{}");
    match serde_json::from_str(text) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(ApiError::from(store::StoreError::Backend(format!(
            "{}/{} is not a JSON object",
            version.resource_type, version.id
        )))),
    }
}

/// One diagnosis of the claim and where it came from.
struct Diagnosis {
    code: String,
    poa: Option<String>,
    condition: String,
}

/// The claim and what the answer reports about its making.
struct Case {
    claim: Claim,
    discharge_date: Date,
    /// Where each diagnosis came from (`Condition/id`), principal first.
    conditions: Vec<String>,
    /// Where each procedure came from (`Procedure/id`).
    procedures: Vec<String>,
    discharge_source: &'static str,
}

async fn build(
    state: &AppState,
    view: &View,
    id: &str,
    encounter: &Map<String, Value>,
) -> Result<Case, ApiError> {
    let diagnoses = diagnoses(state, view, id, encounter).await?;
    let Some((principal, secondary)) = diagnoses.split_first() else {
        return Err(unprocessable(format!(
            "Encounter/{id} has no ICD-10-CM coded diagnoses: $drg needs Encounter.diagnosis entries whose Condition has a {} coding",
            System::Cm.url()
        )));
    };
    if secondary.len() > SECONDARY_MAX {
        return Err(unprocessable(format!(
            "Encounter/{id} has {} secondary diagnoses; the grouper takes at most {SECONDARY_MAX}",
            secondary.len()
        )));
    }
    let procedures = procedures(state, view, id).await?;
    if procedures.len() > PROCEDURES_MAX {
        return Err(unprocessable(format!(
            "Encounter/{id} has {} ICD-10-PCS coded procedures; the grouper takes at most {PROCEDURES_MAX}",
            procedures.len()
        )));
    }
    let patient = patient(state, view, id, encounter).await?;
    let period = encounter.get("period");
    let day = |key: &str| {
        period
            .and_then(|p| p.get(key))
            .and_then(Value::as_str)
            .and_then(|text| text.get(..10))
            .and_then(Date::parse)
    };
    let admission = day("start").ok_or_else(|| {
        unprocessable(format!(
            "Encounter/{id} has no period.start: the grouper needs the age at admission"
        ))
    })?;
    let birth = patient
        .get("birthDate")
        .and_then(Value::as_str)
        .and_then(partial_date)
        .ok_or_else(|| {
            unprocessable(format!(
                "the patient of Encounter/{id} has no birthDate: the grouper needs the age at admission"
            ))
        })?;
    let age = age_in_years(birth, admission).ok_or_else(|| {
        unprocessable(format!(
            "the patient of Encounter/{id} was born after the admission"
        ))
    })?;
    let sex = match patient.get("gender").and_then(Value::as_str) {
        Some("male") => Sex::Male,
        Some("female") => Sex::Female,
        _ => Sex::Unknown,
    };
    let (discharge_status, discharge_source) = discharge_status(encounter);
    let claim = Claim {
        id: Some(format!("Encounter/{id}")),
        pdx: principal.code.clone(),
        pdx_poa: principal.poa.clone(),
        sdx: secondary
            .iter()
            .map(|d| ClaimDiagnosis {
                code: d.code.clone(),
                poa: d.poa.clone(),
            })
            .collect(),
        procedures: procedures.iter().map(|(code, _)| code.clone()).collect(),
        age,
        sex,
        discharge_status,
        ..Claim::default()
    };
    Ok(Case {
        claim,
        discharge_date: day("end").unwrap_or(admission),
        conditions: diagnoses.iter().map(|d| d.condition.clone()).collect(),
        procedures: procedures.into_iter().map(|(_, from)| from).collect(),
        discharge_source,
    })
}

/// `1970`, `1970-03` or `1970-03-14`, a missing month or day counting as the first.
fn partial_date(text: &str) -> Option<Date> {
    let mut parts = text.trim().splitn(3, '-');
    let year: u32 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next().map_or(Some(1), |m| m.parse().ok())?;
    let day: u32 = parts
        .next()
        .map_or(Some(1), |d| d.get(..2).and_then(|d| d.parse().ok()))?;
    Date::from_ymd(year, month, day)
}

/// Whole years from `birth` to `on`; `None` if `on` is before `birth`.
fn age_in_years(birth: Date, on: Date) -> Option<i32> {
    let (b, o) = (birth.yyyymmdd() as i64, on.yyyymmdd() as i64);
    if o < b {
        return None;
    }
    let years = o / 10_000 - b / 10_000 - i64::from(o % 10_000 < b % 10_000);
    i32::try_from(years).ok()
}

/// The id a reference names for `resource_type` (`Condition/1`, `[base]/Condition/1`).
fn referenced_id<'v>(reference: Option<&'v Value>, resource_type: &str) -> Option<&'v str> {
    let text = reference?.get("reference")?.as_str()?;
    let mut parts = text.rsplit('/');
    let id = parts.next()?;
    let kind = parts.next()?;
    (kind == resource_type && !id.is_empty()).then_some(id)
}

fn codes_of(codeable: Option<&Value>) -> impl Iterator<Item = (&str, &str)> {
    codeable
        .and_then(|c| c.get("coding"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|coding| {
            Some((
                coding.get("system")?.as_str()?,
                coding.get("code")?.as_str()?,
            ))
        })
}

fn poa_of(entry: &Value) -> Option<String> {
    let extensions = entry.get("extension")?.as_array()?;
    let extension = extensions.iter().find(|e| {
        e.get("url").and_then(Value::as_str).is_some_and(|url| {
            url.ends_with("diagnosisPresentOnAdmission")
                || url.ends_with("diagnosis-present-on-admission")
        })
    })?;
    let code = extension
        .get("valueCode")
        .and_then(Value::as_str)
        .or_else(|| {
            codes_of(extension.get("valueCodeableConcept"))
                .map(|(_, code)| code)
                .next()
        })?;
    let code = code.trim().to_ascii_uppercase();
    matches!(code.as_str(), "Y" | "N" | "U" | "W" | "1").then_some(code)
}

async fn diagnoses(
    state: &AppState,
    view: &View,
    id: &str,
    encounter: &Map<String, Value>,
) -> Result<Vec<Diagnosis>, ApiError> {
    struct Entry {
        rank: u64,
        billing: bool,
        diagnosis: Diagnosis,
    }
    let mut entries = Vec::new();
    let list = encounter
        .get("diagnosis")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for entry in &list {
        let uses: Vec<&str> = codes_of(entry.get("use")).map(|(_, code)| code).collect();
        if uses.contains(&"AD") {
            continue;
        }
        let Some(condition_id) = referenced_id(entry.get("condition"), "Condition") else {
            continue;
        };
        let condition = match view.keep(state.store.read("Condition", condition_id).await?) {
            Some(version) if !version.is_deleted() => body_of(&version)?,
            _ => {
                return Err(unprocessable(format!(
                    "Encounter/{id} names Condition/{condition_id} as a diagnosis, but it is not there"
                )));
            }
        };
        let Some((_, code)) =
            codes_of(condition.get("code")).find(|(system, _)| *system == System::Cm.url())
        else {
            continue;
        };
        entries.push(Entry {
            rank: entry
                .get("rank")
                .and_then(Value::as_u64)
                .unwrap_or(u64::MAX),
            billing: uses.contains(&"billing"),
            diagnosis: Diagnosis {
                code: code.to_string(),
                poa: poa_of(entry),
                condition: format!("Condition/{condition_id}"),
            },
        });
    }
    if entries.iter().any(|e| e.billing) {
        entries.retain(|e| e.billing);
    }
    entries.sort_by_key(|e| e.rank);
    Ok(entries.into_iter().map(|e| e.diagnosis).collect())
}

/// The ICD-10-PCS code and `Procedure/id` of the encounter's procedures.
async fn procedures(
    state: &AppState,
    view: &View,
    id: &str,
) -> Result<Vec<(String, String)>, ApiError> {
    let mut parsed = search::parse(
        &["Procedure".to_string()],
        &[("encounter".to_string(), format!("Encounter/{id}"))],
        ParseOptions { strict: true },
    )?;
    view.narrow(&mut parsed.query);
    let page = state
        .store
        .search(SearchRequest {
            query: parsed.query,
            count: PROCEDURES_READ_MAX,
            cursor: None,
        })
        .await?;
    let mut found: Vec<(String, String, String)> = Vec::new();
    for version in &page.matches {
        let procedure = body_of(version)?;
        let status = procedure.get("status").and_then(Value::as_str);
        if matches!(status, Some("not-done" | "entered-in-error")) {
            continue;
        }
        let Some((_, code)) =
            codes_of(procedure.get("code")).find(|(system, _)| *system == System::Pcs.url())
        else {
            continue;
        };
        let performed = procedure
            .get("performedDateTime")
            .and_then(Value::as_str)
            .or_else(|| {
                procedure
                    .get("performedPeriod")
                    .and_then(|p| p.get("start"))
                    .and_then(Value::as_str)
            })
            .unwrap_or("~")
            .to_string();
        found.push((performed, version.id.clone(), code.to_string()));
    }
    found.sort();
    Ok(found
        .into_iter()
        .map(|(_, procedure_id, code)| (code, format!("Procedure/{procedure_id}")))
        .collect())
}

async fn patient(
    state: &AppState,
    view: &View,
    id: &str,
    encounter: &Map<String, Value>,
) -> Result<Map<String, Value>, ApiError> {
    let patient_id = referenced_id(encounter.get("subject"), "Patient").ok_or_else(|| {
        unprocessable(format!(
            "Encounter/{id} has no subject Patient: the grouper needs the age and sex"
        ))
    })?;
    match view.keep(state.store.read("Patient", patient_id).await?) {
        Some(version) if !version.is_deleted() => body_of(&version),
        _ => Err(unprocessable(format!(
            "the subject of Encounter/{id}, Patient/{patient_id}, is not there"
        ))),
    }
}

/// The UB-04 discharge status of an encounter, and where it came from.
pub(crate) fn discharge_status(encounter: &Map<String, Value>) -> (i32, &'static str) {
    let disposition = encounter
        .get("hospitalization")
        .and_then(|h| h.get("dischargeDisposition"));
    for (system, code) in codes_of(disposition) {
        if system == NUBC
            && let Ok(status) = code.trim().parse::<i32>()
        {
            return (status, "NUBC code");
        }
    }
    for (system, code) in codes_of(disposition) {
        if system != HL7_DISPOSITION {
            continue;
        }
        let status = match code {
            "home" | "alt-home" => 1,
            "snf" => 3,
            "other-hcf" => 5,
            "aadvice" => 7,
            "exp" => 20,
            "hosp" => 50,
            "rehab" => 62,
            "long" => 63,
            "psy" => 65,
            "oth" => 70,
            _ => continue,
        };
        return (status, "HL7 discharge-disposition, mapped");
    }
    (1, "default (no known discharge disposition)")
}

fn severity(severity: coding::Severity) -> &'static str {
    match severity {
        coding::Severity::None => "NONE",
        coding::Severity::Cc => "CC",
        coding::Severity::Mcc => "MCC",
    }
}

fn impact(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn mdc_code(mdc: u8) -> String {
    format!("{mdc:02}")
}

fn grouping(name: &str, mdc: u8, drg: u16, severity_value: coding::Severity) -> Value {
    let grouper = coding::grouper();
    let mut parts = vec![
        parameter("mdc", "valueCode", json!(mdc_code(mdc))),
        parameter("drg", "valueCode", json!(format!("{drg:03}"))),
        parameter("severity", "valueCode", json!(severity(severity_value))),
    ];
    if let Some(title) = grouper.mdc_title(mdc) {
        parts.push(parameter("mdcTitle", "valueString", json!(title)));
    }
    if let Some(title) = grouper.drg_title(drg) {
        parts.push(parameter("drgTitle", "valueString", json!(title)));
    }
    parameter_parts(name, parts)
}

fn diagnosis_part(
    role: &str,
    found: &DiagnosisResult,
    poa: Option<&str>,
    condition: Option<&String>,
) -> Value {
    let display = coding::icd10cm().lookup(&found.code);
    let mut coding = json!({"system": System::Cm.url(), "code": display.map_or(found.code.clone(), |c| c.display())});
    if let (Some(code), Some(object)) = (display, coding.as_object_mut()) {
        object.insert("display".into(), json!(code.description()));
    }
    let mut parts = vec![
        parameter("code", "valueCoding", coding),
        parameter("role", "valueCode", json!(role)),
    ];
    if let Some(poa) = poa {
        parts.push(parameter("poa", "valueCode", json!(poa)));
    }
    if let Some(mdc) = found.mdc {
        parts.push(parameter("mdc", "valueCode", json!(mdc_code(mdc))));
    }
    parts.push(parameter(
        "severity",
        "valueCode",
        json!(severity(found.severity)),
    ));
    parts.push(parameter(
        "drgImpact",
        "valueCode",
        impact(&found.drg_impact),
    ));
    parts.push(parameter("valid", "valueBoolean", json!(found.valid)));
    parts.push(parameter("excluded", "valueBoolean", json!(found.excluded)));
    for hac in &found.hacs {
        parts.push(parameter("hac", "valueInteger", json!(hac)));
    }
    if let Some(condition) = condition {
        parts.push(parameter(
            "condition",
            "valueReference",
            json!({"reference": condition}),
        ));
    }
    parameter_parts("diagnosis", parts)
}

fn procedure_part(found: &ProcedureResult, source: Option<&String>) -> Value {
    let mut coding = json!({"system": System::Pcs.url(), "code": found.code});
    if let (Some(code), Some(object)) = (
        coding::icd10pcs().lookup(&found.code),
        coding.as_object_mut(),
    ) && !code.description().is_empty()
    {
        object.insert("display".into(), json!(code.description()));
    }
    let mut parts = vec![
        parameter("code", "valueCoding", coding),
        parameter("operatingRoom", "valueBoolean", json!(found.is_or)),
        parameter("drgImpact", "valueCode", impact(&found.drg_impact)),
        parameter("valid", "valueBoolean", json!(found.valid)),
    ];
    if let Some(source) = source {
        parts.push(parameter(
            "procedure",
            "valueReference",
            json!({"reference": source}),
        ));
    }
    parameter_parts("procedure", parts)
}

fn answer(case: &Case, result: &GroupResult, edits: &MceResult) -> Value {
    let claim = &case.claim;
    let mut out = vec![
        grouping(
            "initial",
            result.initial_mdc,
            result.initial_drg,
            result.initial_severity,
        ),
        grouping(
            "final",
            result.final_mdc,
            result.final_drg,
            result.final_severity,
        ),
        parameter("returnCode", "valueCode", json!(result.return_code.name())),
    ];
    for (name, value) in [
        ("weight", result.weight),
        ("gmlos", result.gmlos),
        ("amlos", result.amlos),
    ] {
        if let Some(value) = value {
            out.push(parameter(name, "valueDecimal", json!(value)));
        }
    }
    out.push(parameter_parts(
        "patient",
        vec![
            parameter("age", "valueInteger", json!(claim.age)),
            parameter("sex", "valueCode", impact(&claim.sex)),
            parameter(
                "dischargeStatus",
                "valueCode",
                json!(format!("{:02}", claim.discharge_status)),
            ),
            parameter(
                "dischargeStatusSource",
                "valueString",
                json!(case.discharge_source),
            ),
            parameter(
                "dischargeDate",
                "valueDate",
                json!(case.discharge_date.to_string()),
            ),
        ],
    ));
    out.push(diagnosis_part(
        "principal",
        &result.pdx,
        claim.pdx_poa.as_deref(),
        case.conditions.first(),
    ));
    // The grouper lists codes in its own order (most significant first); the answer
    // keeps the record's (rank, performed date), matching each code to its result.
    let mut taken = vec![false; result.sdx.len()];
    for (at, diagnosis) in claim.sdx.iter().enumerate() {
        let code = coding::normalize_code(&diagnosis.code);
        let Some(found) = (0..result.sdx.len()).find(|i| !taken[*i] && result.sdx[*i].code == code)
        else {
            continue;
        };
        taken[found] = true;
        out.push(diagnosis_part(
            "secondary",
            &result.sdx[found],
            diagnosis.poa.as_deref(),
            case.conditions.get(at + 1),
        ));
    }
    let mut taken = vec![false; result.procedures.len()];
    for (at, procedure) in claim.procedures.iter().enumerate() {
        let code = coding::normalize_code(procedure);
        let Some(found) =
            (0..result.procedures.len()).find(|i| !taken[*i] && result.procedures[*i].code == code)
        else {
            continue;
        };
        taken[found] = true;
        out.push(procedure_part(
            &result.procedures[found],
            case.procedures.get(at),
        ));
    }
    let mut mce = vec![parameter("editType", "valueCode", impact(&edits.edit_type))];
    for edit in &edits.edits {
        let mut parts = vec![
            parameter("name", "valueCode", json!(edit.name)),
            parameter("count", "valueInteger", json!(edit.count)),
            parameter("codeType", "valueCode", json!(edit.code_type)),
            parameter("editType", "valueCode", impact(&edit.edit_type)),
        ];
        for code in &edit.codes {
            parts.push(parameter("code", "valueCode", json!(code)));
        }
        mce.push(parameter_parts("edit", parts));
    }
    out.push(parameter_parts("mce", mce));
    parameters(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_whole_years_at_admission() {
        let day = |text: &str| partial_date(text).map(Date::yyyymmdd);
        assert_eq!(day("1950"), Some(19500101));
        assert_eq!(day("1950-07"), Some(19500701));
        assert_eq!(day("1950-07-14"), Some(19500714));
        assert_eq!(day("1950-13"), None);
        let (birth, admission) = (partial_date("1950-07-14"), Date::parse("2026-07-13"));
        assert_eq!(
            birth.zip(admission).and_then(|(b, a)| age_in_years(b, a)),
            Some(75)
        );
        let admission = Date::parse("2026-07-14");
        assert_eq!(
            birth.zip(admission).and_then(|(b, a)| age_in_years(b, a)),
            Some(76)
        );
        assert_eq!(
            admission.zip(birth).and_then(|(a, b)| age_in_years(a, b)),
            None
        );
    }

    #[test]
    fn discharge_dispositions_map_to_ub04_statuses() {
        let encounter = |system: &str, code: &str| {
            json!({"hospitalization": {"dischargeDisposition": {"coding": [{"system": system, "code": code}]}}})
                .as_object()
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(discharge_status(&encounter(HL7_DISPOSITION, "snf")).0, 3);
        assert_eq!(discharge_status(&encounter(HL7_DISPOSITION, "exp")).0, 20);
        assert_eq!(discharge_status(&encounter(NUBC, "06")).0, 6);
        assert_eq!(discharge_status(&encounter("http://example.org", "x")).0, 1);
        assert_eq!(discharge_status(&Map::new()).0, 1);
    }

    #[test]
    fn references_name_their_type_and_id() {
        let reference = json!({"reference": "Condition/c1"});
        assert_eq!(referenced_id(Some(&reference), "Condition"), Some("c1"));
        let absolute = json!({"reference": "http://x/fhir/Condition/c2"});
        assert_eq!(referenced_id(Some(&absolute), "Condition"), Some("c2"));
        assert_eq!(referenced_id(Some(&reference), "Patient"), None);
        assert_eq!(referenced_id(None, "Patient"), None);
    }
}
