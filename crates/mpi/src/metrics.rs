//! Accuracy against known true matches: pairwise precision, recall and F1 of the
//! predicted links, and the same over the pairs implied by the predicted clusters.

use std::collections::HashSet;

/// Precision, recall and F1 with the counts behind them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Accuracy {
    pub true_positives: u64,
    pub false_positives: u64,
    pub false_negatives: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

impl Accuracy {
    pub fn from_counts(true_positives: u64, false_positives: u64, false_negatives: u64) -> Self {
        let ratio = |a: u64, b: u64| {
            if a + b == 0 {
                1.0
            } else {
                a as f64 / (a + b) as f64
            }
        };
        let precision = ratio(true_positives, false_positives);
        let recall = ratio(true_positives, false_negatives);
        let f1 = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        Accuracy {
            true_positives,
            false_positives,
            false_negatives,
            precision,
            recall,
            f1,
        }
    }
}

/// A pair of record positions, smaller first.
fn ordered(a: u32, b: u32) -> (u32, u32) {
    (a.min(b), a.max(b))
}

/// Accuracy of `predicted` pairs against `truth` pairs (record positions, any order;
/// duplicates count once).
pub fn pairwise(predicted: impl IntoIterator<Item = (u32, u32)>, truth: &[(u32, u32)]) -> Accuracy {
    let truth: HashSet<(u32, u32)> = truth.iter().map(|&(a, b)| ordered(a, b)).collect();
    let predicted: HashSet<(u32, u32)> =
        predicted.into_iter().map(|(a, b)| ordered(a, b)).collect();
    let true_positives = predicted.intersection(&truth).count() as u64;
    Accuracy::from_counts(
        true_positives,
        predicted.len() as u64 - true_positives,
        truth.len() as u64 - true_positives,
    )
}

/// Every pair of records that share a label, restricted to pairs `allowed` accepts
/// (in a linkage, only left-right pairs count).
pub fn cluster_pairs(labels: &[u32], allowed: impl Fn(u32, u32) -> bool) -> Vec<(u32, u32)> {
    let mut members: std::collections::HashMap<u32, Vec<u32>> = std::collections::HashMap::new();
    for (record, &label) in labels.iter().enumerate() {
        members.entry(label).or_default().push(record as u32);
    }
    let mut pairs = Vec::new();
    for group in members.values() {
        for (position, &a) in group.iter().enumerate() {
            for &b in group.get(position + 1..).unwrap_or_default() {
                if allowed(a, b) {
                    pairs.push(ordered(a, b));
                }
            }
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_counts() {
        let accuracy = pairwise([(1, 0), (2, 3), (4, 5)], &[(0, 1), (2, 3), (6, 7), (8, 9)]);
        assert_eq!(
            (
                accuracy.true_positives,
                accuracy.false_positives,
                accuracy.false_negatives
            ),
            (2, 1, 2)
        );
        assert!((accuracy.precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((accuracy.recall - 0.5).abs() < 1e-12);
        assert!((accuracy.f1 - 4.0 / 7.0).abs() < 1e-12);
    }

    #[test]
    fn clusters_imply_all_their_pairs() {
        let mut pairs = cluster_pairs(&[0, 0, 2, 0, 2], |_, _| true);
        pairs.sort_unstable();
        assert_eq!(pairs, vec![(0, 1), (0, 3), (1, 3), (2, 4)]);
    }
}
