//! ICD-10-PCS FY2026: the procedure codes valid in FY2026 with their titles, what each of
//! a code's seven characters means (section, body system, root operation, body part,
//! approach, device, qualifier), validity for a date of service, and search.

use std::collections::HashMap;

use crate::date::Date;
use crate::search::{Index, SearchHit};
use crate::table::{self, embedded};

/// The axis names of the Medical and Surgical section and its neighbours; other sections
/// name some axes differently (imaging calls the 5th character contrast), and say so in
/// [`Axis::name`].
const AXES: [&str; 7] = [
    "section",
    "body system",
    "root operation",
    "body part",
    "approach",
    "device",
    "qualifier",
];

struct Entry {
    code: String,
    description: String,
    valid: (Date, Date),
}

/// The ICD-10-PCS code set.
pub struct Icd10Pcs {
    entries: Vec<Entry>,
    by_code: HashMap<String, u32>,
    /// (scope, position, value) -> label.
    axes: HashMap<(String, u8, char), String>,
    index: Index,
}

/// One character of a code and what it means.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Axis {
    /// 1 to 7.
    pub position: u8,
    pub name: &'static str,
    pub value: char,
    /// What the value means here; `None` when the shipped tables do not say.
    pub label: Option<String>,
}

/// One procedure code, borrowed from the code set.
#[derive(Clone, Copy)]
pub struct PcsCode<'a> {
    set: &'a Icd10Pcs,
    at: u32,
}

impl Icd10Pcs {
    pub(crate) fn load() -> Icd10Pcs {
        let (name, bytes) = embedded!("mce-pr.tsv.gz");
        let text = table::text(name, bytes);
        let mut valid: HashMap<&str, (Date, Date)> = HashMap::new();
        for cells in table::rows(name, &text, 3) {
            let first = Date::from_table(table::number(name, cells[1]));
            let last = Date::from_table(table::number(name, cells[2]));
            let range = valid.entry(cells[0]).or_insert((first, last));
            *range = (range.0.min(first), range.1.max(last));
        }
        let (name, bytes) = embedded!("icd10pcs.tsv.gz");
        let titles = table::text(name, bytes);
        let mut entries = Vec::new();
        let mut by_code = HashMap::new();
        for cells in table::rows(name, &titles, 2) {
            let Some(&range) = valid.get(cells[0]) else {
                panic!("data/coding/{name}: {} has no validity", cells[0])
            };
            by_code.insert(cells[0].to_string(), entries.len() as u32);
            entries.push(Entry {
                code: cells[0].to_string(),
                description: cells[1].to_string(),
                valid: range,
            });
        }
        let (name, bytes) = embedded!("icd10pcs-axes.tsv.gz");
        let text = table::text(name, bytes);
        let mut axes = HashMap::new();
        for cells in table::rows(name, &text, 4) {
            let position: u8 = table::number(name, cells[1]);
            let Some(value) = cells[2].chars().next() else {
                panic!("data/coding/{name}: empty value")
            };
            axes.insert(
                (cells[0].to_string(), position, value),
                cells[3].to_string(),
            );
        }
        let index = Index::build(entries.iter().map(|e| (e.description.as_str(), Vec::new())));
        Icd10Pcs {
            entries,
            by_code,
            axes,
            index,
        }
    }

    /// The code (`0DTJ4ZZ`, any case).
    pub fn lookup(&self, code: &str) -> Option<PcsCode<'_>> {
        let at = self.by_code.get(&crate::normalize_code(code))?;
        Some(PcsCode { set: self, at: *at })
    }

    /// Whether `code` may be reported for a date of service.
    pub fn is_valid(&self, code: &str, date: Date) -> bool {
        self.lookup(code).is_some_and(|c| c.is_valid_on(date))
    }

    /// What the characters of a code mean, known or not; works for any 7-character string
    /// as far as its characters are in the tables.
    pub fn axes(&self, code: &str) -> Vec<Axis> {
        let code = crate::normalize_code(code);
        code.chars()
            .take(7)
            .enumerate()
            .map(|(i, value)| {
                let scope = if i < 3 { &code[..i] } else { &code[..3] };
                let position = i as u8 + 1;
                Axis {
                    position,
                    name: AXES[i],
                    value,
                    label: self
                        .axes
                        .get(&(scope.to_string(), position, value))
                        .cloned(),
                }
            })
            .collect()
    }

    /// The best `limit` codes for a free-text query, best first.
    pub fn search(&self, query: &str, limit: usize) -> Vec<SearchHit> {
        self.ranked(query, limit)
            .into_iter()
            .map(|(code, score)| code.hit(score))
            .collect()
    }

    /// What [`Icd10Pcs::search`] finds, as borrowed codes with their scores.
    pub fn ranked(&self, query: &str, limit: usize) -> Vec<(PcsCode<'_>, f32)> {
        let key = crate::normalize_code(query);
        let mut hits: Vec<(PcsCode<'_>, f32)> = Vec::new();
        if key.len() >= 3
            && !key.contains(' ')
            && key.bytes().all(|b| b.is_ascii_alphanumeric())
            && key.bytes().any(|b| b.is_ascii_digit())
        {
            for at in self.prefixed(&key).take(limit) {
                let exact = self.entries[at as usize].code == key;
                hits.push((PcsCode { set: self, at }, if exact { 100.0 } else { 50.0 }));
            }
        }
        let from_prefix = hits.len();
        for (doc, score) in self.index.search(query, limit, |_| 0.0) {
            if hits.len() >= limit {
                break;
            }
            if hits[..from_prefix].iter().all(|(code, _)| code.at != doc) {
                hits.push((PcsCode { set: self, at: doc }, score));
            }
        }
        hits
    }

    /// The positions of the codes that start with `prefix` (table spelling), in order.
    fn prefixed<'s>(&'s self, prefix: &str) -> impl Iterator<Item = u32> + use<'s> {
        let start = self.entries.partition_point(|e| e.code.as_str() < prefix);
        let prefix = prefix.to_string();
        (start..self.entries.len())
            .take_while(move |at| self.entries[*at].code.starts_with(&prefix))
            .map(|at| at as u32)
    }

    /// Every code that starts with `prefix` (`0DT` for the excisions of the
    /// gastrointestinal system), in code order.
    pub fn starting_with<'s>(
        &'s self,
        prefix: &str,
    ) -> impl Iterator<Item = PcsCode<'s>> + use<'s> {
        let key = crate::normalize_code(prefix);
        self.prefixed(&key).map(move |at| PcsCode { set: self, at })
    }

    /// Every code, in code order.
    pub fn iter(&self) -> impl Iterator<Item = PcsCode<'_>> {
        (0..self.entries.len() as u32).map(|at| PcsCode { set: self, at })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<'a> PcsCode<'a> {
    fn entry(&self) -> &'a Entry {
        &self.set.entries[self.at as usize]
    }

    fn hit(&self, score: f32) -> SearchHit {
        SearchHit {
            code: self.code().to_string(),
            display: self.code().to_string(),
            description: self.description().to_string(),
            score,
        }
    }

    pub fn code(&self) -> &'a str {
        &self.entry().code
    }

    /// The long title; empty for the few FY2026 codes no shipped source titles (see
    /// data/README.md), whose meaning [`PcsCode::axes`] still gives where known.
    pub fn description(&self) -> &'a str {
        &self.entry().description
    }

    pub fn axes(&self) -> Vec<Axis> {
        self.set.axes(self.code())
    }

    /// First and last day the code may be reported, per the MCE.
    pub fn valid_dates(&self) -> (Date, Date) {
        self.entry().valid
    }

    pub fn is_valid_on(&self, date: Date) -> bool {
        let (first, last) = self.entry().valid;
        first <= date && date <= last
    }
}
