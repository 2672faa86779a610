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

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_MINUTE: i64 = 60 * MICROS_PER_SECOND;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

impl DateRange {
    /// Everything: both ends open.
    pub const ALL: DateRange = DateRange {
        low: i64::MIN,
        high: i64::MAX,
    };

    /// The span a FHIR date, dateTime or instant (or a search value) stands for:
    /// `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, or `YYYY-MM-DDThh:mm[:ss[.f…]][Z|±hh:mm]`.
    /// The span covers the precision written (`2024-02` is February, `…T10:00` the
    /// minute, `…T10:00:00.5` a tenth of a second); a time without a zone is UTC.
    /// `None` when the text is not such a date.
    pub fn parse(text: &str) -> Option<DateRange> {
        let b = text.as_bytes();
        let year = digits(b, 0, 4)?;
        if year == 0 {
            return None;
        }
        if b.len() == 4 {
            let low = days_from_civil(year, 1, 1) * MICROS_PER_DAY;
            let high = days_from_civil(year + 1, 1, 1) * MICROS_PER_DAY;
            return Some(DateRange { low, high });
        }
        if b.get(4) != Some(&b'-') {
            return None;
        }
        let month = digits(b, 5, 2)?;
        if !(1..=12).contains(&month) {
            return None;
        }
        if b.len() == 7 {
            let low = days_from_civil(year, month, 1) * MICROS_PER_DAY;
            let (next_year, next_month) = if month == 12 {
                (year + 1, 1)
            } else {
                (year, month + 1)
            };
            let high = days_from_civil(next_year, next_month, 1) * MICROS_PER_DAY;
            return Some(DateRange { low, high });
        }
        if b.get(7) != Some(&b'-') {
            return None;
        }
        let day = digits(b, 8, 2)?;
        if day < 1 || day > days_in_month(year, month) {
            return None;
        }
        let midnight = days_from_civil(year, month, day) * MICROS_PER_DAY;
        if b.len() == 10 {
            return Some(DateRange {
                low: midnight,
                high: midnight + MICROS_PER_DAY,
            });
        }
        if b.get(10) != Some(&b'T') {
            return None;
        }
        let hour = digits(b, 11, 2)?;
        if b.get(13) != Some(&b':') {
            return None;
        }
        let minute = digits(b, 14, 2)?;
        if hour > 23 || minute > 59 {
            return None;
        }
        let mut at = 16;
        let mut local = midnight + hour * 60 * MICROS_PER_MINUTE + minute * MICROS_PER_MINUTE;
        let mut width = MICROS_PER_MINUTE;
        if b.get(at) == Some(&b':') {
            let second = digits(b, at + 1, 2)?;
            if second > 60 {
                return None;
            }
            local += second * MICROS_PER_SECOND;
            width = MICROS_PER_SECOND;
            at += 3;
            if b.get(at) == Some(&b'.') {
                at += 1;
                let start = at;
                let mut fraction = 0i64;
                while let Some(d) = b.get(at).filter(|d| d.is_ascii_digit()) {
                    let place = at - start;
                    if place < 6 {
                        fraction = fraction * 10 + i64::from(d - b'0');
                    }
                    at += 1;
                }
                let places = at - start;
                if places == 0 {
                    return None;
                }
                let kept = places.min(6);
                width = 10i64.pow(6 - kept as u32);
                local += fraction * width;
            }
        }
        let offset = match b.get(at) {
            None => 0,
            Some(b'Z') if b.len() == at + 1 => 0,
            Some(sign @ (b'+' | b'-')) if b.len() == at + 6 && b[at + 3] == b':' => {
                let hours = digits(b, at + 1, 2)?;
                let minutes = digits(b, at + 4, 2)?;
                if hours > 14 || minutes > 59 {
                    return None;
                }
                let offset = (hours * 60 + minutes) * MICROS_PER_MINUTE;
                if *sign == b'-' { -offset } else { offset }
            }
            _ => return None,
        };
        let low = local - offset;
        Some(DateRange {
            low,
            high: low + width,
        })
    }
}

/// `count` ASCII digits at `at`, as a number.
fn digits(b: &[u8], at: usize, count: usize) -> Option<i64> {
    let slice = b.get(at..at + count)?;
    let mut n = 0i64;
    for &d in slice {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + i64::from(d - b'0');
    }
    Some(n)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl NumberRange {
    /// A stored number: exactly `value`.
    pub fn exact(value: f64) -> NumberRange {
        NumberRange {
            value,
            low: value,
            high: value,
        }
    }

    /// A search value (`[+-]digits[.digits][e[+-]digits]`) with the range of its
    /// implicit precision: half a unit of the last digit written on either side
    /// (`100` is `[99.5, 100.5)`, `1.50` is `[1.495, 1.505)`, `1e2` is `[50, 150)`).
    pub fn parse(text: &str) -> Option<NumberRange> {
        let b = text.as_bytes();
        let mut at = 0;
        let negative = match b.first() {
            Some(b'-') => {
                at = 1;
                true
            }
            Some(b'+') => {
                at = 1;
                false
            }
            _ => false,
        };
        let int_start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        let int_digits = &text[int_start..at];
        if int_digits.is_empty() {
            return None;
        }
        let mut frac_digits = "";
        if b.get(at) == Some(&b'.') {
            let start = at + 1;
            at = start;
            while b.get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
            frac_digits = &text[start..at];
            if frac_digits.is_empty() {
                return None;
            }
        }
        let mut exponent: i64 = 0;
        if matches!(b.get(at), Some(b'e' | b'E')) {
            at += 1;
            let start = at;
            if matches!(b.get(at), Some(b'+' | b'-')) {
                at += 1;
            }
            let digits_start = at;
            while b.get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
            if at == digits_start || at - digits_start > 6 {
                return None;
            }
            exponent = text[start..at].parse().ok()?;
        }
        if at != b.len() {
            return None;
        }
        let value: f64 = text.parse().ok()?;
        if !value.is_finite() {
            return None;
        }
        // The value is mantissa × 10^-scale; its half unit is 5 × 10^-(scale + 1).
        let scale = frac_digits.len() as i64 - exponent;
        let mut mantissa_text = String::with_capacity(int_digits.len() + frac_digits.len());
        mantissa_text.push_str(int_digits);
        mantissa_text.push_str(frac_digits);
        let (low, high) = match mantissa_text.trim_start_matches('0').parse::<i128>() {
            Ok(m) if mantissa_text.len() <= 36 => {
                let at_scale =
                    |n: i128| -> Option<f64> { format!("{n}e{}", -(scale + 1)).parse().ok() };
                (at_scale(m * 10 - 5)?, at_scale(m * 10 + 5)?)
            }
            _ if mantissa_text.trim_start_matches('0').is_empty() => {
                let half = 0.5 * 10f64.powi(i32::try_from(-scale).ok()?);
                (-half, half)
            }
            _ => {
                let half = 0.5 * 10f64.powi(i32::try_from(-scale).ok()?);
                let magnitude = value.abs();
                (magnitude - half, magnitude + half)
            }
        };
        let (low, high) = if negative { (-high, -low) } else { (low, high) };
        Some(NumberRange { value, low, high })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const DAY: i64 = MICROS_PER_DAY;
    const HOUR: i64 = 60 * MICROS_PER_MINUTE;

    fn range(text: &str) -> DateRange {
        DateRange::parse(text).unwrap_or_else(|| panic!("{text} does not parse"))
    }

    #[test]
    fn dates_span_their_precision() {
        // 2024-01-01T00:00:00Z is 1704067200 s after the epoch.
        let new_year = 1_704_067_200 * MICROS_PER_SECOND;
        assert_eq!(
            range("2024"),
            DateRange {
                low: new_year,
                high: new_year + 366 * DAY
            }
        );
        assert_eq!(range("2023").high, new_year);
        assert_eq!(
            range("2024-01"),
            DateRange {
                low: new_year,
                high: new_year + 31 * DAY
            }
        );
        let february = range("2024-02");
        assert_eq!(february.low, new_year + 31 * DAY);
        assert_eq!(
            february.high - february.low,
            29 * DAY,
            "2024 is a leap year"
        );
        assert_eq!(range("2023-02").high - range("2023-02").low, 28 * DAY);
        assert_eq!(range("2024-12").high, range("2025").low);
        assert_eq!(
            range("2024-01-01"),
            DateRange {
                low: new_year,
                high: new_year + DAY
            }
        );
        assert_eq!(range("1970-01-01").low, 0);
        assert_eq!(range("1969-12-31").low, -DAY);
        assert_eq!(range("1900").low, -2_208_988_800 * MICROS_PER_SECOND);
    }

    #[test]
    fn leap_days() {
        assert!(DateRange::parse("2024-02-29").is_some());
        assert!(DateRange::parse("2000-02-29").is_some());
        assert!(DateRange::parse("2023-02-29").is_none());
        assert!(DateRange::parse("1900-02-29").is_none());
        assert_eq!(range("2024-02-29").high, range("2024-03-01").low);
    }

    #[test]
    fn times_with_and_without_zones() {
        let day = range("2024-01-01").low;
        assert_eq!(
            range("2024-01-01T10:00"),
            DateRange {
                low: day + 10 * HOUR,
                high: day + 10 * HOUR + MICROS_PER_MINUTE
            }
        );
        assert_eq!(
            range("2024-01-01T10:00:00Z"),
            DateRange {
                low: day + 10 * HOUR,
                high: day + 10 * HOUR + MICROS_PER_SECOND
            }
        );
        // No zone: UTC.
        assert_eq!(range("2024-01-01T10:00:00"), range("2024-01-01T10:00:00Z"));
        // +05:00 is five hours ahead of UTC.
        assert_eq!(range("2024-01-01T10:00:00+05:00").low, day + 5 * HOUR);
        assert_eq!(
            range("2024-01-01T10:00:00-03:30").low,
            day + 13 * HOUR + 30 * MICROS_PER_MINUTE
        );
        assert_eq!(
            range("2024-01-01T02:00:00+05:00").low,
            day - 3 * HOUR,
            "the day before in UTC"
        );
        assert_eq!(
            range("2024-01-01T10:00:00.5Z").high - range("2024-01-01T10:00:00.5Z").low,
            100_000
        );
        assert_eq!(
            range("2024-01-01T10:00:00.123Z").low,
            day + 10 * HOUR + 123_000
        );
        let fine = range("2024-01-01T10:00:00.1234567Z");
        assert_eq!(
            (fine.low - day - 10 * HOUR, fine.high - fine.low),
            (123_456, 1)
        );
    }

    #[test]
    fn malformed_dates_are_refused() {
        for bad in [
            "",
            "24",
            "2024-1",
            "2024-13",
            "2024-00",
            "2024-01-32",
            "2024-01-01T",
            "2024-01-01T10",
            "2024-01-01T24:00",
            "2024-01-01T10:60",
            "2024-01-01T10:00:00+5:00",
            "2024-01-01T10:00:00+15:00",
            "2024-01-01T10:00:00.Z",
            "2024-01-01 10:00",
            "2024-01-01T10:00:00Zx",
            "0000",
            "abcd",
            "2024/01/01",
            "2024-01-01T10:00:00z",
        ] {
            assert_eq!(DateRange::parse(bad), None, "{bad:?}");
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn numbers_have_the_precision_written() {
        let n = NumberRange::parse("100").unwrap();
        assert_eq!((n.value, n.low, n.high), (100.0, 99.5, 100.5));
        let n = NumberRange::parse("1.50").unwrap();
        assert_eq!((n.value, n.low, n.high), (1.5, 1.495, 1.505));
        let n = NumberRange::parse("1e2").unwrap();
        assert_eq!((n.value, n.low, n.high), (100.0, 50.0, 150.0));
        let n = NumberRange::parse("1.0e2").unwrap();
        assert_eq!((n.low, n.high), (95.0, 105.0));
        let n = NumberRange::parse("2.5E-3").unwrap();
        assert!(close(n.low, 0.00245) && close(n.high, 0.00255));
        let n = NumberRange::parse("-3.2").unwrap();
        assert_eq!((n.value, n.low, n.high), (-3.2, -3.25, -3.15));
        let n = NumberRange::parse("0").unwrap();
        assert_eq!((n.value, n.low, n.high), (0.0, -0.5, 0.5));
        let n = NumberRange::parse("+0.000").unwrap();
        assert_eq!((n.low, n.high), (-0.0005, 0.0005));
        let long = NumberRange::parse("1234567890123456789012345678901234567890.5").unwrap();
        assert!(long.low <= long.value && long.value <= long.high && long.value > 1e39);
        assert_eq!(
            NumberRange::exact(7.25),
            NumberRange {
                value: 7.25,
                low: 7.25,
                high: 7.25
            }
        );
    }

    #[test]
    fn malformed_numbers_are_refused() {
        for bad in [
            "",
            "-",
            "1.",
            ".5",
            "1e",
            "1e+",
            "abc",
            "NaN",
            "inf",
            "1,5",
            "1 ",
            "0x10",
            "1e9999999",
        ] {
            assert_eq!(NumberRange::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn prefixes_on_ranges() {
        let search = NumberRange::parse("100").unwrap();
        assert!(Prefix::Eq.matches_number(search, NumberRange::exact(100.4)));
        assert!(!Prefix::Eq.matches_number(search, NumberRange::exact(100.5)));
        assert!(Prefix::Gt.matches_number(search, NumberRange::exact(100.1)));
        let day = range("2024-02-29");
        assert!(Prefix::Eq.matches_date(day, range("2024-02-29T23:59:59+00:00")));
        assert!(!Prefix::Eq.matches_date(day, range("2024-02-29T23:59:59-01:00")));
        assert!(Prefix::Ge.matches_date(range("2024"), day));
    }
}
