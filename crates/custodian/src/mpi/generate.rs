//! `custodian mpi generate`: a synthetic person file with known duplicates, for
//! measuring matching at scale. Originals draw each field independently from the
//! values of a FEBRL-shaped vocabulary file (so common names stay common), with a
//! random date of birth and a unique social security number; duplicates copy an
//! original and corrupt it the ways real registration data goes wrong: typos, OCR and
//! phonetic misspellings, missing values, swapped names, transposed dates.
//!
//! The output has FEBRL's columns, with `cluster` naming the original: the truth, for
//! scoring, never for matching.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// FEBRL's columns, in order.
const COLUMNS: [&str; 12] = [
    "rec_id",
    "cluster",
    "given_name",
    "surname",
    "street_number",
    "address_1",
    "address_2",
    "suburb",
    "postcode",
    "state",
    "date_of_birth",
    "soc_sec_id",
];

/// The column map that reads a generated file (and a FEBRL file).
pub const FEBRL_MAP: &str = "id=rec_id,given=given_name,family=surname,birthdate=date_of_birth,\
address=street_number,address=address_1,address=address_2,city=suburb,postcode=postcode,\
state=state,ssn=soc_sec_id";

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// How many records to write.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// The share of records that are duplicates of another.
    #[arg(long, default_value_t = 0.4)]
    duplicates: f64,
    /// The output CSV file.
    #[arg(long)]
    out: PathBuf,
    /// A FEBRL-shaped CSV whose values are the vocabulary (default: FEBRL4's file A in
    /// the shared test data).
    #[arg(long)]
    vocabulary: Option<PathBuf>,
    /// The shared test data folder.
    #[arg(long, env = "CUSTODIAN_TESTDATA", default_value = "../shared/testdata")]
    testdata: PathBuf,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub fn run(args: &GenerateArgs) -> Result<(), String> {
    let vocabulary_path = args
        .vocabulary
        .clone()
        .unwrap_or_else(|| args.testdata.join("febrl/febrl4/records_a.csv"));
    let vocabulary = Vocabulary::read(&vocabulary_path)?;
    let file = File::create(&args.out)
        .map_err(|error| format!("cannot create {}: {error}", args.out.display()))?;
    let mut out = BufWriter::new(file);
    let people = write(
        &vocabulary,
        args.records,
        args.duplicates,
        args.seed,
        &mut out,
    )
    .and_then(|people| out.flush().map(|()| people))
    .map_err(|error| format!("cannot write {}: {error}", args.out.display()))?;
    println!(
        "wrote {} records of {people} people to {}",
        args.records,
        args.out.display()
    );
    Ok(())
}

/// Values seen per column, repeated as often as seen: drawing uniformly from a list
/// draws by frequency.
pub struct Vocabulary {
    given: Vec<String>,
    family: Vec<String>,
    street_number: Vec<String>,
    street: Vec<String>,
    address_2: Vec<String>,
    suburb: Vec<String>,
    postcode: Vec<String>,
    state: Vec<String>,
}

impl Vocabulary {
    /// Reads the columns of a FEBRL-shaped file; empty values count (they are the
    /// originals' missing values).
    pub fn read(path: &Path) -> Result<Vocabulary, String> {
        let failed = |error: csv::Error| format!("{}: {error}", path.display());
        let mut reader = csv::Reader::from_path(path).map_err(failed)?;
        let header = reader.headers().map_err(failed)?.clone();
        let position = |name: &str| {
            header
                .iter()
                .position(|column| column == name)
                .ok_or_else(|| format!("{}: no column {name}", path.display()))
        };
        let columns = [
            position("given_name")?,
            position("surname")?,
            position("street_number")?,
            position("address_1")?,
            position("address_2")?,
            position("suburb")?,
            position("postcode")?,
            position("state")?,
        ];
        let mut lists: [Vec<String>; 8] = Default::default();
        for row in reader.records() {
            let row = row.map_err(failed)?;
            for (list, column) in lists.iter_mut().zip(columns) {
                list.push(row.get(column).unwrap_or("").to_string());
            }
        }
        if lists[0].is_empty() {
            return Err(format!("{}: no rows", path.display()));
        }
        let [
            given,
            family,
            street_number,
            street,
            address_2,
            suburb,
            postcode,
            state,
        ] = lists;
        Ok(Vocabulary {
            given,
            family,
            street_number,
            street,
            address_2,
            suburb,
            postcode,
            state,
        })
    }
}

/// splitmix64: small, fast and seeded, so a seed always gives the same file.
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Self {
        Random(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: usize) -> usize {
        ((u128::from(self.next()) * bound as u128) >> 64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    fn pick<'a>(&mut self, values: &'a [String]) -> &'a str {
        values
            .get(self.below(values.len()))
            .map_or("", String::as_str)
    }
}

/// One person's record, FEBRL's fields.
#[derive(Clone, Default)]
struct Row {
    given: String,
    family: String,
    street_number: String,
    street: String,
    address_2: String,
    suburb: String,
    postcode: String,
    state: String,
    birthdate: String,
    ssn: String,
}

/// Writes `records` rows in random order; returns how many people they are.
pub fn write(
    vocabulary: &Vocabulary,
    records: usize,
    duplicate_share: f64,
    seed: u64,
    out: &mut impl Write,
) -> std::io::Result<usize> {
    let mut random = Random::new(seed);
    let duplicates = (records as f64 * duplicate_share.clamp(0.0, 0.9)) as usize;
    let people = (records - duplicates).max(1);
    // Which person each record is, and its copy number (0 for the original), shuffled.
    let mut owners: Vec<(u32, u32)> = (0..people as u32).map(|person| (person, 0)).collect();
    let mut copies = vec![0u32; people];
    for _ in 0..duplicates {
        // A few people have many duplicates, most none or one.
        let person = if random.chance(0.3) {
            random.below(people / 20 + 1)
        } else {
            random.below(people)
        };
        copies[person] += 1;
        owners.push((person as u32, copies[person]));
    }
    for index in (1..owners.len()).rev() {
        owners.swap(index, random.below(index + 1));
    }
    writeln!(out, "{}", COLUMNS.join(","))?;
    let ssn_step = 7_654_321usize; // coprime with 10^7: unique numbers per person
    for (person, copy) in owners {
        // Each person's original is derived from its own seed, so copies agree on it.
        let mut person_random =
            Random::new(seed ^ (u64::from(person) + 1).wrapping_mul(0xa076_1d64_78bd_642f));
        let mut row = original(
            vocabulary,
            &mut person_random,
            (person as usize * ssn_step + 1_000_003) % 10_000_000,
        );
        let id = if copy == 0 {
            format!("rec-{person}-org")
        } else {
            corrupt(&mut row, &mut random);
            format!("rec-{person}-dup-{}", copy - 1)
        };
        writeln!(
            out,
            "{id},rec-{person},{},{},{},{},{},{},{},{},{},{}",
            row.given,
            row.family,
            row.street_number,
            row.street,
            row.address_2,
            row.suburb,
            row.postcode,
            row.state,
            row.birthdate,
            row.ssn
        )?;
    }
    Ok(people)
}

fn original(vocabulary: &Vocabulary, random: &mut Random, ssn: usize) -> Row {
    let year = 1910 + random.below(100);
    let month = 1 + random.below(12);
    let day = 1 + random.below(28);
    Row {
        given: random.pick(&vocabulary.given).to_string(),
        family: random.pick(&vocabulary.family).to_string(),
        street_number: random.pick(&vocabulary.street_number).to_string(),
        street: random.pick(&vocabulary.street).to_string(),
        address_2: random.pick(&vocabulary.address_2).to_string(),
        suburb: random.pick(&vocabulary.suburb).to_string(),
        postcode: random.pick(&vocabulary.postcode).to_string(),
        state: random.pick(&vocabulary.state).to_string(),
        birthdate: if random.chance(0.02) {
            String::new()
        } else {
            format!("{year:04}{month:02}{day:02}")
        },
        ssn: format!("{ssn:07}"),
    }
}

/// Letters that OCR confuses, and spellings that sound alike.
const OCR: [(&str, &str); 8] = [
    ("m", "rn"),
    ("rn", "m"),
    ("l", "1"),
    ("o", "0"),
    ("s", "5"),
    ("g", "q"),
    ("cl", "d"),
    ("u", "v"),
];
const PHONETIC: [(&str, &str); 10] = [
    ("ph", "f"),
    ("f", "ph"),
    ("c", "k"),
    ("k", "c"),
    ("ie", "y"),
    ("y", "ie"),
    ("ee", "ea"),
    ("th", "t"),
    ("s", "z"),
    ("ou", "ow"),
];

/// One to three corruptions, each on a field chosen with FEBRL-like weights.
fn corrupt(row: &mut Row, random: &mut Random) {
    let changes = 1 + random.below(3);
    for _ in 0..changes {
        let roll = random.below(100);
        match roll {
            0..=19 => text_error(&mut row.given, random),
            20..=39 => text_error(&mut row.family, random),
            40..=44 => std::mem::swap(&mut row.given, &mut row.family),
            45..=56 => date_error(&mut row.birthdate, random),
            57..=66 => digit_error(&mut row.ssn, random),
            67..=76 => text_error(&mut row.street, random),
            77..=81 => digit_error(&mut row.street_number, random),
            82..=86 => text_error(&mut row.suburb, random),
            87..=91 => digit_error(&mut row.postcode, random),
            92..=95 => text_error(&mut row.address_2, random),
            _ => row.state.clear(),
        }
    }
}

fn text_error(value: &mut String, random: &mut Random) {
    if value.is_empty() {
        return;
    }
    match random.below(10) {
        0..=3 => typo(value, random, b"abcdefghijklmnopqrstuvwxyz"),
        4..=5 => replace_one(value, random, &OCR),
        6..=7 => replace_one(value, random, &PHONETIC),
        8 => value.clear(),
        _ => {
            // Words run together or split.
            if let Some(space) = value.find(' ') {
                value.remove(space);
            } else if value.len() > 3 {
                let at = 1 + random.below(value.len() - 2);
                if value.is_char_boundary(at) {
                    value.insert(at, ' ');
                }
            }
        }
    }
}

fn digit_error(value: &mut String, random: &mut Random) {
    if value.is_empty() {
        return;
    }
    if random.chance(0.1) {
        value.clear();
    } else {
        typo(value, random, b"0123456789");
    }
}

fn date_error(value: &mut String, random: &mut Random) {
    if value.len() != 8 {
        return;
    }
    let (year, rest) = value.split_at(4);
    let (month, day) = rest.split_at(2);
    let (year, month, day) = (year.to_string(), month.to_string(), day.to_string());
    match random.below(5) {
        0 => {
            if let Ok(number) = day.parse::<u32>()
                && number <= 12
            {
                *value = format!("{year}{day}{month}");
                return;
            }
            typo(value, random, b"0123456789");
        }
        1 => {
            let shift = if random.chance(0.5) { 1 } else { 10 };
            if let Ok(number) = year.parse::<i32>() {
                let shifted = if random.chance(0.5) {
                    number + shift
                } else {
                    number - shift
                };
                *value = format!("{shifted:04}{month}{day}");
            }
        }
        2 => value.clear(),
        _ => typo(value, random, b"0123456789"),
    }
}

/// Inserts, deletes, replaces or swaps one character (ASCII values only).
fn typo(value: &mut String, random: &mut Random, alphabet: &[u8]) {
    if !value.is_ascii() || value.is_empty() {
        return;
    }
    let mut bytes = value.clone().into_bytes();
    let at = random.below(bytes.len());
    let letter = alphabet
        .get(random.below(alphabet.len()))
        .copied()
        .unwrap_or(b'a');
    match random.below(4) {
        0 => bytes.insert(at, letter),
        1 if bytes.len() > 1 => {
            bytes.remove(at);
        }
        2 if at + 1 < bytes.len() => bytes.swap(at, at + 1),
        _ => {
            if let Some(slot) = bytes.get_mut(at) {
                *slot = letter;
            }
        }
    }
    *value = String::from_utf8(bytes).unwrap_or_default();
}

/// Replaces one occurrence of one of the patterns that occurs in `value`.
fn replace_one(value: &mut String, random: &mut Random, patterns: &[(&str, &str)]) {
    let present: Vec<&(&str, &str)> = patterns
        .iter()
        .filter(|(from, _)| value.contains(from))
        .collect();
    let Some((from, to)) = present.get(random.below(present.len())) else {
        typo(value, random, b"abcdefghijklmnopqrstuvwxyz");
        return;
    };
    *value = value.replacen(from, to, 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocabulary() -> Vocabulary {
        let list = |values: &[&str]| values.iter().map(|value| value.to_string()).collect();
        Vocabulary {
            given: list(&["mary", "john", "peter"]),
            family: list(&["smith", "nguyen"]),
            street_number: list(&["1", "22"]),
            street: list(&["main street"]),
            address_2: list(&["", "rosedale"]),
            suburb: list(&["kew"]),
            postcode: list(&["3101"]),
            state: list(&["vic"]),
        }
    }

    #[test]
    fn the_same_seed_writes_the_same_file_with_the_requested_rows() {
        let mut first = Vec::new();
        let mut second = Vec::new();
        let people = write(&vocabulary(), 1000, 0.4, 7, &mut first).unwrap_or(0);
        write(&vocabulary(), 1000, 0.4, 7, &mut second).unwrap_or(0);
        assert_eq!(first, second);
        assert_eq!(people, 600);
        let text = String::from_utf8(first).unwrap_or_default();
        assert_eq!(text.lines().count(), 1001);
        assert_eq!(
            text.lines().filter(|line| line.contains("-org,")).count(),
            600
        );
        // Every duplicate names an original that exists.
        assert!(text.lines().skip(1).all(|line| {
            line.split(',')
                .nth(1)
                .is_some_and(|c| c.starts_with("rec-"))
        }));
    }

    #[test]
    fn corruptions_change_values_but_keep_them_recognisable() {
        let mut random = Random::new(3);
        let mut changed = 0;
        for _ in 0..200 {
            let mut value = "catherine".to_string();
            text_error(&mut value, &mut random);
            if value != "catherine" {
                changed += 1;
                assert!(value.is_empty() || value.len().abs_diff(9) <= 2, "{value}");
            }
        }
        assert!(changed > 150);
        let mut date = "19700304".to_string();
        let mut seen_swap = false;
        for _ in 0..50 {
            date_error(&mut date, &mut random);
            seen_swap |= date == "19700403";
            date = "19700304".to_string();
        }
        assert!(seen_swap);
    }
}
