//! The two code systems and their concepts, seen the same way: a code as FHIR writes it
//! (`I50.21`, `0DTJ4ZZ`), its display, whether it is billable, and the hierarchy.

use coding::{CmCode, CmKind, PcsCode};

use crate::error::ApiError;

/// The one version of each code system this server has: fiscal year 2026.
pub const VERSION: &str = "2026";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    Cm,
    Pcs,
}

impl System {
    pub const ALL: [System; 2] = [System::Cm, System::Pcs];

    pub fn url(self) -> &'static str {
        match self {
            System::Cm => "http://hl7.org/fhir/sid/icd-10-cm",
            System::Pcs => "http://www.cms.gov/Medicare/Coding/ICD10",
        }
    }

    /// The id of its CodeSystem resource.
    pub fn id(self) -> &'static str {
        match self {
            System::Cm => "icd-10-cm",
            System::Pcs => "icd-10-pcs",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            System::Cm => "ICD-10-CM",
            System::Pcs => "ICD-10-PCS",
        }
    }

    pub fn from_url(url: &str) -> Option<System> {
        System::ALL.into_iter().find(|s| s.url() == url.trim())
    }

    /// The system a URL names; 404 for any other.
    pub fn find(url: &str) -> Result<System, ApiError> {
        System::from_url(url).ok_or_else(|| {
            ApiError::not_found(format!(
                "the code system {url:?} is not known here (known: {} and {})",
                System::Cm.url(),
                System::Pcs.url()
            ))
        })
    }

    /// 404 unless `version` (when given) is the version served.
    pub fn check_version(self, version: Option<&str>) -> Result<(), ApiError> {
        match version {
            None => Ok(()),
            Some(v) if v == VERSION || v.eq_ignore_ascii_case("FY2026") => Ok(()),
            Some(v) => Err(ApiError::not_found(format!(
                "version {v:?} of {} is not known here; this server has version {VERSION} (FY2026)",
                self.url()
            ))),
        }
    }

    /// The concept for a code (dotted or not, any case).
    pub fn concept(self, code: &str) -> Option<Concept<'static>> {
        match self {
            System::Cm => coding::icd10cm().lookup(code).map(Concept::Cm),
            System::Pcs => coding::icd10pcs().lookup(code).map(Concept::Pcs),
        }
    }

    /// The concept for a code, or 404 naming it.
    pub fn require(self, code: &str) -> Result<Concept<'static>, ApiError> {
        self.concept(code).ok_or_else(|| {
            ApiError::not_found(format!(
                "{code:?} is not a code of {} version {VERSION}",
                self.title()
            ))
        })
    }
}

/// A concept of either code system.
#[derive(Clone, Copy)]
pub enum Concept<'a> {
    Cm(CmCode<'a>),
    Pcs(PcsCode<'a>),
}

impl<'a> Concept<'a> {
    pub fn system(&self) -> System {
        match self {
            Concept::Cm(_) => System::Cm,
            Concept::Pcs(_) => System::Pcs,
        }
    }

    /// The code as FHIR writes it: ICD-10-CM with its dot.
    pub fn code(&self) -> String {
        match self {
            Concept::Cm(code) => code.display(),
            Concept::Pcs(code) => code.code().to_string(),
        }
    }

    /// The title; for the few ICD-10-PCS codes without one, the meanings of its characters.
    pub fn display(&self) -> String {
        match self {
            Concept::Cm(code) => code.description().to_string(),
            Concept::Pcs(code) if !code.description().is_empty() => code.description().to_string(),
            Concept::Pcs(code) => code
                .axes()
                .into_iter()
                .filter_map(|axis| axis.label)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// Valid on a claim: an ICD-10-CM leaf code, or any ICD-10-PCS code.
    pub fn is_billable(&self) -> bool {
        match self {
            Concept::Cm(code) => code.is_billable(),
            Concept::Pcs(_) => true,
        }
    }

    /// What kind of node: `chapter`, `block`, `header` or `billable` (ICD-10-PCS: `billable`).
    pub fn kind(&self) -> &'static str {
        match self {
            Concept::Cm(code) => match code.kind() {
                CmKind::Chapter => "chapter",
                CmKind::Block => "block",
                CmKind::Header => "header",
                CmKind::Billable => "billable",
            },
            Concept::Pcs(_) => "billable",
        }
    }

    /// A code proper (not an ICD-10-CM chapter or block): what value sets hold.
    pub fn is_code(&self) -> bool {
        match self {
            Concept::Cm(code) => matches!(code.kind(), CmKind::Header | CmKind::Billable),
            Concept::Pcs(_) => true,
        }
    }

    /// First and last day the code may be reported.
    pub fn valid_dates(&self) -> Option<(coding::Date, coding::Date)> {
        match self {
            Concept::Cm(code) => code.valid_dates(),
            Concept::Pcs(code) => Some(code.valid_dates()),
        }
    }

    /// Whether `self` is `other` or one of its ancestors.
    pub fn subsumes(&self, other: &Concept<'_>) -> bool {
        match (self, other) {
            (Concept::Cm(a), Concept::Cm(b)) => {
                a.code() == b.code() || b.ancestors().any(|up| up.code() == a.code())
            }
            (Concept::Pcs(a), Concept::Pcs(b)) => a.code() == b.code(),
            _ => false,
        }
    }

    /// The inclusion terms (ICD-10-CM), the concept's other names.
    pub fn inclusion_terms(&self) -> Vec<&'a str> {
        match self {
            Concept::Cm(code) => code
                .notes()
                .iter()
                .filter(|note| note.kind == coding::icd10cm::NoteKind::InclusionTerm)
                .map(|note| note.text.as_str())
                .collect(),
            Concept::Pcs(_) => Vec::new(),
        }
    }
}
