//! `CodeSystem/$subsumes` (R4 OperationDefinition CodeSystem-subsumes): whether codeA is
//! codeB (`equivalent`), above it in the ICD-10-CM hierarchy (`subsumes`), below it
//! (`subsumed-by`), or neither (`not-subsumed`). ICD-10-PCS codes subsume only themselves.

use serde_json::{Value, json};

use super::concept::{Concept, System};
use super::params::Params;
use super::{parameter, parameters};
use crate::error::ApiError;

pub fn run(params: &Params) -> Result<Value, ApiError> {
    let system_param = params.text("system")?;
    let a = side(params, "codeA", "codingA", system_param)?;
    let b = side(params, "codeB", "codingB", system_param)?;
    if a.system() != b.system() {
        return Err(ApiError::bad_request(format!(
            "$subsumes compares codes of one system; {} is in {} and {} in {}",
            a.code(),
            a.system().url(),
            b.code(),
            b.system().url()
        )));
    }
    a.system().check_version(params.text("version")?)?;
    let outcome = if a.code() == b.code() {
        "equivalent"
    } else if a.subsumes(&b) {
        "subsumes"
    } else if b.subsumes(&a) {
        "subsumed-by"
    } else {
        "not-subsumed"
    };
    Ok(parameters(vec![parameter(
        "outcome",
        "valueCode",
        json!(outcome),
    )]))
}

/// One side: `codeX` with `system`, or `codingX`.
fn side(
    params: &Params,
    code_name: &str,
    coding_name: &str,
    system: Option<&str>,
) -> Result<Concept<'static>, ApiError> {
    let code = params.text(code_name)?;
    let coding = params.coding(coding_name)?;
    let (system, code) = match (code, coding) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(format!(
                "$subsumes takes {code_name} or {coding_name}, not both"
            )));
        }
        (Some(code), None) => (
            system.ok_or_else(|| params.missing("system"))?.to_string(),
            code.to_string(),
        ),
        (None, Some(coding)) => (
            coding
                .system
                .or_else(|| system.map(str::to_string))
                .ok_or_else(|| params.bad(coding_name, "has no system"))?,
            coding
                .code
                .ok_or_else(|| params.bad(coding_name, "has no code"))?,
        ),
        (None, None) => return Err(params.missing(code_name)),
    };
    System::find(&system)?.require(&code)
}
