//! The implicit value sets of the two code systems: `[system]?fhir_vs` (every code) and
//! `[system]?fhir_vs=isa/CODE` (the code and every code below it). For ICD-10-PCS, which
//! has no hierarchy of codes, `isa/` also takes the first 1 to 6 characters of a code
//! (`isa/0DT`: every code of that table). Chapters and blocks of ICD-10-CM are groupings,
//! not codes: `isa/` takes them, but no value set holds them.

use super::concept::{Concept, System};
use crate::error::ApiError;

pub enum Root {
    All,
    Concept(Concept<'static>),
    /// The start of ICD-10-PCS codes (table spelling).
    PcsPrefix(String),
}

pub struct ValueSet {
    pub url: String,
    pub system: System,
    pub root: Root,
}

fn unknown(url: &str) -> ApiError {
    ApiError::not_found(format!(
        "the value set {url:?} is not known here; known are the implicit value sets {0}?fhir_vs and {0}?fhir_vs=isa/CODE, and the same for {1}",
        System::Cm.url(),
        System::Pcs.url()
    ))
}

fn not_a_code(system: System, code: &str) -> ApiError {
    ApiError::not_found(format!(
        "{code:?} in the value set's isa/ is not a code of {}",
        system.title()
    ))
}

impl ValueSet {
    pub fn parse(url: &str) -> Result<ValueSet, ApiError> {
        let url = url.trim();
        let (base, query) = url.split_once('?').ok_or_else(|| unknown(url))?;
        let system = System::from_url(base).ok_or_else(|| unknown(url))?;
        let root = match query {
            "fhir_vs" => Root::All,
            _ => {
                let code = query
                    .strip_prefix("fhir_vs=isa/")
                    .filter(|code| !code.is_empty())
                    .ok_or_else(|| unknown(url))?;
                match (system, system.concept(code)) {
                    (_, Some(concept)) => Root::Concept(concept),
                    (System::Pcs, None) => {
                        let prefix = coding::normalize_code(code);
                        if prefix.len() < 7
                            && coding::icd10pcs().starting_with(&prefix).next().is_some()
                        {
                            Root::PcsPrefix(prefix)
                        } else {
                            return Err(not_a_code(system, code));
                        }
                    }
                    (System::Cm, None) => return Err(not_a_code(system, code)),
                }
            }
        };
        Ok(ValueSet {
            url: url.to_string(),
            system,
            root,
        })
    }

    /// Whether the value set holds a concept.
    pub fn contains(&self, concept: &Concept<'_>) -> bool {
        if concept.system() != self.system || !concept.is_code() {
            return false;
        }
        match &self.root {
            Root::All => true,
            Root::Concept(root) => root.subsumes(concept),
            Root::PcsPrefix(prefix) => match concept {
                Concept::Pcs(code) => code.code().starts_with(prefix.as_str()),
                Concept::Cm(_) => false,
            },
        }
    }

    /// Every member, in code order (tabular order for ICD-10-CM).
    pub fn members(&self) -> Box<dyn Iterator<Item = Concept<'static>> + '_> {
        match (&self.root, self.system) {
            (Root::All, System::Cm) => Box::new(
                coding::icd10cm()
                    .iter()
                    .map(Concept::Cm)
                    .filter(Concept::is_code),
            ),
            (Root::All, System::Pcs) => Box::new(coding::icd10pcs().iter().map(Concept::Pcs)),
            (Root::Concept(Concept::Cm(root)), _) => {
                let mut stack = vec![*root];
                Box::new(
                    std::iter::from_fn(move || {
                        let next = stack.pop()?;
                        let children: Vec<_> = next.children().collect();
                        stack.extend(children.into_iter().rev());
                        Some(Concept::Cm(next))
                    })
                    .filter(Concept::is_code),
                )
            }
            (Root::Concept(concept @ Concept::Pcs(_)), _) => Box::new(std::iter::once(*concept)),
            (Root::PcsPrefix(prefix), _) => {
                Box::new(coding::icd10pcs().starting_with(prefix).map(Concept::Pcs))
            }
        }
    }
}
