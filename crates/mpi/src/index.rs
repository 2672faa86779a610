//! The in-memory index for single-record look-ups: records are kept prepared, under
//! their blocking keys, and can be added, replaced and removed one at a time; a
//! look-up prepares the query, gathers the records that share a key with it, and scores
//! them. Term frequencies follow the indexed records.
//!
//! NOTE: interned values are never freed, so an index that sees many updates grows by
//! the distinct values it has ever held.

use std::collections::HashMap;

use serde::Serialize;

use crate::compare::ComparisonKind;
use crate::error::Error;
use crate::model::{Explanation, Frequencies, MatchClass, Model, Weights, explain, probability};
use crate::prepare::{Lexicon, Person, QueryLexicon, Scratch, Texts, prepare};
use crate::record::Record;
use crate::text::HashedMap;
use crate::train::{Random, corrected_u, level_of, pattern, proportions};

/// Indexed records under one model.
pub struct Index {
    model: Model,
    kinds: Vec<ComparisonKind>,
    lexicon: Lexicon,
    /// Slot per record; a removed record's slot is `None` until reused.
    persons: Vec<Option<Person>>,
    ids: Vec<String>,
    slots: HashMap<String, u32>,
    free: Vec<u32>,
    /// Per blocking rule: key to the slots that have it.
    blocks: Vec<HashedMap<Vec<u32>>>,
    frequencies: Frequencies,
    count: u64,
    scratch: Scratch,
}

/// A record found by a look-up.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Candidate {
    pub id: String,
    pub weight: f64,
    pub probability: f64,
    pub class: MatchClass,
}

impl Index {
    /// An empty index scoring with `model` (checked first).
    pub fn new(model: Model) -> Result<Index, Error> {
        model.check()?;
        Ok(Index {
            kinds: model.comparisons.iter().map(|c| c.kind).collect(),
            blocks: vec![HashedMap::default(); model.blocking.len()],
            frequencies: Frequencies::new(&model),
            model,
            lexicon: Lexicon::default(),
            persons: Vec::new(),
            ids: Vec::new(),
            slots: HashMap::new(),
            free: Vec::new(),
            count: 0,
            scratch: Scratch::default(),
        })
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds `record`, or replaces the record with the same id; a record needs an id.
    pub fn insert(&mut self, record: &Record) -> Result<(), Error> {
        if record.id.is_empty() {
            return Err(Error::MissingId);
        }
        if self.persons.len() >= u32::MAX as usize && self.free.is_empty() {
            return Err(Error::TooManyRecords(u64::from(u32::MAX)));
        }
        self.remove(&record.id);
        let person = prepare(record, &mut self.lexicon, &mut self.scratch);
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.persons.push(None);
                self.ids.push(String::new());
                (self.persons.len() - 1) as u32
            }
        };
        let texts = Texts::of(&self.lexicon);
        let mut keys = Vec::new();
        for (rule, blocks) in self.model.blocking.iter().zip(&mut self.blocks) {
            keys.clear();
            rule.keys(&person, &texts, &mut keys);
            for key in &keys {
                blocks.entry(*key).or_default().push(slot);
            }
        }
        self.frequencies.count(&self.model, &person, true);
        if let Some(cell) = self.persons.get_mut(slot as usize) {
            *cell = Some(person);
        }
        if let Some(cell) = self.ids.get_mut(slot as usize) {
            cell.clone_from(&record.id);
        }
        self.slots.insert(record.id.clone(), slot);
        self.count += 1;
        Ok(())
    }

    /// Removes the record with id `id`; false when there was none.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(slot) = self.slots.remove(id) else {
            return false;
        };
        let Some(person) = self.persons.get_mut(slot as usize).and_then(Option::take) else {
            return false;
        };
        let texts = Texts::of(&self.lexicon);
        let mut keys = Vec::new();
        for (rule, blocks) in self.model.blocking.iter().zip(&mut self.blocks) {
            keys.clear();
            rule.keys(&person, &texts, &mut keys);
            for key in &keys {
                if let Some(members) = blocks.get_mut(key) {
                    members.retain(|&member| member != slot);
                    if members.is_empty() {
                        blocks.remove(key);
                    }
                }
            }
        }
        self.frequencies.count(&self.model, &person, false);
        if let Some(cell) = self.ids.get_mut(slot as usize) {
            cell.clear();
        }
        self.free.push(slot);
        self.count -= 1;
        true
    }

    /// The indexed records that may be the person of `record`: those at or above the
    /// model's `possible` threshold, best first, at most `limits.candidates` of them.
    /// A record with the query's own id is left out.
    pub fn search(&self, record: &Record) -> Vec<Candidate> {
        let mut view = QueryLexicon::new(&self.lexicon);
        let query = prepare(record, &mut view, &mut Scratch::default());
        let texts = view.texts();
        let slots = self.gather(&query, &texts);
        let weights = Weights::new(&self.model, self.count);
        let mut found: Vec<Candidate> = slots
            .into_iter()
            .filter_map(|slot| {
                let person = self.persons.get(slot as usize)?.as_ref()?;
                let id = self.ids.get(slot as usize)?;
                if *id == record.id && !record.id.is_empty() {
                    return None;
                }
                let pattern = pattern(&self.kinds, &query, person, &texts);
                let weight = weights.score(&self.model, pattern, &query, &self.frequencies);
                let probability = probability(weight);
                (probability >= self.model.thresholds.possible).then(|| Candidate {
                    id: id.clone(),
                    weight,
                    probability,
                    class: weights.class(probability),
                })
            })
            .collect();
        found.sort_by(|a, b| b.weight.total_cmp(&a.weight).then_with(|| a.id.cmp(&b.id)));
        found.truncate(self.model.limits.candidates);
        found
    }

    /// Why `record` and the indexed record `id` score what they do; `None` when no
    /// record has that id.
    pub fn explain(&self, record: &Record, id: &str) -> Option<Explanation> {
        let slot = *self.slots.get(id)?;
        let person = self.persons.get(slot as usize)?.as_ref()?;
        let mut view = QueryLexicon::new(&self.lexicon);
        let query = prepare(record, &mut view, &mut Scratch::default());
        let texts = view.texts();
        let weights = Weights::new(&self.model, self.count);
        let pattern = pattern(&self.kinds, &query, person, &texts);
        Some(explain(
            &self.model,
            &weights,
            pattern,
            &query,
            &self.frequencies,
        ))
    }

    /// Measures u again on the indexed records, from `samples` random pairs (corrected
    /// for the few matches among them, as training does); m, the prior and the
    /// thresholds stay, and so do neutral comparisons (m = u). u belongs to a
    /// population (how often strangers agree on a value), m to the kinds of error, so a
    /// model trained on other data fits these records once their u is measured. False,
    /// and nothing changes, with fewer than two records.
    pub fn estimate_u(&mut self, samples: usize, seed: u64) -> bool {
        let live: Vec<&Person> = self.persons.iter().flatten().collect();
        let count = live.len() as u64;
        if count < 2 || samples == 0 {
            return false;
        }
        let texts = Texts::of(&self.lexicon);
        let mut random = Random::new(seed);
        let mut counts = vec![[0u64; 16]; self.kinds.len()];
        for _ in 0..samples {
            let a = random.below(count);
            let mut b = random.below(count - 1);
            if b >= a {
                b += 1;
            }
            let (Some(a), Some(b)) = (live.get(a as usize), live.get(b as usize)) else {
                continue;
            };
            let pattern = pattern(&self.kinds, a, b, &texts);
            for (index, row) in counts.iter_mut().enumerate() {
                if let Some(slot) = row.get_mut(usize::from(level_of(pattern, index))) {
                    *slot += 1;
                }
            }
        }
        let prior = self.model.prior_for(count);
        for (comparison, counts) in self.model.comparisons.iter_mut().zip(&counts) {
            // A neutral comparison (m = u at every level: the model never learned its m)
            // stays neutral: measured u against a made-up m would weigh rare levels most.
            if comparison.levels.iter().all(|level| level.m == level.u) {
                continue;
            }
            let sampled = proportions(counts, comparison.levels.len());
            let m: Vec<f64> = comparison.levels.iter().map(|level| level.m).collect();
            let u = corrected_u(&sampled, &m, prior, samples as u64);
            for (level, u) in comparison.levels.iter_mut().zip(u) {
                level.u = u;
            }
        }
        true
    }

    /// The slots sharing a key with `query`, each once; blocks over the limit are
    /// skipped.
    fn gather(&self, query: &Person, texts: &Texts) -> Vec<u32> {
        let mut keys = Vec::new();
        let mut slots = Vec::new();
        for (rule, blocks) in self.model.blocking.iter().zip(&self.blocks) {
            keys.clear();
            rule.keys(query, texts, &mut keys);
            for key in &keys {
                if let Some(members) = blocks.get(key)
                    && members.len() <= self.model.limits.block_records
                {
                    slots.extend_from_slice(members);
                }
            }
        }
        slots.sort_unstable();
        slots.dedup();
        slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(id: &str, given: &str, family: &str, birthdate: &str, ssn: &str) -> Record {
        Record {
            id: id.into(),
            given: given.into(),
            family: family.into(),
            birthdate: birthdate.into(),
            ssn: ssn.into(),
            postcode: "2000".into(),
            ..Record::default()
        }
    }

    #[test]
    fn records_can_be_added_replaced_removed_and_found() -> Result<(), Error> {
        let mut index = Index::new(Model::untrained())?;
        index.insert(&person("1", "Peter", "Chalmers", "1974-12-25", "1234567"))?;
        index.insert(&person("2", "Susan", "Nguyen", "1980-01-02", "7654321"))?;
        index.insert(&person("3", "Petra", "Chalmers", "1990-06-30", "5555555"))?;
        assert_eq!(index.len(), 3);
        assert!(matches!(
            index.insert(&person("", "No", "Id", "", "")),
            Err(Error::MissingId)
        ));

        let query = person("", "Pete", "Chalmers", "1974-12-25", "1234576");
        let found = index.search(&query);
        assert_eq!(found.first().map(|c| c.id.as_str()), Some("1"));
        assert!(found.iter().all(|candidate| candidate.id != "2"));

        // Replacing record 1 with another person loses the match.
        index.insert(&person("1", "Mary", "Smith", "1950-03-03", "9999999"))?;
        assert_eq!(index.len(), 3);
        assert!(
            index
                .search(&query)
                .iter()
                .all(|candidate| candidate.id != "1")
        );

        assert!(index.remove("3"));
        assert!(!index.remove("3"));
        assert_eq!(index.len(), 2);
        assert!(index.search(&query).is_empty());
        Ok(())
    }

    #[test]
    fn an_explanation_adds_up_to_the_score() -> Result<(), Error> {
        let mut index = Index::new(Model::untrained())?;
        index.insert(&person("1", "Peter", "Chalmers", "1974-12-25", "1234567"))?;
        let query = person("", "Peter", "Chalmers", "1974-12-52", "");
        let explanation = index
            .explain(&query, "1")
            .ok_or_else(|| Error::InvalidModel("no explanation".into()))?;
        let sum: f64 = explanation.prior_weight
            + explanation
                .terms
                .iter()
                .map(|term| term.weight)
                .sum::<f64>();
        assert!((sum - explanation.weight).abs() < 1e-9);
        let ssn = explanation
            .terms
            .iter()
            .find(|term| term.comparison == "ssn");
        assert_eq!(ssn.map(|term| term.level.clone()), Some(None));
        let date = explanation
            .terms
            .iter()
            .find(|term| term.comparison == "birthdate");
        assert_eq!(
            date.and_then(|term| term.level.clone()).as_deref(),
            Some("one digit replaced or two swapped")
        );
        assert_eq!(index.explain(&query, "nobody"), None);
        Ok(())
    }

    #[test]
    fn u_is_measured_on_the_indexed_records() -> Result<(), Error> {
        let mut index = Index::new(Model::untrained())?;
        assert!(!index.estimate_u(1000, 1));
        // Everyone lives in one town and was born on one day: agreeing on them says
        // nothing here.
        let word = |mut x: u64| -> String {
            (0..7)
                .map(|_| {
                    x = x
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    char::from(b'a' + ((x >> 33) % 26) as u8)
                })
                .collect()
        };
        for n in 0..2000u64 {
            let mut record = person(
                &n.to_string(),
                &word(n * 2 + 1),
                &word(n * 2 + 2),
                "1950-01-01",
                &format!("{:07}", n * 7_654_321 % 10_000_000),
            );
            record.city = "Springfield".into();
            index.insert(&record)?;
        }
        let place_u = |index: &Index| {
            let place = index
                .model()
                .comparisons
                .iter()
                .find(|c| c.kind == ComparisonKind::Place)
                .map(|c| c.levels[0].u);
            place.unwrap_or(0.0)
        };
        let mut stranger = person("", "Zed", "Quux", "1950-01-01", "");
        stranger.city = "Springfield".into();
        let before = index
            .explain(&stranger, "5")
            .map(|e| e.weight)
            .unwrap_or(0.0);
        assert!(place_u(&index) < 0.1);
        assert!(index.estimate_u(20_000, 7));
        assert!(place_u(&index) > 0.9, "{}", place_u(&index));
        let after = index
            .explain(&stranger, "5")
            .map(|e| e.weight)
            .unwrap_or(0.0);
        assert!(
            after < before - 5.0,
            "{before} -> {after}: {:?}",
            index.explain(&stranger, "5")
        );
        index.model().check()?;
        Ok(())
    }
}
