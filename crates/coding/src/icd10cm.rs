//! ICD-10-CM FY2026 (April 1, 2026 update): chapters, blocks and codes with their titles,
//! the hierarchy, billable codes versus headers, the tabular notes (Includes, Excludes1,
//! Excludes2, Code first, Use additional code, Code also, 7th-character rules), validity
//! for a date of service, and search.

use std::collections::HashMap;

use crate::date::Date;
use crate::search::{Index, SearchHit};
use crate::table::{self, embedded};

/// What a node of the tabular list is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CmKind {
    /// A chapter, named by its number (`9`).
    Chapter,
    /// A block of categories, named by its range (`I30-I5A`).
    Block,
    /// A category or subcategory that has codes below it: not valid on a claim.
    Header,
    /// A code valid on a claim (the leaves of the list, 7th character included).
    Billable,
}

/// The kinds of tabular notes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum NoteKind {
    Includes,
    InclusionTerm,
    Excludes1,
    Excludes2,
    CodeFirst,
    CodeAlso,
    UseAdditionalCode,
    Notes,
    SevenChrNote,
    /// The meaning of one 7th character (the character is in [`Note::character`]).
    Seventh,
}

/// One tabular note.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Note {
    pub kind: NoteKind,
    /// The 7th character a [`NoteKind::Seventh`] note defines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub character: Option<char>,
    pub text: String,
    /// The code ranges the note names, as `(first, last)` code prefixes.
    #[serde(skip)]
    references: Vec<(String, String)>,
}

struct Entry {
    code: String,
    parent: Option<u32>,
    kind: CmKind,
    description: String,
    notes: std::ops::Range<u32>,
    valid: Option<(Date, Date)>,
}

/// The ICD-10-CM code set.
pub struct Icd10Cm {
    entries: Vec<Entry>,
    by_code: HashMap<String, u32>,
    children: Vec<Vec<u32>>,
    notes: Vec<Note>,
    index: Index,
}

/// One node of the tabular list, borrowed from the code set.
#[derive(Clone, Copy)]
pub struct CmCode<'a> {
    set: &'a Icd10Cm,
    at: u32,
}

/// Two codes of one claim that an Excludes1 note forbids together.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Excludes1Conflict {
    /// The code (or the code whose ancestor) holds the note.
    pub code: String,
    /// The code the note excludes.
    pub excluded: String,
    /// Where the note is (`code` or one of its ancestors).
    pub note_on: String,
    pub note: String,
}

impl Icd10Cm {
    pub(crate) fn load() -> Icd10Cm {
        let (name, bytes) = embedded!("icd10cm.tsv.gz");
        let text = table::text(name, bytes);
        let mut entries = Vec::new();
        let mut by_code = HashMap::new();
        for cells in table::rows(name, &text, 4) {
            let kind = match cells[2] {
                "chapter" => CmKind::Chapter,
                "block" => CmKind::Block,
                "header" => CmKind::Header,
                "billable" => CmKind::Billable,
                other => panic!("data/coding/{name}: kind {other:?}"),
            };
            let parent = if cells[1].is_empty() {
                None
            } else {
                Some(*by_code.get(cells[1]).unwrap_or_else(|| {
                    panic!("data/coding/{name}: parent {} before its child", cells[1])
                }))
            };
            by_code.insert(cells[0].to_string(), entries.len() as u32);
            entries.push(Entry {
                code: cells[0].to_string(),
                parent,
                kind,
                description: cells[3].to_string(),
                notes: 0..0,
                valid: None,
            });
        }
        let mut children = vec![Vec::new(); entries.len()];
        for (at, entry) in entries.iter().enumerate() {
            if let Some(parent) = entry.parent {
                children[parent as usize].push(at as u32);
            }
        }

        let (name, bytes) = embedded!("icd10cm-notes.tsv.gz");
        let text = table::text(name, bytes);
        let mut owned: Vec<(u32, Note)> = Vec::new();
        for cells in table::rows(name, &text, 3) {
            let Some(&at) = by_code.get(cells[0]) else {
                panic!("data/coding/{name}: unknown code {}", cells[0])
            };
            let (kind, character) = match cells[1] {
                "includes" => (NoteKind::Includes, None),
                "inclusionTerm" => (NoteKind::InclusionTerm, None),
                "excludes1" => (NoteKind::Excludes1, None),
                "excludes2" => (NoteKind::Excludes2, None),
                "codeFirst" => (NoteKind::CodeFirst, None),
                "codeAlso" => (NoteKind::CodeAlso, None),
                "useAdditionalCode" => (NoteKind::UseAdditionalCode, None),
                "notes" => (NoteKind::Notes, None),
                "sevenChrNote" => (NoteKind::SevenChrNote, None),
                other => match other
                    .strip_prefix("seventh:")
                    .and_then(|c| c.chars().next())
                {
                    Some(c) => (NoteKind::Seventh, Some(c)),
                    None => panic!("data/coding/{name}: note kind {other:?}"),
                },
            };
            let references = code_references(cells[2]);
            owned.push((
                at,
                Note {
                    kind,
                    character,
                    text: cells[2].to_string(),
                    references,
                },
            ));
        }
        owned.sort_by_key(|(at, _)| *at);
        let mut notes = Vec::with_capacity(owned.len());
        for (at, note) in owned {
            let index = notes.len() as u32;
            let range = &mut entries[at as usize].notes;
            if range.start == range.end {
                *range = index..index;
            }
            range.end = index + 1;
            notes.push(note);
        }

        let (name, bytes) = embedded!("mce-dx.tsv.gz");
        let text = table::text(name, bytes);
        for cells in table::rows(name, &text, 3) {
            if let Some(&at) = by_code.get(cells[0]) {
                let first = Date::from_table(table::number(name, cells[1]));
                let last = Date::from_table(table::number(name, cells[2]));
                let valid = &mut entries[at as usize].valid;
                *valid = Some(match *valid {
                    Some((a, b)) => (a.min(first), b.max(last)),
                    None => (first, last),
                });
            }
        }

        let index = Index::build(entries.iter().map(|entry| {
            let secondary = notes[entry.notes.start as usize..entry.notes.end as usize]
                .iter()
                .filter(|note| note.kind == NoteKind::InclusionTerm)
                .map(|note| note.text.as_str())
                .collect();
            (entry.description.as_str(), secondary)
        }));
        Icd10Cm {
            entries,
            by_code,
            children,
            notes,
            index,
        }
    }

    /// The node for a code (`I50.21`, `i5021`), a block (`I30-I5A`) or a chapter (`9`).
    pub fn lookup(&self, code: &str) -> Option<CmCode<'_>> {
        let key = code.trim();
        let at = self
            .by_code
            .get(key)
            .or_else(|| self.by_code.get(&crate::normalize_code(key)))?;
        Some(CmCode { set: self, at: *at })
    }

    /// Whether `code` may be reported for a date of service: a billable code in force that day.
    pub fn is_valid(&self, code: &str, date: Date) -> bool {
        self.lookup(code).is_some_and(|c| c.is_valid_on(date))
    }

    /// The chapters, in order.
    pub fn chapters(&self) -> impl Iterator<Item = CmCode<'_>> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.kind == CmKind::Chapter)
            .map(|(at, _)| CmCode {
                set: self,
                at: at as u32,
            })
    }

    /// Every node in tabular order.
    pub fn iter(&self) -> impl Iterator<Item = CmCode<'_>> {
        (0..self.entries.len() as u32).map(|at| CmCode { set: self, at })
    }

    /// The best `limit` codes for a free-text query, best first. Billable codes rank a
    /// little above headers; a query that is a code or its start lists those codes first.
    pub fn search(&self, query: &str, limit: usize) -> Vec<SearchHit> {
        self.ranked(query, limit)
            .into_iter()
            .map(|(code, score)| code.hit(score))
            .collect()
    }

    /// What [`Icd10Cm::search`] finds, as borrowed nodes with their scores (nothing is
    /// copied, so asking for every match is cheap).
    pub fn ranked(&self, query: &str, limit: usize) -> Vec<(CmCode<'_>, f32)> {
        let mut hits = self.code_prefix_hits(query, limit);
        let bonus = |doc: u32| match self.entries[doc as usize].kind {
            CmKind::Billable => 0.05,
            CmKind::Header => 0.02,
            _ => 0.0,
        };
        let from_prefix = hits.len();
        for (doc, score) in self.index.search(query, limit, bonus) {
            if hits.len() >= limit {
                break;
            }
            if hits[..from_prefix].iter().all(|(code, _)| code.at != doc) {
                hits.push((CmCode { set: self, at: doc }, score));
            }
        }
        hits
    }

    fn code_prefix_hits(&self, query: &str, limit: usize) -> Vec<(CmCode<'_>, f32)> {
        let key = crate::normalize_code(query);
        let looks_like_code = key.len() >= 3
            && key.as_bytes()[0].is_ascii_uppercase()
            && key.as_bytes()[1].is_ascii_digit()
            && key.bytes().all(|b| b.is_ascii_alphanumeric());
        if !looks_like_code || limit == 0 {
            return Vec::new();
        }
        let Some(code) = self.lookup(&key) else {
            return Vec::new();
        };
        let mut hits = vec![(code, 100.0)];
        let mut stack: Vec<u32> = self.children[code.at as usize]
            .iter()
            .rev()
            .copied()
            .collect();
        while let Some(at) = stack.pop() {
            if hits.len() >= limit {
                break;
            }
            hits.push((CmCode { set: self, at }, 50.0));
            stack.extend(self.children[at as usize].iter().rev());
        }
        hits
    }

    /// The pairs of `codes` (one claim's diagnoses) that an Excludes1 note forbids together:
    /// a note on a code or on any of its ancestors that names the other code or its range.
    pub fn excludes1_conflicts(&self, codes: &[&str]) -> Vec<Excludes1Conflict> {
        let nodes: Vec<CmCode<'_>> = codes.iter().filter_map(|c| self.lookup(c)).collect();
        let mut conflicts = Vec::new();
        for a in &nodes {
            for holder in std::iter::once(*a).chain(a.ancestors()) {
                for note in holder
                    .notes()
                    .iter()
                    .filter(|n| n.kind == NoteKind::Excludes1)
                {
                    for b in &nodes {
                        if b.at != a.at && note.names(b.code()) {
                            conflicts.push(Excludes1Conflict {
                                code: a.display(),
                                excluded: b.display(),
                                note_on: holder.display(),
                                note: note.text.clone(),
                            });
                        }
                    }
                }
            }
        }
        conflicts
    }
}

impl Note {
    /// Whether the note names `code` (table spelling), alone or within a range.
    pub fn names(&self, code: &str) -> bool {
        self.references.iter().any(|(first, last)| {
            let n = first.len().min(code.len());
            let head = &code[..n];
            head >= &first[..n] && head <= &last[..last.len().min(n)]
        })
    }
}

/// The code references of a note's text: `(Z16.-)`, `(P35-P39)`, `K52.8`, as prefixes.
fn code_references(text: &str) -> Vec<(String, String)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let read_code = |start: usize| -> Option<(String, usize)> {
        let b = &bytes[start..];
        if b.len() < 3
            || !b[0].is_ascii_uppercase()
            || !b[1].is_ascii_digit()
            || !b[2].is_ascii_alphanumeric()
        {
            return None;
        }
        if start > 0 && bytes[start - 1].is_ascii_alphanumeric() {
            return None;
        }
        let mut code = String::from_utf8_lossy(&b[..3]).into_owned();
        let mut end = start + 3;
        if end + 1 < bytes.len() && bytes[end] == b'.' && bytes[end + 1].is_ascii_alphanumeric() {
            end += 1;
            while end < bytes.len() && bytes[end].is_ascii_alphanumeric() {
                code.push(bytes[end] as char);
                end += 1;
            }
        }
        if end < bytes.len() && bytes[end].is_ascii_alphanumeric() {
            return None;
        }
        Some((code, end))
    };
    while i < bytes.len() {
        if let Some((first, end)) = read_code(i) {
            if end + 1 < bytes.len()
                && bytes[end] == b'-'
                && let Some((last, after)) = read_code(end + 1)
            {
                out.push((first, last));
                i = after;
                continue;
            }
            out.push((first.clone(), first));
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

impl<'a> CmCode<'a> {
    fn entry(&self) -> &'a Entry {
        &self.set.entries[self.at as usize]
    }

    fn hit(&self, score: f32) -> SearchHit {
        SearchHit {
            code: self.code().to_string(),
            display: self.display(),
            description: self.description().to_string(),
            score,
        }
    }

    /// The code as the tables spell it (`I5021`, `I30-I5A`, `9`).
    pub fn code(&self) -> &'a str {
        &self.entry().code
    }

    /// The code as people write it, with the dot after the category (`I50.21`).
    pub fn display(&self) -> String {
        let code = self.code();
        match self.kind() {
            CmKind::Header | CmKind::Billable if code.len() > 3 => {
                format!("{}.{}", &code[..3], &code[3..])
            }
            _ => code.to_string(),
        }
    }

    pub fn description(&self) -> &'a str {
        &self.entry().description
    }

    pub fn kind(&self) -> CmKind {
        self.entry().kind
    }

    /// Billable (valid on a claim) rather than a header, block or chapter.
    pub fn is_billable(&self) -> bool {
        self.kind() == CmKind::Billable
    }

    pub fn parent(&self) -> Option<CmCode<'a>> {
        self.entry().parent.map(|at| CmCode { set: self.set, at })
    }

    /// Parent, grandparent, ..., up to the chapter.
    pub fn ancestors(&self) -> impl Iterator<Item = CmCode<'a>> {
        std::iter::successors(self.parent(), |c| c.parent())
    }

    pub fn children(&self) -> impl Iterator<Item = CmCode<'a>> + 'a {
        let set = self.set;
        set.children[self.at as usize]
            .iter()
            .map(move |&at| CmCode { set, at })
    }

    /// The chapter, block and category (3-character code) the node belongs to.
    pub fn chapter(&self) -> Option<CmCode<'a>> {
        std::iter::once(*self)
            .chain(self.ancestors())
            .find(|c| c.kind() == CmKind::Chapter)
    }

    pub fn block(&self) -> Option<CmCode<'a>> {
        std::iter::once(*self)
            .chain(self.ancestors())
            .find(|c| c.kind() == CmKind::Block)
    }

    pub fn category(&self) -> Option<CmCode<'a>> {
        std::iter::once(*self)
            .chain(self.ancestors())
            .find(|c| matches!(c.kind(), CmKind::Header | CmKind::Billable) && c.code().len() == 3)
    }

    /// The notes written on this node (not those it inherits).
    pub fn notes(&self) -> &'a [Note] {
        let range = &self.entry().notes;
        &self.set.notes[range.start as usize..range.end as usize]
    }

    /// The notes of a kind that apply here: this node's and its ancestors', nearest first.
    pub fn applicable_notes(&self, kind: NoteKind) -> Vec<(CmCode<'a>, &'a Note)> {
        std::iter::once(*self)
            .chain(self.ancestors())
            .flat_map(|holder| {
                holder
                    .notes()
                    .iter()
                    .filter(move |n| n.kind == kind)
                    .map(move |n| (holder, n))
            })
            .collect()
    }

    /// The 7th-character values that apply here (the nearest node that defines them),
    /// as (character, meaning); empty when the code takes no 7th character.
    pub fn seventh_characters(&self) -> Vec<(char, &'a str)> {
        for holder in std::iter::once(*self).chain(self.ancestors()) {
            let values: Vec<(char, &str)> = holder
                .notes()
                .iter()
                .filter(|n| n.kind == NoteKind::Seventh)
                .filter_map(|n| n.character.map(|c| (c, n.text.as_str())))
                .collect();
            if !values.is_empty() {
                return values;
            }
        }
        Vec::new()
    }

    /// The dates a billable code may be reported (first and last day), per the MCE.
    pub fn valid_dates(&self) -> Option<(Date, Date)> {
        self.entry().valid.filter(|_| self.is_billable())
    }

    /// Whether the code may be reported for a date of service.
    pub fn is_valid_on(&self, date: Date) -> bool {
        self.valid_dates()
            .is_some_and(|(first, last)| first <= date && date <= last)
    }
}

#[cfg(test)]
mod tests {
    use super::code_references;

    #[test]
    fn note_references_are_codes_ranges_and_dashed_categories() {
        assert_eq!(
            code_references(
                "infectious and parasitic diseases (P35-P39) and resistance (Z16.-); see K52.81, not A1"
            ),
            vec![
                ("P35".to_string(), "P39".to_string()),
                ("Z16".to_string(), "Z16".to_string()),
                ("K5281".to_string(), "K5281".to_string())
            ]
        );
    }
}
