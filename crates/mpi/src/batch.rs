//! Batch deduplication and linkage of whole data sets: prepare every record, find the
//! candidate pairs through the blocking rules, train the model on them (or use a saved
//! one), and score every candidate. Comparing and sampling run on every core.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::blocking::KeyTable;
use crate::cluster::cluster;
use crate::compare::ComparisonKind;
use crate::error::Error;
use crate::model::{Frequencies, Model, TrainingReport, Weights, probability};
use crate::prepare::{Lexicon, Person, Scratch, Texts, prepare};
use crate::record::Record;
use crate::train::{
    Pairs, corrected_u, count_patterns, expectation_maximisation, pattern, proportions,
    sample_levels,
};

/// The most records a data set holds: positions are `u32`, and one is kept spare.
const MAX_RECORDS: usize = u32::MAX as usize - 1;

/// Records to deduplicate, or two sets of records to link.
pub struct Dataset {
    lexicon: Lexicon,
    persons: Vec<Person>,
    ids: Vec<String>,
    /// For linkage: where the right records start (all left records come first).
    right_start: Option<usize>,
    linking: bool,
    scratch: Scratch,
}

impl Dataset {
    /// An empty data set to deduplicate.
    pub fn dedupe() -> Self {
        Dataset {
            lexicon: Lexicon::default(),
            persons: Vec::new(),
            ids: Vec::new(),
            right_start: None,
            linking: false,
            scratch: Scratch::default(),
        }
    }

    /// An empty pair of data sets to link: add every left record, then the right ones.
    pub fn link() -> Self {
        Dataset {
            linking: true,
            ..Dataset::dedupe()
        }
    }

    /// Adds a record to deduplicate, or a left record to link.
    pub fn push(&mut self, record: &Record) -> Result<(), Error> {
        if self.right_start.is_some() {
            return Err(Error::LinkOrder);
        }
        self.add(record)
    }

    /// Adds a right record to link.
    pub fn push_right(&mut self, record: &Record) -> Result<(), Error> {
        if self.right_start.is_none() {
            self.right_start = Some(self.persons.len());
        }
        self.add(record)
    }

    fn add(&mut self, record: &Record) -> Result<(), Error> {
        if self.persons.len() >= MAX_RECORDS {
            return Err(Error::TooManyRecords(MAX_RECORDS as u64));
        }
        let person = prepare(record, &mut self.lexicon, &mut self.scratch);
        self.persons.push(person);
        let id = if record.id.is_empty() {
            (self.ids.len() + 1).to_string()
        } else {
            record.id.clone()
        };
        self.ids.push(id);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.persons.len()
    }

    pub fn is_empty(&self) -> bool {
        self.persons.is_empty()
    }

    /// The id of record `index` (its position in the order added).
    pub fn id(&self, index: u32) -> &str {
        self.ids.get(index as usize).map_or("", String::as_str)
    }

    /// Whether record `index` is a right record of a linkage.
    pub fn is_right(&self, index: u32) -> bool {
        self.right_start
            .is_some_and(|start| index as usize >= start)
    }

    fn pairs(&self) -> Pairs {
        if self.linking {
            let left = self.right_start.unwrap_or(self.persons.len());
            Pairs::Across(left, self.persons.len() - left)
        } else {
            Pairs::Within(self.persons.len())
        }
    }
}

/// How to train.
#[derive(Clone, Copy, Debug)]
pub struct Training {
    /// Random pairs for estimating u.
    pub random_pairs: usize,
    pub max_iterations: u32,
    /// EM stops when no parameter moves more than this.
    pub tolerance: f64,
    pub seed: u64,
}

impl Default for Training {
    fn default() -> Self {
        Training {
            random_pairs: 300_000,
            max_iterations: 200,
            tolerance: 1e-6,
            seed: 42,
        }
    }
}

/// Reports progress of a long run; the default methods do nothing.
pub trait Progress: Sync {
    /// A new stage of `total` units begins.
    fn stage(&self, _name: &str, _total: u64) {}
    /// `amount` more units of the current stage are done.
    fn advance(&self, _amount: u64) {}
}

/// Progress that nobody watches.
pub struct Quiet;

impl Progress for Quiet {}

/// A scored candidate pair: `a` and `b` are record positions, `a < b` (in a linkage,
/// `a` is the left record).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoredPair {
    pub a: u32,
    pub b: u32,
    pub weight: f32,
    pub probability: f32,
}

/// What a batch run produced.
pub struct Outcome {
    /// The model used: the trained one when training ran.
    pub model: Model,
    /// Every candidate pair at or above the model's `possible` threshold, sorted.
    pub pairs: Vec<ScoredPair>,
    pub candidate_pairs: u64,
    /// Blocks skipped for passing the model's `block_records` limit.
    pub skipped_blocks: u64,
    /// What each blocking rule found, in the model's order.
    pub rules: Vec<RuleReport>,
}

/// What one blocking rule found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleReport {
    pub rule: String,
    /// Pairs compared for this rule: found by no earlier rule.
    pub new_pairs: u64,
    /// Blocks skipped for passing the `block_records` limit.
    pub skipped_blocks: u64,
}

/// Trains `model` on the data set (u by random sampling, m by EM) and scores every
/// candidate pair with the trained model.
pub fn train_and_score(
    dataset: &Dataset,
    model: Model,
    training: &Training,
    progress: &dyn Progress,
) -> Result<Outcome, Error> {
    run(dataset, model, Some(training), progress)
}

/// Scores every candidate pair with a model trained before.
pub fn score(dataset: &Dataset, model: Model, progress: &dyn Progress) -> Result<Outcome, Error> {
    model.check()?;
    run(dataset, model, None, progress)
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn run(
    dataset: &Dataset,
    mut model: Model,
    training: Option<&Training>,
    progress: &dyn Progress,
) -> Result<Outcome, Error> {
    let texts = Texts::of(&dataset.lexicon);
    let pairs = dataset.pairs();
    let kinds: Vec<ComparisonKind> = model.comparisons.iter().map(|c| c.kind).collect();
    let candidates = candidates(&model, &kinds, dataset, &texts, pairs, progress);
    if let Some(training) = training {
        train(
            &mut model,
            &kinds,
            dataset,
            &texts,
            &candidates,
            training,
            progress,
        )?;
    }
    let mut frequencies = Frequencies::new(&model);
    for person in &dataset.persons {
        frequencies.count(&model, person, true);
    }
    let weights = Weights::new(&model, pairs.population());
    let mut scored = score_candidates(
        &model,
        &weights,
        &frequencies,
        dataset,
        &candidates.pairs,
        progress,
    );
    let completed = complete_clusters(
        &model,
        &weights,
        &frequencies,
        &kinds,
        dataset,
        &texts,
        &mut scored,
    );
    Ok(Outcome {
        model,
        pairs: scored,
        candidate_pairs: candidates.count + completed,
        skipped_blocks: candidates
            .rules
            .iter()
            .map(|rule| rule.skipped_blocks)
            .sum(),
        rules: candidates.rules,
    })
}

/// A candidate pair with its levels.
#[derive(Clone, Copy)]
struct Candidate {
    a: u32,
    b: u32,
    pattern: u64,
}

struct Candidates {
    /// In pieces of at most `PIECE` pairs, so collecting millions never copies them.
    pairs: Vec<Vec<Candidate>>,
    count: u64,
    /// Each distinct pattern with its count.
    patterns: Vec<(u64, u64)>,
    rules: Vec<RuleReport>,
}

/// Blocks of at most this many pairs go to a worker together.
const CHUNK_PAIRS: usize = 20_000;

/// Candidate pairs are stored in pieces of this many.
const PIECE: usize = 1 << 16;

fn candidates(
    model: &Model,
    kinds: &[ComparisonKind],
    dataset: &Dataset,
    texts: &Texts,
    pairs: Pairs,
    progress: &dyn Progress,
) -> Candidates {
    let persons = &dataset.persons;
    let left = match pairs {
        Pairs::Across(left, _) => Some(left as u32),
        Pairs::Within(_) => None,
    };
    let limit = model.limits.block_records.max(2);
    let keys = KeyTable::new(&model.blocking, persons, texts);
    let mut found = Vec::new();
    let mut pattern_maps = Vec::new();
    let mut reports = Vec::new();
    progress.stage(
        "comparing",
        model.blocking.len() as u64 * persons.len() as u64,
    );
    for (rule_index, rule) in model.blocking.iter().enumerate() {
        let entries = keys.sorted_entries(rule_index);
        let (chunks, skipped_blocks) = chunks_of_blocks(&entries, limit);
        let next = AtomicUsize::new(0);
        let results = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..threads() {
                scope.spawn(|| {
                    let mut pieces = Vec::new();
                    let mut local = Vec::with_capacity(PIECE);
                    let mut counts: HashMap<u64, u64> = HashMap::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(from, to)) = chunks.get(index) else {
                            break;
                        };
                        let chunk = entries.get(from..to).unwrap_or_default();
                        compare_chunk(
                            chunk,
                            limit,
                            left,
                            (&keys, rule_index),
                            kinds,
                            persons,
                            texts,
                            &mut local,
                            &mut counts,
                        );
                        if local.len() >= PIECE - CHUNK_PAIRS {
                            pieces.push(std::mem::replace(&mut local, Vec::with_capacity(PIECE)));
                        }
                        progress.advance((to - from) as u64);
                    }
                    pieces.push(local);
                    if let Ok(mut results) = results.lock() {
                        results.push((pieces, counts));
                    }
                });
            }
        });
        let mut new_pairs = 0;
        for (pieces, counts) in results.into_inner().unwrap_or_default() {
            for piece in pieces {
                new_pairs += piece.len() as u64;
                if !piece.is_empty() {
                    found.push(piece);
                }
            }
            pattern_maps.push(counts);
        }
        progress.advance((persons.len() - entries.len().min(persons.len())) as u64);
        reports.push(RuleReport {
            rule: rule.to_string(),
            new_pairs,
            skipped_blocks,
        });
    }
    Candidates {
        count: found.iter().map(|piece| piece.len() as u64).sum(),
        pairs: found,
        patterns: count_patterns(pattern_maps),
        rules: reports,
    }
}

/// Cuts sorted (key, record) entries into chunks of whole blocks, about `CHUNK_PAIRS`
/// pairs each, leaving out blocks of more than `limit` records; returns the chunks as
/// entry ranges and how many blocks were left out.
fn chunks_of_blocks(entries: &[(u64, u32)], limit: usize) -> (Vec<(usize, usize)>, u64) {
    let mut chunks = Vec::new();
    let mut skipped = 0;
    let mut start = 0;
    let mut chunk_start = 0;
    let mut chunk_pairs = 0;
    while start < entries.len() {
        let key = entries.get(start).map_or(0, |entry| entry.0);
        let mut end = start + 1;
        while entries.get(end).is_some_and(|entry| entry.0 == key) {
            end += 1;
        }
        let size = end - start;
        if size > limit {
            skipped += 1;
            if chunk_start < start {
                chunks.push((chunk_start, start));
            }
            chunk_start = end;
            chunk_pairs = 0;
        } else {
            chunk_pairs += size * (size - 1) / 2;
            if chunk_pairs >= CHUNK_PAIRS {
                chunks.push((chunk_start, end));
                chunk_start = end;
                chunk_pairs = 0;
            }
        }
        start = end;
    }
    if chunk_start < entries.len() {
        chunks.push((chunk_start, entries.len()));
    }
    (chunks, skipped)
}

/// Compares the pairs of each block in `chunk` (sorted (key, record) entries), skipping
/// pairs an earlier rule already found and, in a linkage, pairs on the same side.
#[allow(clippy::too_many_arguments)]
fn compare_chunk(
    chunk: &[(u64, u32)],
    limit: usize,
    left: Option<u32>,
    (keys, rule): (&KeyTable, usize),
    kinds: &[ComparisonKind],
    persons: &[Person],
    texts: &Texts,
    out: &mut Vec<Candidate>,
    counts: &mut HashMap<u64, u64>,
) {
    let mut start = 0;
    while start < chunk.len() {
        let key = chunk.get(start).map_or(0, |entry| entry.0);
        let mut end = start + 1;
        while chunk.get(end).is_some_and(|entry| entry.0 == key) {
            end += 1;
        }
        let block = chunk.get(start..end).unwrap_or_default();
        start = end;
        if block.len() > limit {
            continue;
        }
        for (position, &(_, first)) in block.iter().enumerate() {
            for &(_, second) in block.get(position + 1..).unwrap_or_default() {
                let (a, b) = (first.min(second), first.max(second));
                if a == b {
                    continue;
                }
                if left.is_some_and(|left| (a < left) == (b < left)) {
                    continue;
                }
                if keys.met_before(rule, a, b) {
                    continue;
                }
                let (Some(pa), Some(pb)) = (persons.get(a as usize), persons.get(b as usize))
                else {
                    continue;
                };
                let pattern = pattern(kinds, pa, pb, texts);
                *counts.entry(pattern).or_insert(0) += 1;
                out.push(Candidate { a, b, pattern });
            }
        }
    }
}

fn train(
    model: &mut Model,
    kinds: &[ComparisonKind],
    dataset: &Dataset,
    texts: &Texts,
    candidates: &Candidates,
    training: &Training,
    progress: &dyn Progress,
) -> Result<(), Error> {
    let pairs = dataset.pairs();
    if candidates.count == 0 {
        return Err(Error::NothingToTrain(format!(
            "the blocking rules found no candidate pairs among {} records",
            dataset.len()
        )));
    }
    progress.stage("training", 1);
    let samples = training.random_pairs.min(pairs.total() as usize).max(1);
    let counts = sample_levels(
        kinds,
        &dataset.persons,
        texts,
        pairs,
        samples,
        training.seed,
        threads(),
    );
    let sampled: Vec<Vec<f64>> = model
        .comparisons
        .iter()
        .zip(&counts)
        .map(|(comparison, counts)| proportions(counts, comparison.levels.len()))
        .collect();
    let estimate = expectation_maximisation(
        model,
        &candidates.patterns,
        &sampled,
        training.max_iterations,
        training.tolerance,
    );
    let matches = estimate.match_share * candidates.count as f64;
    let prior = (matches / pairs.total()).clamp(1e-12, 0.5);
    for ((comparison, m), sampled) in model.comparisons.iter_mut().zip(&estimate.m).zip(&sampled) {
        let u = corrected_u(sampled, m, prior, samples as u64);
        for ((level, m), u) in comparison.levels.iter_mut().zip(m).zip(u) {
            level.m = *m;
            level.u = u;
        }
    }
    model.prior = prior;
    model.population = pairs.population();
    model.training = Some(TrainingReport {
        records: dataset.len() as u64,
        random_pairs: samples as u64,
        candidate_pairs: candidates.count,
        em_iterations: estimate.iterations,
        candidate_match_share: estimate.match_share,
    });
    progress.advance(1);
    model.check()
}

fn score_candidates(
    model: &Model,
    weights: &Weights,
    frequencies: &Frequencies,
    dataset: &Dataset,
    pieces: &[Vec<Candidate>],
    progress: &dyn Progress,
) -> Vec<ScoredPair> {
    progress.stage(
        "scoring",
        pieces.iter().map(|piece| piece.len() as u64).sum(),
    );
    let possible = model.thresholds.possible;
    let next = AtomicUsize::new(0);
    let mut scored: Vec<ScoredPair> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads())
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    while let Some(piece) = pieces.get(next.fetch_add(1, Ordering::Relaxed)) {
                        for candidate in piece {
                            let Some(a) = dataset.persons.get(candidate.a as usize) else {
                                continue;
                            };
                            let weight = weights.score(model, candidate.pattern, a, frequencies);
                            let probability = probability(weight);
                            if probability >= possible {
                                out.push(ScoredPair {
                                    a: candidate.a,
                                    b: candidate.b,
                                    weight: weight as f32,
                                    probability: probability as f32,
                                });
                            }
                        }
                        progress.advance(piece.len() as u64);
                    }
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .filter_map(|worker| worker.join().ok())
            .flatten()
            .collect()
    });
    scored.sort_unstable_by_key(|pair| (pair.a, pair.b));
    scored
}

/// Scores the pairs within each cluster (of at least three and at most
/// `cluster_records` records, clusters joining pairs at or above `probable`) that
/// blocking did not find: two typo-ridden copies of one original share no blocking key,
/// but both link to the original. Returns how many pairs it compared.
fn complete_clusters(
    model: &Model,
    weights: &Weights,
    frequencies: &Frequencies,
    kinds: &[ComparisonKind],
    dataset: &Dataset,
    texts: &Texts,
    scored: &mut Vec<ScoredPair>,
) -> u64 {
    let labels = cluster(dataset.len(), scored, model.thresholds.probable);
    let mut members: HashMap<u32, Vec<u32>> = HashMap::new();
    for pair in scored.iter() {
        if f64::from(pair.probability) < model.thresholds.probable {
            continue;
        }
        for record in [pair.a, pair.b] {
            if let Some(&label) = labels.get(record as usize) {
                members.entry(label).or_default().push(record);
            }
        }
    }
    let left = match dataset.pairs() {
        Pairs::Across(left, _) => Some(left as u32),
        Pairs::Within(_) => None,
    };
    let mut compared = 0;
    let mut added = Vec::new();
    for group in members.values_mut() {
        group.sort_unstable();
        group.dedup();
        if group.len() < 3 || group.len() > model.limits.cluster_records {
            continue;
        }
        for (position, &a) in group.iter().enumerate() {
            for &b in group.get(position + 1..).unwrap_or_default() {
                if left.is_some_and(|left| (a < left) == (b < left)) {
                    continue;
                }
                if scored
                    .binary_search_by_key(&(a, b), |pair| (pair.a, pair.b))
                    .is_ok()
                {
                    continue;
                }
                let (Some(pa), Some(pb)) = (
                    dataset.persons.get(a as usize),
                    dataset.persons.get(b as usize),
                ) else {
                    continue;
                };
                compared += 1;
                let weight = weights.score(model, pattern(kinds, pa, pb, texts), pa, frequencies);
                let probability = probability(weight);
                if probability >= model.thresholds.possible {
                    added.push(ScoredPair {
                        a,
                        b,
                        weight: weight as f32,
                        probability: probability as f32,
                    });
                }
            }
        }
    }
    scored.extend(added);
    scored.sort_unstable_by_key(|pair| (pair.a, pair.b));
    compared
}

impl Outcome {
    /// Explains the score of records `a` and `b` of `dataset` under this outcome's model.
    pub fn explain(&self, dataset: &Dataset, a: u32, b: u32) -> Option<crate::model::Explanation> {
        let (pa, pb) = (
            dataset.persons.get(a as usize)?,
            dataset.persons.get(b as usize)?,
        );
        let texts = Texts::of(&dataset.lexicon);
        let kinds: Vec<ComparisonKind> = self.model.comparisons.iter().map(|c| c.kind).collect();
        let mut frequencies = Frequencies::new(&self.model);
        for person in &dataset.persons {
            frequencies.count(&self.model, person, true);
        }
        let weights = Weights::new(&self.model, dataset.pairs().population());
        let pattern = pattern(&kinds, pa, pb, &texts);
        Some(crate::model::explain(
            &self.model,
            &weights,
            pattern,
            pa,
            &frequencies,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_keep_blocks_whole_and_leave_out_oversized_ones() {
        // Keys 1 (2 records), 2 (4 records, over a limit of 3), 3 (3 records).
        let entries = [
            (1, 0),
            (1, 1),
            (2, 2),
            (2, 3),
            (2, 4),
            (2, 5),
            (3, 6),
            (3, 7),
            (3, 8),
        ];
        let (chunks, skipped) = chunks_of_blocks(&entries, 3);
        assert_eq!(skipped, 1);
        assert_eq!(chunks, vec![(0, 2), (6, 9)]);
        let (chunks, skipped) = chunks_of_blocks(&entries, 10);
        assert_eq!((chunks, skipped), (vec![(0, 9)], 0));
    }
}
