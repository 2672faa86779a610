//! Searches on a union parameter (`combo-code`) become searches on its parts (`code`,
//! `component-code`), which are the ones indexed.

use crate::{Clause, Criterion, Test, param};

/// The clauses that `clause` stands for once every union parameter in it is replaced by
/// its parts: a positive test holds if it holds on any part (more alternatives in the
/// clause); a negative one (`:missing=true`, `:not`) must hold on every part (one clause
/// per part). `Err` names a negative test on a union that cannot be split that way
/// (reached through a chain, or OR-ed with other criteria).
pub(crate) fn expand(clause: Clause) -> Result<Vec<Clause>, String> {
    let mut any_of = Vec::with_capacity(clause.any_of.len());
    let mut all_of = Vec::new();
    let alone = clause.any_of.len() == 1;
    for criterion in clause.any_of {
        let parts = union_parts(&criterion);
        if parts.is_empty() {
            any_of.push(criterion);
            continue;
        }
        let negative = matches!(criterion.test, Test::Missing(true) | Test::Not(_));
        if !negative {
            any_of.extend(parts.iter().map(|part| on_part(&criterion, part)));
        } else if alone && criterion.path.is_empty() {
            all_of.extend(parts.iter().map(|part| Clause {
                any_of: vec![on_part(&criterion, part)],
            }));
        } else {
            return Err(format!(
                "'{}' searches {} together; a negative test on it must stand alone, not in a chain or a list",
                criterion.param,
                parts.join(" and ")
            ));
        }
    }
    if !any_of.is_empty() {
        all_of.insert(0, Clause { any_of });
    }
    Ok(all_of)
}

fn union_parts(criterion: &Criterion) -> Vec<String> {
    criterion
        .resource_type
        .as_deref()
        .and_then(|resource_type| param(resource_type, &criterion.param))
        .map(|def| def.union_of.clone())
        .unwrap_or_default()
}

fn on_part(criterion: &Criterion, part: &str) -> Criterion {
    Criterion {
        param: part.to_string(),
        ..criterion.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ParseOptions, parse};

    fn clauses(query: &[(&str, &str)]) -> Result<Vec<Clause>, crate::SearchError> {
        let params: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(
            &["Observation".to_string()],
            &params,
            ParseOptions::default(),
        )
        .map(|parsed| parsed.query.clauses)
    }

    #[test]
    fn positive_tests_search_any_part() {
        let found = clauses(&[("combo-code", "1234-5,9999-9")]).unwrap();
        assert_eq!(found.len(), 1);
        let params: Vec<&str> = found[0].any_of.iter().map(|c| c.param.as_str()).collect();
        assert_eq!(params, ["code", "component-code", "code", "component-code"]);
    }

    #[test]
    fn negative_tests_must_hold_on_every_part() {
        let found = clauses(&[("combo-code:missing", "true")]).unwrap();
        assert_eq!(found.len(), 2);
        assert!(found.iter().all(|c| c.any_of.len() == 1));
        let found = clauses(&[("combo-code:not", "1234-5")]).unwrap();
        assert_eq!(found.len(), 2);
        assert!(clauses(&[("combo-code:not", "1,2")]).is_err());
    }
}
