//! Text handling: normalising names, codes and digits, and the interner that turns each
//! distinct value into a small integer, so equality is an integer comparison and a
//! million records keep one copy of each value.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// An interned string; `MISSING` (0) is the empty string.
pub(crate) type Sym = u32;

pub(crate) const MISSING: Sym = 0;

/// Lower case letters and digits; any run of other characters becomes one space,
/// except apostrophes, which vanish (`O'Brien` is `obrien`).
pub(crate) fn normalize_words(text: &str, out: &mut String) {
    out.clear();
    let mut gap = false;
    for c in text.chars() {
        if c == '\'' || c == '\u{2019}' {
            continue;
        }
        if c.is_alphanumeric() {
            if gap && !out.is_empty() {
                out.push(' ');
            }
            gap = false;
            out.extend(c.to_lowercase());
        } else {
            gap = true;
        }
    }
}

/// Lower case letters and digits only: codes such as postcodes and identifiers, where
/// spaces and dashes are formatting.
pub(crate) fn normalize_code(text: &str, out: &mut String) {
    out.clear();
    for c in text.chars().filter(|c| c.is_alphanumeric()) {
        out.extend(c.to_lowercase());
    }
}

/// The digits of `text`, in order.
pub(crate) fn digits(text: &str, out: &mut String) {
    out.clear();
    out.extend(text.chars().filter(char::is_ascii_digit));
}

/// A fast 64-bit hash (FxHash's multiply-rotate), good enough for hash tables and
/// blocking keys; not for anything an adversary controls the cost of.
pub(crate) fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut hash = seed ^ 0x51_7c_c1_b7_27_22_0a_95;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        hash = mix(hash, u64::from_le_bytes(word));
    }
    let mut tail = [0u8; 8];
    let rest = chunks.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    mix(mix(hash, u64::from_le_bytes(tail)), bytes.len() as u64)
}

/// One round of mixing `value` into `hash`.
pub(crate) fn mix(hash: u64, value: u64) -> u64 {
    (hash.rotate_left(5) ^ value).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
}

/// Final avalanche (from splitmix64), so nearby inputs land far apart.
pub(crate) fn finish(mut hash: u64) -> u64 {
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// A hasher for keys that are already hashes.
#[derive(Default)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = hash_bytes(self.0, bytes);
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
    fn write_u32(&mut self, value: u32) {
        self.0 = finish(u64::from(value));
    }
}

/// A map from hashes (or small integers) to values.
pub(crate) type HashedMap<V> = HashMap<u64, V, BuildHasherDefault<PassThrough>>;

/// A map from interned strings to values.
pub(crate) type SymMap<V> = HashMap<Sym, V, BuildHasherDefault<PassThrough>>;

/// Distinct strings, each stored once in one buffer and numbered from 1.
pub(crate) struct Strings {
    text: String,
    /// Start of each string in `text`; string `sym` spans `starts[sym]..starts[sym + 1]`.
    starts: Vec<usize>,
    /// Hash of a string to the newest string with that hash; older ones chain in `next`.
    heads: HashedMap<Sym>,
    next: Vec<Sym>,
}

impl Default for Strings {
    fn default() -> Self {
        Strings {
            text: String::new(),
            starts: vec![0, 0],
            heads: HashedMap::default(),
            next: vec![MISSING],
        }
    }
}

impl Strings {
    /// The number of distinct strings, the empty one included.
    pub(crate) fn len(&self) -> usize {
        self.next.len()
    }

    pub(crate) fn get(&self, sym: Sym) -> &str {
        let index = sym as usize;
        match (self.starts.get(index), self.starts.get(index + 1)) {
            (Some(&start), Some(&end)) => self.text.get(start..end).unwrap_or(""),
            _ => "",
        }
    }

    /// The number of `text`, if it has one.
    pub(crate) fn lookup(&self, text: &str) -> Option<Sym> {
        if text.is_empty() {
            return Some(MISSING);
        }
        let mut sym = *self.heads.get(&hash_bytes(0, text.as_bytes()))?;
        while sym != MISSING {
            if self.get(sym) == text {
                return Some(sym);
            }
            sym = self.next.get(sym as usize).copied().unwrap_or(MISSING);
        }
        None
    }

    /// The number of `text`, adding it if it is new.
    pub(crate) fn intern(&mut self, text: &str) -> Sym {
        if text.is_empty() {
            return MISSING;
        }
        let hash = hash_bytes(0, text.as_bytes());
        let head = self.heads.get(&hash).copied().unwrap_or(MISSING);
        let mut sym = head;
        while sym != MISSING {
            if self.get(sym) == text {
                return sym;
            }
            sym = self.next.get(sym as usize).copied().unwrap_or(MISSING);
        }
        let new = self.next.len() as Sym;
        self.text.push_str(text);
        self.starts.push(self.text.len());
        self.next.push(head);
        self.heads.insert(hash, new);
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_case_punctuation_and_apostrophes() {
        let mut out = String::new();
        normalize_words("  O'Brien-Smith,  Mary ", &mut out);
        assert_eq!(out, "obrien smith mary");
        normalize_code("12 34-5", &mut out);
        assert_eq!(out, "12345");
        digits("+61 (2) 9999-0000", &mut out);
        assert_eq!(out, "61299990000");
    }

    #[test]
    fn interning_gives_one_number_per_distinct_string() {
        let mut strings = Strings::default();
        let mary = strings.intern("mary");
        let john = strings.intern("john");
        assert_ne!(mary, john);
        assert_eq!(strings.intern("mary"), mary);
        assert_eq!(strings.intern(""), MISSING);
        assert_eq!(strings.get(john), "john");
        assert_eq!(strings.lookup("mary"), Some(mary));
        assert_eq!(strings.lookup("jane"), None);
        assert_eq!(strings.len(), 3);
    }
}
