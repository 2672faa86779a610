//! Paging cursors: the sort values and rid of a boundary row, and which side of it the
//! page lies on (keyset paging, so pages stay right while resources change).
//!
//! The text is base64url (no padding) of `c1|a|<rid>|<value>...`, each value `n;`
//! (none), `i<integer>;`, `r<f64 bits in hex>;` or `t<byte length>:<text>`.

use super::sql::Value as SqlValue;

use crate::StoreError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    /// The page holds the rows after the boundary (`next`).
    After,
    /// The page holds the rows before the boundary (`previous`).
    Before,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Cursor {
    pub(super) side: Side,
    /// One per sort key.
    pub(super) values: Vec<SqlValue>,
    pub(super) rid: i64,
}

fn invalid() -> StoreError {
    StoreError::Invalid("invalid paging cursor".into())
}

impl Cursor {
    pub(super) fn encode(&self) -> String {
        let mut text = String::from("c1|");
        text.push(match self.side {
            Side::After => 'a',
            Side::Before => 'b',
        });
        text.push('|');
        text.push_str(&self.rid.to_string());
        text.push('|');
        for value in &self.values {
            match value {
                SqlValue::Integer(integer) => {
                    text.push('i');
                    text.push_str(&integer.to_string());
                    text.push(';');
                }
                SqlValue::Real(real) => {
                    text.push('r');
                    text.push_str(&format!("{:x}", real.to_bits()));
                    text.push(';');
                }
                SqlValue::Text(string) => {
                    text.push('t');
                    text.push_str(&string.len().to_string());
                    text.push(':');
                    text.push_str(string);
                }
                SqlValue::Null => text.push_str("n;"),
            }
        }
        base64url_encode(text.as_bytes())
    }

    /// Decodes a cursor for a search with `keys` sort keys.
    pub(super) fn decode(encoded: &str, keys: usize) -> Result<Cursor, StoreError> {
        let bytes = base64url_decode(encoded).ok_or_else(invalid)?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let rest = text.strip_prefix("c1|").ok_or_else(invalid)?;
        let (side, rest) = match rest.split_at_checked(2) {
            Some(("a|", rest)) => (Side::After, rest),
            Some(("b|", rest)) => (Side::Before, rest),
            _ => return Err(invalid()),
        };
        let (rid, mut rest) = rest.split_once('|').ok_or_else(invalid)?;
        let rid: i64 = rid.parse().map_err(|_| invalid())?;
        let mut values = Vec::new();
        while !rest.is_empty() {
            let tag = rest.as_bytes()[0];
            let body = &rest[1..];
            match tag {
                b'n' => {
                    rest = body.strip_prefix(';').ok_or_else(invalid)?;
                    values.push(SqlValue::Null);
                }
                b'i' => {
                    let (number, after) = body.split_once(';').ok_or_else(invalid)?;
                    values.push(SqlValue::Integer(number.parse().map_err(|_| invalid())?));
                    rest = after;
                }
                b'r' => {
                    let (bits, after) = body.split_once(';').ok_or_else(invalid)?;
                    let bits = u64::from_str_radix(bits, 16).map_err(|_| invalid())?;
                    values.push(SqlValue::Real(f64::from_bits(bits)));
                    rest = after;
                }
                b't' => {
                    let (length, after) = body.split_once(':').ok_or_else(invalid)?;
                    let length: usize = length.parse().map_err(|_| invalid())?;
                    let (string, after) = after.split_at_checked(length).ok_or_else(invalid)?;
                    values.push(SqlValue::Text(string.to_string()));
                    rest = after;
                }
                _ => return Err(invalid()),
            }
        }
        if values.len() != keys {
            return Err(invalid());
        }
        Ok(Cursor { side, values, rid })
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64url_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            let index = (n >> (18 - 6 * i)) & 63;
            out.push(char::from(ALPHABET[index as usize]));
        }
    }
    out
}

fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let digits: Vec<u32> = text
        .bytes()
        .map(|c| ALPHABET.iter().position(|&a| a == c).map(|p| p as u32))
        .collect::<Option<_>>()?;
    for chunk in digits.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (i, digit) in chunk.iter().enumerate() {
            n |= digit << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = Cursor {
            side: Side::Before,
            values: vec![
                SqlValue::Text("a|b;c:é".into()),
                SqlValue::Null,
                SqlValue::Integer(-5),
                SqlValue::Real(1.5),
            ],
            rid: 42,
        };
        let text = cursor.encode();
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(Cursor::decode(&text, 4), Ok(cursor.clone()));
        assert!(Cursor::decode(&text, 3).is_err());
        for bad in ["", "x", "!!!!", &text[..text.len() - 2], "YWJj"] {
            assert_eq!(
                Cursor::decode(bad, 4),
                Err(StoreError::Invalid("invalid paging cursor".into())),
                "{bad}"
            );
        }
        for length in 0..7 {
            let bytes: Vec<u8> = (0..length).map(|i| i * 37 + 1).collect();
            assert_eq!(base64url_decode(&base64url_encode(&bytes)), Some(bytes));
        }
    }
}
