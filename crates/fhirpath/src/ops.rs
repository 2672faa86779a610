//! Equality, equivalence, ordering and arithmetic on single items.

use std::borrow::Cow;
use std::cmp::Ordering;

use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;

use crate::Error;
use crate::temporal::CalendarUnit;
use crate::ucum;
use crate::value::{Item, Prim, Quantity};

fn calendar_as_ucum(unit: &str) -> Option<Cow<'_, str>> {
    match ucum::calendar_keyword(unit) {
        Some(calendar) => ucum::calendar_to_ucum(calendar).map(Cow::Borrowed),
        None => Some(Cow::Borrowed(unit)),
    }
}

/// `b` expressed in `a`'s unit: `None` when the units are not comparable.
fn align_quantities(
    (av, au): (Decimal, &str),
    (bv, bu): (Decimal, &str),
) -> Option<(Decimal, Decimal)> {
    if au == bu {
        return Some((av, bv));
    }
    let (a_cal, b_cal) = (ucum::calendar_keyword(au), ucum::calendar_keyword(bu));
    // Calendar years and months are not definite durations: only equal to themselves.
    if let (Some(a), Some(b)) = (a_cal, b_cal) {
        let months = |c| match c {
            CalendarUnit::Year => Some(12),
            CalendarUnit::Month => Some(1),
            _ => None,
        };
        if let (Some(ma), Some(mb)) = (months(a), months(b)) {
            return Some((
                av.checked_mul(Decimal::from(ma))?,
                bv.checked_mul(Decimal::from(mb))?,
            ));
        }
    }
    let (au, bu) = (calendar_as_ucum(au)?, calendar_as_ucum(bu)?);
    if au == bu {
        return Some((av, bv));
    }
    let (ua, ub) = (ucum::parse(&au)?, ucum::parse(&bu)?);
    if ua.dims != ub.dims {
        return None;
    }
    let b_in_a = bv.checked_mul(ub.factor)?.checked_div(ua.factor)?;
    Some((av, b_in_a))
}

fn numeric(p: &Prim<'_>) -> Option<Decimal> {
    match p {
        Prim::Integer(i) => Some(Decimal::from(*i)),
        Prim::Decimal(d) => Some(*d),
        _ => None,
    }
}

/// FHIRPath `=` on two items: `None` means empty (e.g. dates of different precision).
pub(crate) fn equals(a: &Item<'_>, b: &Item<'_>) -> Option<bool> {
    if let (Item::Node(x), Item::Node(y)) = (a, b)
        && x.same(y)
    {
        // Every value equals itself (a date equals itself whatever its precision).
        return Some(true);
    }
    match (a.prim(), b.prim()) {
        (Some(pa), Some(pb)) => prim_equals(&pa, &pb),
        (None, None) => match (a, b) {
            (Item::Node(na), Item::Node(nb)) => Some(json_equals(na.value, nb.value, 0)),
            (
                Item::TypeInfo {
                    namespace: n1,
                    name: m1,
                },
                Item::TypeInfo {
                    namespace: n2,
                    name: m2,
                },
            ) => Some(n1 == n2 && m1 == m2),
            _ => Some(false),
        },
        _ => Some(false),
    }
}

/// Deepest JSON compared; deeper values (never produced by serde_json's parser) compare unequal.
const MAX_JSON_DEPTH: usize = 256;

fn json_equals(a: &Value, b: &Value, depth: usize) -> bool {
    if std::ptr::eq(a, b) {
        return true;
    }
    if depth > MAX_JSON_DEPTH {
        return false;
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let parse = |n: &serde_json::Number| crate::value::parse_decimal(n.as_str());
            match (parse(x), parse(y)) {
                (Some(x), Some(y)) => x == y,
                _ => x == y,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equals(x, y, depth + 1))
        }
        (Value::Object(x), Value::Object(y)) => {
            // Keys are unique: the same key in the same place needs no lookup.
            x.len() == y.len()
                && x.iter().zip(y).all(|((k, v), (l, w))| {
                    if k == l {
                        json_equals(v, w, depth + 1)
                    } else {
                        y.get(k).is_some_and(|w| json_equals(v, w, depth + 1))
                    }
                })
        }
        _ => a == b,
    }
}

pub(crate) fn prim_equals(a: &Prim<'_>, b: &Prim<'_>) -> Option<bool> {
    if let (Some(x), Some(y)) = (numeric(a), numeric(b)) {
        return Some(x == y);
    }
    match (a, b) {
        (Prim::Boolean(x), Prim::Boolean(y)) => Some(x == y),
        (Prim::String(x), Prim::String(y)) => Some(x == y),
        (Prim::Date(x) | Prim::DateTime(x), Prim::Date(y) | Prim::DateTime(y)) => {
            x.compare(y).map(|o| o == Ordering::Equal)
        }
        (Prim::Time(x), Prim::Time(y)) => x.compare(y).map(|o| o == Ordering::Equal),
        (Prim::Quantity(av, au), Prim::Quantity(bv, bu)) => {
            let (x, y) = align_quantities((*av, au), (*bv, bu))?;
            Some(x == y)
        }
        _ => Some(false),
    }
}

fn normalize_ws(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Rounds both to the scale of the less precise one.
fn decimal_equivalent(x: Decimal, y: Decimal) -> bool {
    let scale = x.scale().min(y.scale());
    x.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero)
        == y.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero)
}

/// FHIRPath `~` on two items.
pub(crate) fn equivalent(a: &Item<'_>, b: &Item<'_>) -> bool {
    match (a.prim(), b.prim()) {
        (Some(pa), Some(pb)) => prim_equivalent(&pa, &pb),
        (None, None) => match (a, b) {
            (Item::Node(na), Item::Node(nb)) => json_equals(na.value, nb.value, 0),
            _ => equals(a, b) == Some(true),
        },
        _ => false,
    }
}

pub(crate) fn prim_equivalent(a: &Prim<'_>, b: &Prim<'_>) -> bool {
    if let (Some(x), Some(y)) = (numeric(a), numeric(b)) {
        return decimal_equivalent(x, y);
    }
    match (a, b) {
        (Prim::String(x), Prim::String(y)) => normalize_ws(x) == normalize_ws(y),
        (Prim::Quantity(av, au), Prim::Quantity(bv, bu)) => {
            align_quantities((*av, au), (*bv, bu)).is_some_and(|(x, y)| decimal_equivalent(x, y))
        }
        _ => prim_equals(a, b) == Some(true),
    }
}

/// Ordering for `<` and friends: `Ok(None)` is empty, `Err` for incomparable types.
pub(crate) fn compare(a: &Item<'_>, b: &Item<'_>) -> Result<Option<Ordering>, Error> {
    let (Some(pa), Some(pb)) = (a.prim(), b.prim()) else {
        return Err(Error::Execution("cannot compare complex values".into()));
    };
    if let (Some(x), Some(y)) = (numeric(&pa), numeric(&pb)) {
        return Ok(Some(x.cmp(&y)));
    }
    match (&pa, &pb) {
        (Prim::String(x), Prim::String(y)) => Ok(Some(x.cmp(y))),
        (Prim::Date(x) | Prim::DateTime(x), Prim::Date(y) | Prim::DateTime(y)) => Ok(x.compare(y)),
        (Prim::Time(x), Prim::Time(y)) => Ok(x.compare(y)),
        (Prim::Quantity(av, au), Prim::Quantity(bv, bu)) => {
            Ok(align_quantities((*av, au), (*bv, bu)).map(|(x, y)| x.cmp(&y)))
        }
        _ => Err(Error::Execution(format!(
            "cannot compare {} with {}",
            a.type_name().1,
            b.type_name().1
        ))),
    }
}

fn overflow() -> Error {
    Error::Execution("arithmetic overflow".into())
}

/// Arithmetic `+ - * / div mod` on two single items; `Ok(None)` is an empty result.
pub(crate) fn arithmetic<'a>(
    op: crate::ast::BinOp,
    a: &Item<'_>,
    b: &Item<'_>,
) -> Result<Option<Item<'a>>, Error> {
    use crate::ast::BinOp;
    let (Some(pa), Some(pb)) = (a.prim(), b.prim()) else {
        return Err(Error::Execution("arithmetic on complex values".into()));
    };
    let mismatch = || {
        Error::Execution(format!(
            "cannot apply {op:?} to {} and {}",
            a.type_name().1,
            b.type_name().1
        ))
    };
    match (&pa, &pb) {
        (Prim::Integer(x), Prim::Integer(y)) => {
            let (x, y) = (*x, *y);
            Ok(match op {
                BinOp::Add => Some(Item::Integer(x.checked_add(y).ok_or_else(overflow)?)),
                BinOp::Sub => Some(Item::Integer(x.checked_sub(y).ok_or_else(overflow)?)),
                BinOp::Mul => Some(Item::Integer(x.checked_mul(y).ok_or_else(overflow)?)),
                BinOp::Div => Decimal::from(x)
                    .checked_div(Decimal::from(y))
                    .map(Item::Decimal),
                BinOp::IntDiv => x.checked_div(y).map(Item::Integer),
                BinOp::Mod => (y != 0).then(|| Item::Integer(x.wrapping_rem(y))),
                _ => return Err(mismatch()),
            })
        }
        (Prim::String(x), Prim::String(y)) if op == BinOp::Add => {
            Ok(Some(Item::String(Cow::Owned(format!("{x}{y}")))))
        }
        (Prim::Date(d), Prim::Quantity(v, u)) | (Prim::DateTime(d), Prim::Quantity(v, u))
            if matches!(op, BinOp::Add | BinOp::Sub) =>
        {
            let unit = calendar_unit(u)?;
            let amount = signed_amount(*v, op == BinOp::Sub)?;
            let result = d.add(amount, unit).ok_or_else(overflow)?;
            Ok(Some(if matches!(pa, Prim::Date(_)) {
                Item::Date(result)
            } else {
                Item::DateTime(result)
            }))
        }
        (Prim::Time(t), Prim::Quantity(v, u)) if matches!(op, BinOp::Add | BinOp::Sub) => {
            let unit = calendar_unit(u)?;
            let amount = signed_amount(*v, op == BinOp::Sub)?;
            Ok(Some(Item::Time(t.add(amount, unit).ok_or_else(mismatch)?)))
        }
        (Prim::Quantity(av, au), Prim::Quantity(bv, bu)) => {
            quantity_arithmetic(op, (*av, au), (*bv, bu))
        }
        (Prim::Quantity(av, au), other)
            if matches!(op, BinOp::Mul | BinOp::Div) && numeric(other).is_some() =>
        {
            let n = numeric(other).ok_or_else(mismatch)?;
            let value = if op == BinOp::Mul {
                av.checked_mul(n)
            } else {
                av.checked_div(n)
            };
            Ok(value.map(|value| {
                Item::Quantity(Quantity {
                    value,
                    unit: au.to_string(),
                })
            }))
        }
        (other, Prim::Quantity(bv, bu)) if op == BinOp::Mul && numeric(other).is_some() => {
            let n = numeric(other).ok_or_else(mismatch)?;
            Ok(bv.checked_mul(n).map(|value| {
                Item::Quantity(Quantity {
                    value,
                    unit: bu.to_string(),
                })
            }))
        }
        _ => {
            let (Some(x), Some(y)) = (numeric(&pa), numeric(&pb)) else {
                return Err(mismatch());
            };
            Ok(match op {
                BinOp::Add => Some(Item::Decimal(x.checked_add(y).ok_or_else(overflow)?)),
                BinOp::Sub => Some(Item::Decimal(x.checked_sub(y).ok_or_else(overflow)?)),
                BinOp::Mul => Some(Item::Decimal(x.checked_mul(y).ok_or_else(overflow)?)),
                BinOp::Div => x.checked_div(y).map(Item::Decimal),
                BinOp::IntDiv => x
                    .checked_div(y)
                    .and_then(|q| i64::try_from(q.trunc()).ok())
                    .map(Item::Integer),
                BinOp::Mod => x.checked_rem(y).map(Item::Decimal),
                _ => return Err(mismatch()),
            })
        }
    }
}

fn calendar_unit(unit: &str) -> Result<CalendarUnit, Error> {
    ucum::calendar_keyword(unit)
        .or_else(|| ucum::ucum_to_calendar(unit))
        .ok_or_else(|| {
            Error::Execution(format!(
                "'{unit}' is not a definite duration for date arithmetic"
            ))
        })
}

fn signed_amount(value: Decimal, negate: bool) -> Result<i64, Error> {
    let amount = i64::try_from(value.trunc()).map_err(|_| overflow())?;
    if negate {
        amount.checked_neg().ok_or_else(overflow)
    } else {
        Ok(amount)
    }
}

fn quantity_arithmetic<'a>(
    op: crate::ast::BinOp,
    (av, au): (Decimal, &str),
    (bv, bu): (Decimal, &str),
) -> Result<Option<Item<'a>>, Error> {
    use crate::ast::BinOp;
    let wrap = |u: &str| -> String {
        if u.contains('/') || u.contains('.') {
            format!("({u})")
        } else {
            u.to_string()
        }
    };
    match op {
        BinOp::Add | BinOp::Sub => {
            let Some((x, y)) = align_quantities((av, au), (bv, bu)) else {
                return Err(Error::Execution(format!("cannot add '{au}' and '{bu}'")));
            };
            let value = if op == BinOp::Add {
                x.checked_add(y)
            } else {
                x.checked_sub(y)
            };
            Ok(value.map(|value| {
                Item::Quantity(Quantity {
                    value,
                    unit: au.to_string(),
                })
            }))
        }
        BinOp::Mul => {
            let (au, bu) = (ucum_unit(au), ucum_unit(bu));
            let unit = match (au.as_str(), bu.as_str()) {
                ("1", u) | (u, "1") => u.to_string(),
                (x, y) => format!("{}.{}", wrap(x), wrap(y)),
            };
            Ok(av
                .checked_mul(bv)
                .map(|value| Item::Quantity(Quantity { value, unit })))
        }
        BinOp::Div => {
            let (au_s, bu_s) = (ucum_unit(au), ucum_unit(bu));
            let unit = if au_s == bu_s {
                "1".to_string()
            } else if bu_s == "1" {
                au_s
            } else {
                format!("{}/{}", wrap(&au_s), wrap(&bu_s))
            };
            Ok(av
                .checked_div(bv)
                .map(|value| Item::Quantity(Quantity { value, unit })))
        }
        _ => Err(Error::Execution(format!(
            "cannot apply {op:?} to quantities"
        ))),
    }
}

fn ucum_unit(unit: &str) -> String {
    calendar_as_ucum(unit).map_or_else(|| unit.to_string(), Cow::into_owned)
}
