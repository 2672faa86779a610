//! A small UCUM subset: enough to compare, convert, multiply and divide common quantities.
//!
//! Units are parsed into a factor relative to base units and a dimension vector
//! (m, g, s, mol, K, A, cd). Unknown atoms make a unit unparseable, so such quantities
//! compare only when their unit strings are equal.

use std::str::FromStr;

use rust_decimal::Decimal;

use crate::temporal::CalendarUnit;

const DIMENSIONS: usize = 7;

/// A parsed unit: `value_in_base = value * factor`.
#[derive(Clone, Debug, PartialEq)]
pub struct Unit {
    pub factor: Decimal,
    pub dims: [i8; DIMENSIONS],
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or(Decimal::ONE)
}

fn atom(name: &str) -> Option<Unit> {
    let base = |i: usize| {
        let mut dims = [0i8; DIMENSIONS];
        dims[i] = 1;
        dims
    };
    let (factor, dims) = match name {
        "1" => ("1", [0; DIMENSIONS]),
        "%" => ("0.01", [0; DIMENSIONS]),
        "m" => ("1", base(0)),
        "g" => ("1", base(1)),
        "s" => ("1", base(2)),
        "mol" => ("602213670000000000000000", [0; DIMENSIONS]),
        "K" => ("1", base(4)),
        "A" => ("1", base(5)),
        "cd" => ("1", base(6)),
        "min" => ("60", base(2)),
        "h" => ("3600", base(2)),
        "d" => ("86400", base(2)),
        "wk" => ("604800", base(2)),
        "a" => ("31557600", base(2)),
        "mo" => ("2629800", base(2)),
        "L" | "l" => ("0.001", [3, 0, 0, 0, 0, 0, 0]),
        "[lb_av]" => ("453.59237", base(1)),
        "[oz_av]" => ("28.349523125", base(1)),
        "[in_i]" => ("0.0254", base(0)),
        "[ft_i]" => ("0.3048", base(0)),
        "[yd_i]" => ("0.9144", base(0)),
        "[mi_i]" => ("1609.344", base(0)),
        "Pa" => ("1000", [-1, 1, -2, 0, 0, 0, 0]),
        "bar" => ("100000000", [-1, 1, -2, 0, 0, 0, 0]),
        "m[Hg]" => ("133322000", [-1, 1, -2, 0, 0, 0, 0]),
        "N" => ("1000", [1, 1, -2, 0, 0, 0, 0]),
        "J" => ("1000", [2, 1, -2, 0, 0, 0, 0]),
        "W" => ("1000", [2, 1, -3, 0, 0, 0, 0]),
        "Hz" => ("1", [0, 0, -1, 0, 0, 0, 0]),
        "cal" => ("4184", [2, 1, -2, 0, 0, 0, 0]),
        "[iU]" | "[IU]" | "U" | "eq" | "Eq" => ("1", [0; DIMENSIONS]),
        _ => return None,
    };
    Some(Unit {
        factor: dec(factor),
        dims,
    })
}

fn metric(name: &str) -> bool {
    matches!(
        name,
        "m" | "g"
            | "s"
            | "mol"
            | "K"
            | "A"
            | "cd"
            | "L"
            | "l"
            | "Pa"
            | "bar"
            | "m[Hg]"
            | "N"
            | "J"
            | "W"
            | "Hz"
            | "cal"
            | "U"
            | "eq"
            | "Eq"
            | "[iU]"
            | "[IU]"
    )
}

fn prefix(p: &str) -> Option<&'static str> {
    Some(match p {
        "Y" => "1000000000000000000000000",
        "Z" => "1000000000000000000000",
        "E" => "1000000000000000000",
        "P" => "1000000000000000",
        "T" => "1000000000000",
        "G" => "1000000000",
        "M" => "1000000",
        "k" => "1000",
        "h" => "100",
        "da" => "10",
        "d" => "0.1",
        "c" => "0.01",
        "m" => "0.001",
        "u" => "0.000001",
        "n" => "0.000000001",
        "p" => "0.000000000001",
        "f" => "0.000000000000001",
        _ => return None,
    })
}

fn prefixed_atom(name: &str) -> Option<Unit> {
    if let Some(unit) = atom(name) {
        return Some(unit);
    }
    for len in [1, 2] {
        let (p, rest) = (name.get(..len)?, name.get(len..)?);
        if let (Some(factor), true) = (prefix(p), metric(rest)) {
            let unit = atom(rest)?;
            return Some(Unit {
                factor: unit.factor.checked_mul(dec(factor))?,
                dims: unit.dims,
            });
        }
    }
    None
}

fn pow(unit: Unit, exponent: i32) -> Option<Unit> {
    let mut factor = Decimal::ONE;
    for _ in 0..exponent.unsigned_abs() {
        factor = factor.checked_mul(unit.factor)?;
    }
    if exponent < 0 {
        factor = Decimal::ONE.checked_div(factor)?;
    }
    let mut dims = unit.dims;
    for d in &mut dims {
        *d = d.checked_mul(i8::try_from(exponent).ok()?)?;
    }
    Some(Unit { factor, dims })
}

fn mul(a: Unit, b: Unit, divide: bool) -> Option<Unit> {
    let factor = if divide {
        a.factor.checked_div(b.factor)?
    } else {
        a.factor.checked_mul(b.factor)?
    };
    let mut dims = a.dims;
    for (d, e) in dims.iter_mut().zip(b.dims) {
        *d = if divide {
            d.checked_sub(e)?
        } else {
            d.checked_add(e)?
        };
    }
    Some(Unit { factor, dims })
}

struct Parser<'s> {
    s: &'s [u8],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn term(&mut self) -> Option<Unit> {
        self.depth += 1;
        if self.depth > 16 {
            return None;
        }
        let mut unit = if self.s.get(self.pos) == Some(&b'/') {
            Unit {
                factor: Decimal::ONE,
                dims: [0; DIMENSIONS],
            }
        } else {
            self.component()?
        };
        while let Some(&op) = self.s.get(self.pos) {
            match op {
                b'.' | b'/' => {
                    self.pos += 1;
                    let next = self.component()?;
                    unit = mul(unit, next, op == b'/')?;
                }
                b')' => break,
                _ => return None,
            }
        }
        self.depth -= 1;
        Some(unit)
    }

    fn component(&mut self) -> Option<Unit> {
        if self.s.get(self.pos) == Some(&b'(') {
            self.pos += 1;
            let unit = self.term()?;
            if self.s.get(self.pos) != Some(&b')') {
                return None;
            }
            self.pos += 1;
            return Some(unit);
        }
        let start = self.pos;
        let mut bracket = false;
        while let Some(&c) = self.s.get(self.pos) {
            match c {
                b'[' => bracket = true,
                b']' => bracket = false,
                b'.' | b'/' | b'(' | b')' if !bracket => break,
                _ => {}
            }
            self.pos += 1;
        }
        let text = std::str::from_utf8(self.s.get(start..self.pos)?).ok()?;
        // Annotations `{...}` count as the unity.
        let text = match text.find('{') {
            Some(0) => return atom("1"),
            Some(i) => &text[..i],
            None => text,
        };
        // A trailing signed integer is the exponent, unless the whole thing is a number.
        if let Ok(n) = text.parse::<i64>() {
            return if n == 1 {
                atom("1")
            } else {
                let factor = Decimal::from(n);
                Some(Unit {
                    factor,
                    dims: [0; DIMENSIONS],
                })
            };
        }
        let split = text
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_digit() || *c == '-' || *c == '+'))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let (name, exponent) = text.split_at(split);
        let exponent = if exponent.is_empty() {
            1
        } else {
            exponent.parse::<i32>().ok().filter(|e| e.abs() <= 9)?
        };
        pow(prefixed_atom(name)?, exponent)
    }
}

/// Parses a UCUM unit expression.
pub fn parse(unit: &str) -> Option<Unit> {
    if unit.is_empty() || unit.len() > 64 {
        return None;
    }
    let mut parser = Parser {
        s: unit.as_bytes(),
        pos: 0,
        depth: 0,
    };
    let parsed = parser.term()?;
    (parser.pos == unit.len()).then_some(parsed)
}

/// The calendar duration keyword (`year`, `weeks`, …), if `unit` is one.
pub fn calendar_keyword(unit: &str) -> Option<CalendarUnit> {
    Some(match unit {
        "year" | "years" => CalendarUnit::Year,
        "month" | "months" => CalendarUnit::Month,
        "week" | "weeks" => CalendarUnit::Week,
        "day" | "days" => CalendarUnit::Day,
        "hour" | "hours" => CalendarUnit::Hour,
        "minute" | "minutes" => CalendarUnit::Minute,
        "second" | "seconds" => CalendarUnit::Second,
        "millisecond" | "milliseconds" => CalendarUnit::Millisecond,
        _ => return None,
    })
}

/// The UCUM code a calendar keyword equals for comparison; years and months have none
/// (a calendar year is not exactly `'a'`).
pub fn calendar_to_ucum(unit: CalendarUnit) -> Option<&'static str> {
    Some(match unit {
        CalendarUnit::Week => "wk",
        CalendarUnit::Day => "d",
        CalendarUnit::Hour => "h",
        CalendarUnit::Minute => "min",
        CalendarUnit::Second => "s",
        CalendarUnit::Millisecond => "ms",
        CalendarUnit::Year | CalendarUnit::Month => return None,
    })
}

/// The calendar unit a UCUM time code may be added to a date with; `a` and `mo` are not definite.
pub fn ucum_to_calendar(unit: &str) -> Option<CalendarUnit> {
    Some(match unit {
        "wk" => CalendarUnit::Week,
        "d" => CalendarUnit::Day,
        "h" => CalendarUnit::Hour,
        "min" => CalendarUnit::Minute,
        "s" => CalendarUnit::Second,
        "ms" => CalendarUnit::Millisecond,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compound_units() {
        let gm = parse("g/m").unwrap();
        assert_eq!(gm.dims[0], -1);
        assert_eq!(gm.dims[1], 1);
        let cm2 = parse("cm.m").unwrap();
        assert_eq!(cm2.factor, dec("0.01"));
        assert_eq!(cm2.dims[0], 2);
        assert_eq!(parse("mg").unwrap().factor, dec("0.001"));
        assert_eq!(parse("mm[Hg]").unwrap().dims, [-1, 1, -2, 0, 0, 0, 0]);
        assert!(parse("m2").is_some());
        assert!(parse("kg/m2").is_some());
        assert!(parse("nonsense").is_none());
        assert!(parse("((((((((((((((((((((m))))))))))))))))))))").is_none());
    }
}
