//! Training without labels: u from random record pairs (almost all non-matches), m and
//! the share of matches by expectation-maximisation over the candidate pairs' level
//! patterns, then u corrected for the few matches the random pairs held.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::compare::{ComparisonKind, NULL};
use crate::model::Model;
use crate::prepare::{Person, Texts};

/// A small, fast, seeded random number generator (splitmix64): training must give the
/// same model for the same data.
pub(crate) struct Random(u64);

impl Random {
    pub(crate) fn new(seed: u64) -> Self {
        Random(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        crate::text::finish(self.0)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(bound)) >> 64) as u64
    }
}

/// Which pairs exist: all pairs of one set, or all pairs across two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pairs {
    /// Records `0..n`, each pair once.
    Within(usize),
    /// Records `0..left` against `left..left + right`.
    Across(usize, usize),
}

impl Pairs {
    pub(crate) fn total(self) -> f64 {
        match self {
            Pairs::Within(n) => n as f64 * (n as f64 - 1.0) / 2.0,
            Pairs::Across(left, right) => left as f64 * right as f64,
        }
    }

    /// How many records one record is compared with.
    pub(crate) fn population(self) -> u64 {
        match self {
            Pairs::Within(n) => n.saturating_sub(1) as u64,
            Pairs::Across(left, right) => left.max(right) as u64,
        }
    }

    fn random(self, random: &mut Random) -> Option<(u32, u32)> {
        match self {
            Pairs::Within(n) if n >= 2 => {
                let a = random.below(n as u64);
                let mut b = random.below(n as u64 - 1);
                if b >= a {
                    b += 1;
                }
                Some((a as u32, b as u32))
            }
            Pairs::Across(left, right) if left > 0 && right > 0 => {
                let a = random.below(left as u64);
                let b = left as u64 + random.below(right as u64);
                Some((a as u32, b as u32))
            }
            _ => None,
        }
    }
}

/// The level of every comparison for a pair, 4 bits each.
pub(crate) fn pattern(kinds: &[ComparisonKind], a: &Person, b: &Person, texts: &Texts) -> u64 {
    let mut pattern = 0u64;
    for (index, kind) in kinds.iter().enumerate() {
        pattern |= u64::from(kind.level(a, b, texts)) << (4 * index);
    }
    pattern
}

pub(crate) fn level_of(pattern: u64, index: usize) -> u8 {
    (pattern >> (4 * index) & 0xf) as u8
}

/// Random pairs are drawn in this many seeded streams, whatever the number of threads,
/// so the same data and seed give the same model on any machine.
const STREAMS: usize = 8;

/// Level counts per comparison over `samples` random pairs, on `threads` threads.
pub(crate) fn sample_levels(
    kinds: &[ComparisonKind],
    persons: &[Person],
    texts: &Texts,
    pairs: Pairs,
    samples: usize,
    seed: u64,
    threads: usize,
) -> Vec<[u64; 16]> {
    let per_stream = samples.div_ceil(STREAMS);
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.clamp(1, STREAMS))
            .map(|_| {
                scope.spawn(|| {
                    let mut counts = vec![[0u64; 16]; kinds.len()];
                    loop {
                        let stream = next.fetch_add(1, Ordering::Relaxed);
                        if stream >= STREAMS {
                            break;
                        }
                        let mut random = Random::new(
                            seed ^ (stream as u64 + 1).wrapping_mul(0xa076_1d64_78bd_642f),
                        );
                        for _ in 0..per_stream {
                            let Some((a, b)) = pairs.random(&mut random) else {
                                break;
                            };
                            let (Some(a), Some(b)) =
                                (persons.get(a as usize), persons.get(b as usize))
                            else {
                                continue;
                            };
                            let pattern = pattern(kinds, a, b, texts);
                            for (index, row) in counts.iter_mut().enumerate() {
                                if let Some(slot) =
                                    row.get_mut(usize::from(level_of(pattern, index)))
                                {
                                    *slot += 1;
                                }
                            }
                        }
                    }
                    counts
                })
            })
            .collect();
        let mut total = vec![[0u64; 16]; kinds.len()];
        for worker in workers {
            // A worker only panics on a bug; its counts are then simply missing.
            if let Ok(counts) = worker.join() {
                for (sum, row) in total.iter_mut().zip(counts) {
                    for (cell, count) in sum.iter_mut().zip(row) {
                        *cell += count;
                    }
                }
            }
        }
        total
    })
}

/// Probabilities from counts (the `NULL` slot ignored), with half a pair added to every
/// level so that none is zero.
pub(crate) fn proportions(counts: &[u64; 16], levels: usize) -> Vec<f64> {
    let observed: u64 = counts.iter().take(levels).sum();
    let total = observed as f64 + 0.5 * levels as f64;
    counts
        .iter()
        .take(levels)
        .map(|&count| (count as f64 + 0.5) / total)
        .collect()
}

/// The outcome of EM.
pub(crate) struct Estimate {
    pub m: Vec<Vec<f64>>,
    /// u among the candidate pairs (not the population's u).
    #[cfg_attr(not(test), allow(dead_code))]
    pub u: Vec<Vec<f64>>,
    pub match_share: f64,
    pub iterations: u32,
}

/// Expectation-maximisation of a two-class mixture over level patterns, with each
/// comparison independent given the class. `patterns` holds each distinct pattern with
/// how many pairs had it. Starts from the model's m, the sampled `u`, and a match share
/// from the pairs that agree exactly on most comparisons.
pub(crate) fn expectation_maximisation(
    model: &Model,
    patterns: &[(u64, u64)],
    u_start: &[Vec<f64>],
    max_iterations: u32,
    tolerance: f64,
) -> Estimate {
    let comparisons = model.comparisons.len();
    let levels: Vec<usize> = model.comparisons.iter().map(|c| c.levels.len()).collect();
    let mut m: Vec<Vec<f64>> = model
        .comparisons
        .iter()
        .map(|c| c.levels.iter().map(|l| l.m).collect())
        .collect();
    let mut u: Vec<Vec<f64>> = u_start.to_vec();
    let mut share = 0.1;
    let total: f64 = patterns.iter().map(|(_, count)| *count as f64).sum();
    let mut iterations = 0;
    if total == 0.0 {
        return Estimate {
            m,
            u,
            match_share: 0.0,
            iterations,
        };
    }
    let mut m_sums = vec![[0.0f64; 16]; comparisons];
    let mut u_sums = vec![[0.0f64; 16]; comparisons];
    while iterations < max_iterations {
        iterations += 1;
        for row in m_sums.iter_mut().chain(u_sums.iter_mut()) {
            *row = [0.0; 16];
        }
        let mut matches = 0.0;
        for &(pattern, count) in patterns {
            let mut p_match = share;
            let mut p_non = 1.0 - share;
            for index in 0..comparisons {
                let level = usize::from(level_of(pattern, index));
                if level == usize::from(NULL) {
                    continue;
                }
                p_match *= m
                    .get(index)
                    .and_then(|row| row.get(level))
                    .copied()
                    .unwrap_or(1.0);
                p_non *= u
                    .get(index)
                    .and_then(|row| row.get(level))
                    .copied()
                    .unwrap_or(1.0);
            }
            let posterior = if p_match + p_non > 0.0 {
                p_match / (p_match + p_non)
            } else {
                0.0
            };
            let weight = count as f64;
            matches += posterior * weight;
            for index in 0..comparisons {
                let level = usize::from(level_of(pattern, index));
                if let (Some(m_row), Some(u_row)) = (m_sums.get_mut(index), u_sums.get_mut(index))
                    && let (Some(m_cell), Some(u_cell)) =
                        (m_row.get_mut(level), u_row.get_mut(level))
                {
                    *m_cell += posterior * weight;
                    *u_cell += (1.0 - posterior) * weight;
                }
            }
        }
        let mut change: f64 = 0.0;
        let new_share = matches / total;
        change = change.max((new_share - share).abs());
        share = new_share;
        for index in 0..comparisons {
            let count = levels.get(index).copied().unwrap_or(0);
            for (params, sums) in [(&mut m, &m_sums), (&mut u, &u_sums)] {
                let (Some(row), Some(sum_row)) = (params.get_mut(index), sums.get(index)) else {
                    continue;
                };
                // A pseudo-count of a twentieth of a pair keeps every level possible.
                let observed: f64 = sum_row.iter().take(count).sum();
                let denominator = observed + 0.05 * count as f64;
                for (cell, sum) in row.iter_mut().zip(sum_row.iter()) {
                    let value = (sum + 0.05) / denominator;
                    change = change.max((value - *cell).abs());
                    *cell = value;
                }
            }
        }
        if change < tolerance {
            break;
        }
    }
    Estimate {
        m,
        u,
        match_share: share,
        iterations,
    }
}

/// Adds up how many pairs had each pattern.
pub(crate) fn count_patterns(maps: Vec<HashMap<u64, u64>>) -> Vec<(u64, u64)> {
    let mut total: HashMap<u64, u64> = HashMap::new();
    for map in maps {
        for (pattern, count) in map {
            *total.entry(pattern).or_insert(0) += count;
        }
    }
    let mut patterns: Vec<(u64, u64)> = total.into_iter().collect();
    patterns.sort_unstable();
    patterns
}

/// u from random pairs, less the matches among them: a random pair's level is a
/// mixture, P(level) = prior m + (1 - prior) u. No u falls below what the sample
/// could see (half a pair of the sample).
pub(crate) fn corrected_u(sampled: &[f64], m: &[f64], prior: f64, samples: u64) -> Vec<f64> {
    let floor = 0.5 / samples.max(1) as f64;
    let mut u: Vec<f64> = sampled
        .iter()
        .zip(m)
        .map(|(&observed, &m)| ((observed - prior * m) / (1.0 - prior)).max(floor.min(observed)))
        .collect();
    let sum: f64 = u.iter().sum();
    if sum > 0.0 {
        for value in &mut u {
            *value /= sum;
        }
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn em_recovers_a_known_mixture() {
        // Three comparisons of two used levels each; 10% matches agreeing 90% of the
        // time, 90% non-matches agreeing 10% of the time, independently.
        let kinds = [ComparisonKind::Ssn; 3];
        let model = Model::with(&kinds, Vec::new());
        let p = |agree: bool, rate: f64| if agree { rate } else { 1.0 - rate };
        let mut patterns = Vec::new();
        for cell in 0..8u64 {
            let agree = |index: u64| cell >> index & 1 == 1;
            let mut matched = 0.1;
            let mut unmatched = 0.9;
            let mut pattern = 0;
            for index in 0..3 {
                matched *= p(agree(index), 0.9);
                unmatched *= p(agree(index), 0.1);
                pattern |= if agree(index) { 0 } else { 3 } << (4 * index);
            }
            patterns.push((
                pattern,
                ((matched + unmatched) * 1_000_000.0).round() as u64,
            ));
        }
        let u_start = vec![vec![0.3, 0.001, 0.001, 0.698]; 3];
        let estimate = expectation_maximisation(&model, &patterns, &u_start, 500, 1e-10);
        assert!(
            (estimate.match_share - 0.1).abs() < 0.005,
            "share {}",
            estimate.match_share
        );
        assert!(
            (estimate.m[0][0] - 0.9).abs() < 0.01,
            "m {:?}",
            estimate.m[0]
        );
        assert!(
            (estimate.u[0][0] - 0.1).abs() < 0.01,
            "u {:?}",
            estimate.u[0]
        );
    }

    #[test]
    fn u_correction_removes_the_matches_among_random_pairs() {
        let u = corrected_u(&[0.01, 0.99], &[0.9, 0.1], 0.005, 1_000_000);
        assert!((u[0] - (0.01 - 0.0045) / 0.995).abs() < 1e-4, "{u:?}");
        let floored = corrected_u(&[0.000_001, 0.999_999], &[0.9, 0.1], 0.005, 1_000_000);
        assert!(floored[0] > 0.0 && floored[0] <= 0.000_001, "{floored:?}");
    }

    #[test]
    fn random_numbers_are_repeatable_and_in_range() {
        let mut a = Random::new(7);
        let mut b = Random::new(7);
        for _ in 0..1000 {
            let x = a.below(10);
            assert_eq!(x, b.below(10));
            assert!(x < 10);
        }
        assert!(Pairs::Within(1).random(&mut a).is_none());
        let (x, y) = Pairs::Across(3, 4).random(&mut a).unwrap_or((0, 0));
        assert!(x < 3 && (3..7).contains(&y));
    }
}
