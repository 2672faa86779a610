//! Clusters: the connected components of the links, so records linked through a
//! third record end up together.

/// Union-find over record positions, with path halving and union by size.
pub struct Clusters {
    parent: Vec<u32>,
    size: Vec<u32>,
}

impl Clusters {
    /// `records` singletons.
    pub fn new(records: usize) -> Self {
        Clusters {
            parent: (0..records as u32).collect(),
            size: vec![1; records],
        }
    }

    /// The representative of `record`'s cluster.
    pub fn find(&mut self, mut record: u32) -> u32 {
        while let Some(&parent) = self.parent.get(record as usize) {
            if parent == record {
                break;
            }
            let grandparent = self.parent.get(parent as usize).copied().unwrap_or(parent);
            if let Some(slot) = self.parent.get_mut(record as usize) {
                *slot = grandparent;
            }
            record = grandparent;
        }
        record
    }

    /// Puts `a` and `b` in one cluster.
    pub fn join(&mut self, a: u32, b: u32) {
        let (a, b) = (self.find(a), self.find(b));
        if a == b {
            return;
        }
        let size = |clusters: &Self, x: u32| clusters.size.get(x as usize).copied().unwrap_or(1);
        let (big, small) = if size(self, a) >= size(self, b) {
            (a, b)
        } else {
            (b, a)
        };
        let joined = size(self, big) + size(self, small);
        if let Some(slot) = self.parent.get_mut(small as usize) {
            *slot = big;
        }
        if let Some(slot) = self.size.get_mut(big as usize) {
            *slot = joined;
        }
    }

    /// A cluster number per record: the smallest record position in its cluster.
    pub fn labels(&mut self) -> Vec<u32> {
        let records = self.parent.len();
        let mut smallest = vec![u32::MAX; records];
        for record in 0..records as u32 {
            let root = self.find(record) as usize;
            if let Some(slot) = smallest.get_mut(root) {
                *slot = (*slot).min(record);
            }
        }
        (0..records as u32)
            .map(|record| {
                let root = self.find(record) as usize;
                smallest.get(root).copied().unwrap_or(record)
            })
            .collect()
    }
}

/// Cluster labels for `records` records linked by every pair at or above
/// `min_probability`.
pub fn cluster(
    records: usize,
    pairs: &[crate::batch::ScoredPair],
    min_probability: f64,
) -> Vec<u32> {
    let mut clusters = Clusters::new(records);
    for pair in pairs {
        if f64::from(pair.probability) >= min_probability {
            clusters.join(pair.a, pair.b);
        }
    }
    clusters.labels()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_through_a_third_record_join_clusters() {
        let mut clusters = Clusters::new(6);
        clusters.join(0, 3);
        clusters.join(3, 5);
        clusters.join(1, 2);
        assert_eq!(clusters.labels(), vec![0, 1, 1, 0, 4, 0]);
    }
}
