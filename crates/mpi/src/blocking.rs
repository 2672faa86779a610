//! Blocking: which pairs get compared at all. A rule is a list of key parts (phonetic
//! family name and birth date, say); two records are a candidate pair when some rule
//! gives them the same key. A pair that several rules find is compared once, under the
//! first rule that finds it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::prepare::{Name, Person, Texts};
use crate::text::{MISSING, Sym, finish, mix};

/// One part of a blocking key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyPart {
    Given,
    Family,
    /// Double Metaphone primary code of the given name.
    GivenPhonetic,
    FamilyPhonetic,
    /// Both names' phonetic codes, in either order (so swapped names still meet).
    NamesPhonetic,
    GivenInitial,
    FamilyInitial,
    Birthdate,
    BirthYear,
    Sex,
    Postcode,
    City,
    Street,
    HouseNumber,
    Phone,
    Ssn,
    /// Each identifier (system and value) is a key of its own.
    Identifier,
}

impl KeyPart {
    fn name(self) -> &'static str {
        match self {
            KeyPart::Given => "given",
            KeyPart::Family => "family",
            KeyPart::GivenPhonetic => "given_phonetic",
            KeyPart::FamilyPhonetic => "family_phonetic",
            KeyPart::NamesPhonetic => "names_phonetic",
            KeyPart::GivenInitial => "given_initial",
            KeyPart::FamilyInitial => "family_initial",
            KeyPart::Birthdate => "birthdate",
            KeyPart::BirthYear => "birth_year",
            KeyPart::Sex => "sex",
            KeyPart::Postcode => "postcode",
            KeyPart::City => "city",
            KeyPart::Street => "street",
            KeyPart::HouseNumber => "house_number",
            KeyPart::Phone => "phone",
            KeyPart::Ssn => "ssn",
            KeyPart::Identifier => "identifier",
        }
    }

    /// The part's value for `person`, or `None` when the person lacks it. `Identifier`
    /// is not a single value and answers `None` here.
    fn value(self, person: &Person, texts: &Texts) -> Option<u64> {
        let sym = |sym: Sym| (sym != MISSING).then_some(u64::from(sym));
        let initial = |name: Name| texts.get(name.text).bytes().next().map(u64::from);
        match self {
            KeyPart::Given => sym(person.given.text),
            KeyPart::Family => sym(person.family.text),
            KeyPart::GivenPhonetic => sym(person.given.codes.metaphone),
            KeyPart::FamilyPhonetic => sym(person.family.codes.metaphone),
            KeyPart::NamesPhonetic => {
                let given = u64::from(person.given.codes.metaphone);
                let family = u64::from(person.family.codes.metaphone);
                (given != 0 && family != 0).then(|| given.min(family) << 32 | given.max(family))
            }
            KeyPart::GivenInitial => initial(person.given),
            KeyPart::FamilyInitial => initial(person.family),
            KeyPart::Birthdate => (person.birth.day != 0).then(|| u64::from(person.birth.packed())),
            KeyPart::BirthYear => (person.birth.year != 0).then_some(u64::from(person.birth.year)),
            KeyPart::Sex => Some(person.sex as u64).filter(|&sex| sex != 0),
            KeyPart::Postcode => sym(person.postcode),
            KeyPart::City => sym(person.city),
            KeyPart::Street => sym(person.street),
            KeyPart::HouseNumber => sym(person.house_number),
            KeyPart::Phone => sym(person.phone),
            KeyPart::Ssn => sym(person.ssn),
            KeyPart::Identifier => None,
        }
    }
}

/// Records with equal keys under a rule are compared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockingRule {
    pub parts: Vec<KeyPart>,
}

impl fmt::Display for BlockingRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, part) in self.parts.iter().enumerate() {
            if index > 0 {
                f.write_str("+")?;
            }
            f.write_str(part.name())?;
        }
        Ok(())
    }
}

impl BlockingRule {
    pub fn new(parts: &[KeyPart]) -> Self {
        BlockingRule {
            parts: parts.to_vec(),
        }
    }

    /// The default rules: each finds the pairs that agree on a different set of fields,
    /// so a pair with typos in some fields is still found through the others, while no
    /// rule alone makes blocks that grow with the square of the population.
    pub fn defaults() -> Vec<BlockingRule> {
        use KeyPart::*;
        [
            &[Ssn][..],
            &[Phone],
            &[Identifier],
            &[FamilyPhonetic, Birthdate],
            &[GivenPhonetic, Birthdate],
            &[NamesPhonetic, BirthYear],
            &[Postcode, Given],
            &[Postcode, Family],
            &[NamesPhonetic, City],
            &[Birthdate, Postcode],
            &[Birthdate, City],
            &[Street, HouseNumber],
            &[Street, City],
        ]
        .into_iter()
        .map(BlockingRule::new)
        .collect()
    }

    /// Appends the rule's keys for `person` to `out`: none when a part is missing, one
    /// per identifier when the rule has an `Identifier` part, otherwise one.
    pub(crate) fn keys(&self, person: &Person, texts: &Texts, out: &mut Vec<u64>) {
        let mut hash = 0x9e37_79b9_7f4a_7c15_u64;
        let mut by_identifier = false;
        for (index, part) in self.parts.iter().enumerate() {
            if *part == KeyPart::Identifier {
                by_identifier = true;
                continue;
            }
            let Some(value) = part.value(person, texts) else {
                return;
            };
            hash = mix(hash, (index as u64) << 56 ^ value);
        }
        if !by_identifier {
            out.push(finish(hash));
            return;
        }
        for (system, value) in &person.identifiers {
            out.push(finish(mix(
                mix(hash, u64::from(*system)),
                u64::from(*value),
            )));
        }
    }
}

/// Every record's keys under every rule. A rule that gives each record at most one key
/// (all but identifier rules) keeps them in rows, one row of all rules per record, so
/// checking whether a pair met under an earlier rule reads two rows; a rule that can
/// give several keys keeps them in a list per record.
pub(crate) struct KeyTable {
    rules: usize,
    /// `rows[record * rules + rule]`: the key, or 0 for none.
    rows: Vec<u64>,
    /// Per rule: the keys of a several-key rule.
    lists: Vec<Option<KeyLists>>,
}

/// Keys of one rule, several per record: record `i`'s are `keys[starts[i]..starts[i + 1]]`.
struct KeyLists {
    starts: Vec<u32>,
    keys: Vec<u64>,
}

impl KeyLists {
    fn of(&self, record: u32) -> &[u64] {
        let record = record as usize;
        match (self.starts.get(record), self.starts.get(record + 1)) {
            (Some(&start), Some(&end)) => self
                .keys
                .get(start as usize..end as usize)
                .unwrap_or_default(),
            _ => &[],
        }
    }
}

impl KeyTable {
    pub(crate) fn new(rules: &[BlockingRule], persons: &[Person], texts: &Texts) -> Self {
        let count = rules.len();
        let mut rows = vec![0u64; persons.len() * count];
        let mut lists: Vec<Option<KeyLists>> = rules
            .iter()
            .map(|rule| {
                rule.parts.contains(&KeyPart::Identifier).then(|| KeyLists {
                    starts: Vec::with_capacity(persons.len() + 1),
                    keys: Vec::new(),
                })
            })
            .collect();
        for list in lists.iter_mut().flatten() {
            list.starts.push(0);
        }
        let mut keys = Vec::new();
        for (person, row) in persons.iter().zip(rows.chunks_mut(count.max(1))) {
            for ((rule, slot), list) in rules.iter().zip(row.iter_mut()).zip(&mut lists) {
                keys.clear();
                rule.keys(person, texts, &mut keys);
                match list {
                    Some(list) => {
                        list.keys.extend_from_slice(&keys);
                        list.starts.push(list.keys.len() as u32);
                    }
                    // 0 means no key; a key that hashed to 0 moves to 1.
                    None => *slot = keys.first().map_or(0, |&key| key.max(1)),
                }
            }
        }
        KeyTable {
            rules: count,
            rows,
            lists,
        }
    }

    /// Whether records `a` and `b` share a key under any rule before `rule`.
    pub(crate) fn met_before(&self, rule: usize, a: u32, b: u32) -> bool {
        let row = |record: u32| {
            let start = record as usize * self.rules;
            self.rows.get(start..start + rule).unwrap_or_default()
        };
        let (a_row, b_row) = (row(a), row(b));
        for (index, (x, y)) in a_row.iter().zip(b_row).enumerate() {
            match self.lists.get(index) {
                Some(Some(list)) => {
                    let b_keys = list.of(b);
                    if list.of(a).iter().any(|key| b_keys.contains(key)) {
                        return true;
                    }
                }
                _ => {
                    if *x != 0 && x == y {
                        return true;
                    }
                }
            }
        }
        false
    }

    /// (key, record) for every key of `rule`, sorted, so each block is a run of equal keys.
    pub(crate) fn sorted_entries(&self, rule: usize) -> Vec<(u64, u32)> {
        let records = self.rows.len().checked_div(self.rules).unwrap_or(0);
        let mut entries = Vec::with_capacity(records);
        match self.lists.get(rule) {
            Some(Some(list)) => {
                for record in 0..records as u32 {
                    entries.extend(list.of(record).iter().map(|&key| (key, record)));
                }
            }
            _ => {
                for record in 0..records {
                    if let Some(&key) = self.rows.get(record * self.rules + rule)
                        && key != 0
                    {
                        entries.push((key, record as u32));
                    }
                }
            }
        }
        entries.sort_unstable();
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepare::{Lexicon, Scratch, prepare};
    use crate::record::Record;

    #[test]
    fn swapped_names_share_the_unordered_phonetic_key() {
        let mut lexicon = Lexicon::default();
        let mut scratch = Scratch::default();
        let a = Record {
            given: "James".into(),
            family: "Lee".into(),
            birthdate: "1970-01-01".into(),
            ..Record::default()
        };
        let b = Record {
            given: "Lee".into(),
            family: "James".into(),
            birthdate: "1970-12-31".into(),
            ..Record::default()
        };
        let a = prepare(&a, &mut lexicon, &mut scratch);
        let b = prepare(&b, &mut lexicon, &mut scratch);
        let texts = Texts::of(&lexicon);
        let rule = BlockingRule::new(&[KeyPart::NamesPhonetic, KeyPart::BirthYear]);
        let (mut a_keys, mut b_keys) = (Vec::new(), Vec::new());
        rule.keys(&a, &texts, &mut a_keys);
        rule.keys(&b, &texts, &mut b_keys);
        assert_eq!(a_keys.len(), 1);
        assert_eq!(a_keys, b_keys);

        let strict = BlockingRule::new(&[KeyPart::FamilyPhonetic, KeyPart::Birthdate]);
        let (mut a_keys, mut b_keys) = (Vec::new(), Vec::new());
        strict.keys(&a, &texts, &mut a_keys);
        strict.keys(&b, &texts, &mut b_keys);
        assert_ne!(a_keys, b_keys);
        assert_eq!(strict.to_string(), "family_phonetic+birthdate");
    }

    #[test]
    fn a_missing_part_gives_no_key_and_identifiers_give_one_each() {
        let mut lexicon = Lexicon::default();
        let record = Record {
            identifiers: vec![
                crate::record::Identifier {
                    system: "mrn".into(),
                    value: "1".into(),
                },
                crate::record::Identifier {
                    system: "mrn".into(),
                    value: "2".into(),
                },
            ],
            ..Record::default()
        };
        let person = prepare(&record, &mut lexicon, &mut Scratch::default());
        let texts = Texts::of(&lexicon);
        let mut keys = Vec::new();
        BlockingRule::new(&[KeyPart::Ssn]).keys(&person, &texts, &mut keys);
        assert!(keys.is_empty());
        BlockingRule::new(&[KeyPart::Identifier]).keys(&person, &texts, &mut keys);
        assert_eq!(keys.len(), 2);
        assert_ne!(keys[0], keys[1]);
    }
}
