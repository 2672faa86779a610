//! The Fellegi-Sunter model: for each comparison level, m (how often true matches are
//! at that level) and u (how often non-matches are); a pair's match weight is the prior
//! log-odds plus log2(m/u) of each comparison's level, with term-frequency adjustment
//! of exact name agreement. The model is plain data: it saves as JSON and loads back.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::blocking::BlockingRule;
use crate::compare::{ComparisonKind, NULL};
use crate::error::Error;
use crate::prepare::Person;
use crate::text::{Sym, SymMap};

/// The format version written into saved models; a different one is refused.
pub const MODEL_VERSION: u32 = 1;

/// A trained (or default) matching model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub version: u32,
    pub comparisons: Vec<Comparison>,
    pub blocking: Vec<BlockingRule>,
    /// The probability that two records drawn at random are the same person, when one
    /// record is compared with `population` others. A population of another size scales
    /// it: each record is assumed to have the same expected number of matches.
    pub prior: f64,
    pub population: u64,
    pub thresholds: Thresholds,
    /// The smallest frequency a term-frequency adjustment uses, so one rare value
    /// cannot carry a match alone.
    pub frequency_floor: f64,
    pub limits: Limits,
    /// How the model was trained, for the record.
    #[serde(default)]
    pub training: Option<TrainingReport>,
}

/// One comparison and its levels' parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub kind: ComparisonKind,
    pub levels: Vec<Level>,
    /// Whether exact agreement is weighed by the frequency of the agreed value.
    pub frequency_adjusted: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Level {
    pub label: String,
    /// P(level | match).
    pub m: f64,
    /// P(level | non-match).
    pub u: f64,
}

impl Level {
    /// log2(m/u): the evidence this level gives, in bits.
    pub fn weight(&self) -> f64 {
        (self.m / self.u).log2()
    }
}

/// Match probabilities that divide pairs into classes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// At or above: the same person, linked without review.
    pub certain: f64,
    /// At or above: probably the same person; a person reviews the link.
    pub probable: f64,
    /// At or above: possibly the same person; listed as a candidate, never linked.
    pub possible: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            certain: 0.99,
            probable: 0.5,
            possible: 0.05,
        }
    }
}

/// Explicit limits on the work one look-up or one batch may cause.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// A block with more records than this is skipped: its key is too common to
    /// distinguish people (a placeholder phone number, say), and comparing all its pairs
    /// would cost the square of its size. The other rules still find its true pairs.
    pub block_records: usize,
    /// The most candidates a look-up returns.
    pub candidates: usize,
    /// A batch compares every pair within each cluster of at most this many records,
    /// so two records linked only through a third are scored too.
    pub cluster_records: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            block_records: 1_000,
            candidates: 100,
            cluster_records: 50,
        }
    }
}

/// What training saw and found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingReport {
    pub records: u64,
    pub random_pairs: u64,
    pub candidate_pairs: u64,
    pub em_iterations: u32,
    /// The share of candidate pairs that EM took for matches.
    pub candidate_match_share: f64,
}

/// How a pair is classed by its match probability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchClass {
    Certain,
    Probable,
    Possible,
    Unlikely,
}

impl MatchClass {
    pub fn name(self) -> &'static str {
        match self {
            MatchClass::Certain => "certain",
            MatchClass::Probable => "probable",
            MatchClass::Possible => "possible",
            MatchClass::Unlikely => "unlikely",
        }
    }
}

impl Thresholds {
    pub fn class(&self, probability: f64) -> MatchClass {
        if probability >= self.certain {
            MatchClass::Certain
        } else if probability >= self.probable {
            MatchClass::Probable
        } else if probability >= self.possible {
            MatchClass::Possible
        } else {
            MatchClass::Unlikely
        }
    }
}

impl Model {
    /// A model with every comparison and default blocking, and starting guesses for m and
    /// u; training replaces the guesses with estimates from the data.
    pub fn untrained() -> Model {
        Model::with(&ComparisonKind::ALL, BlockingRule::defaults())
    }

    /// A model over the given comparisons and blocking rules, with starting guesses.
    pub fn with(kinds: &[ComparisonKind], blocking: Vec<BlockingRule>) -> Model {
        let comparisons = kinds
            .iter()
            .map(|&kind| {
                let labels = kind.levels();
                let (m, u) = starting_guess(labels.len());
                Comparison {
                    kind,
                    levels: labels
                        .iter()
                        .zip(m.into_iter().zip(u))
                        .map(|(label, (m, u))| Level {
                            label: (*label).to_string(),
                            m,
                            u,
                        })
                        .collect(),
                    frequency_adjusted: matches!(
                        kind,
                        ComparisonKind::Given | ComparisonKind::Family
                    ),
                }
            })
            .collect();
        Model {
            version: MODEL_VERSION,
            comparisons,
            blocking,
            prior: 1e-4,
            population: 10_000,
            thresholds: Thresholds::default(),
            frequency_floor: 1e-5,
            limits: Limits::default(),
            training: None,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Reads a model saved by `to_json`, checking that it fits this version's comparisons.
    pub fn from_json(text: &str) -> Result<Model, Error> {
        let model: Model = serde_json::from_str(text).map_err(Error::ModelFormat)?;
        model.check()?;
        Ok(model)
    }

    pub fn save(&self, path: &Path) -> Result<(), Error> {
        std::fs::write(path, self.to_json())
            .map_err(|error| Error::Io(path.display().to_string(), error))
    }

    pub fn load(path: &Path) -> Result<Model, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| Error::Io(path.display().to_string(), error))?;
        Model::from_json(&text)
    }

    /// Refuses a model this code cannot score with: another version, a comparison whose
    /// levels differ from this version's, probabilities outside (0, 1], too many
    /// comparisons.
    pub fn check(&self) -> Result<(), Error> {
        let invalid = |reason: String| Err(Error::InvalidModel(reason));
        if self.version != MODEL_VERSION {
            return invalid(format!(
                "version {} (this build reads {MODEL_VERSION})",
                self.version
            ));
        }
        if self.comparisons.len() > 16 {
            return invalid(format!(
                "{} comparisons (at most 16)",
                self.comparisons.len()
            ));
        }
        for comparison in &self.comparisons {
            let labels = comparison.kind.levels();
            if comparison.levels.len() != labels.len() {
                return invalid(format!(
                    "comparison {} has {} levels, this build has {}",
                    comparison.kind.name(),
                    comparison.levels.len(),
                    labels.len()
                ));
            }
            for level in &comparison.levels {
                let good = |p: f64| p > 0.0 && p <= 1.0;
                if !good(level.m) || !good(level.u) {
                    return invalid(format!(
                        "comparison {} level {:?} has m {} and u {} (both must be in (0, 1])",
                        comparison.kind.name(),
                        level.label,
                        level.m,
                        level.u
                    ));
                }
            }
        }
        if !(self.prior > 0.0 && self.prior < 1.0) {
            return invalid(format!("prior {} is not in (0, 1)", self.prior));
        }
        let t = self.thresholds;
        if !(t.possible <= t.probable && t.probable <= t.certain) {
            return invalid("thresholds must be possible <= probable <= certain".into());
        }
        Ok(())
    }

    /// The prior for a population of `population` records (see `prior`).
    pub fn prior_for(&self, population: u64) -> f64 {
        let scaled = self.prior * self.population as f64 / population.max(1) as f64;
        scaled.clamp(f64::MIN_POSITIVE, 0.5)
    }
}

/// m falls from the first level to the last, u rises; both sum to 1.
fn starting_guess(levels: usize) -> (Vec<f64>, Vec<f64>) {
    if levels < 2 {
        return (vec![1.0; levels], vec![1.0; levels]);
    }
    let middle = (levels - 2) as f64;
    let mut m = vec![0.0; levels];
    let mut u = vec![0.0; levels];
    for index in 0..levels {
        let (m_value, u_value) = if index == 0 {
            (0.8, 0.01)
        } else if index == levels - 1 {
            (0.05, 0.9)
        } else {
            (0.15 / middle, 0.09 / middle)
        };
        m[index] = m_value;
        u[index] = u_value;
    }
    (m, u)
}

/// How often each value of a frequency-adjusted comparison occurs.
#[derive(Default)]
pub(crate) struct Frequencies {
    /// Per comparison (by position in the model): counts of values, and their total.
    tables: Vec<Option<(SymMap<u32>, u64)>>,
}

impl Frequencies {
    pub(crate) fn new(model: &Model) -> Self {
        Frequencies {
            tables: model
                .comparisons
                .iter()
                .map(|comparison| {
                    comparison
                        .frequency_adjusted
                        .then(|| (SymMap::default(), 0))
                })
                .collect(),
        }
    }

    /// Counts `person`'s values in (`added`) or out.
    pub(crate) fn count(&mut self, model: &Model, person: &Person, added: bool) {
        for (comparison, table) in model.comparisons.iter().zip(&mut self.tables) {
            let (Some((counts, total)), Some(value)) =
                (table, comparison.kind.frequency_value(person))
            else {
                continue;
            };
            if value == crate::text::MISSING {
                continue;
            }
            let count = counts.entry(value).or_insert(0);
            if added {
                *count += 1;
                *total += 1;
            } else {
                *count = count.saturating_sub(1);
                *total = total.saturating_sub(1);
                if *count == 0 {
                    counts.remove(&value);
                }
            }
        }
    }

    /// The relative frequency of `value` in comparison `index`, if counted.
    fn of(&self, index: usize, value: Sym) -> Option<f64> {
        let (counts, total) = self.tables.get(index)?.as_ref()?;
        let count = *counts.get(&value)?;
        (*total > 0).then(|| f64::from(count) / *total as f64)
    }
}

/// The weights of a model, ready for scoring.
pub(crate) struct Weights {
    pub prior_bits: f64,
    /// Per comparison, per level: log2(m/u); the `NULL` slot is 0.
    table: Vec<[f64; 16]>,
    /// Per comparison: m of exact agreement, when frequency-adjusted.
    exact_m: Vec<Option<f64>>,
    floor: f64,
    thresholds: Thresholds,
}

impl Weights {
    pub(crate) fn new(model: &Model, population: u64) -> Self {
        let prior = model.prior_for(population);
        let table = model
            .comparisons
            .iter()
            .map(|comparison| {
                let mut row = [0.0; 16];
                for (slot, level) in row.iter_mut().zip(&comparison.levels) {
                    *slot = level.weight();
                }
                row
            })
            .collect();
        Weights {
            prior_bits: (prior / (1.0 - prior)).log2(),
            table,
            exact_m: model
                .comparisons
                .iter()
                .map(|comparison| {
                    comparison
                        .frequency_adjusted
                        .then(|| comparison.levels.first().map(|level| level.m))
                        .flatten()
                })
                .collect(),
            floor: model.frequency_floor,
            thresholds: model.thresholds,
        }
    }

    /// The weight of comparison `index` at `level` for `a` and `b`.
    pub(crate) fn term(
        &self,
        model: &Model,
        index: usize,
        level: u8,
        a: &Person,
        frequencies: &Frequencies,
    ) -> (f64, Option<f64>) {
        if level == NULL {
            return (0.0, None);
        }
        let base = self
            .table
            .get(index)
            .and_then(|row| row.get(usize::from(level)))
            .copied()
            .unwrap_or(0.0);
        if level != 0 {
            return (base, None);
        }
        let Some(Some(m)) = self.exact_m.get(index) else {
            return (base, None);
        };
        let value = model
            .comparisons
            .get(index)
            .and_then(|comparison| comparison.kind.frequency_value(a));
        match value.and_then(|value| frequencies.of(index, value)) {
            Some(frequency) => ((m / frequency.max(self.floor)).log2(), Some(frequency)),
            None => (base, None),
        }
    }

    /// The match weight of a pair whose levels are `pattern` (4 bits per comparison).
    pub(crate) fn score(
        &self,
        model: &Model,
        pattern: u64,
        a: &Person,
        frequencies: &Frequencies,
    ) -> f64 {
        let mut total = self.prior_bits;
        for index in 0..self.table.len() {
            let level = (pattern >> (4 * index) & 0xf) as u8;
            total += self.term(model, index, level, a, frequencies).0;
        }
        total
    }

    pub(crate) fn class(&self, probability: f64) -> MatchClass {
        self.thresholds.class(probability)
    }
}

/// The match probability of a match weight (log2 odds).
pub fn probability(weight: f64) -> f64 {
    let odds = weight.exp2();
    if odds.is_infinite() {
        1.0
    } else {
        odds / (1.0 + odds)
    }
}

/// Why a pair scored what it did: the prior and one term per comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explanation {
    pub prior_weight: f64,
    pub terms: Vec<Term>,
    pub weight: f64,
    pub probability: f64,
    pub class: MatchClass,
}

/// One comparison's part of a pair's match weight.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Term {
    pub comparison: &'static str,
    /// The level's label; `None` when either record lacks the value (weight 0).
    pub level: Option<String>,
    pub m: f64,
    pub u: f64,
    /// log2(m/u), or log2(m/frequency) with the term-frequency adjustment.
    pub weight: f64,
    /// The frequency of the agreed value, when the weight was adjusted for it.
    pub frequency: Option<f64>,
}

pub(crate) fn explain(
    model: &Model,
    weights: &Weights,
    pattern: u64,
    a: &Person,
    frequencies: &Frequencies,
) -> Explanation {
    let mut terms = Vec::with_capacity(model.comparisons.len());
    let mut total = weights.prior_bits;
    for (index, comparison) in model.comparisons.iter().enumerate() {
        let level = (pattern >> (4 * index) & 0xf) as u8;
        let (weight, frequency) = weights.term(model, index, level, a, frequencies);
        total += weight;
        let chosen = comparison.levels.get(usize::from(level));
        terms.push(Term {
            comparison: comparison.kind.name(),
            level: chosen.map(|level| level.label.clone()),
            m: chosen.map_or(1.0, |level| level.m),
            u: chosen.map_or(1.0, |level| level.u),
            weight,
            frequency,
        });
    }
    let probability = probability(total);
    Explanation {
        prior_weight: weights.prior_bits,
        terms,
        weight: total,
        probability,
        class: weights.class(probability),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_model_loads_back_the_same() {
        let mut model = Model::untrained();
        model.prior = 0.000_123;
        let text = model.to_json();
        let loaded = Model::from_json(&text).map_err(|error| error.to_string());
        assert_eq!(loaded, Ok(model));
    }

    #[test]
    fn a_model_that_does_not_fit_is_refused_with_the_reason() {
        let mut model = Model::untrained();
        model.comparisons[0].levels.pop();
        let error = Model::from_json(&model.to_json()).map_err(|error| error.to_string());
        assert_eq!(
            error,
            Err("the model does not fit this build: comparison given has 6 levels, this build has 7".into())
        );
        let mut model = Model::untrained();
        model.comparisons[2].levels[0].u = 0.0;
        assert!(Model::from_json(&model.to_json()).is_err());
        assert!(Model::from_json("{").is_err());
    }

    #[test]
    fn classes_follow_the_thresholds() {
        let thresholds = Thresholds::default();
        assert_eq!(thresholds.class(0.999), MatchClass::Certain);
        assert_eq!(thresholds.class(0.7), MatchClass::Probable);
        assert_eq!(thresholds.class(0.1), MatchClass::Possible);
        assert_eq!(thresholds.class(0.001), MatchClass::Unlikely);
        assert!((probability(0.0) - 0.5).abs() < 1e-12);
        assert_eq!(probability(2000.0), 1.0);
    }

    #[test]
    fn the_prior_scales_with_the_population() {
        let model = Model::untrained();
        assert!((model.prior_for(20_000) - model.prior / 2.0).abs() < 1e-15);
    }
}
