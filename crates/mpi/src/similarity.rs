//! String similarity for the comparison levels: Jaro-Winkler for names and words, and
//! edit classes (one edit, one adjacent transposition) for codes and digits.

/// Jaro-Winkler similarity in 0..=1 (`strsim`'s definition; 1 for equal strings).
/// Short ASCII strings, nearly every name, take a path that does not allocate.
pub(crate) fn jaro_winkler(a: &str, b: &str) -> f64 {
    if a == b {
        return 1.0;
    }
    if a.is_ascii() && b.is_ascii() && a.len() <= SHORT && b.len() <= SHORT {
        return jaro_winkler_short(a.as_bytes(), b.as_bytes());
    }
    strsim::jaro_winkler(a, b)
}

/// The longest strings the stack path takes.
const SHORT: usize = 64;

/// Jaro-Winkler of ASCII strings of at most 64 bytes, with bit masks: for each byte
/// value, the positions of `b` that hold it; the first unmatched one within the window
/// is the lowest set bit of a mask.
fn jaro_winkler_short(a: &[u8], b: &[u8]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let mut positions = [0u64; 128];
    for (j, &byte) in b.iter().enumerate() {
        if let Some(slot) = positions.get_mut(usize::from(byte & 0x7f)) {
            *slot |= 1 << j;
        }
    }
    let range = (a.len().max(b.len()) / 2).saturating_sub(1);
    let mut a_matched = 0u64;
    let mut b_matched = 0u64;
    for (i, &byte) in a.iter().enumerate() {
        let low = i.saturating_sub(range);
        let high = (i + range + 1).min(b.len());
        if low >= high {
            continue;
        }
        let window = (u64::MAX >> (64 - (high - low))) << low;
        let free = positions
            .get(usize::from(byte & 0x7f))
            .copied()
            .unwrap_or(0)
            & window
            & !b_matched;
        if free != 0 {
            b_matched |= free & free.wrapping_neg();
            a_matched |= 1 << i;
        }
    }
    let matches = a_matched.count_ones();
    if matches == 0 {
        return 0.0;
    }
    let mut transpositions = 0u32;
    let (mut a_rest, mut b_rest) = (a_matched, b_matched);
    while a_rest != 0 {
        let i = a_rest.trailing_zeros() as usize;
        let j = b_rest.trailing_zeros() as usize;
        if a.get(i) != b.get(j) {
            transpositions += 1;
        }
        a_rest &= a_rest - 1;
        b_rest &= b_rest - 1;
    }
    let m = f64::from(matches);
    let jaro =
        (m / a.len() as f64 + m / b.len() as f64 + (m - f64::from(transpositions / 2)) / m) / 3.0;
    if jaro <= 0.7 {
        return jaro;
    }
    let prefix = a.iter().zip(b).take(4).take_while(|(x, y)| x == y).count();
    jaro + 0.1 * prefix as f64 * (1.0 - jaro)
}

/// How far apart two codes are, coarsely.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Edit {
    Equal,
    /// Equal after swapping one pair of adjacent characters.
    Transposition,
    /// One character inserted, deleted or replaced.
    One,
    More,
}

/// The edit class between `a` and `b`, compared byte by byte (codes are ASCII after
/// normalisation; other text compares the same way, only less precisely).
pub(crate) fn edit(a: &[u8], b: &[u8]) -> Edit {
    if a == b {
        return Edit::Equal;
    }
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let a_rest = a.get(prefix..).unwrap_or_default();
    let b_rest = b.get(prefix..).unwrap_or_default();
    match a.len().abs_diff(b.len()) {
        0 => {
            // Replace one, or swap two adjacent.
            if a_rest.get(1..) == b_rest.get(1..) {
                return Edit::One;
            }
            if a_rest.len() >= 2
                && a_rest.first() == b_rest.get(1)
                && a_rest.get(1) == b_rest.first()
                && a_rest.get(2..) == b_rest.get(2..)
            {
                return Edit::Transposition;
            }
            Edit::More
        }
        1 => {
            let (longer, shorter) = if a_rest.len() > b_rest.len() {
                (a_rest, b_rest)
            } else {
                (b_rest, a_rest)
            };
            if longer.get(1..) == Some(shorter) {
                Edit::One
            } else {
                Edit::More
            }
        }
        _ => Edit::More,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_classes() {
        assert_eq!(edit(b"1234567", b"1234567"), Edit::Equal);
        assert_eq!(edit(b"1234567", b"1243567"), Edit::Transposition);
        assert_eq!(edit(b"1234567", b"1234568"), Edit::One);
        assert_eq!(edit(b"1234567", b"123567"), Edit::One);
        assert_eq!(edit(b"123567", b"1234567"), Edit::One);
        assert_eq!(edit(b"1234567", b"12345678"), Edit::One);
        assert_eq!(edit(b"1234567", b"2134576"), Edit::More);
        assert_eq!(edit(b"1234567", b"1235467"), Edit::Transposition);
        assert_eq!(edit(b"12", b"1234"), Edit::More);
        assert_eq!(edit(b"", b"1"), Edit::One);
    }

    #[test]
    fn jaro_winkler_agrees_with_the_textbook_values() {
        assert!((jaro_winkler("martha", "marhta") - 0.9611).abs() < 1e-3);
        assert!((jaro_winkler("dwayne", "duane") - 0.84).abs() < 1e-3);
        assert_eq!(jaro_winkler("same", "same"), 1.0);
        assert_eq!(jaro_winkler("abc", "xyz"), 0.0);
        assert!(jaro_winkler("zoë", "zoe") > 0.7);
    }

    #[test]
    fn the_stack_path_agrees_with_strsim() {
        let long = "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl";
        let longer = "bacdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijk";
        let words = [
            long,
            longer,
            "aaaa",
            "aaab",
            "abab",
            "",
            "a",
            "ab",
            "martha",
            "marhta",
            "dixon",
            "dicksonx",
            "jellyfish",
            "smellyfish",
            "christopher",
            "kristoffer",
            "o",
            "abcdefghijklmnop",
        ];
        for a in words {
            for b in words {
                if a == b {
                    continue;
                }
                let ours = jaro_winkler_short(a.as_bytes(), b.as_bytes());
                let theirs = strsim::jaro_winkler(a, b);
                assert!((ours - theirs).abs() < 1e-12, "{a} {b}: {ours} vs {theirs}");
            }
        }
    }
}
