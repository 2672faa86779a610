//! Partial dates, date-times and times: parsing, printing, comparison and calendar arithmetic.

use std::cmp::Ordering;
use std::fmt;

/// How much of a date or time is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Precision {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
}

impl Precision {
    /// Comparison levels: seconds and milliseconds are one level (decimal seconds).
    fn levels(self) -> usize {
        match self {
            Precision::Year => 1,
            Precision::Month => 2,
            Precision::Day => 3,
            Precision::Hour => 4,
            Precision::Minute => 5,
            Precision::Second | Precision::Millisecond => 6,
        }
    }
}

/// A FHIRPath Date or DateTime with its precision; fields below the precision are zero (or one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DateTime {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub millisecond: u16,
    pub precision: Precision,
    /// Offset from UTC in minutes, if a timezone was given.
    pub offset_minutes: Option<i16>,
}

/// A FHIRPath Time (no timezone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Time {
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub millisecond: u16,
    pub precision: Precision,
}

/// Calendar units usable in date/time arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalendarUnit {
    Year,
    Month,
    Week,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
}

pub(crate) fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

pub(crate) fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 (proleptic Gregorian), after Howard Hinnant's algorithm.
pub(crate) fn days_from_civil(year: i32, month: u8, day: u8) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn digits(s: &str, n: usize) -> Option<(u32, &str)> {
    let head = s.get(..n)?;
    if !head.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((head.parse().ok()?, &s[n..]))
}

/// Parses `hh(:mm(:ss(.fff)?)?)?`; returns the time and the rest.
fn parse_time_part(s: &str) -> Option<(Time, &str)> {
    let (hour, mut rest) = digits(s, 2)?;
    let mut time = Time {
        hour: u8::try_from(hour).ok()?,
        minute: 0,
        second: 0,
        millisecond: 0,
        precision: Precision::Hour,
    };
    if let Some(r) = rest.strip_prefix(':') {
        let (minute, r) = digits(r, 2)?;
        time.minute = u8::try_from(minute).ok()?;
        time.precision = Precision::Minute;
        rest = r;
        if let Some(r) = rest.strip_prefix(':') {
            let (second, r) = digits(r, 2)?;
            time.second = u8::try_from(second).ok()?;
            time.precision = Precision::Second;
            rest = r;
            if let Some(r) = rest
                .strip_prefix('.')
                .filter(|r| r.as_bytes().first().is_some_and(u8::is_ascii_digit))
            {
                let n = r.bytes().take_while(u8::is_ascii_digit).count();
                let mut ms = 0u16;
                for (i, b) in r.bytes().take(3).enumerate() {
                    if i < n {
                        ms = ms * 10 + u16::from(b - b'0');
                    }
                }
                for _ in n.min(3)..3 {
                    ms *= 10;
                }
                time.millisecond = ms;
                time.precision = Precision::Millisecond;
                rest = &r[n..];
            }
        }
    }
    if time.hour > 23 || time.minute > 59 || time.second > 59 {
        return None;
    }
    Some((time, rest))
}

fn parse_offset(s: &str) -> Option<(i16, &str)> {
    if let Some(rest) = s.strip_prefix('Z') {
        return Some((0, rest));
    }
    let sign: i16 = match s.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, r) = digits(&s[1..], 2)?;
    let r = r.strip_prefix(':')?;
    let (m, r) = digits(r, 2)?;
    if h > 14 || m > 59 {
        return None;
    }
    Some((sign * (h as i16 * 60 + m as i16), r))
}

/// Parses a date or date-time prefix of `s`; returns it, whether a `T` was present, and the rest.
fn parse_datetime_prefix(s: &str) -> Option<(DateTime, bool, &str)> {
    let (year, mut rest) = digits(s, 4)?;
    let mut dt = DateTime {
        year: i32::try_from(year).ok()?,
        month: 1,
        day: 1,
        hour: 0,
        minute: 0,
        second: 0,
        millisecond: 0,
        precision: Precision::Year,
        offset_minutes: None,
    };
    if let Some(r) = rest.strip_prefix('-') {
        let (month, r) = digits(r, 2)?;
        dt.month = u8::try_from(month).ok()?;
        dt.precision = Precision::Month;
        rest = r;
        if let Some(r) = rest.strip_prefix('-') {
            let (day, r) = digits(r, 2)?;
            dt.day = u8::try_from(day).ok()?;
            dt.precision = Precision::Day;
            rest = r;
        }
    }
    if !(1..=12).contains(&dt.month) || dt.day < 1 || dt.day > days_in_month(dt.year, dt.month) {
        return None;
    }
    let mut has_t = false;
    if let Some(r) = rest.strip_prefix('T') {
        has_t = true;
        rest = r;
        if rest.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            if dt.precision != Precision::Day {
                return None;
            }
            let (time, r) = parse_time_part(rest)?;
            dt.hour = time.hour;
            dt.minute = time.minute;
            dt.second = time.second;
            dt.millisecond = time.millisecond;
            dt.precision = time.precision;
            rest = r;
            if let Some((offset, r)) = parse_offset(rest) {
                dt.offset_minutes = Some(offset);
                rest = r;
            }
        }
    }
    Some((dt, has_t, rest))
}

/// Parses a whole FHIRPath/FHIR date (`YYYY(-MM(-DD)?)?`).
pub fn parse_date(s: &str) -> Option<DateTime> {
    match parse_datetime_prefix(s)? {
        (dt, false, "") => Some(dt),
        _ => None,
    }
}

/// Parses a whole date-time; a date alone or a trailing `T` is accepted, as is a FHIR instant.
pub fn parse_datetime(s: &str) -> Option<DateTime> {
    match parse_datetime_prefix(s)? {
        (dt, _, "") => Some(dt),
        _ => None,
    }
}

/// Parses a whole time `hh(:mm(:ss(.fff)?)?)?`.
pub fn parse_time(s: &str) -> Option<Time> {
    match parse_time_part(s)? {
        (t, "") => Some(t),
        _ => None,
    }
}

/// A date/time literal after `@`: what kind it is.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Literal {
    Date(DateTime),
    DateTime(DateTime),
    Time(Time),
}

/// Scans a date/time literal at the start of `s` (just after `@`); returns it and its length.
pub(crate) fn scan_literal(s: &str) -> Option<(Literal, usize)> {
    if let Some(r) = s.strip_prefix('T') {
        let (time, rest) = parse_time_part(r)?;
        return Some((Literal::Time(time), s.len() - rest.len()));
    }
    let (dt, has_t, rest) = parse_datetime_prefix(s)?;
    let len = s.len() - rest.len();
    if has_t {
        Some((Literal::DateTime(dt), len))
    } else {
        Some((Literal::Date(dt), len))
    }
}

impl DateTime {
    fn fields(&self) -> [i64; 6] {
        [
            i64::from(self.year),
            i64::from(self.month),
            i64::from(self.day),
            i64::from(self.hour),
            i64::from(self.minute),
            i64::from(self.second) * 1000 + i64::from(self.millisecond),
        ]
    }

    fn epoch_ms(&self) -> i64 {
        let days = days_from_civil(self.year, self.month, self.day);
        days * 86_400_000
            + i64::from(self.hour) * 3_600_000
            + i64::from(self.minute) * 60_000
            + i64::from(self.second) * 1000
            + i64::from(self.millisecond)
    }

    fn with_epoch_ms(&self, ms: i64) -> Option<DateTime> {
        let days = ms.div_euclid(86_400_000);
        let rem = ms.rem_euclid(86_400_000);
        let (year, month, day) = civil_from_days(days);
        Some(DateTime {
            year: i32::try_from(year)
                .ok()
                .filter(|y| (1..=9999).contains(y))?,
            month,
            day,
            hour: (rem / 3_600_000) as u8,
            minute: (rem / 60_000 % 60) as u8,
            second: (rem / 1000 % 60) as u8,
            millisecond: (rem % 1000) as u16,
            ..*self
        })
    }

    fn to_utc(self) -> DateTime {
        match self.offset_minutes {
            Some(offset) if self.precision >= Precision::Hour => self
                .with_epoch_ms(self.epoch_ms() - i64::from(offset) * 60_000)
                .map(|dt| DateTime {
                    offset_minutes: Some(0),
                    ..dt
                })
                .unwrap_or(self),
            _ => self,
        }
    }

    /// Compares per FHIRPath: `None` when the precisions differ and the known parts are equal.
    pub fn compare(&self, other: &DateTime) -> Option<Ordering> {
        let (a, b) = if self.precision >= Precision::Hour && other.precision >= Precision::Hour {
            match (self.offset_minutes, other.offset_minutes) {
                (Some(_), Some(_)) => (self.to_utc(), other.to_utc()),
                (None, None) => (*self, *other),
                _ => return None,
            }
        } else {
            (*self, *other)
        };
        let (la, lb) = (a.precision.levels(), b.precision.levels());
        let (fa, fb) = (a.fields(), b.fields());
        for i in 0..la.min(lb) {
            match fa[i].cmp(&fb[i]) {
                Ordering::Equal => {}
                unequal => return Some(unequal),
            }
        }
        (la == lb).then_some(Ordering::Equal)
    }

    /// Adds `amount` of `unit`; `None` when the result is out of range.
    pub fn add(&self, amount: i64, unit: CalendarUnit) -> Option<DateTime> {
        match unit {
            CalendarUnit::Year => self.add_months(amount.checked_mul(12)?),
            CalendarUnit::Month => self.add_months(amount),
            CalendarUnit::Week => self.add_ms(amount.checked_mul(7 * 86_400_000)?, true),
            CalendarUnit::Day => self.add_ms(amount.checked_mul(86_400_000)?, true),
            CalendarUnit::Hour => self.add_ms(amount.checked_mul(3_600_000)?, false),
            CalendarUnit::Minute => self.add_ms(amount.checked_mul(60_000)?, false),
            CalendarUnit::Second => self.add_ms(amount.checked_mul(1000)?, false),
            CalendarUnit::Millisecond => self.add_ms(amount, false),
        }
    }

    fn add_months(&self, months: i64) -> Option<DateTime> {
        if self.precision == Precision::Year {
            let year = i64::from(self.year).checked_add(months / 12)?;
            return Some(DateTime {
                year: i32::try_from(year)
                    .ok()
                    .filter(|y| (1..=9999).contains(y))?,
                ..*self
            });
        }
        let total = (i64::from(self.year) * 12 + i64::from(self.month) - 1).checked_add(months)?;
        let year = i32::try_from(total.div_euclid(12))
            .ok()
            .filter(|y| (1..=9999).contains(y))?;
        let month = (total.rem_euclid(12) + 1) as u8;
        let day = self.day.min(days_in_month(year, month));
        Some(DateTime {
            year,
            month,
            day,
            ..*self
        })
    }

    fn add_ms(&self, ms: i64, whole_days: bool) -> Option<DateTime> {
        match self.precision {
            Precision::Year | Precision::Month => {
                // Below the precision: only whole months count, which days never make.
                let _ = whole_days;
                Some(*self)
            }
            Precision::Day => {
                let days = ms / 86_400_000;
                self.with_epoch_ms(self.epoch_ms().checked_add(days.checked_mul(86_400_000)?)?)
            }
            _ => self.with_epoch_ms(self.epoch_ms().checked_add(ms)?),
        }
    }

    /// The date part, as a Date.
    pub fn date(&self) -> DateTime {
        DateTime {
            hour: 0,
            minute: 0,
            second: 0,
            millisecond: 0,
            precision: self.precision.min(Precision::Day),
            offset_minutes: None,
            ..*self
        }
    }

    /// Formats as a FHIR date (up to the day).
    pub fn fmt_date(&self) -> String {
        let mut out = format!("{:04}", self.year);
        if self.precision >= Precision::Month {
            out.push_str(&format!("-{:02}", self.month));
        }
        if self.precision >= Precision::Day {
            out.push_str(&format!("-{:02}", self.day));
        }
        out
    }

    /// Formats as a FHIR dateTime.
    pub fn fmt_datetime(&self) -> String {
        let mut out = self.fmt_date();
        if self.precision >= Precision::Hour {
            out.push('T');
            out.push_str(&self.time().to_string());
            if let Some(offset) = self.offset_minutes {
                if offset == 0 {
                    out.push('Z');
                } else {
                    let sign = if offset < 0 { '-' } else { '+' };
                    let abs = offset.unsigned_abs();
                    out.push_str(&format!("{sign}{:02}:{:02}", abs / 60, abs % 60));
                }
            }
        }
        out
    }

    /// The time part.
    pub fn time(&self) -> Time {
        Time {
            hour: self.hour,
            minute: self.minute,
            second: self.second,
            millisecond: self.millisecond,
            precision: self.precision.max(Precision::Hour),
        }
    }
}

impl Time {
    fn fields(&self) -> [i64; 3] {
        [
            i64::from(self.hour),
            i64::from(self.minute),
            i64::from(self.second) * 1000 + i64::from(self.millisecond),
        ]
    }

    /// Compares per FHIRPath: `None` when the precisions differ and the known parts are equal.
    pub fn compare(&self, other: &Time) -> Option<Ordering> {
        let (la, lb) = (
            self.precision.levels().saturating_sub(3),
            other.precision.levels().saturating_sub(3),
        );
        let (fa, fb) = (self.fields(), other.fields());
        for i in 0..la.min(lb) {
            match fa[i].cmp(&fb[i]) {
                Ordering::Equal => {}
                unequal => return Some(unequal),
            }
        }
        (la == lb).then_some(Ordering::Equal)
    }

    /// Adds a time-valued amount, wrapping around midnight.
    pub fn add(&self, amount: i64, unit: CalendarUnit) -> Option<Time> {
        let ms = match unit {
            CalendarUnit::Hour => amount.checked_mul(3_600_000)?,
            CalendarUnit::Minute => amount.checked_mul(60_000)?,
            CalendarUnit::Second => amount.checked_mul(1000)?,
            CalendarUnit::Millisecond => amount,
            _ => return None,
        };
        let now = self.fields();
        let total = (now[0] * 3_600_000 + now[1] * 60_000 + now[2])
            .checked_add(ms)?
            .rem_euclid(86_400_000);
        Some(Time {
            hour: (total / 3_600_000) as u8,
            minute: (total / 60_000 % 60) as u8,
            second: (total / 1000 % 60) as u8,
            millisecond: (total % 1000) as u16,
            precision: self.precision,
        })
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}", self.hour)?;
        if self.precision >= Precision::Minute {
            write!(f, ":{:02}", self.minute)?;
        }
        if self.precision >= Precision::Second {
            write!(f, ":{:02}", self.second)?;
        }
        if self.precision >= Precision::Millisecond {
            write!(f, ".{:03}", self.millisecond)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for days in [-800_000i64, -1, 0, 1, 365, 11_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y as i32, m, d), days);
        }
    }

    #[test]
    fn partial_comparison() {
        let a = parse_datetime("2018-03-01T10:30").unwrap();
        let b = parse_datetime("2018-03-01T10:30:00").unwrap();
        assert_eq!(a.compare(&b), None);
        let c = parse_datetime("2017-11-05T01:30:00.0-04:00").unwrap();
        let d = parse_datetime("2017-11-05T00:30:00.0-05:00").unwrap();
        assert_eq!(c.compare(&d), Some(Ordering::Equal));
    }
}
