//! Batch deduplication and linkage through the public API, on a small population made
//! up here: people with common and rare names, and copies with one error each.

use mpi::{
    Dataset, Error, Model, Quiet, Record, Training, cluster, cluster_pairs, pairwise, score,
    train_and_score,
};

const GIVEN: [&str; 24] = [
    "james",
    "mary",
    "john",
    "patricia",
    "robert",
    "jennifer",
    "michael",
    "linda",
    "william",
    "elizabeth",
    "david",
    "barbara",
    "richard",
    "susan",
    "joseph",
    "jessica",
    "thomas",
    "sarah",
    "charles",
    "karen",
    "oliver",
    "zara",
    "harriet",
    "ignatius",
];
const FAMILY: [&str; 24] = [
    "smith",
    "johnson",
    "williams",
    "brown",
    "jones",
    "garcia",
    "miller",
    "davis",
    "rodriguez",
    "martinez",
    "hernandez",
    "lopez",
    "gonzalez",
    "wilson",
    "anderson",
    "thomas",
    "taylor",
    "moore",
    "jackson",
    "martin",
    "nguyen",
    "okafor",
    "kowalczyk",
    "fitzgerald",
];
const STREETS: [&str; 8] = [
    "main street",
    "high street",
    "station road",
    "church lane",
    "park avenue",
    "mill road",
    "king street",
    "george street",
];
const CITIES: [(&str, &str); 6] = [
    ("springfield", "4000"),
    ("riverton", "4010"),
    ("lakeside", "4020"),
    ("hillcrest", "4030"),
    ("fairview", "4040"),
    ("brookfield", "4050"),
];

/// splitmix64, for a repeatable population.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((u128::from(z ^ (z >> 31)) * bound as u128) >> 64) as usize
    }
}

fn person(random: &mut Random, number: usize) -> Record {
    let (city, postcode) = CITIES[random.below(CITIES.len())];
    Record {
        id: format!("p{number}"),
        given: GIVEN[random.below(GIVEN.len())].into(),
        family: FAMILY[random.below(FAMILY.len())].into(),
        birthdate: format!(
            "{}-{:02}-{:02}",
            1930 + random.below(80),
            1 + random.below(12),
            1 + random.below(28)
        ),
        sex: ["female", "male"][random.below(2)].into(),
        address: vec![format!(
            "{} {}",
            1 + random.below(200),
            STREETS[random.below(STREETS.len())]
        )],
        city: city.into(),
        postcode: postcode.into(),
        phone: format!("04{:08}", random.below(100_000_000)),
        ssn: format!("{:09}", 100_000_000 + number * 7919),
        ..Record::default()
    }
}

/// A copy of `record` with one error: a typo in a name, a missing or mistyped date, a
/// changed phone, a moved address, or swapped names.
fn copy(record: &Record, random: &mut Random, number: usize) -> Record {
    let mut copy = record.clone();
    copy.id = format!("{}-copy{number}", record.id);
    match random.below(6) {
        0 => copy.given.insert(1, 'x'),
        1 => {
            copy.family.remove(0);
        }
        2 => copy.birthdate.clear(),
        3 => copy.phone = String::new(),
        4 => copy.address = vec!["9 Elsewhere Road".into()],
        _ => std::mem::swap(&mut copy.given, &mut copy.family),
    }
    copy
}

/// 600 people and 200 copies; the truth as (copy position, original position).
fn population() -> (Vec<Record>, Vec<(u32, u32)>) {
    let mut random = Random(5);
    let mut records: Vec<Record> = (0..600).map(|number| person(&mut random, number)).collect();
    let mut truth = Vec::new();
    for number in 0..200 {
        let original = random.below(600);
        let copy = copy(&records[original].clone(), &mut random, number);
        truth.push((records.len() as u32, original as u32));
        records.push(copy);
    }
    (records, truth)
}

fn dedupe(records: &[Record]) -> Result<Dataset, Error> {
    let mut dataset = Dataset::dedupe();
    for record in records {
        dataset.push(record)?;
    }
    Ok(dataset)
}

#[test]
fn copies_are_found_without_labels() -> Result<(), Error> {
    let (records, truth) = population();
    let dataset = dedupe(&records)?;
    let outcome = train_and_score(&dataset, Model::untrained(), &Training::default(), &Quiet)?;
    let probable = outcome.model.thresholds.probable;
    let linked = outcome
        .pairs
        .iter()
        .filter(|pair| f64::from(pair.probability) >= probable)
        .map(|pair| (pair.a, pair.b));
    // Copies of one original are the same person too.
    let mut labels: Vec<u32> = (0..records.len() as u32).collect();
    for &(copy, original) in &truth {
        labels[copy as usize] = original;
    }
    let all_truth = cluster_pairs(&labels, |_, _| true);
    let accuracy = pairwise(linked, &all_truth);
    assert!(accuracy.precision >= 0.99, "{accuracy:?}");
    assert!(accuracy.recall >= 0.97, "{accuracy:?}");
    let clusters = cluster(dataset.len(), &outcome.pairs, probable);
    assert!(pairwise(cluster_pairs(&clusters, |_, _| true), &all_truth).f1 >= 0.97);
    let training = outcome.model.training.as_ref().map(|report| report.records);
    assert_eq!(training, Some(800));
    Ok(())
}

#[test]
fn a_saved_model_scores_the_same_pairs_and_training_repeats() -> Result<(), Error> {
    let (records, _) = population();
    let dataset = dedupe(&records)?;
    let trained = train_and_score(&dataset, Model::untrained(), &Training::default(), &Quiet)?;
    let again = train_and_score(&dataset, Model::untrained(), &Training::default(), &Quiet)?;
    assert_eq!(trained.pairs, again.pairs);
    let reloaded = Model::from_json(&trained.model.to_json())?;
    let scored = score(&dataset, reloaded, &Quiet)?;
    assert_eq!(scored.pairs, trained.pairs);
    Ok(())
}

#[test]
fn an_explanation_shows_each_comparison() -> Result<(), Error> {
    let (records, truth) = population();
    let dataset = dedupe(&records)?;
    let outcome = train_and_score(&dataset, Model::untrained(), &Training::default(), &Quiet)?;
    let (copy, original) = truth[0];
    let explanation = outcome
        .explain(&dataset, original.min(copy), original.max(copy))
        .ok_or_else(|| Error::InvalidModel("no explanation".into()))?;
    assert_eq!(explanation.terms.len(), outcome.model.comparisons.len());
    let total: f64 = explanation.prior_weight
        + explanation
            .terms
            .iter()
            .map(|term| term.weight)
            .sum::<f64>();
    assert!((total - explanation.weight).abs() < 1e-9);
    let scored = outcome
        .pairs
        .iter()
        .find(|pair| (pair.a, pair.b) == (original.min(copy), original.max(copy)));
    assert!(scored.is_some_and(|pair| (f64::from(pair.weight) - explanation.weight).abs() < 1e-3));
    Ok(())
}

#[test]
fn linkage_pairs_only_cross_the_two_sides() -> Result<(), Error> {
    let (records, truth) = population();
    let mut dataset = Dataset::link();
    for record in &records[..600] {
        dataset.push(record)?;
    }
    for record in &records[600..] {
        dataset.push_right(record)?;
    }
    assert!(matches!(dataset.push(&records[0]), Err(Error::LinkOrder)));
    let outcome = train_and_score(&dataset, Model::untrained(), &Training::default(), &Quiet)?;
    assert!(
        outcome
            .pairs
            .iter()
            .all(|pair| pair.a < 600 && pair.b >= 600)
    );
    let probable = outcome.model.thresholds.probable;
    let linked = outcome
        .pairs
        .iter()
        .filter(|pair| f64::from(pair.probability) >= probable)
        .map(|pair| (pair.a, pair.b));
    let accuracy = pairwise(linked, &truth);
    assert!(accuracy.f1 >= 0.97, "{accuracy:?}");
    Ok(())
}

#[test]
fn nothing_to_train_on_is_an_error_that_says_so() -> Result<(), Error> {
    let dataset = dedupe(&[Record::default(), Record::default()])?;
    let error = train_and_score(&dataset, Model::untrained(), &Training::default(), &Quiet).err();
    assert_eq!(
        error.map(|error| error.to_string()),
        Some(
            "nothing to train on: the blocking rules found no candidate pairs among 2 records"
                .into()
        )
    );
    Ok(())
}
