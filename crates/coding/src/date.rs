//! Calendar dates as the code tables keep them: `YYYYMMDD` numbers.

use std::fmt;

/// A date of service or discharge, ordered like the calendar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(u32);

impl Date {
    /// The date from its parts; `None` unless it is a real calendar date.
    pub fn from_ymd(year: u32, month: u32, day: u32) -> Option<Date> {
        let days_in_month = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if (year.is_multiple_of(4) && !year.is_multiple_of(100))
                || year.is_multiple_of(400) =>
            {
                29
            }
            2 => 28,
            _ => return None,
        };
        if !(1..=9999).contains(&year) || day == 0 || day > days_in_month {
            return None;
        }
        Some(Date(year * 10_000 + month * 100 + day))
    }

    /// Parses `YYYY-MM-DD` (FHIR `date`) or `YYYYMMDD`.
    pub fn parse(text: &str) -> Option<Date> {
        let digits: String = text.trim().chars().filter(|c| *c != '-').collect();
        if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let number: u32 = digits.parse().ok()?;
        Date::from_ymd(number / 10_000, number / 100 % 100, number % 100)
    }

    /// The `YYYYMMDD` number the tables use.
    pub fn yyyymmdd(self) -> u32 {
        self.0
    }

    pub(crate) fn from_table(number: u32) -> Date {
        Date(number)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}",
            self.0 / 10_000,
            self.0 / 100 % 100,
            self.0 % 100
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Date;

    #[test]
    fn parses_fhir_and_compact_dates_and_refuses_impossible_ones() {
        assert_eq!(
            Date::parse("2026-04-01").map(Date::yyyymmdd),
            Some(20260401)
        );
        assert_eq!(
            Date::parse("20251001").map(|d| d.to_string()),
            Some("2025-10-01".to_string())
        );
        assert_eq!(Date::parse("2026-02-30"), None);
        assert_eq!(Date::parse("2026-13-01"), None);
        assert_eq!(Date::parse("yesterday"), None);
        assert!(Date::parse("2024-02-29").is_some());
    }
}
