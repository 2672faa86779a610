//! Search values and their semantics: normalised strings, and the ranges that dates
//! and numbers stand for, with what each comparison prefix means on them.
//!
//! These functions are the definition of matching: every backend's SQL must agree with them.

use crate::Prefix;

/// A span of time in microseconds since the Unix epoch (UTC), `low` inclusive and
/// `high` exclusive. A date stands for its whole precision: `2024` is the year,
/// `2024-03-01T10:00` the minute. An open end is `i64::MIN` or `i64::MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateRange {
    pub low: i64,
    pub high: i64,
}

/// A number's range. A search value stands for its implicit precision (`100` is
/// `[99.5, 100.5)`, `1.50` is `[1.495, 1.505)`), with `value` the number as written.
/// A stored value is exact (`low == high == value`), or a Range with inclusive ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NumberRange {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

/// Lower case, accents (combining marks) removed, whitespace runs collapsed to one
/// space, trimmed: the form string search compares.
pub fn normalize_string(text: &str) -> String {
    crate::index::fold(text)
}

impl Prefix {
    /// Whether a stored date range `target` satisfies `self` against the search range.
    pub fn matches_date(self, search: DateRange, target: DateRange) -> bool {
        let contained = target.low >= search.low && target.high <= search.high;
        match self {
            Prefix::Eq => contained,
            Prefix::Ne => !contained,
            Prefix::Gt => target.high > search.high,
            Prefix::Lt => target.low < search.low,
            Prefix::Ge => target.high > search.high || contained,
            Prefix::Le => target.low < search.low || contained,
            Prefix::Sa => target.low >= search.high,
            Prefix::Eb => target.high <= search.low,
            Prefix::Ap => {
                // Overlap, after widening the search range by a tenth of its width
                // (at least a day) on each side.
                let width = search.high.saturating_sub(search.low);
                let slack = (width / 10).max(86_400_000_000);
                target.low < search.high.saturating_add(slack)
                    && target.high > search.low.saturating_sub(slack)
            }
        }
    }

    /// Whether a stored number `target` satisfies `self` against the search value.
    pub fn matches_number(self, search: NumberRange, target: NumberRange) -> bool {
        let contained = target.low >= search.low && target.high < search.high;
        match self {
            Prefix::Eq => contained,
            Prefix::Ne => !contained,
            Prefix::Gt => target.high > search.value,
            Prefix::Lt => target.low < search.value,
            Prefix::Ge => target.high >= search.value,
            Prefix::Le => target.low <= search.value,
            Prefix::Sa => target.low > search.value,
            Prefix::Eb => target.high < search.value,
            Prefix::Ap => {
                let slack = (search.value * 0.1).abs();
                target.low <= search.value + slack && target.high >= search.value - slack
            }
        }
    }

    pub fn parse(text: &str) -> Option<Prefix> {
        Some(match text {
            "eq" => Prefix::Eq,
            "ne" => Prefix::Ne,
            "gt" => Prefix::Gt,
            "lt" => Prefix::Lt,
            "ge" => Prefix::Ge,
            "le" => Prefix::Le,
            "sa" => Prefix::Sa,
            "eb" => Prefix::Eb,
            "ap" => Prefix::Ap,
            _ => return None,
        })
    }
}
