//! Ranked free-text search over code descriptions, shared by ICD-10-CM and ICD-10-PCS.
//!
//! Descriptions are split into lower-case words (a light plural stemmer folds `failures`
//! into `failure`); each word keeps the codes it appears in, sorted. A query word matches
//! itself, or, through the abbreviation table (`synonyms.rs`), every word of an expansion
//! (`chf` matches codes holding `congestive`, `heart` and `failure`); the last query word
//! also matches as a prefix while it is being typed. Every query word must match. Codes
//! score by the rarity of the words they match (inverse document frequency), more for a
//! word in the title than in an inclusion term, and a little for short titles; a query
//! that is a code, or the start of one, ranks those codes first.

use std::collections::HashMap;

use crate::synonyms;

/// One search result.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SearchHit {
    /// The code as the tables spell it (`I5021`).
    pub code: String,
    /// The code as people write it (`I50.21`).
    pub display: String,
    /// The code's title.
    pub description: String,
    /// Relevance; higher is better, comparable only within one search.
    pub score: f32,
}

/// Weight of a word found in the title, and in a secondary text (inclusion terms).
const TITLE: u8 = 2;
const SECONDARY: u8 = 1;
/// The longest prefix expansion of the last query word, in distinct words.
const PREFIX_WORDS_MAX: usize = 200;

const STOPWORDS: &[&str] = &[
    "a", "an", "and", "as", "at", "by", "for", "in", "of", "on", "or", "the", "to", "nos",
];

/// An inverted index over the documents (codes) of one code set.
pub struct Index {
    postings: HashMap<String, Vec<(u32, u8)>>,
    /// Every indexed word, sorted, for prefix matches.
    words: Vec<String>,
    title_words: Vec<u16>,
    documents: u32,
}

/// Lower-case words of a text, stemmed, without stopwords.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| stem(&w.to_ascii_lowercase()))
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .collect()
}

fn stem(word: &str) -> String {
    let plural = word.len() > 3
        && word.ends_with('s')
        && !word.ends_with("ss")
        && !word.ends_with("us")
        && !word.ends_with("is")
        && !word.bytes().any(|b| b.is_ascii_digit());
    if plural {
        word[..word.len() - 1].to_string()
    } else {
        word.to_string()
    }
}

impl Index {
    /// Builds the index; `documents` yields, per document in order, its title and its
    /// secondary texts.
    pub fn build<'a>(documents: impl Iterator<Item = (&'a str, Vec<&'a str>)>) -> Index {
        let mut postings: HashMap<String, Vec<(u32, u8)>> = HashMap::new();
        let mut title_words = Vec::new();
        let mut add = |word: String, doc: u32, weight: u8| {
            let list = postings.entry(word).or_default();
            match list.last_mut() {
                Some(last) if last.0 == doc => last.1 = last.1.max(weight),
                _ => list.push((doc, weight)),
            }
        };
        for (doc, (title, secondary)) in documents.enumerate() {
            let doc = doc as u32;
            let title = words(title);
            title_words.push(title.len().min(u16::MAX as usize) as u16);
            for word in title {
                add(word, doc, TITLE);
            }
            for text in secondary {
                for word in words(text) {
                    add(word, doc, SECONDARY);
                }
            }
        }
        let mut words: Vec<String> = postings.keys().cloned().collect();
        words.sort_unstable();
        let documents = title_words.len() as u32;
        Index {
            postings,
            words,
            title_words,
            documents,
        }
    }

    /// The best `limit` documents for `query`, best first, with their scores; `bonus`
    /// adds a per-document preference (e.g. billable codes).
    pub fn search(&self, query: &str, limit: usize, bonus: impl Fn(u32) -> f32) -> Vec<(u32, f32)> {
        let query_words = words(query);
        if query_words.is_empty() || limit == 0 {
            return Vec::new();
        }
        let last = query_words.len() - 1;
        // Each query word becomes a group of alternatives; an alternative is a set of words
        // that must all be present. The per-document score of a group is its best alternative.
        let groups: Vec<Vec<Vec<&str>>> = query_words
            .iter()
            .enumerate()
            .map(|(i, word)| {
                let mut alternatives: Vec<Vec<&str>> = vec![vec![word.as_str()]];
                for expansion in synonyms::expansions(word) {
                    alternatives.push(expansion.iter().map(String::as_str).collect());
                }
                if i == last && word.len() >= 3 {
                    for prefixed in self.prefixed(word) {
                        if prefixed != word {
                            alternatives.push(vec![prefixed]);
                        }
                    }
                }
                alternatives
            })
            .collect();
        // Candidates: documents of the group with the fewest postings.
        let Some(driver) = (0..groups.len()).min_by_key(|g| self.group_size(&groups[*g])) else {
            return Vec::new();
        };
        let mut candidates: Vec<u32> = groups[driver]
            .iter()
            .flat_map(|alternative| self.alternative_documents(alternative))
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        let mut scored: Vec<(u32, f32)> = Vec::new();
        'documents: for doc in candidates {
            let mut score = 0.0;
            for group in &groups {
                let best = group
                    .iter()
                    .filter_map(|alternative| self.alternative_score(alternative, doc))
                    .fold(None, |best: Option<f32>, s| {
                        Some(best.map_or(s, |b| b.max(s)))
                    });
                match best {
                    Some(s) => score += s,
                    None => continue 'documents,
                }
            }
            let length = f32::from(self.title_words[doc as usize]);
            score += 1.0 / (1.0 + length) + bonus(doc);
            scored.push((doc, score));
        }
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(limit);
        scored
    }

    fn prefixed<'s>(&'s self, prefix: &str) -> impl Iterator<Item = &'s str> + 's {
        let start = self.words.partition_point(|w| w.as_str() < prefix);
        let prefix = prefix.to_string();
        self.words[start..]
            .iter()
            .take_while(move |w| w.starts_with(&prefix))
            .take(PREFIX_WORDS_MAX)
            .map(String::as_str)
    }

    fn group_size(&self, group: &[Vec<&str>]) -> usize {
        group
            .iter()
            .map(|alternative| {
                alternative
                    .iter()
                    .map(|w| self.postings.get(*w).map_or(0, Vec::len))
                    .min()
                    .unwrap_or(0)
            })
            .sum()
    }

    fn alternative_documents(&self, alternative: &[&str]) -> Vec<u32> {
        let Some(rarest) = alternative
            .iter()
            .filter_map(|w| self.postings.get(*w))
            .min_by_key(|p| p.len())
        else {
            return Vec::new();
        };
        if alternative.iter().any(|w| !self.postings.contains_key(*w)) {
            return Vec::new();
        }
        rarest.iter().map(|(doc, _)| *doc).collect()
    }

    fn alternative_score(&self, alternative: &[&str], doc: u32) -> Option<f32> {
        let mut score = 0.0;
        for word in alternative {
            let postings = self.postings.get(*word)?;
            let at = postings.binary_search_by_key(&doc, |(d, _)| *d).ok()?;
            let idf = (1.0 + self.documents as f32 / postings.len() as f32).ln();
            score += idf * f32::from(postings[at].1);
        }
        // An expansion is worth one query word, whatever its length.
        Some(score / alternative.len() as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::{Index, words};

    #[test]
    fn words_are_lower_case_stemmed_and_without_stopwords() {
        assert_eq!(
            words("Failures of the Heart, NOS"),
            vec!["failure", "heart"]
        );
        assert_eq!(words("Diabetes mellitus"), vec!["diabete", "mellitus"]);
    }

    #[test]
    fn every_query_word_must_match_and_rarer_words_rank_higher() {
        let index = Index::build(
            [
                ("Heart failure, unspecified", vec![]),
                ("Systolic (congestive) heart failure", vec![]),
                ("Heart disease", vec!["Cardiac failure"]),
            ]
            .into_iter(),
        );
        let hits = index.search("heart failure systolic", 10, |_| 0.0);
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), vec![1]);
        let hits = index.search("chf", 10, |_| 0.0);
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), vec![1]);
        // An inclusion term matches too, and the prefix of the last word while typing.
        let hits = index.search("disease card", 10, |_| 0.0);
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), vec![2]);
    }
}
