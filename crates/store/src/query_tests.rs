//! Search SQL against index rows given by hand (independent of the indexer): every
//! test kind and prefix (dates and numbers checked against `search::Prefix` over a
//! grid of edge cases), AND/OR, missing, negation, composites, chains, sorting,
//! keyset paging, totals and includes, on both backends (`each_backend!`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

use std::collections::BTreeSet;

use search::{
    Clause, Criterion, DateRange, Include, IndexRow, IndexValue, NumberRange, ParamType, Prefix,
    Query, ReferenceTest, SortKey, Step, StringMatch, SystemMatch, Test, TokenTest, Total,
    UriMatch,
};
use serde_json::{Map, Value, json};

use crate::testing::TestDatabase;
use crate::{Method, SearchPage, SearchRequest, Store, StoreError, Write};

fn row(key: &str, group: u32, value: IndexValue) -> IndexRow {
    IndexRow {
        key: key.into(),
        group,
        value,
    }
}

fn string(key: &str, text: &str) -> IndexRow {
    row(
        key,
        0,
        IndexValue::String {
            normalized: search::normalize_string(text),
            exact: text.into(),
        },
    )
}

fn token(key: &str, system: Option<&str>, code: &str) -> IndexRow {
    row(
        key,
        0,
        IndexValue::Token {
            system: system.map(Into::into),
            code: Some(code.into()),
        },
    )
}

fn reference(key: &str, resource_type: &str, id: &str) -> IndexRow {
    row(
        key,
        0,
        IndexValue::Reference {
            resource_type: Some(resource_type.into()),
            id: Some(id.into()),
            url: None,
        },
    )
}

fn date(key: &str, low: i64, high: i64) -> IndexRow {
    row(key, 0, IndexValue::Date(DateRange { low, high }))
}

fn number(key: &str, low: f64, high: f64) -> IndexRow {
    row(
        key,
        0,
        IndexValue::Number(NumberRange {
            value: low,
            low,
            high,
        }),
    )
}

fn body(resource_type: &str) -> Map<String, Value> {
    match json!({ "resourceType": resource_type }) {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

async fn put(store: &Store, resource_type: &str, id: &str, rows: Vec<IndexRow>) {
    store
        .write_indexed(
            Write::Update {
                resource_type: resource_type.into(),
                id: id.into(),
                resource: body(resource_type),
                if_match: None,
                method: Method::Update,
            },
            rows,
        )
        .await
        .unwrap();
}

async fn delete(store: &Store, resource_type: &str, id: &str) {
    store
        .write(Write::Delete {
            resource_type: resource_type.into(),
            id: id.into(),
            if_match: None,
        })
        .await
        .unwrap();
}

fn criterion(resource_type: &str, param: &str, param_type: ParamType, test: Test) -> Criterion {
    Criterion {
        path: Vec::new(),
        resource_type: Some(resource_type.into()),
        param: param.into(),
        param_type,
        test,
    }
}

fn query(resource_type: &str, clauses: Vec<Vec<Criterion>>) -> Query {
    Query {
        types: vec![resource_type.into()],
        clauses: clauses
            .into_iter()
            .map(|any_of| Clause { any_of })
            .collect(),
        sort: Vec::new(),
        includes: Vec::new(),
        revincludes: Vec::new(),
        total: Total::Unspecified,
        reached: Vec::new(),
    }
}

async fn page(store: &Store, query: &Query, count: usize, cursor: Option<String>) -> SearchPage {
    store
        .search(SearchRequest {
            query: query.clone(),
            count,
            cursor,
        })
        .await
        .unwrap()
}

fn ids_of(page: &SearchPage) -> Vec<String> {
    page.matches.iter().map(|v| v.id.clone()).collect()
}

/// Every match, following `next` pages of `count`.
async fn all(store: &Store, query: &Query, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = page(store, query, count, cursor).await;
        ids.extend(ids_of(&page));
        match page.next {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
}

async fn set(store: &Store, query: &Query) -> BTreeSet<String> {
    all(store, query, 1000).await.into_iter().collect()
}

fn names(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|id| id.to_string()).collect()
}

fn one(resource_type: &str, param: &str, param_type: ParamType, test: Test) -> Query {
    query(
        resource_type,
        vec![vec![criterion(resource_type, param, param_type, test)]],
    )
}

fn text(value: &str, mode: StringMatch) -> Test {
    Test::String {
        value: value.into(),
        mode,
    }
}

fn code(system: SystemMatch, code: Option<&str>) -> Test {
    Test::Token(TokenTest {
        system,
        code: code.map(Into::into),
    })
}

crate::each_backend! {
    #[tokio::test]
    async fn strings_tokens_references_and_uris(db) {
        let store = db.open();
        put(
            &store,
            "Patient",
            "a",
            vec![string("family", "Abel"), string("family", "Smith")],
        )
        .await;
        put(
            &store,
            "Patient",
            "b",
            vec![
                string("family", "abelson"),
                token("gender", Some("http://g"), "male"),
            ],
        )
        .await;
        put(
            &store,
            "Patient",
            "c",
            vec![
                string("family", "ab\u{10FFFF}x"),
                token("gender", None, "male"),
            ],
        )
        .await;
        put(
            &store,
            "Patient",
            "d",
            vec![token("gender", Some("http://other"), "female")],
        )
        .await;
        let family = |value: &str, mode| one("Patient", "family", ParamType::String, text(value, mode));
        let q = family(&search::normalize_string("abel"), StringMatch::StartsWith);
        assert_eq!(set(&store, &q).await, names(&["a", "b"]));
        assert_eq!(
            set(&store, &family("ab", StringMatch::StartsWith)).await,
            names(&["a", "b", "c"])
        );
        assert_eq!(
            set(&store, &family("ab\u{10FFFF}", StringMatch::StartsWith)).await,
            names(&["c"])
        );
        assert_eq!(
            set(&store, &family("", StringMatch::StartsWith)).await,
            names(&["a", "b", "c"])
        );
        assert_eq!(
            set(&store, &family("Abel", StringMatch::Exact)).await,
            names(&["a"])
        );
        assert_eq!(
            set(&store, &family("abel", StringMatch::Exact)).await,
            names(&[])
        );
        assert_eq!(
            set(&store, &family("mit", StringMatch::Contains)).await,
            names(&["a"])
        );
        assert_eq!(
            set(&store, &family("elso", StringMatch::Contains)).await,
            names(&["b"])
        );

        let gender = |test| one("Patient", "gender", ParamType::Token, test);
        assert_eq!(
            set(&store, &gender(code(SystemMatch::Any, Some("male")))).await,
            names(&["b", "c"])
        );
        assert_eq!(
            set(&store, &gender(code(SystemMatch::None, Some("male")))).await,
            names(&["c"])
        );
        assert_eq!(
            set(
                &store,
                &gender(code(SystemMatch::Is("http://g".into()), Some("male")))
            )
            .await,
            names(&["b"])
        );
        assert_eq!(
            set(
                &store,
                &gender(code(SystemMatch::Is("http://other".into()), None))
            )
            .await,
            names(&["d"])
        );
        assert_eq!(
            set(&store, &gender(code(SystemMatch::None, None))).await,
            names(&["c"])
        );
        assert_eq!(
            set(&store, &gender(code(SystemMatch::Any, None))).await,
            names(&["b", "c", "d"])
        );

        // :text on a token, :of-type, reference forms, :identifier.
        put(
            &store,
            "Observation",
            "o1",
            vec![
                string("code:text", "Blood pressure"),
                reference("subject", "Patient", "a"),
                row(
                    "subject",
                    0,
                    IndexValue::Reference {
                        resource_type: None,
                        id: None,
                        url: Some("http://x/Patient/9".into()),
                    },
                ),
                token("subject:identifier", Some("urn:mrn"), "123"),
                token("identifier:of-type", Some("http://v2"), "MR|555"),
                row(
                    "instantiates",
                    0,
                    IndexValue::Uri("http://acme.org/fhir/Q/1".into()),
                ),
            ],
        )
        .await;
        put(
            &store,
            "Observation",
            "o2",
            vec![
                reference("subject", "Group", "a"),
                row(
                    "instantiates",
                    0,
                    IndexValue::Uri("http://acme.org/fhir".into()),
                ),
            ],
        )
        .await;
        let obs = |param: &str, param_type, test| one("Observation", param, param_type, test);
        assert_eq!(
            set(
                &store,
                &obs(
                    "code",
                    ParamType::Token,
                    text("blood", StringMatch::StartsWith)
                )
            )
            .await,
            names(&["o1"])
        );
        let local = |resource_type: Option<&str>, id: &str| {
            Test::Reference(ReferenceTest::Local {
                resource_type: resource_type.map(Into::into),
                id: id.into(),
            })
        };
        assert_eq!(
            set(
                &store,
                &obs("subject", ParamType::Reference, local(None, "a"))
            )
            .await,
            names(&["o1", "o2"])
        );
        assert_eq!(
            set(
                &store,
                &obs("subject", ParamType::Reference, local(Some("Group"), "a"))
            )
            .await,
            names(&["o2"])
        );
        assert_eq!(
            set(
                &store,
                &obs(
                    "subject",
                    ParamType::Reference,
                    Test::Reference(ReferenceTest::Url("http://x/Patient/9".into()))
                )
            )
            .await,
            names(&["o1"])
        );
        assert_eq!(
            set(
                &store,
                &obs(
                    "subject",
                    ParamType::Reference,
                    Test::Reference(ReferenceTest::Identifier(TokenTest {
                        system: SystemMatch::Is("urn:mrn".into()),
                        code: Some("123".into())
                    }))
                )
            )
            .await,
            names(&["o1"])
        );
        assert_eq!(
            set(
                &store,
                &obs(
                    "identifier",
                    ParamType::Token,
                    Test::OfType {
                        system: "http://v2".into(),
                        code: "MR".into(),
                        value: "555".into()
                    }
                )
            )
            .await,
            names(&["o1"])
        );
        assert_eq!(
            set(
                &store,
                &obs(
                    "identifier",
                    ParamType::Token,
                    Test::OfType {
                        system: "http://v2".into(),
                        code: "MR".into(),
                        value: "55".into()
                    }
                )
            )
            .await,
            names(&[])
        );
        let uri = |value: &str, mode| {
            obs(
                "instantiates",
                ParamType::Uri,
                Test::Uri {
                    value: value.into(),
                    mode,
                },
            )
        };
        assert_eq!(
            set(&store, &uri("http://acme.org/fhir", UriMatch::Exact)).await,
            names(&["o2"])
        );
        assert_eq!(
            set(&store, &uri("http://acme.org/fhir", UriMatch::Below)).await,
            names(&["o1", "o2"])
        );
        assert_eq!(
            set(&store, &uri("http://acme.org/fhir/Q/1/x", UriMatch::Above)).await,
            names(&["o1", "o2"])
        );
        assert_eq!(
            set(&store, &uri("http://acme.org/fhi", UriMatch::Above)).await,
            names(&[])
        );

        // _id, on the resource itself.
        assert_eq!(
            set(
                &store,
                &one(
                    "Patient",
                    "_id",
                    ParamType::Token,
                    code(SystemMatch::Any, Some("b"))
                )
            )
            .await,
            names(&["b"])
        );
        // A parameter nothing was ever indexed under matches nothing, and is missing everywhere.
        assert_eq!(
            set(
                &store,
                &one(
                    "Patient",
                    "nothing",
                    ParamType::Token,
                    code(SystemMatch::Any, Some("x"))
                )
            )
            .await,
            names(&[])
        );
        assert_eq!(
            set(
                &store,
                &one("Patient", "nothing", ParamType::Token, Test::Missing(true))
            )
            .await,
            names(&["a", "b", "c", "d"])
        );
    }
}

const DAY: i64 = 86_400_000_000;

crate::each_backend! {
    #[tokio::test]
    async fn dates_and_numbers_match_exactly_as_the_prefixes_define(db) {
        let store = db.open();
        // Stored ranges around the search range [10 days, 20 days), with open ends.
        let points = [
            i64::MIN,
            0,
            5 * DAY,
            10 * DAY - 1,
            10 * DAY,
            15 * DAY,
            20 * DAY - 1,
            20 * DAY,
            20 * DAY + 1,
            21 * DAY,
            30 * DAY,
            i64::MAX,
        ];
        let mut stored = Vec::new();
        for (i, &low) in points.iter().enumerate() {
            for &high in &points[i..] {
                let id = format!("d{}", stored.len());
                put(&store, "Encounter", &id, vec![date("date", low, high)]).await;
                stored.push((id, DateRange { low, high }));
            }
        }
        let searches = [
            DateRange {
                low: 10 * DAY,
                high: 20 * DAY,
            },
            DateRange {
                low: 10 * DAY,
                high: 10 * DAY + 1,
            },
            DateRange {
                low: i64::MIN,
                high: 10 * DAY,
            },
            DateRange {
                low: 10 * DAY,
                high: i64::MAX,
            },
            DateRange {
                low: i64::MIN + 5,
                high: i64::MAX - 5,
            },
        ];
        let prefixes = [
            Prefix::Eq,
            Prefix::Ne,
            Prefix::Gt,
            Prefix::Lt,
            Prefix::Ge,
            Prefix::Le,
            Prefix::Sa,
            Prefix::Eb,
            Prefix::Ap,
        ];
        for search in searches {
            for prefix in prefixes {
                let expected: BTreeSet<String> = stored
                    .iter()
                    .filter(|(_, target)| prefix.matches_date(search, *target))
                    .map(|(id, _)| id.clone())
                    .collect();
                let q = one(
                    "Encounter",
                    "date",
                    ParamType::Date,
                    Test::Date {
                        prefix,
                        range: search,
                    },
                );
                assert_eq!(set(&store, &q).await, expected, "{prefix:?} {search:?}");
            }
        }

        // _lastUpdated: an instant, [t, t + 1).
        let versions: Vec<(String, i64)> = {
            let q = query("Encounter", vec![]);
            let page = page(&store, &q, 1000, None).await;
            page.matches
                .iter()
                .map(|v| (v.id.clone(), v.last_updated.0))
                .collect()
        };
        let middle = versions[versions.len() / 2].1;
        for search in [
            DateRange {
                low: middle,
                high: middle + 1,
            },
            DateRange {
                low: middle - 3,
                high: middle + 3,
            },
            DateRange {
                low: middle,
                high: middle,
            },
            DateRange {
                low: i64::MIN,
                high: middle,
            },
        ] {
            for prefix in prefixes {
                let expected: BTreeSet<String> = versions
                    .iter()
                    .filter(|(_, at)| {
                        prefix.matches_date(
                            search,
                            DateRange {
                                low: *at,
                                high: at + 1,
                            },
                        )
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                let q = one(
                    "Encounter",
                    "_lastUpdated",
                    ParamType::Date,
                    Test::Date {
                        prefix,
                        range: search,
                    },
                );
                assert_eq!(
                    set(&store, &q).await,
                    expected,
                    "_lastUpdated {prefix:?} {search:?}"
                );
            }
        }

        let values = [
            f64::NEG_INFINITY,
            -1.0,
            0.0,
            99.4,
            99.5,
            99.9,
            100.0,
            100.4,
            100.5,
            110.0,
            111.0,
            f64::INFINITY,
        ];
        let mut numbers = Vec::new();
        for (i, &low) in values.iter().enumerate() {
            for &high in &values[i..] {
                let id = format!("n{}", numbers.len());
                let quantity = row(
                    "value-quantity",
                    0,
                    IndexValue::Quantity {
                        range: NumberRange {
                            value: low,
                            low,
                            high,
                        },
                        system: Some("http://unitsofmeasure.org".into()),
                        code: Some(if numbers.len() % 2 == 0 { "mg" } else { "g" }.into()),
                    },
                );
                put(
                    &store,
                    "RiskAssessment",
                    &id,
                    vec![number("probability", low, high), quantity],
                )
                .await;
                numbers.push((
                    id,
                    NumberRange {
                        value: low,
                        low,
                        high,
                    },
                ));
            }
        }
        for search in [
            NumberRange {
                value: 100.0,
                low: 99.5,
                high: 100.5,
            },
            NumberRange {
                value: -1.0,
                low: -1.5,
                high: -0.5,
            },
            NumberRange {
                value: 0.0,
                low: -0.5,
                high: 0.5,
            },
        ] {
            for prefix in prefixes {
                let expected: BTreeSet<String> = numbers
                    .iter()
                    .filter(|(_, target)| prefix.matches_number(search, *target))
                    .map(|(id, _)| id.clone())
                    .collect();
                let q = one(
                    "RiskAssessment",
                    "probability",
                    ParamType::Number,
                    Test::Number {
                        prefix,
                        range: search,
                    },
                );
                assert_eq!(set(&store, &q).await, expected, "{prefix:?} {search:?}");
                let mg: BTreeSet<String> = numbers
                    .iter()
                    .enumerate()
                    .filter(|(i, (_, target))| i % 2 == 0 && prefix.matches_number(search, *target))
                    .map(|(_, (id, _))| id.clone())
                    .collect();
                let q = one(
                    "RiskAssessment",
                    "value-quantity",
                    ParamType::Quantity,
                    Test::Quantity {
                        prefix,
                        range: search,
                        system: Some("http://unitsofmeasure.org".into()),
                        code: Some("mg".into()),
                    },
                );
                assert_eq!(set(&store, &q).await, mg, "quantity {prefix:?} {search:?}");
                let q = one(
                    "RiskAssessment",
                    "value-quantity",
                    ParamType::Quantity,
                    Test::Quantity {
                        prefix,
                        range: search,
                        system: None,
                        code: None,
                    },
                );
                assert_eq!(
                    set(&store, &q).await,
                    expected,
                    "quantity {prefix:?} {search:?}"
                );
            }
        }
    }
}

crate::each_backend! {
    #[tokio::test]
    async fn and_or_missing_not_and_composites(db) {
        let store = db.open();
        put(
            &store,
            "Observation",
            "o1",
            vec![
                token("code", Some("L"), "a"),
                token("status", None, "final"),
            ],
        )
        .await;
        put(
            &store,
            "Observation",
            "o2",
            vec![
                token("code", Some("L"), "b"),
                token("status", None, "amended"),
            ],
        )
        .await;
        put(
            &store,
            "Observation",
            "o3",
            vec![token("code", Some("L"), "a"), token("code", Some("L"), "b")],
        )
        .await;
        put(&store, "Observation", "o4", vec![]).await;
        let c = |param: &str, value: &str| {
            criterion(
                "Observation",
                param,
                ParamType::Token,
                code(SystemMatch::Any, Some(value)),
            )
        };
        // OR within a clause, AND across clauses.
        assert_eq!(
            set(
                &store,
                &query("Observation", vec![vec![c("code", "a"), c("code", "b")]])
            )
            .await,
            names(&["o1", "o2", "o3"])
        );
        assert_eq!(
            set(
                &store,
                &query(
                    "Observation",
                    vec![vec![c("code", "a")], vec![c("code", "b")]]
                )
            )
            .await,
            names(&["o3"])
        );
        assert_eq!(
            set(
                &store,
                &query(
                    "Observation",
                    vec![
                        vec![c("code", "a")],
                        vec![c("status", "final"), c("status", "amended")]
                    ]
                )
            )
            .await,
            names(&["o1"])
        );
        let status = |test| criterion("Observation", "status", ParamType::Token, test);
        assert_eq!(
            set(
                &store,
                &query("Observation", vec![vec![status(Test::Missing(true))]])
            )
            .await,
            names(&["o3", "o4"])
        );
        assert_eq!(
            set(
                &store,
                &query("Observation", vec![vec![status(Test::Missing(false))]])
            )
            .await,
            names(&["o1", "o2"])
        );
        let not_a = criterion(
            "Observation",
            "code",
            ParamType::Token,
            Test::Not(Box::new(code(SystemMatch::Any, Some("a")))),
        );
        assert_eq!(
            set(&store, &query("Observation", vec![vec![not_a.clone()]])).await,
            names(&["o2", "o4"])
        );
        assert_eq!(
            set(
                &store,
                &query("Observation", vec![vec![not_a], vec![c("code", "b")]])
            )
            .await,
            names(&["o2"])
        );

        // Composite: both components from the same item (group), never from two items.
        let component = |n: usize, group: u32, value: IndexValue| {
            row(&format!("code-value-quantity${n}"), group, value)
        };
        let q = |low: f64, high: f64| IndexValue::Quantity {
            range: NumberRange {
                value: low,
                low,
                high,
            },
            system: None,
            code: Some("mm".into()),
        };
        let t = |c: &str| IndexValue::Token {
            system: Some("L".into()),
            code: Some(c.into()),
        };
        put(
            &store,
            "Observation",
            "c1",
            vec![
                component(0, 1, t("sys")),
                component(1, 1, q(120.0, 120.0)),
                component(0, 2, t("dia")),
                component(1, 2, q(80.0, 80.0)),
            ],
        )
        .await;
        put(
            &store,
            "Observation",
            "c2",
            vec![
                component(0, 1, t("sys")),
                component(1, 1, q(80.0, 80.0)),
                component(0, 2, t("dia")),
                component(1, 2, q(120.0, 120.0)),
            ],
        )
        .await;
        let composite = |c: &str, value: f64| {
            one(
                "Observation",
                "code-value-quantity",
                ParamType::Composite,
                Test::Composite(vec![
                    code(SystemMatch::Any, Some(c)),
                    Test::Quantity {
                        prefix: Prefix::Eq,
                        range: NumberRange {
                            value,
                            low: value - 0.5,
                            high: value + 0.5,
                        },
                        system: None,
                        code: None,
                    },
                ]),
            )
        };
        assert_eq!(set(&store, &composite("sys", 120.0)).await, names(&["c1"]));
        assert_eq!(set(&store, &composite("sys", 80.0)).await, names(&["c2"]));
        assert_eq!(set(&store, &composite("dia", 90.0)).await, names(&[]));
    }
}

crate::each_backend! {
    #[tokio::test]
    async fn chains_forward_and_reverse_two_levels(db) {
        let store = db.open();
        put(&store, "Organization", "org1", vec![string("name", "Acme")]).await;
        put(
            &store,
            "Organization",
            "org2",
            vec![string("name", "Other")],
        )
        .await;
        put(
            &store,
            "Patient",
            "p1",
            vec![
                string("family", "Smith"),
                reference("organization", "Organization", "org1"),
            ],
        )
        .await;
        put(
            &store,
            "Patient",
            "p2",
            vec![
                string("family", "Jones"),
                reference("organization", "Organization", "org2"),
            ],
        )
        .await;
        put(
            &store,
            "Patient",
            "p3",
            vec![
                string("family", "Smith"),
                reference("organization", "Organization", "gone"),
            ],
        )
        .await;
        put(
            &store,
            "Observation",
            "o1",
            vec![
                reference("subject", "Patient", "p1"),
                token("code", None, "x"),
            ],
        )
        .await;
        put(
            &store,
            "Observation",
            "o2",
            vec![
                reference("subject", "Patient", "p2"),
                token("code", None, "y"),
            ],
        )
        .await;
        put(
            &store,
            "Observation",
            "o3",
            vec![
                reference("subject", "Patient", "p3"),
                token("code", None, "x"),
            ],
        )
        .await;

        // Observation?subject:Patient.organization:Organization.name=acme
        let forward = Criterion {
            path: vec![
                Step::Forward {
                    param: "subject".into(),
                    target_type: "Patient".into(),
                },
                Step::Forward {
                    param: "organization".into(),
                    target_type: "Organization".into(),
                },
            ],
            resource_type: Some("Organization".into()),
            param: "name".into(),
            param_type: ParamType::String,
            test: text("acme", StringMatch::StartsWith),
        };
        assert_eq!(
            set(&store, &query("Observation", vec![vec![forward.clone()]])).await,
            names(&["o1"])
        );
        // Non-selective variant (forces the probe form).
        let mut not_forward = forward.clone();
        not_forward.test = Test::Not(Box::new(text("acme", StringMatch::StartsWith)));
        assert_eq!(
            set(&store, &query("Observation", vec![vec![not_forward]])).await,
            names(&["o2"])
        );

        // Organization?_has:Patient:organization:_has:Observation:subject:code=x
        let reverse = Criterion {
            path: vec![
                Step::Reverse {
                    source_type: "Patient".into(),
                    param: "organization".into(),
                },
                Step::Reverse {
                    source_type: "Observation".into(),
                    param: "subject".into(),
                },
            ],
            resource_type: Some("Observation".into()),
            param: "code".into(),
            param_type: ParamType::Token,
            test: code(SystemMatch::Any, Some("x")),
        };
        assert_eq!(
            set(&store, &query("Organization", vec![vec![reverse.clone()]])).await,
            names(&["org1"])
        );
        // Both forms together, one as the driver and the other probed.
        let name = criterion(
            "Organization",
            "name",
            ParamType::String,
            text("", StringMatch::StartsWith),
        );
        assert_eq!(
            set(
                &store,
                &query("Organization", vec![vec![name], vec![reverse]])
            )
            .await,
            names(&["org1"])
        );
        // Deleting the patient breaks both chains.
        delete(&store, "Patient", "p1").await;
        assert_eq!(
            set(&store, &query("Observation", vec![vec![forward]])).await,
            names(&[])
        );
    }
}

crate::each_backend! {
    #[tokio::test]
    async fn what_chains_and_has_reach_keeps_to_the_reached_clauses(db) {
        let store = db.open();
        let label = |code: &str| token("_security", Some("conf"), code);
        put(&store, "Patient", "p1", vec![string("family", "Open")]).await;
        put(&store, "Patient", "p2", vec![string("family", "Open")]).await;
        put(&store, "Patient", "p3", vec![string("family", "Hidden"), label("R")]).await;
        let observation = |patient: &str, extra: Vec<IndexRow>| {
            let mut rows = vec![reference("subject", "Patient", patient), token("code", None, "x")];
            rows.extend(extra);
            rows
        };
        put(&store, "Observation", "o1", observation("p1", vec![])).await;
        put(&store, "Observation", "o2", observation("p2", vec![label("R")])).await;
        put(&store, "Observation", "o3", observation("p3", vec![])).await;
        let unlabelled = |resource_type: &str| search::Reached {
            resource_type: resource_type.into(),
            clauses: vec![Clause {
                any_of: vec![criterion(
                    resource_type,
                    "_security",
                    ParamType::Token,
                    Test::Not(Box::new(code(SystemMatch::Is("conf".into()), Some("R")))),
                )],
            }],
        };

        // Patient?_has:Observation:subject:code=x
        let has = Criterion {
            path: vec![Step::Reverse {
                source_type: "Observation".into(),
                param: "subject".into(),
            }],
            resource_type: Some("Observation".into()),
            param: "code".into(),
            param_type: ParamType::Token,
            test: code(SystemMatch::Any, Some("x")),
        };
        let mut reverse = query("Patient", vec![vec![has.clone()]]);
        assert_eq!(set(&store, &reverse).await, names(&["p1", "p2", "p3"]));
        reverse.reached = vec![unlabelled("Observation")];
        assert_eq!(set(&store, &reverse).await, names(&["p1", "p3"]));
        // The probe form (not a driving set), and under a negation.
        let family = criterion("Patient", "family", ParamType::String, text("", StringMatch::StartsWith));
        let mut probed = query("Patient", vec![vec![family], vec![has.clone()]]);
        probed.reached = vec![unlabelled("Observation")];
        assert_eq!(set(&store, &probed).await, names(&["p1", "p3"]));

        // Observation?subject:Patient.family=Hidden
        let chain = Criterion {
            path: vec![Step::Forward {
                param: "subject".into(),
                target_type: "Patient".into(),
            }],
            resource_type: Some("Patient".into()),
            param: "family".into(),
            param_type: ParamType::String,
            test: text("hidden", StringMatch::StartsWith),
        };
        let mut forward = query("Observation", vec![vec![chain.clone()]]);
        assert_eq!(set(&store, &forward).await, names(&["o3"]));
        forward.reached = vec![unlabelled("Patient")];
        assert_eq!(set(&store, &forward).await, names(&[]));
        let mut negated = chain;
        negated.test = Test::Not(Box::new(text("hidden", StringMatch::StartsWith)));
        let mut forward = query("Observation", vec![vec![negated]]);
        forward.reached = vec![unlabelled("Patient")];
        assert_eq!(set(&store, &forward).await, names(&["o1", "o2"]));
    }
}

crate::each_backend! {
    #[tokio::test]
    async fn several_negated_codes_of_one_parameter_hold_together(db) {
        let store = db.open();
        for (id, codes) in [("a", vec!["a"]), ("b", vec!["b"]), ("ab", vec!["a", "b"]), ("c", vec!["c"]), ("none", vec![])] {
            let rows = codes
                .iter()
                .map(|code| token("code", Some("s"), code))
                .collect();
            put(&store, "Observation", id, rows).await;
        }
        let not = |code: &str| {
            vec![criterion(
                "Observation",
                "code",
                ParamType::Token,
                Test::Not(Box::new(self::code(SystemMatch::Is("s".into()), Some(code)))),
            )]
        };
        let both = query("Observation", vec![not("a"), not("b")]);
        assert_eq!(set(&store, &both).await, names(&["c", "none"]));
        let counted = page(
            &store,
            &Query {
                total: Total::Accurate,
                ..both.clone()
            },
            1,
            None,
        )
        .await;
        assert_eq!(counted.total, Some(2));
        // With a positive clause beside them, and in another system (matches nothing).
        let mut mixed = both;
        mixed.clauses.push(Clause {
            any_of: vec![criterion(
                "Observation",
                "code",
                ParamType::Token,
                self::code(SystemMatch::Any, Some("c")),
            )],
        });
        assert_eq!(set(&store, &mixed).await, names(&["c"]));
        let other = |code: &str| {
            vec![criterion(
                "Observation",
                "code",
                ParamType::Token,
                Test::Not(Box::new(self::code(SystemMatch::Is("t".into()), Some(code)))),
            )]
        };
        let any_system = vec![criterion(
            "Observation",
            "code",
            ParamType::Token,
            Test::Not(Box::new(self::code(SystemMatch::Any, Some("b")))),
        )];
        let mixed = query("Observation", vec![not("a"), other("c"), any_system]);
        assert_eq!(set(&store, &mixed).await, names(&["c", "none"]));
        let unrelated = query("Observation", vec![other("a"), other("b")]);
        assert_eq!(set(&store, &unrelated).await, names(&["a", "b", "ab", "c", "none"]));
    }
}

async fn sorted_store(db: &TestDatabase) -> Store {
    let store = db.open();
    // (id, family, birthdate day) — some missing.
    let people: [(&str, Option<&str>, Option<i64>); 8] = [
        ("p1", Some("b"), Some(3)),
        ("p2", Some("a"), Some(5)),
        ("p3", None, Some(1)),
        ("p4", Some("b"), Some(1)),
        ("p5", Some("a"), None),
        ("p6", None, None),
        ("p7", Some("c"), Some(2)),
        ("p8", Some("b"), Some(3)),
    ];
    for (id, family, day) in people {
        let mut rows = Vec::new();
        if let Some(family) = family {
            rows.push(string("family", family));
        }
        if let Some(day) = day {
            rows.push(date("birthdate", day * DAY, (day + 1) * DAY));
        }
        put(&store, "Patient", id, rows).await;
    }
    store
}

fn sorted(keys: &[(&str, ParamType, bool)]) -> Query {
    let mut q = query("Patient", vec![]);
    q.sort = keys
        .iter()
        .map(|(param, param_type, descending)| SortKey {
            param: (*param).into(),
            param_type: *param_type,
            descending: *descending,
        })
        .collect();
    q
}

crate::each_backend! {
    #[tokio::test]
    async fn sorting_with_missing_values_last_and_ties_by_rid(db) {
        let store = sorted_store(&db).await;
        let family_birth = sorted(&[
            ("family", ParamType::String, false),
            ("birthdate", ParamType::Date, true),
        ]);
        let expected = ["p2", "p5", "p1", "p8", "p4", "p7", "p3", "p6"];
        for count in [1, 2, 3, 8, 20] {
            assert_eq!(
                all(&store, &family_birth, count).await,
                expected,
                "page size {count}"
            );
        }
        let desc = sorted(&[
            ("family", ParamType::String, true),
            ("birthdate", ParamType::Date, false),
        ]);
        assert_eq!(
            all(&store, &desc, 3).await,
            ["p7", "p4", "p1", "p8", "p2", "p5", "p3", "p6"]
        );
        let by_id = sorted(&[("_id", ParamType::Token, true)]);
        assert_eq!(
            all(&store, &by_id, 3).await,
            ["p8", "p7", "p6", "p5", "p4", "p3", "p2", "p1"]
        );
        let by_updated = sorted(&[("_lastUpdated", ParamType::Date, false)]);
        assert_eq!(
            all(&store, &by_updated, 5).await,
            ["p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8"]
        );
        assert_eq!(
            all(&store, &query("Patient", vec![]), 3).await,
            ["p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8"]
        );
    }
}

crate::each_backend! {
    #[tokio::test]
    async fn keyset_pages_go_both_ways_and_survive_changes(db) {
        let store = sorted_store(&db).await;
        let q = sorted(&[
            ("family", ParamType::String, false),
            ("birthdate", ParamType::Date, true),
        ]);
        let first = page(&store, &q, 3, None).await;
        assert_eq!(ids_of(&first), ["p2", "p5", "p1"]);
        assert!(first.previous.is_none());
        let second = page(&store, &q, 3, first.next.clone()).await;
        assert_eq!(ids_of(&second), ["p8", "p4", "p7"]);
        let third = page(&store, &q, 3, second.next.clone()).await;
        assert_eq!(ids_of(&third), ["p3", "p6"]);
        assert!(third.next.is_none());
        // Back again.
        let back = page(&store, &q, 3, third.previous.clone()).await;
        assert_eq!(ids_of(&back), ["p8", "p4", "p7"]);
        let back = page(&store, &q, 3, back.previous.clone()).await;
        assert_eq!(ids_of(&back), ["p2", "p5", "p1"]);
        assert!(back.previous.is_none());
        assert!(back.next.is_some());

        // Changes between pages: a new match sorted before the boundary is not repeated or
        // shifted in; a deleted one just disappears; nothing is skipped.
        put(&store, "Patient", "p0", vec![string("family", "a")]).await;
        delete(&store, "Patient", "p4").await;
        let second = page(&store, &q, 3, first.next.clone()).await;
        assert_eq!(ids_of(&second), ["p8", "p7", "p3"]);
        put(&store, "Patient", "p9", vec![]).await;
        let third = page(&store, &q, 3, second.next.clone()).await;
        assert_eq!(ids_of(&third), ["p6", "p9"]);
        // A page emptied by deletions still links both ways.
        delete(&store, "Patient", "p9").await;
        delete(&store, "Patient", "p6").await;
        let empty = page(&store, &q, 3, second.next.clone()).await;
        assert!(empty.matches.is_empty());
        assert!(empty.next.is_none());
        let before = page(&store, &q, 3, empty.previous.clone()).await;
        assert_eq!(ids_of(&before), ["p8", "p7", "p3"]);

        // Default order, paging while writing.
        let plain = query("Patient", vec![]);
        let first = page(&store, &plain, 2, None).await;
        put(&store, "Patient", "late", vec![]).await;
        let rest = {
            let mut ids = ids_of(&first);
            let mut cursor = first.next;
            while let Some(next) = cursor {
                let page = page(&store, &plain, 2, Some(next)).await;
                ids.extend(ids_of(&page));
                cursor = page.next;
            }
            ids
        };
        assert_eq!(rest, ["p1", "p2", "p3", "p5", "p7", "p8", "p0", "late"]);

        for bad in ["nonsense", "", "YzF8YXwxfA"] {
            let error = store
                .search(SearchRequest {
                    query: q.clone(),
                    count: 3,
                    cursor: Some(bad.into()),
                })
                .await
                .unwrap_err();
            assert_eq!(
                error,
                StoreError::Invalid("invalid paging cursor".into()),
                "{bad}"
            );
        }
    }
}

crate::each_backend! {
    #[tokio::test]
    async fn totals(db) {
        let store = sorted_store(&db).await;
        let mut q = query(
            "Patient",
            vec![vec![criterion(
                "Patient",
                "family",
                ParamType::String,
                text("", StringMatch::StartsWith),
            )]],
        );
        // Unspecified: only when everything fits on the first page.
        assert_eq!(page(&store, &q, 10, None).await.total, Some(6));
        let first = page(&store, &q, 2, None).await;
        assert_eq!(first.total, None);
        assert_eq!(page(&store, &q, 10, first.next).await.total, None);
        q.total = Total::Accurate;
        assert_eq!(page(&store, &q, 2, None).await.total, Some(6));
        q.total = Total::Estimate;
        assert_eq!(page(&store, &q, 2, None).await.total, Some(6));
        q.total = Total::None;
        assert_eq!(page(&store, &q, 10, None).await.total, None);
        // count 0: the total alone.
        q.total = Total::Accurate;
        let only = page(&store, &q, 0, None).await;
        assert!(only.matches.is_empty() && only.next.is_none());
        assert_eq!(only.total, Some(6));
        let mut everything = query("Patient", vec![]);
        everything.total = Total::Accurate;
        assert_eq!(page(&store, &everything, 0, None).await.total, Some(8));
        let missing = query(
            "Patient",
            vec![vec![criterion(
                "Patient",
                "family",
                ParamType::String,
                Test::Missing(true),
            )]],
        );
        assert_eq!(
            page(
                &store,
                &Query {
                    total: Total::Accurate,
                    ..missing
                },
                1,
                None
            )
            .await
            .total,
            Some(2)
        );
    }
}

crate::each_backend! {
    #[tokio::test]
    async fn includes_revincludes_and_iterate(db) {
        let store = db.open();
        put(&store, "Organization", "org", vec![]).await;
        put(&store, "Organization", "parent", vec![]).await;
        put(
            &store,
            "Organization",
            "org",
            vec![reference("partof", "Organization", "parent")],
        )
        .await;
        put(&store, "Practitioner", "dr", vec![]).await;
        put(
            &store,
            "Patient",
            "p1",
            vec![
                reference("organization", "Organization", "org"),
                reference("general-practitioner", "Practitioner", "dr"),
            ],
        )
        .await;
        put(
            &store,
            "Patient",
            "p2",
            vec![reference("organization", "Organization", "missing")],
        )
        .await;
        put(
            &store,
            "Observation",
            "o1",
            vec![
                reference("subject", "Patient", "p1"),
                reference("performer", "Practitioner", "dr"),
            ],
        )
        .await;
        put(
            &store,
            "Observation",
            "o2",
            vec![reference("subject", "Patient", "p1")],
        )
        .await;
        put(
            &store,
            "Observation",
            "o3",
            vec![reference("subject", "Patient", "p2")],
        )
        .await;
        put(
            &store,
            "Observation",
            "o4",
            vec![reference("subject", "Patient", "p1")],
        )
        .await;
        delete(&store, "Observation", "o4").await;

        let include = |source: &str, param: Option<&str>, target: Option<&str>, iterate| Include {
            source_type: source.into(),
            param: param.map(Into::into),
            target_type: target.map(Into::into),
            iterate,
        };
        let included = |page: &SearchPage| -> Vec<String> {
            page.included
                .iter()
                .map(|v| format!("{}/{}", v.resource_type, v.id))
                .collect()
        };
        let mut q = query(
            "Patient",
            vec![vec![criterion(
                "Patient",
                "_id",
                ParamType::Token,
                code(SystemMatch::Any, Some("p1")),
            )]],
        );
        q.includes = vec![include("Patient", Some("organization"), None, false)];
        assert_eq!(
            included(&page(&store, &q, 10, None).await),
            ["Organization/org"]
        );
        q.includes = vec![include("Patient", None, None, false)];
        assert_eq!(
            included(&page(&store, &q, 10, None).await),
            ["Organization/org", "Practitioner/dr"]
        );
        q.includes = vec![include("Patient", None, Some("Practitioner"), false)];
        assert_eq!(
            included(&page(&store, &q, 10, None).await),
            ["Practitioner/dr"]
        );
        // Iterate: the organization's parent too.
        q.includes = vec![
            include("Patient", Some("organization"), None, false),
            include("Organization", Some("partof"), None, true),
        ];
        assert_eq!(
            included(&page(&store, &q, 10, None).await),
            ["Organization/org", "Organization/parent"]
        );
        // Revinclude; a deleted observation is not included.
        q.includes = Vec::new();
        q.revincludes = vec![include("Observation", Some("subject"), None, false)];
        assert_eq!(
            included(&page(&store, &q, 10, None).await),
            ["Observation/o1", "Observation/o2"]
        );
        // Revinclude then iterate include from the included observations; nothing twice,
        // and a match is never included.
        q.revincludes = vec![include("Observation", Some("subject"), None, false)];
        q.includes = vec![include("Observation", None, None, true)];
        assert_eq!(
            included(&page(&store, &q, 10, None).await),
            ["Observation/o1", "Observation/o2", "Practitioner/dr"]
        );
    }
}

crate::each_backend! {
    #[tokio::test]
    async fn index_rows_follow_updates_and_deletes(db) {
        let store = db.open();
        put(&store, "Patient", "p", vec![string("family", "old")]).await;
        put(
            &store,
            "Patient",
            "p",
            vec![string("family", "new"), string("family", "new")],
        )
        .await;
        let family = |value: &str| {
            one(
                "Patient",
                "family",
                ParamType::String,
                text(value, StringMatch::Exact),
            )
        };
        assert_eq!(set(&store, &family("old")).await, names(&[]));
        assert_eq!(set(&store, &family("new")).await, names(&["p"]));
        let rows = || db.count("sp_string");
        assert_eq!(rows(), 1);
        delete(&store, "Patient", "p").await;
        assert_eq!(rows(), 0);
        assert_eq!(set(&store, &family("new")).await, names(&[]));
        put(&store, "Patient", "p", vec![string("family", "again")]).await;
        assert_eq!(set(&store, &family("again")).await, names(&["p"]));
        assert_eq!(rows(), 1);
    }
}
