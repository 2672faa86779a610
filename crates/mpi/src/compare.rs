//! The comparisons: for each kind (given name, family name, birth date, ...), the
//! ordered levels of agreement and the function that puts a pair of prepared records
//! on one of them. The first level that holds is the pair's level; a pair where either
//! side lacks the value gets no level (`NULL`) and the comparison says nothing.

use serde::{Deserialize, Serialize};

use crate::prepare::{Birth, Name, Person, Sex, Texts};
use crate::similarity::{Edit, edit, jaro_winkler};
use crate::text::{MISSING, Sym};

/// The level of a comparison where either record lacks the value.
pub(crate) const NULL: u8 = 15;

/// What a comparison compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComparisonKind {
    Given,
    Family,
    Birthdate,
    Sex,
    /// House number and street, and the other address lines.
    Address,
    /// Postcode, city and state together: they depend on each other, so one comparison
    /// with joint levels weighs them without counting the same evidence twice.
    Place,
    Phone,
    Ssn,
    /// Other identifiers, compared only within the same system.
    Identifier,
}

const NAME_LEVELS: &[&str] = &[
    "exact",
    "swapped given and family names",
    "Jaro-Winkler >= 0.92",
    "same phonetic code (Double Metaphone or NYSIIS)",
    "Jaro-Winkler >= 0.80",
    "initial or first word",
    "different",
];

const DATE_LEVELS: &[&str] = &[
    "exact",
    "day and month transposed",
    "year off by 1 or 10",
    "one digit replaced or two swapped",
    "one of year, month, day differs",
    "different",
];

const SEX_LEVELS: &[&str] = &["same", "different"];

const ADDRESS_LEVELS: &[&str] = &[
    "exact",
    "same house number, similar street",
    "similar street",
    "same house number",
    "same other address line",
    "different",
];

const PLACE_LEVELS: &[&str] = &[
    "same postcode and city",
    "same postcode",
    "same city",
    "postcode one edit",
    "same state",
    "different",
];

const CODE_LEVELS: &[&str] = &["exact", "two characters swapped", "one edit", "different"];

/// Names at least this Jaro-Winkler-similar count as the same name with a typo.
const NAME_CLOSE: f64 = 0.92;
const NAME_NEAR: f64 = 0.80;
/// Streets and cities at least this similar count as the same.
const WORDS_CLOSE: f64 = 0.88;

impl ComparisonKind {
    /// Every kind, in the default model's order.
    pub const ALL: [ComparisonKind; 9] = [
        ComparisonKind::Given,
        ComparisonKind::Family,
        ComparisonKind::Birthdate,
        ComparisonKind::Sex,
        ComparisonKind::Address,
        ComparisonKind::Place,
        ComparisonKind::Phone,
        ComparisonKind::Ssn,
        ComparisonKind::Identifier,
    ];

    /// The labels of the levels, most similar first; the last is "different".
    pub fn levels(self) -> &'static [&'static str] {
        match self {
            ComparisonKind::Given | ComparisonKind::Family => NAME_LEVELS,
            ComparisonKind::Birthdate => DATE_LEVELS,
            ComparisonKind::Sex => SEX_LEVELS,
            ComparisonKind::Address => ADDRESS_LEVELS,
            ComparisonKind::Place => PLACE_LEVELS,
            ComparisonKind::Phone | ComparisonKind::Ssn | ComparisonKind::Identifier => CODE_LEVELS,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ComparisonKind::Given => "given",
            ComparisonKind::Family => "family",
            ComparisonKind::Birthdate => "birthdate",
            ComparisonKind::Sex => "sex",
            ComparisonKind::Address => "address",
            ComparisonKind::Place => "place",
            ComparisonKind::Phone => "phone",
            ComparisonKind::Ssn => "ssn",
            ComparisonKind::Identifier => "identifier",
        }
    }

    /// The level of the pair, or `NULL`.
    pub(crate) fn level(self, a: &Person, b: &Person, texts: &Texts) -> u8 {
        match self {
            ComparisonKind::Given => name(a.given, b.given, (a.family, b.family), texts),
            ComparisonKind::Family => name(a.family, b.family, (a.given, b.given), texts),
            ComparisonKind::Birthdate => birth(a.birth, b.birth),
            ComparisonKind::Sex => match (a.sex, b.sex) {
                (Sex::Unknown, _) | (_, Sex::Unknown) => NULL,
                (x, y) if x == y => 0,
                _ => 1,
            },
            ComparisonKind::Address => address(a, b, texts),
            ComparisonKind::Place => place(a, b, texts),
            ComparisonKind::Phone => code(a.phone, b.phone, texts),
            ComparisonKind::Ssn => code(a.ssn, b.ssn, texts),
            ComparisonKind::Identifier => identifiers(&a.identifiers, &b.identifiers, texts),
        }
    }

    /// The interned value whose frequency adjusts the weight of exact agreement, if
    /// this kind has term-frequency adjustment.
    pub(crate) fn frequency_value(self, person: &Person) -> Option<Sym> {
        match self {
            ComparisonKind::Given => Some(person.given.text),
            ComparisonKind::Family => Some(person.family.text),
            _ => None,
        }
    }
}

/// `a` and `b` are the names compared; `others` are the same records' other names
/// (family for a given-name comparison), to recognise swapped names.
fn name(a: Name, b: Name, others: (Name, Name), texts: &Texts) -> u8 {
    if a.text == MISSING || b.text == MISSING {
        return NULL;
    }
    if a.text == b.text {
        return 0;
    }
    let a_text = texts.get(a.text);
    let b_text = texts.get(b.text);
    let similarity = jaro_winkler(a_text, b_text);
    if similarity < NAME_CLOSE && swapped(a, b, others) {
        return 1;
    }
    if similarity >= NAME_CLOSE {
        return 2;
    }
    if phonetic_agree(a, b) {
        return 3;
    }
    if similarity >= NAME_NEAR {
        return 4;
    }
    let initial = |short: &str, long: &str| short.len() == 1 && long.starts_with(short);
    if a.first == b.first || initial(a_text, b_text) || initial(b_text, a_text) {
        return 5;
    }
    6
}

/// Each record's name sounds like the other record's other name (the same text, or the
/// same phonetic code): cheap enough to ask of every pair.
fn swapped(a: Name, b: Name, (a_other, b_other): (Name, Name)) -> bool {
    if a_other.text == MISSING || b_other.text == MISSING {
        return false;
    }
    let close = |x: Name, y: Name| x.text == y.text || phonetic_agree(x, y);
    close(a, b_other) && close(a_other, b)
}

fn phonetic_agree(a: Name, b: Name) -> bool {
    let (x, y) = (a.codes, b.codes);
    let some = |sym: Sym| sym != MISSING;
    (some(x.metaphone) && (x.metaphone == y.metaphone || x.metaphone == y.metaphone_alt))
        || (some(x.metaphone_alt)
            && (x.metaphone_alt == y.metaphone || x.metaphone_alt == y.metaphone_alt))
        || (some(x.nysiis) && x.nysiis == y.nysiis)
}

fn birth(a: Birth, b: Birth) -> u8 {
    if a.is_missing() || b.is_missing() {
        return NULL;
    }
    if a == b {
        return 0;
    }
    if a.month == 0 || b.month == 0 || a.day == 0 || b.day == 0 {
        // A partial date: only the year says anything.
        return if a.year == b.year { 4 } else { 5 };
    }
    if a.year == b.year && a.day == b.month && a.month == b.day {
        return 1;
    }
    if a.month == b.month && a.day == b.day && matches!(a.year.abs_diff(b.year), 1 | 10) {
        return 2;
    }
    if matches!(
        edit(&a.digits(), &b.digits()),
        Edit::One | Edit::Transposition
    ) {
        return 3;
    }
    let same = u8::from(a.year == b.year) + u8::from(a.month == b.month) + u8::from(a.day == b.day);
    if same == 2 {
        return 4;
    }
    5
}

fn address(a: &Person, b: &Person, texts: &Texts) -> u8 {
    let empty =
        |p: &Person| p.house_number == MISSING && p.street == MISSING && p.address_rest == MISSING;
    if empty(a) || empty(b) {
        return NULL;
    }
    let number = a.house_number != MISSING && a.house_number == b.house_number;
    if a.house_number == b.house_number && a.street == b.street && a.address_rest == b.address_rest
    {
        return 0;
    }
    let street = a.street != MISSING
        && b.street != MISSING
        && (a.street == b.street
            || jaro_winkler(texts.get(a.street), texts.get(b.street)) >= WORDS_CLOSE);
    match (number, street) {
        (true, true) => 1,
        (false, true) => 2,
        (true, false) => 3,
        (false, false) if a.address_rest != MISSING && a.address_rest == b.address_rest => 4,
        (false, false) => 5,
    }
}

fn place(a: &Person, b: &Person, texts: &Texts) -> u8 {
    let empty = |p: &Person| p.postcode == MISSING && p.city == MISSING && p.state == MISSING;
    if empty(a) || empty(b) {
        return NULL;
    }
    let postcode = a.postcode != MISSING && a.postcode == b.postcode;
    let city = a.city != MISSING
        && b.city != MISSING
        && (a.city == b.city || jaro_winkler(texts.get(a.city), texts.get(b.city)) >= WORDS_CLOSE);
    if postcode && city {
        return 0;
    }
    if postcode {
        return 1;
    }
    if city {
        return 2;
    }
    if a.postcode != MISSING
        && b.postcode != MISSING
        && matches!(
            edit(
                texts.get(a.postcode).as_bytes(),
                texts.get(b.postcode).as_bytes()
            ),
            Edit::One | Edit::Transposition
        )
    {
        return 3;
    }
    if a.state != MISSING && a.state == b.state {
        return 4;
    }
    5
}

fn code(a: Sym, b: Sym, texts: &Texts) -> u8 {
    if a == MISSING || b == MISSING {
        return NULL;
    }
    if a == b {
        return 0;
    }
    match edit(texts.get(a).as_bytes(), texts.get(b).as_bytes()) {
        Edit::Equal => 0,
        Edit::Transposition => 1,
        Edit::One => 2,
        Edit::More => 3,
    }
}

fn identifiers(a: &[(Sym, Sym)], b: &[(Sym, Sym)], texts: &Texts) -> u8 {
    let mut best = NULL;
    for (system, value) in a {
        for (other_system, other_value) in b {
            if system == other_system {
                best = best.min(code(*value, *other_value, texts));
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepare::{Lexicon, Scratch, prepare};
    use crate::record::{Identifier, Record};

    fn level(kind: ComparisonKind, a: &Record, b: &Record) -> (u8, &'static str) {
        let mut lexicon = Lexicon::default();
        let mut scratch = Scratch::default();
        let a = prepare(a, &mut lexicon, &mut scratch);
        let b = prepare(b, &mut lexicon, &mut scratch);
        let level = kind.level(&a, &b, &Texts::of(&lexicon));
        let label = kind
            .levels()
            .get(usize::from(level))
            .copied()
            .unwrap_or("null");
        (level, label)
    }

    fn person(given: &str, family: &str, birthdate: &str) -> Record {
        Record {
            given: given.into(),
            family: family.into(),
            birthdate: birthdate.into(),
            ..Record::default()
        }
    }

    #[test]
    fn name_levels() {
        let given = |a: &str, b: &str| {
            level(
                ComparisonKind::Given,
                &person(a, "x", ""),
                &person(b, "x", ""),
            )
            .1
        };
        assert_eq!(given("Peter", "peter"), "exact");
        assert_eq!(given("jonathan", "jonathon"), "Jaro-Winkler >= 0.92");
        assert_eq!(
            given("catherine", "kathryn"),
            "same phonetic code (Double Metaphone or NYSIIS)"
        );
        assert_eq!(given("j", "john"), "initial or first word");
        assert_eq!(given("mary ann", "mary"), "Jaro-Winkler >= 0.80");
        assert_eq!(given("peter", "susan"), "different");
        assert_eq!(given("", "susan"), "null");
        let swapped = level(
            ComparisonKind::Family,
            &person("lee", "james", ""),
            &person("james", "lee", ""),
        );
        assert_eq!(swapped.1, "swapped given and family names");
    }

    #[test]
    fn date_levels() {
        let date = |a: &str, b: &str| {
            level(
                ComparisonKind::Birthdate,
                &person("", "", a),
                &person("", "", b),
            )
            .1
        };
        assert_eq!(date("1970-03-04", "19700304"), "exact");
        assert_eq!(date("19700304", "19700403"), "day and month transposed");
        assert_eq!(date("19700304", "19710304"), "year off by 1 or 10");
        assert_eq!(date("19700304", "19800304"), "year off by 1 or 10");
        assert_eq!(
            date("19700304", "19700305"),
            "one digit replaced or two swapped"
        );
        assert_eq!(
            date("19700304", "19700340"),
            "one digit replaced or two swapped"
        );
        assert_eq!(
            date("19700304", "19700322"),
            "one of year, month, day differs"
        );
        assert_eq!(date("19700304", "19551122"), "different");
        assert_eq!(date("1970", "19700304"), "one of year, month, day differs");
        assert_eq!(date("", "19700304"), "null");
    }

    #[test]
    fn code_and_place_levels() {
        let ssn = |a: &str, b: &str| {
            let record = |ssn: &str| Record {
                ssn: ssn.into(),
                ..Record::default()
            };
            level(ComparisonKind::Ssn, &record(a), &record(b)).1
        };
        assert_eq!(ssn("123-45-6789", "123456789"), "exact");
        assert_eq!(ssn("123456789", "123456798"), "two characters swapped");
        assert_eq!(ssn("123456789", "123456780"), "one edit");
        assert_eq!(ssn("123456789", "987654321"), "different");

        let place = |a: (&str, &str), b: (&str, &str)| {
            let record = |(postcode, city): (&str, &str)| Record {
                postcode: postcode.into(),
                city: city.into(),
                state: "nsw".into(),
                ..Record::default()
            };
            level(ComparisonKind::Place, &record(a), &record(b)).1
        };
        assert_eq!(
            place(("2000", "Sydney"), ("2000", "sydney")),
            "same postcode and city"
        );
        assert_eq!(place(("2000", "Sydney"), ("2000", "")), "same postcode");
        assert_eq!(place(("2000", "Sydney"), ("2010", "sydnye")), "same city");
        assert_eq!(
            place(("2000", "Sydney"), ("2001", "Parramatta")),
            "postcode one edit"
        );
        assert_eq!(
            place(("2000", "Sydney"), ("3999", "Parramatta")),
            "same state"
        );
    }

    #[test]
    fn identifiers_compare_within_their_system() {
        let record = |system: &str, value: &str| Record {
            identifiers: vec![Identifier {
                system: system.into(),
                value: value.into(),
            }],
            ..Record::default()
        };
        let same = level(
            ComparisonKind::Identifier,
            &record("mrn", "A-1"),
            &record("mrn", "a1"),
        );
        assert_eq!(same.1, "exact");
        let other = level(
            ComparisonKind::Identifier,
            &record("mrn", "A1"),
            &record("dl", "A1"),
        );
        assert_eq!(other.1, "null");
    }

    #[test]
    fn address_levels() {
        let address = |a: &[&str], b: &[&str]| {
            let record = |lines: &[&str]| Record {
                address: lines.iter().map(|line| line.to_string()).collect(),
                ..Record::default()
            };
            level(ComparisonKind::Address, &record(a), &record(b)).1
        };
        assert_eq!(address(&["7 Wallaby Pl"], &["7", "wallaby pl"]), "exact");
        assert_eq!(
            address(&["7 Wallaby Place"], &["7 walaby place"]),
            "same house number, similar street"
        );
        assert_eq!(
            address(&["7 Wallaby Place"], &["9 wallaby place"]),
            "similar street"
        );
        assert_eq!(
            address(&["7 Wallaby Place"], &["7 Smith Street"]),
            "same house number"
        );
        assert_eq!(
            address(
                &["7 Wallaby Place", "Delmar"],
                &["1 Smith Street", "delmar"]
            ),
            "same other address line"
        );
        assert_eq!(address(&["7 Wallaby Place"], &[]), "null");
    }
}
