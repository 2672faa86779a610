//! Records prepared for comparison: every value normalised once and interned, names
//! with their phonetic codes, dates split into parts, addresses into house number,
//! street and the rest. Comparing two prepared records does no parsing and no
//! allocation for exact agreement.

use std::collections::HashMap;

use rphonetic::{DoubleMetaphone, Encoder, Nysiis};

use crate::record::Record;
use crate::text::{MISSING, Strings, Sym, digits, normalize_code, normalize_words};

/// A name, normalised, with what the name comparisons look at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Name {
    /// The whole name, lower case, words separated by one space.
    pub text: Sym,
    /// The first word (the same as `text` for a one-word name).
    pub first: Sym,
    pub codes: Phonetic,
}

/// Phonetic codes of a name: Double Metaphone primary and alternate, and NYSIIS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Phonetic {
    pub metaphone: Sym,
    pub metaphone_alt: Sym,
    pub nysiis: Sym,
}

/// A date of birth as numbers; a part that is unknown is 0. The parts are read from
/// the digits as written, so a corrupted date (month 13) still compares digit by digit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Birth {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl Birth {
    pub(crate) fn is_missing(self) -> bool {
        self.year == 0
    }

    /// `YYYYMMDD` as eight digits, for typo comparisons.
    pub(crate) fn digits(self) -> [u8; 8] {
        let value =
            u32::from(self.year) * 10_000 + u32::from(self.month) * 100 + u32::from(self.day);
        let mut out = [0u8; 8];
        let mut rest = value;
        for slot in out.iter_mut().rev() {
            *slot = (rest % 10) as u8;
            rest /= 10;
        }
        out
    }

    /// One number per date, for blocking keys and frequencies.
    pub(crate) fn packed(self) -> u32 {
        u32::from(self.year) << 16 | u32::from(self.month) << 8 | u32::from(self.day)
    }
}

/// Administrative sex, or unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Sex {
    #[default]
    Unknown,
    Female,
    Male,
    Other,
}

/// A record prepared for comparison.
#[derive(Clone, Debug, Default)]
pub(crate) struct Person {
    pub given: Name,
    pub family: Name,
    pub birth: Birth,
    pub sex: Sex,
    /// The house number: the first address token that starts with a digit.
    pub house_number: Sym,
    /// The first address line with letters, without its house number.
    pub street: Sym,
    /// The other address lines with letters, joined.
    pub address_rest: Sym,
    pub city: Sym,
    pub state: Sym,
    pub postcode: Sym,
    /// Digits only.
    pub phone: Sym,
    pub ssn: Sym,
    /// (system, value) pairs, values normalised like codes.
    pub identifiers: Box<[(Sym, Sym)]>,
}

/// Where prepared values get their numbers.
pub(crate) trait Intern {
    fn intern(&mut self, text: &str) -> Sym;
    /// The phonetic codes of the name numbered `name` (whose text is `text`).
    fn phonetic(&mut self, name: Sym, text: &str) -> Phonetic;
}

/// The values of a population: the interned strings and the phonetic codes of the
/// names seen so far.
#[derive(Default)]
pub(crate) struct Lexicon {
    pub strings: Strings,
    codes: HashMap<Sym, Phonetic>,
    encoders: Encoders,
}

/// The phonetic algorithms; Double Metaphone codes are at most four characters.
#[derive(Default)]
struct Encoders {
    metaphone: DoubleMetaphone,
    nysiis: Nysiis,
}

impl Encoders {
    /// Codes of a name as three strings (primary, alternate, NYSIIS); spaces and digits
    /// are dropped first, as the algorithms expect one word of letters, and accented
    /// Latin letters become plain ones (the encoders slice their input by byte and
    /// panic inside a character of more than one byte); other letters are dropped.
    fn encode(&self, text: &str) -> [String; 3] {
        let mut letters = String::with_capacity(text.len());
        for c in text.chars() {
            fold_to_ascii(c, &mut letters);
        }
        if letters.is_empty() {
            return Default::default();
        }
        let result = self.metaphone.double_metaphone(&letters);
        [
            result.primary(),
            result.alternate(),
            self.nysiis.encode(&letters),
        ]
    }
}

/// Appends `c` as ASCII letters: itself when it is one, its base letter when it is an
/// accented Latin letter (`ß` as `ss`, `æ` as `ae`, `œ` as `oe`); nothing otherwise.
fn fold_to_ascii(c: char, out: &mut String) {
    if c.is_ascii_alphabetic() {
        out.push(c);
        return;
    }
    let folded = match c.to_lowercase().next().unwrap_or(c) {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'ĥ' | 'ħ' => "h",
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'ĵ' => "j",
        'ķ' => "k",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'ñ' | 'ń' | 'ņ' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => "o",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'ś' | 'ŝ' | 'ş' | 'š' => "s",
        'ţ' | 'ť' | 'ŧ' => "t",
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'ŵ' => "w",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        'ß' => "ss",
        'æ' => "ae",
        'œ' => "oe",
        'þ' => "th",
        _ => "",
    };
    out.push_str(folded);
}

impl Intern for Lexicon {
    fn intern(&mut self, text: &str) -> Sym {
        self.strings.intern(text)
    }

    fn phonetic(&mut self, name: Sym, text: &str) -> Phonetic {
        if let Some(codes) = self.codes.get(&name) {
            return *codes;
        }
        let [primary, alternate, nysiis] = self.encoders.encode(text);
        let codes = Phonetic {
            metaphone: self.strings.intern(&primary),
            metaphone_alt: self.strings.intern(&alternate),
            nysiis: self.strings.intern(&nysiis),
        };
        self.codes.insert(name, codes);
        codes
    }
}

/// A query's view of a lexicon: values the lexicon knows keep their numbers, new ones
/// are numbered after them in a scratch table, and the lexicon is not changed.
pub(crate) struct QueryLexicon<'a> {
    pub base: &'a Lexicon,
    pub extra: Strings,
}

impl<'a> QueryLexicon<'a> {
    pub(crate) fn new(base: &'a Lexicon) -> Self {
        QueryLexicon {
            base,
            extra: Strings::default(),
        }
    }

    pub(crate) fn texts(&self) -> Texts<'_> {
        Texts {
            base: &self.base.strings,
            extra: Some(&self.extra),
        }
    }
}

impl Intern for QueryLexicon<'_> {
    fn intern(&mut self, text: &str) -> Sym {
        if let Some(sym) = self.base.strings.lookup(text) {
            return sym;
        }
        let offset = self.base.strings.len() as Sym;
        self.extra.intern(text) + offset - 1
    }

    fn phonetic(&mut self, name: Sym, text: &str) -> Phonetic {
        if let Some(codes) = self.base.codes.get(&name) {
            return *codes;
        }
        let [primary, alternate, nysiis] = self.base.encoders.encode(text);
        Phonetic {
            metaphone: self.intern(&primary),
            metaphone_alt: self.intern(&alternate),
            nysiis: self.intern(&nysiis),
        }
    }
}

/// Reads interned values back, from a lexicon and, for a query, its scratch table
/// (whose numbers continue after the lexicon's; its own 0 is never used).
#[derive(Clone, Copy)]
pub(crate) struct Texts<'a> {
    pub base: &'a Strings,
    pub extra: Option<&'a Strings>,
}

impl<'a> Texts<'a> {
    pub(crate) fn of(lexicon: &'a Lexicon) -> Self {
        Texts {
            base: &lexicon.strings,
            extra: None,
        }
    }

    pub(crate) fn get(&self, sym: Sym) -> &'a str {
        let base_len = self.base.len() as Sym;
        if sym < base_len {
            return self.base.get(sym);
        }
        match self.extra {
            Some(extra) => extra.get(sym - base_len + 1),
            None => "",
        }
    }
}

/// Reusable buffers for `prepare`.
#[derive(Default)]
pub(crate) struct Scratch {
    word: String,
    line: String,
    rest: String,
}

/// Prepares `record`, numbering its values through `intern`.
pub(crate) fn prepare(record: &Record, intern: &mut impl Intern, scratch: &mut Scratch) -> Person {
    let given = name(&record.given, intern, scratch);
    let family = name(&record.family, intern, scratch);
    let (house_number, street, address_rest) = address(&record.address, intern, scratch);
    normalize_words(&record.city, &mut scratch.word);
    let city = intern.intern(&scratch.word);
    normalize_words(&record.state, &mut scratch.word);
    let state = intern.intern(&scratch.word);
    normalize_code(&record.postcode, &mut scratch.word);
    let postcode = intern.intern(&scratch.word);
    digits(&record.phone, &mut scratch.word);
    let phone = intern.intern(&scratch.word);
    normalize_code(&record.ssn, &mut scratch.word);
    let ssn = intern.intern(&scratch.word);
    let mut identifiers = Vec::new();
    for identifier in &record.identifiers {
        normalize_code(&identifier.value, &mut scratch.word);
        if scratch.word.is_empty() {
            continue;
        }
        let value = intern.intern(&scratch.word);
        let system = intern.intern(identifier.system.trim());
        identifiers.push((system, value));
    }
    Person {
        given,
        family,
        birth: birth(&record.birthdate),
        sex: sex(&record.sex),
        house_number,
        street,
        address_rest,
        city,
        state,
        postcode,
        phone,
        ssn,
        identifiers: identifiers.into_boxed_slice(),
    }
}

fn name(text: &str, intern: &mut impl Intern, scratch: &mut Scratch) -> Name {
    normalize_words(text, &mut scratch.word);
    if scratch.word.is_empty() {
        return Name::default();
    }
    let whole = intern.intern(&scratch.word);
    let first = match scratch.word.split_once(' ') {
        Some((first, _)) => intern.intern(first),
        None => whole,
    };
    let codes = intern.phonetic(whole, &scratch.word);
    Name {
        text: whole,
        first,
        codes,
    }
}

/// Reads `YYYYMMDD`, `YYYY-MM-DD` (any separators), `YYYY-MM` and `YYYY`; anything
/// else (day-first dates are ambiguous) is missing.
pub(crate) fn birth(text: &str) -> Birth {
    let text = text.trim();
    let mut parts = [0u32; 3];
    let mut lengths = [0usize; 3];
    let mut part = 0;
    let compact = text.chars().all(|c| c.is_ascii_digit());
    if compact {
        let bytes = text.as_bytes();
        let number = |range: std::ops::Range<usize>| -> Option<u32> {
            bytes.get(range)?.iter().try_fold(0u32, |value, digit| {
                Some(value * 10 + u32::from(digit - b'0'))
            })
        };
        return match bytes.len() {
            8 => Birth {
                year: number(0..4).unwrap_or(0) as u16,
                month: number(4..6).unwrap_or(0) as u8,
                day: number(6..8).unwrap_or(0) as u8,
            },
            6 => Birth {
                year: number(0..4).unwrap_or(0) as u16,
                month: number(4..6).unwrap_or(0) as u8,
                day: 0,
            },
            4 => Birth {
                year: number(0..4).unwrap_or(0) as u16,
                month: 0,
                day: 0,
            },
            _ => Birth::default(),
        };
    }
    for c in text.chars() {
        if let Some(digit) = c.to_digit(10) {
            if part >= 3 || lengths[part] >= 4 {
                return Birth::default();
            }
            parts[part] = parts[part] * 10 + digit;
            lengths[part] += 1;
        } else if c == 'T' || c == ' ' {
            break;
        } else if lengths[part] > 0 {
            part += 1;
        }
    }
    if lengths[0] != 4 || lengths[1] > 2 || lengths[2] > 2 {
        return Birth::default();
    }
    Birth {
        year: parts[0] as u16,
        month: parts[1] as u8,
        day: parts[2] as u8,
    }
}

fn sex(text: &str) -> Sex {
    match text.trim().chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('f') | Some('w') => Sex::Female,
        Some('m') => Sex::Male,
        Some('o') => Sex::Other,
        _ => Sex::Unknown,
    }
}

/// House number, street and the rest of an address.
fn address(lines: &[String], intern: &mut impl Intern, scratch: &mut Scratch) -> (Sym, Sym, Sym) {
    let mut house_number = MISSING;
    let mut street = None;
    scratch.rest.clear();
    for line in lines {
        normalize_words(line, &mut scratch.line);
        if scratch.line.is_empty() {
            continue;
        }
        let mut words = String::new();
        for word in scratch.line.split(' ') {
            let numeric = word.starts_with(|c: char| c.is_ascii_digit());
            if numeric && house_number == MISSING {
                house_number = intern.intern(word);
                continue;
            }
            if !words.is_empty() {
                words.push(' ');
            }
            words.push_str(word);
        }
        if words.chars().any(char::is_alphabetic) {
            if street.is_none() {
                street = Some(words);
            } else {
                if !scratch.rest.is_empty() {
                    scratch.rest.push(' ');
                }
                scratch.rest.push_str(&words);
            }
        }
    }
    let street = street.map_or(MISSING, |street| intern.intern(&street));
    let rest = intern.intern(&scratch.rest);
    (house_number, street, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_the_usual_forms() {
        let full = Birth {
            year: 1974,
            month: 12,
            day: 25,
        };
        assert_eq!(birth("19741225"), full);
        assert_eq!(birth("1974-12-25"), full);
        assert_eq!(birth("1974/12/25"), full);
        assert_eq!(birth("1974-12-25T10:00:00Z"), full);
        assert_eq!(birth("1974").year, 1974);
        assert_eq!(birth("1974-12").month, 12);
        assert!(birth("25/12/1974").is_missing());
        assert!(birth("").is_missing());
        assert!(birth("1974122").is_missing());
        // A corrupted date keeps its digits.
        assert_eq!(birth("19741325").month, 13);
        assert_eq!(full.digits(), [1, 9, 7, 4, 1, 2, 2, 5]);
    }

    #[test]
    fn an_address_splits_into_number_street_and_rest() {
        let mut lexicon = Lexicon::default();
        let record = Record {
            address: vec!["7".into(), "Wallaby Place".into(), "Delmar".into()],
            ..Record::default()
        };
        let person = prepare(&record, &mut lexicon, &mut Scratch::default());
        let texts = Texts::of(&lexicon);
        assert_eq!(texts.get(person.house_number), "7");
        assert_eq!(texts.get(person.street), "wallaby place");
        assert_eq!(texts.get(person.address_rest), "delmar");

        let record = Record {
            address: vec!["12B Main St".into(), "Apt 4".into()],
            ..Record::default()
        };
        let person = prepare(&record, &mut lexicon, &mut Scratch::default());
        let texts = Texts::of(&lexicon);
        assert_eq!(texts.get(person.house_number), "12b");
        assert_eq!(texts.get(person.street), "main st");
        assert_eq!(texts.get(person.address_rest), "apt 4");
    }

    #[test]
    fn names_get_phonetic_codes_and_queries_do_not_grow_the_lexicon() {
        let mut lexicon = Lexicon::default();
        let record = Record {
            given: "Stephen".into(),
            family: "Smith".into(),
            ..Record::default()
        };
        let person = prepare(&record, &mut lexicon, &mut Scratch::default());
        let size = lexicon.strings.len();
        let query = Record {
            given: "Steven".into(),
            family: "Smith".into(),
            ..Record::default()
        };
        let mut view = QueryLexicon::new(&lexicon);
        let asked = prepare(&query, &mut view, &mut Scratch::default());
        assert_eq!(asked.family, person.family);
        assert_ne!(asked.given.text, person.given.text);
        assert_eq!(asked.given.codes.metaphone, person.given.codes.metaphone);
        assert_eq!(view.texts().get(asked.given.text), "steven");
        assert_eq!(lexicon.strings.len(), size);
    }

    #[test]
    fn names_with_accents_or_other_scripts_get_codes_without_panicking() {
        let encoders = Encoders::default();
        assert_eq!(encoders.encode("Adán"), encoders.encode("Adan"));
        assert_eq!(encoders.encode("Müller"), encoders.encode("Muller"));
        assert_eq!(
            encoders.encode("Øster-Straße"),
            encoders.encode("OsterStrasse")
        );
        assert_eq!(encoders.encode("李"), <[String; 3]>::default());
        let [primary, _, nysiis] = encoders.encode("Ñúñez李");
        assert!(!primary.is_empty() && !nysiis.is_empty());
    }
}
