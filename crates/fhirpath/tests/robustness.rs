//! No input makes the engine panic or overflow its stack: malformed expressions are errors,
//! and odd but valid ones evaluate (or fail) cleanly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fhirpath::{Environment, Error, Expression, MAX_NESTING_DEPTH};
use serde_json::Value;

fn resource() -> Value {
    // Parsed from text so the huge number keeps its exact form (arbitrary precision).
    serde_json::from_str(
        r#"{
            "resourceType": "Patient",
            "id": "p1",
            "active": true,
            "birthDate": "1974-12-25",
            "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
            "telecom": [{"system": "phone", "value": "555"}],
            "extension": [{"url": "x", "valueDecimal": 1e400}, {"url": "y", "valueInteger": 99999999999999999999}],
            "contained": [{"resourceType": "Unknown", "foo": [1, "two", null, {"bar": true}]}]
        }"#,
    )
    .unwrap()
}

/// Compiles and evaluates, in a thread of its own so a panic or stack overflow is caught as a failure.
fn no_panic(expression: &str) -> Result<usize, Error> {
    let expression = expression.to_string();
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            let resource = resource();
            let env = Environment::new();
            Expression::compile(&expression)
                .and_then(|c| c.evaluate(&resource, &env).map(|r| r.len()))
        })
        .unwrap()
        .join()
        .unwrap_or_else(|_| panic!("panicked"))
}

const MALFORMED: &[&str] = &[
    "",
    " ",
    "(",
    ")",
    "((",
    "))",
    "[",
    "]",
    "{",
    "}",
    "{}}",
    ".",
    "..",
    "a..b",
    "a.",
    ".a",
    "a.(b)",
    "a[",
    "a[]",
    "a[1",
    "1 +",
    "+",
    "-",
    "* 2",
    "1 * * 2",
    "a and",
    "and",
    "or or",
    "div",
    "a.mod mod",
    "a is",
    "a as",
    "a is 1",
    "a.is()",
    "a.is(1, 2)",
    "where(",
    "where()",
    "where(,)",
    "f(",
    "a.f(",
    "'",
    "'abc",
    "'\\",
    "'\\u",
    "'\\u12'",
    "'\\x'",
    "`",
    "`abc",
    "%",
    "%`",
    "%'",
    "$",
    "$foo",
    "@",
    "@T",
    "@2020-",
    "@2020-1",
    "@2020-13",
    "@2020-02-31",
    "@T24:00",
    "@T12:60",
    "@2020-01-01T25",
    "@2020T12",
    "@2020-01-01T12:00+",
    "@2020-01-01T12:00+25:00",
    "@T12Z",
    "1 'mg",
    "1 'mg' 'g'",
    "1.",
    "1..2",
    "1.2.3.4",
    "0x10",
    "1e10",
    "/* ",
    "*/",
    "// only a comment",
    "!",
    "!=",
    "!~",
    "~",
    "=",
    "==",
    "<>",
    "=>",
    "a & & b",
    "a | | b",
    "a ||| b",
    "#",
    "^",
    "?",
    ";",
    "\u{0}",
    "\u{feff}a",
    "é",
    "a.é",
    "名前",
    "a\u{200b}b",
    "iif()",
    "iif(true)",
    "iif(1,2,3,4)",
    "substring()",
    "substring(1,2,3)",
    "now(1)",
    "today(1)",
    "exists(1, 2)",
    "a.b.c.d.e.f(",
    "))))))))",
    "((((((((",
    "1 2",
    "a b c",
    "true false",
    "{} {}",
    "name.where(given = )",
    "name.given.nosuch()",
    "x.ofType()",
    "x.as(1)",
    "x.ofType(a.b.c)",
    "%`vs-",
    "matches('[')",
    "'a'.matches('(?<x>')",
    "'a'.replaceMatches('(', 'b')",
];

const ODD_BUT_VALID: &[&str] = &[
    // Keywords name members after a dot (`Narrative.div`).
    "a.mod",
    "a.div div a.mod",
    "1 / 0",
    "1 div 0",
    "1 mod 0",
    "1.0 / 0.0",
    "9223372036854775807 + 1",
    "-9223372036854775807 - 2",
    "9223372036854775807 * 2",
    "(-9223372036854775807 - 1).abs()",
    "(-9223372036854775807 - 1) div -1",
    "(-9223372036854775807 - 1) mod -1",
    "79228162514264337593543950335 + 1",
    "79228162514264337593543950335 * 10",
    "79228162514264337593543950335.exp()",
    "0.0000000000000000000000000001 / 79228162514264337593543950335",
    "1000.power(1000)",
    "2.power(-100)",
    "0.power(-1)",
    "(-8).power(0.333)",
    "10.0.power(99.5)",
    "0.ln()",
    "(-1).ln()",
    "(-1).sqrt()",
    "0.log(0)",
    "1.log(1)",
    "100.log(-1)",
    "1.5.round(100)",
    "1.5.round(-1)",
    "1.lowBoundary(100)",
    "1.highBoundary(-5)",
    "@2020.lowBoundary(99)",
    "@T10.highBoundary(3)",
    "@9999-12-31 + 1 day",
    "@0001-01-01 - 1 day",
    "@2020-01-01 + 9223372036854775807 years",
    "@2020-01-01T00:00:00Z + 9223372036854775807 'ms'",
    "@2020-01-01 - (-9223372036854775807 - 1) days",
    "@T23:59:59 + 9223372036854775807 hours",
    "@2020-01-31 + 1 month",
    "@2020-02-29 + 1 year",
    "1 'zz{' = 1 'zz{'",
    "1 '(((((((((((((((((((((((m)))))))))))))))))))))' = 1 'm'",
    "1 'm9999999999' = 1 'm'",
    "1 'm2' * 1 'm-2'",
    "1 'kg' / 0 'g'",
    "1 'a' + 1 'mo'",
    "'abc'.substring(-5, 2)",
    "'abc'.substring(1, -1)",
    "'abc'.substring(9223372036854775807)",
    "'é'.indexOf('')",
    "'aé'.substring(1)",
    "'é'.toChars()",
    "''.split('')",
    "'a'.split('')",
    "'abc'.replace('', 'xyz')",
    "'x'.encode('nope')",
    "'%%%'.decode('base64')",
    "'zz'.decode('hex')",
    "'abc'.decode('hex')",
    "'ÿ'.encode('base64').decode('base64')",
    "'1 \\'mg\\''.toQuantity('kg')",
    "'1e5'.toDecimal()",
    "'-'.toInteger()",
    "'+'.toDecimal()",
    "'.5'.toDecimal()",
    "'5.'.toDecimal()",
    "'99999999999999999999'.toInteger()",
    "'2020-02-30'.toDate()",
    "'T12'.toTime()",
    "contained.foo",
    "contained.foo.bar",
    "contained.descendants()",
    "extension.value",
    "extension.value + 1",
    "descendants().descendants().count()",
    "repeat($this)",
    "repeat(children())",
    "1.repeat($this)",
    "(1|2|3).repeat($this + 1).count()",
    "name.repeat(given)",
    "$index",
    "$total",
    "aggregate($total)",
    "(1|2).aggregate($this + $total)",
    "{}.aggregate($this, 0)",
    "(1|2|3).sort(-$this)",
    "name.sort(given)",
    "trace('x', 1 / 0)",
    "%context.children()",
    "resolve()",
    "'#p1'.resolve()",
    "telecom.resolve()",
    "type().type().name",
    "children().type().namespace",
    "descendants().ofType(string).distinct().count()",
    "name.given.combine(name.given).isDistinct()",
    "(name | name | name).count()",
    "iif({}, 1)",
    "iif(true, {}, 1 / 0)",
    "select(1 / 0)",
    "where({})",
    "all({})",
    "Patient.Patient.Patient",
    "Resource.id",
    "DomainResource.text",
    "Patient.ofType(Resource)",
    "Patient.as(Resource)",
    "Patient.is(System.Patient)",
    "1.as(FHIR.integer)",
    "1 is Integer is Boolean",
];

#[test]
fn malformed_expressions_are_errors() {
    for expression in MALFORMED {
        let result = no_panic(expression);
        assert!(
            result.is_err(),
            "{expression:?} should fail, got {result:?}"
        );
    }
}

#[test]
fn odd_expressions_never_panic() {
    for expression in ODD_BUT_VALID {
        let _ = no_panic(expression);
    }
}

/// A small deterministic generator of token soup.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as usize
    }
}

#[test]
fn token_soup_never_panics() {
    const TOKENS: &[&str] = &[
        "name",
        "given",
        "Patient",
        ".",
        "(",
        ")",
        "[",
        "]",
        "0",
        "1",
        "2.5",
        "'s'",
        "'mg'",
        "{}",
        "+",
        "-",
        "*",
        "/",
        "div",
        "mod",
        "&",
        "|",
        "=",
        "!=",
        "~",
        "<",
        ">=",
        "and",
        "or",
        "xor",
        "implies",
        "in",
        "contains",
        "is",
        "as",
        "where(",
        "select(",
        "exists(",
        "first()",
        "iif(",
        ",",
        "$this",
        "$index",
        "%resource",
        "@2020",
        "@T10:00",
        "@2020-01-01T10:00Z",
        "days",
        "'wk'",
        "true",
        "false",
        "count()",
        "substring(",
        "ofType(",
        "children()",
        "descendants()",
        "repeat(",
        "aggregate(",
        "$total",
        "toString()",
        "`x`",
        "sort(",
        "not()",
    ];
    let mut rng = Lcg(42);
    let mut failures = Vec::new();
    for _ in 0..3000 {
        let len = 1 + rng.next() % 12;
        let expression: Vec<&str> = (0..len)
            .map(|_| TOKENS[rng.next() % TOKENS.len()])
            .collect();
        let expression = expression.join(" ");
        let outcome = std::panic::catch_unwind(|| {
            let resource = resource();
            let env = Environment::new();
            let _ = Expression::compile(&expression)
                .and_then(|c| c.evaluate(&resource, &env).map(|r| r.len()));
        });
        if outcome.is_err() {
            failures.push(expression);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Lcg(7);
    let alphabet: Vec<char> = "aZ09_.,()[]{}'\"`\\/*+-&|=!~<>@%$#TZ:é 名\n\t\u{0}"
        .chars()
        .collect();
    for _ in 0..5000 {
        let len = rng.next() % 24;
        let expression: String = (0..len)
            .map(|_| alphabet[rng.next() % alphabet.len()])
            .collect();
        let outcome = std::panic::catch_unwind(|| {
            let resource = resource();
            let env = Environment::new();
            let _ = Expression::compile(&expression)
                .and_then(|c| c.evaluate(&resource, &env).map(|r| r.len()));
        });
        assert!(outcome.is_ok(), "{expression:?} panicked");
    }
}

#[test]
fn deep_nesting_is_a_syntax_error_not_a_stack_overflow() {
    let n = 100_000;
    for expression in [
        format!("{}1{}", "(".repeat(n), ")".repeat(n)),
        format!("{}1", "-".repeat(n)),
        vec!["1"; n].join("+"),
        format!("a{}", ".b".repeat(n)),
        format!("{}1{}", "where(".repeat(n), ")".repeat(n)),
        format!("a{}", "[0]".repeat(n)),
        "(".repeat(n),
    ] {
        let result = no_panic(&expression);
        assert!(matches!(result, Err(Error::Syntax { .. })), "{result:?}");
    }
}

/// The deepest `prefix^n seed suffix^n` that compiles.
fn deepest(prefix: &str, seed: &str, suffix: &str) -> String {
    (1..=MAX_NESTING_DEPTH + 1)
        .rev()
        .map(|n| format!("{}{seed}{}", prefix.repeat(n), suffix.repeat(n)))
        .find(|e| Expression::compile(e).is_ok())
        .unwrap()
}

#[test]
fn the_deepest_accepted_expressions_evaluate_on_a_small_stack() {
    for (prefix, seed, suffix) in [
        ("name.where(", "true", ")"),
        ("name.select(", "given", ")"),
        ("(1 + ", "1", ")"),
        ("iif(true, ", "1", ", 2)"),
        ("-(", "1", ")"),
        ("name.where(given.exists() and ", "true", ").exists()"),
        ("(1 | ", "1", ").distinct()"),
        ("aggregate(", "$total", ", 0)"),
    ] {
        let expression = deepest(prefix, seed, suffix);
        let result = no_panic(&expression);
        assert!(
            !matches!(result, Err(Error::Syntax { .. })),
            "{prefix}: {result:?}"
        );
    }
}

#[test]
fn runaway_repeat_is_bounded() {
    let result = no_panic("1.repeat($this + 1)");
    assert!(matches!(result, Err(Error::Execution(_))), "{result:?}");
}
