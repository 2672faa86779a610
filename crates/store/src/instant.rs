//! Instants as microseconds since the Unix epoch (UTC), and FHIR date/time parsing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// A point in time, in microseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(pub i64);

/// A half-open interval `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    pub start: Instant,
    pub end: Instant,
}

impl Instant {
    pub fn now() -> Instant {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Instant(i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX))
    }

    fn to_offset_date_time(self) -> OffsetDateTime {
        let nanos = i128::from(self.0) * 1000;
        OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// As a FHIR `instant`: `2026-11-26T10:38:53.123456Z`.
    pub fn to_fhir(self) -> String {
        let t = self.to_offset_date_time();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        )
    }

    /// As an HTTP date (`Last-Modified`): `Thu, 26 Nov 2026 10:38:53 GMT`.
    pub fn to_http_date(self) -> String {
        let seconds = u64::try_from(self.0.div_euclid(1_000_000)).unwrap_or(0);
        httpdate_string(UNIX_EPOCH + Duration::from_secs(seconds))
    }

    /// Parses a FHIR `date`, `dateTime` or `instant` into the period it covers at its
    /// precision: `2024` is the whole year, `2024-03-01T10:00:00Z` is that second.
    pub fn parse_fhir_period(text: &str) -> Result<Period, String> {
        parse_period(text).ok_or_else(|| {
            format!("{text:?} is not a FHIR date, dateTime or instant (e.g. 2024-03-01T10:00:00Z)")
        })
    }
}

fn httpdate_string(time: SystemTime) -> String {
    // RFC 9110 IMF-fixdate.
    let t = OffsetDateTime::from(time);
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[usize::from(t.weekday().number_days_from_monday())],
        t.day(),
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn digits(text: &str, len: usize) -> Option<u32> {
    if text.len() == len && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

fn micros(t: OffsetDateTime) -> Instant {
    Instant(i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX))
}

fn parse_period(text: &str) -> Option<Period> {
    let (date_part, time_part) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let mut fields = date_part.split('-');
    let year = i32::try_from(digits(fields.next()?, 4)?).ok()?;
    let month = match fields.next() {
        Some(m) => Some(digits(m, 2)?),
        None => None,
    };
    let day = match fields.next() {
        Some(d) => Some(digits(d, 2)?),
        None => None,
    };
    if fields.next().is_some() {
        return None;
    }
    let Some(time_part) = time_part else {
        // A date without a time is taken in UTC.
        let (start, end) = match (month, day) {
            (None, _) => (
                Date::from_calendar_date(year, Month::January, 1).ok()?,
                Date::from_calendar_date(year + 1, Month::January, 1).ok()?,
            ),
            (Some(m), None) => {
                let start =
                    Date::from_calendar_date(year, Month::try_from(u8::try_from(m).ok()?).ok()?, 1)
                        .ok()?;
                let next = if m == 12 {
                    Date::from_calendar_date(year + 1, Month::January, 1).ok()?
                } else {
                    Date::from_calendar_date(
                        year,
                        Month::try_from(u8::try_from(m + 1).ok()?).ok()?,
                        1,
                    )
                    .ok()?
                };
                (start, next)
            }
            (Some(m), Some(d)) => {
                let start = Date::from_calendar_date(
                    year,
                    Month::try_from(u8::try_from(m).ok()?).ok()?,
                    u8::try_from(d).ok()?,
                )
                .ok()?;
                (start, start.next_day()?)
            }
        };
        return Some(Period {
            start: micros(start.midnight().assume_utc()),
            end: micros(end.midnight().assume_utc()),
        });
    };
    // A time needs a full date and a zone.
    let date = Date::from_calendar_date(
        year,
        Month::try_from(u8::try_from(month?).ok()?).ok()?,
        u8::try_from(day?).ok()?,
    )
    .ok()?;
    let (clock, offset) = if let Some(clock) = time_part.strip_suffix('Z') {
        (clock, UtcOffset::UTC)
    } else {
        let split = time_part.rfind(['+', '-'])?;
        let (clock, zone) = time_part.split_at(split);
        let sign: i8 = if zone.starts_with('-') { -1 } else { 1 };
        let (hours, minutes) = zone[1..].split_once(':')?;
        let hours = i8::try_from(digits(hours, 2)?).ok()?;
        let minutes = i8::try_from(digits(minutes, 2)?).ok()?;
        (
            clock,
            UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()?,
        )
    };
    let (hms, fraction) = match clock.split_once('.') {
        Some((hms, fraction)) => (hms, Some(fraction)),
        None => (clock, None),
    };
    let mut hms_fields = hms.split(':');
    let hour = u8::try_from(digits(hms_fields.next()?, 2)?).ok()?;
    let minute = u8::try_from(digits(hms_fields.next()?, 2)?).ok()?;
    let second = u8::try_from(digits(hms_fields.next()?, 2)?).ok()?;
    if hms_fields.next().is_some() {
        return None;
    }
    let (micro, width) = match fraction {
        None => (0, 1_000_000),
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            let kept = &f[..f.len().min(6)];
            let scale = 10u32.pow(u32::try_from(6 - kept.len()).ok()?);
            (kept.parse::<u32>().ok()? * scale, scale)
        }
        Some(_) => return None,
    };
    let time = Time::from_hms_micro(hour, minute, second, micro).ok()?;
    let start = micros(PrimitiveDateTime::new(date, time).assume_offset(offset));
    Some(Period {
        start,
        end: Instant(start.0 + i64::from(width)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_instants() {
        let t = Instant(1_764_153_533_123_456);
        assert_eq!(t.to_fhir(), "2025-11-26T10:38:53.123456Z");
        assert_eq!(t.to_http_date(), "Wed, 26 Nov 2025 10:38:53 GMT");
    }

    #[test]
    fn parses_periods_at_their_precision() {
        let second = Instant::parse_fhir_period("2025-11-26T10:38:53Z").unwrap();
        assert_eq!(second.start, Instant(1_764_153_533_000_000));
        assert_eq!(second.end.0 - second.start.0, 1_000_000);
        let offset = Instant::parse_fhir_period("2025-11-26T11:38:53.5+01:00").unwrap();
        assert_eq!(offset.start, Instant(1_764_153_533_500_000));
        assert_eq!(offset.end.0 - offset.start.0, 100_000);
        let day = Instant::parse_fhir_period("2025-11-26").unwrap();
        assert_eq!(day.end.0 - day.start.0, 86_400_000_000);
        let month = Instant::parse_fhir_period("2024-02").unwrap();
        assert_eq!(month.end.0 - month.start.0, 29 * 86_400_000_000);
        let year = Instant::parse_fhir_period("2025").unwrap();
        assert_eq!(year.end.0 - year.start.0, 365 * 86_400_000_000);
        assert_eq!(
            Instant::parse_fhir_period(&Instant(1_764_153_533_123_456).to_fhir())
                .unwrap()
                .start,
            Instant(1_764_153_533_123_456)
        );
    }

    #[test]
    fn rejects_malformed_dates() {
        for bad in [
            "",
            "2025-13",
            "2025-02-30",
            "25",
            "2025-11-26T10:38Z",
            "2025-11-26T10:38:53",
            "2025-11-26T25:00:00Z",
            "2025-11-26T10:38:53.Z",
            "yesterday",
            "2025-1-1",
        ] {
            assert!(Instant::parse_fhir_period(bad).is_err(), "{bad}");
        }
    }
}
