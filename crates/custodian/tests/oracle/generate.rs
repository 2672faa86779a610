//! Queries generated from the corpus: values taken from real resources, so most queries
//! match something, with every parameter type, modifier and prefix, chains, `_has` and
//! includes.

use serde_json::Value;

use super::Corpus;

pub struct Query {
    pub kind: &'static str,
    pub resource_type: String,
    pub params: Vec<(String, String)>,
}

impl Query {
    pub fn text(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{}?{}", self.resource_type, params.join("&"))
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            Some(&items[self.below(items.len())])
        }
    }
}

const PREFIXES: [&str; 9] = ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"];

fn s(value: &Value) -> Option<String> {
    value.as_str().map(str::to_string)
}

fn strs(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// `2017-03-04T10:11:12-05:00` cut to a random precision.
fn date_at_precision(rng: &mut Rng, text: &str) -> String {
    let cuts = [4usize, 7, 10, 16, 19];
    let cut = cuts[rng.below(cuts.len())];
    if cut <= 10 || text.len() <= 10 {
        return text[..cut.min(text.len()).min(10)].to_string();
    }
    // Keep the zone for times.
    let zone = text
        .get(19..)
        .map(|rest| rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit()))
        .unwrap_or("");
    let zone = if zone.is_empty() { "Z" } else { zone };
    format!("{}{zone}", &text[..cut.min(text.len())])
}

fn local_id(reference: &Value) -> Option<String> {
    reference["reference"]
        .as_str()
        .and_then(|r| r.split('/').nth(1))
        .map(str::to_string)
}

struct Builder<'c> {
    corpus: &'c Corpus,
    rng: Rng,
    out: Vec<Query>,
}

impl<'c> Builder<'c> {
    fn sample(&mut self, resource_type: &str) -> Option<(&'c str, &'c Value)> {
        let ids = self.corpus.by_type.get(resource_type)?;
        let id = &ids[self.rng.below(ids.len())];
        let resource = self
            .corpus
            .resources
            .get(&(resource_type.to_string(), id.clone()))?;
        Some((id.as_str(), resource))
    }

    fn push(&mut self, kind: &'static str, resource_type: &str, params: &[(&str, String)]) {
        self.out.push(Query {
            kind,
            resource_type: resource_type.to_string(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        });
    }

    fn coding(&mut self, concept: &Value) -> Option<(String, String, String)> {
        let codings = concept["coding"].as_array()?;
        let coding = self.rng.pick(codings)?;
        Some((
            s(&coding["system"])?,
            s(&coding["code"])?,
            s(&coding["display"]).unwrap_or_default(),
        ))
    }

    fn prefix(&mut self) -> &'static str {
        PREFIXES[self.rng.below(PREFIXES.len())]
    }
}

pub fn generate(corpus: &Corpus, seed: u64) -> Vec<Query> {
    let mut b = Builder {
        corpus,
        rng: Rng(seed | 1),
        out: Vec::new(),
    };
    for _ in 0..12 {
        patient(&mut b);
    }
    for _ in 0..14 {
        observation(&mut b);
    }
    for _ in 0..5 {
        others(&mut b);
    }
    b.out
}

fn patient(b: &mut Builder) {
    let Some((id, p)) = b.sample("Patient") else {
        return;
    };
    let name = &p["name"][0];
    let family = s(&name["family"]).unwrap_or_default();
    let given = strs(&name["given"]);
    let cut = 1 + b.rng.below(family.chars().count().max(1));
    let prefix: String = family.chars().take(cut).collect();
    b.push("string", "Patient", &[("family", prefix.to_lowercase())]);
    b.push("string", "Patient", &[("name", prefix.to_uppercase())]);
    if let Some(first) = given.first() {
        b.push("string:exact", "Patient", &[("given:exact", first.clone())]);
        b.push(
            "string:exact",
            "Patient",
            &[("given:exact", first.to_lowercase())],
        );
        let chars: Vec<char> = first.chars().collect();
        if chars.len() > 3 {
            let middle: String = chars[1..chars.len() - 1].iter().collect();
            b.push("string:contains", "Patient", &[("name:contains", middle)]);
        }
        b.push(
            "and",
            "Patient",
            &[
                ("given", first.clone()),
                ("gender", s(&p["gender"]).unwrap_or_default()),
            ],
        );
    }
    if let Some(birth) = s(&p["birthDate"]) {
        let prefix = b.prefix();
        let date = date_at_precision(&mut b.rng, &birth);
        b.push(
            "date",
            "Patient",
            &[("birthdate", format!("{prefix}{date}"))],
        );
        let year: i32 = birth[..4].parse().unwrap_or(1970);
        b.push(
            "date range",
            "Patient",
            &[
                ("birthdate", format!("ge{}", year - 5)),
                ("birthdate", format!("lt{}", year + 5)),
            ],
        );
    }
    for identifier in p["identifier"].as_array().into_iter().flatten().take(3) {
        let (Some(system), Some(value)) = (s(&identifier["system"]), s(&identifier["value"]))
        else {
            continue;
        };
        b.push(
            "token system|code",
            "Patient",
            &[("identifier", format!("{system}|{value}"))],
        );
        b.push("token code", "Patient", &[("identifier", value.clone())]);
        b.push(
            "token |code",
            "Patient",
            &[("identifier", format!("|{value}"))],
        );
        if let Some(coding) = identifier["type"]["coding"].get(0)
            && let (Some(ts), Some(tc)) = (s(&coding["system"]), s(&coding["code"]))
        {
            b.push(
                "token:of-type",
                "Patient",
                &[("identifier:of-type", format!("{ts}|{tc}|{value}"))],
            );
        }
    }
    if let Some(phone) = s(&p["telecom"][0]["value"]) {
        b.push(
            "token contactpoint",
            "Patient",
            &[("telecom", phone.clone())],
        );
        b.push(
            "token contactpoint",
            "Patient",
            &[("phone", format!("phone|{phone}"))],
        );
    }
    if let Some(city) = s(&p["address"][0]["city"]) {
        b.push(
            "string address",
            "Patient",
            &[("address-city", city.clone())],
        );
        b.push(
            "string address",
            "Patient",
            &[("address", city.to_lowercase())],
        );
    }
    b.push("token or", "Patient", &[("gender", "female,other".into())]);
    b.push("missing", "Patient", &[("deceased", "true".into())]);
    let missing = if b.rng.below(2) == 0 { "true" } else { "false" };
    b.push(
        "missing",
        "Patient",
        &[("address-postalcode:missing", missing.into())],
    );
    b.push("_id", "Patient", &[("_id", id.to_string())]);
    b.push(
        "_lastUpdated",
        "Patient",
        &[
            ("_lastUpdated", "ge2020-01-01".into()),
            ("family", prefix.clone()),
        ],
    );
    // Reverse chains.
    if let Some((_, o)) = b.sample("Observation")
        && let Some((system, code, _)) = b.coding(&o["code"])
    {
        b.push(
            "_has",
            "Patient",
            &[("_has:Observation:patient:code", format!("{system}|{code}"))],
        );
    }
    if let Some((_, c)) = b.sample("Condition")
        && let Some((_, code, _)) = b.coding(&c["code"])
    {
        b.push(
            "_has",
            "Patient",
            &[("_has:Condition:subject:code", code.clone())],
        );
        b.push(
            "_has nested",
            "Patient",
            &[("_has:Encounter:patient:_has:Condition:encounter:code", code)],
        );
    }
    b.push(
        "_revinclude",
        "Patient",
        &[
            ("_id", id.to_string()),
            ("_revinclude", "Encounter:patient".into()),
        ],
    );
    b.push(
        "_include *",
        "Patient",
        &[("_id", id.to_string()), ("_include", "Patient:*".into())],
    );
}

fn observation(b: &mut Builder) {
    let Some((_, o)) = b.sample("Observation") else {
        return;
    };
    let patient = local_id(&o["subject"]).unwrap_or_default();
    let Some((system, code, display)) = b.coding(&o["code"]) else {
        return;
    };
    b.push(
        "token",
        "Observation",
        &[
            ("code", format!("{system}|{code}")),
            ("patient", patient.clone()),
        ],
    );
    b.push(
        "reference id",
        "Observation",
        &[
            ("subject", format!("Patient/{patient}")),
            ("code", code.clone()),
        ],
    );
    b.push(
        "reference :Type",
        "Observation",
        &[
            ("subject:Patient", patient.clone()),
            ("category", "vital-signs,laboratory".into()),
        ],
    );
    b.push(
        "token system|",
        "Observation",
        &[("code", format!("{system}|")), ("patient", patient.clone())],
    );
    b.push(
        "token:not",
        "Observation",
        &[("patient", patient.clone()), ("code:not", code.clone())],
    );
    let words: Vec<&str> = display.split_whitespace().collect();
    if let Some(word) = words.first() {
        b.push(
            "token:text",
            "Observation",
            &[
                ("code:text", word.to_lowercase()),
                ("patient", patient.clone()),
            ],
        );
    }
    if let Some(effective) = s(&o["effectiveDateTime"]) {
        let prefix = b.prefix();
        let date = date_at_precision(&mut b.rng, &effective);
        b.push(
            "date",
            "Observation",
            &[("code", code.clone()), ("date", format!("{prefix}{date}"))],
        );
        let prefix = b.prefix();
        b.push(
            "date",
            "Observation",
            &[
                ("patient", patient.clone()),
                ("date", format!("{prefix}{}", &effective[..10])),
            ],
        );
    }
    if let Some(value) = o["valueQuantity"]["value"].as_f64() {
        let unit = s(&o["valueQuantity"]["code"]).unwrap_or_default();
        let unit_system = s(&o["valueQuantity"]["system"]).unwrap_or_default();
        let prefix = b.prefix();
        let shown = format!("{value:.1}");
        b.push(
            "quantity",
            "Observation",
            &[
                ("code", code.clone()),
                (
                    "value-quantity",
                    format!("{prefix}{shown}|{unit_system}|{unit}"),
                ),
            ],
        );
        let prefix = b.prefix();
        b.push(
            "quantity",
            "Observation",
            &[
                ("patient", patient.clone()),
                ("value-quantity", format!("{prefix}{}", value.round())),
            ],
        );
        b.push(
            "composite",
            "Observation",
            &[
                ("patient", patient.clone()),
                (
                    "code-value-quantity",
                    format!("{system}|{code}$gt{}", (value * 0.9).round()),
                ),
            ],
        );
    }
    if let Some(component) = o["component"].as_array().and_then(|c| c.first())
        && let (Some((cs, cc, _)), Some(value)) = (
            b.coding(&component["code"]),
            component["valueQuantity"]["value"].as_f64(),
        )
    {
        b.push(
            "composite component",
            "Observation",
            &[
                ("patient", patient.clone()),
                (
                    "component-code-value-quantity",
                    format!("{cs}|{cc}$le{}", value.round()),
                ),
            ],
        );
    }
    // Chains.
    if let Some((_, p)) = b
        .corpus
        .resources
        .get(&("Patient".to_string(), patient.clone()))
        .map(|p| ((), p))
        && let Some(family) = s(&p["name"][0]["family"])
    {
        b.push(
            "chain",
            "Observation",
            &[
                ("subject:Patient.family", family.clone()),
                ("code", code.clone()),
            ],
        );
        b.push(
            "chain",
            "Observation",
            &[
                ("patient.name", family.to_lowercase()),
                ("category", "vital-signs".into()),
            ],
        );
    }
    if local_id(&o["encounter"]).is_some() {
        b.push(
            "chain 2-level",
            "Observation",
            &[
                ("patient", patient.clone()),
                ("encounter.service-provider.name", "a".into()),
            ],
        );
        b.push(
            "_include",
            "Observation",
            &[
                ("patient", patient.clone()),
                ("code", code.clone()),
                ("_include", "Observation:encounter".into()),
            ],
        );
        b.push(
            "_include:iterate",
            "Observation",
            &[
                ("patient", patient.clone()),
                ("code", code.clone()),
                ("_include", "Observation:encounter".into()),
                ("_include:iterate", "Encounter:service-provider".into()),
            ],
        );
    }
    b.push(
        "_total",
        "Observation",
        &[("code", code.clone()), ("_total", "accurate".into())],
    );
}

fn others(b: &mut Builder) {
    if let Some((_, c)) = b.sample("Condition") {
        let patient = local_id(&c["subject"]).unwrap_or_default();
        b.push(
            "reference bare id",
            "Condition",
            &[("patient", patient.clone())],
        );
        if let Some((system, code, _)) = b.coding(&c["code"]) {
            b.push(
                "token",
                "Condition",
                &[("code", format!("{system}|{code}"))],
            );
        }
        if let Some(onset) = s(&c["onsetDateTime"]) {
            let prefix = b.prefix();
            b.push(
                "date",
                "Condition",
                &[
                    ("patient", patient.clone()),
                    ("onset-date", format!("{prefix}{}", &onset[..7])),
                ],
            );
        }
        b.push(
            "token",
            "Condition",
            &[
                ("patient", patient.clone()),
                ("clinical-status", "resolved".into()),
            ],
        );
    }
    if let Some((_, e)) = b.sample("Encounter") {
        let patient = local_id(&e["subject"]).unwrap_or_default();
        b.push(
            "sort",
            "Encounter",
            &[("patient", patient.clone()), ("_sort", "-date".into())],
        );
        if let Some(start) = s(&e["period"]["start"]) {
            let prefix = b.prefix();
            let date = date_at_precision(&mut b.rng, &start);
            b.push(
                "date period",
                "Encounter",
                &[
                    ("date", format!("{prefix}{date}")),
                    ("patient", patient.clone()),
                ],
            );
            let prefix = b.prefix();
            b.push(
                "date period",
                "Encounter",
                &[
                    ("date", format!("{prefix}{date}")),
                    ("class", "AMB,EMER".into()),
                ],
            );
        }
        if let Some(class) = s(&e["class"]["code"]) {
            b.push(
                "token coding",
                "Encounter",
                &[("class", class), ("patient", patient.clone())],
            );
        }
        if let Some(text) = s(&e["type"][0]["text"]) {
            let word = text.split_whitespace().next().unwrap_or("").to_lowercase();
            b.push(
                "token:text",
                "Encounter",
                &[("type:text", word), ("patient", patient.clone())],
            );
        }
        b.push(
            "reference:missing",
            "Encounter",
            &[
                ("patient", patient.clone()),
                ("service-provider:missing", "false".into()),
            ],
        );
        b.push(
            "_revinclude",
            "Encounter",
            &[
                ("patient", patient.clone()),
                ("_revinclude", "Condition:encounter".into()),
            ],
        );
    }
    if let Some((_, m)) = b.sample("MedicationRequest") {
        let patient = local_id(&m["subject"]).unwrap_or_default();
        b.push(
            "token",
            "MedicationRequest",
            &[
                ("patient", patient.clone()),
                ("status", "active,stopped".into()),
            ],
        );
        if let Some(authored) = s(&m["authoredOn"]) {
            let prefix = b.prefix();
            b.push(
                "date",
                "MedicationRequest",
                &[
                    ("patient", patient),
                    ("authoredon", format!("{prefix}{}", &authored[..4])),
                ],
            );
        }
    }
    if let Some((_, i)) = b.sample("Immunization")
        && let Some((_, code, _)) = b.coding(&i["vaccineCode"])
    {
        let prefix = b.prefix();
        b.push(
            "date",
            "Immunization",
            &[("vaccine-code", code), ("date", format!("{prefix}2015"))],
        );
    }
    if let Some((_, p)) = b.sample("Practitioner") {
        if let Some(family) = s(&p["name"][0]["family"]) {
            b.push(
                "string",
                "Practitioner",
                &[("name", family.chars().take(3).collect())],
            );
        }
        if let Some(value) = s(&p["identifier"][0]["value"]) {
            b.push("token", "Practitioner", &[("identifier", value)]);
        }
    }
    if let Some((_, o)) = b.sample("Organization") {
        if let Some(name) = s(&o["name"]) {
            let word = name.split_whitespace().next().unwrap_or("").to_string();
            b.push("string", "Organization", &[("name", word.clone())]);
            b.push(
                "string:contains",
                "Organization",
                &[("name:contains", word.to_lowercase())],
            );
        }
        if let Some(city) = s(&o["address"][0]["city"]) {
            b.push("string", "Organization", &[("address-city", city)]);
        }
    }
    if let Some((_, d)) = b.sample("DiagnosticReport") {
        let patient = local_id(&d["subject"]).unwrap_or_default();
        b.push(
            "chain result",
            "DiagnosticReport",
            &[
                ("patient", patient.clone()),
                ("result.status", "final".into()),
            ],
        );
        b.push(
            "date",
            "DiagnosticReport",
            &[("patient", patient), ("issued", "ge2015-06".into())],
        );
    }
    if let Some((_, c)) = b.sample("Claim") {
        let patient = local_id(&c["patient"]).unwrap_or_default();
        if let Some(total) = c["total"]["value"].as_f64() {
            let prefix = b.prefix();
            b.push(
                "_lastUpdated prefix",
                "ExplanationOfBenefit",
                &[
                    ("patient", patient.clone()),
                    ("_lastUpdated", format!("{prefix}2000")),
                ],
            );
            b.push(
                "date",
                "Claim",
                &[
                    ("patient", patient),
                    ("created", format!("ge{}", total.round() as i64 % 20 + 2000)),
                ],
            );
        }
    }
}

/// Resources Synthea lacks, for the parameter types and elements it never uses: numbers,
/// uris, accented names, tags, profiles and security labels.
pub fn extras() -> Vec<Value> {
    let mut out = Vec::new();
    let names = [
        ("Zoë", "Müller"),
        ("José", "Núñez"),
        ("Zoe", "Muller"),
        ("ANDRÉ", "d'Été"),
        ("Björn", "Øster"),
    ];
    for (i, (given, family)) in names.iter().enumerate() {
        out.push(serde_json::json!({
            "resourceType": "Patient",
            "meta": {
                "profile": [format!("http://example.org/fhir/StructureDefinition/p{}", i % 2)],
                "tag": [{"system": "http://example.org/tags", "code": format!("t{}", i % 3)}],
                "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": if i % 2 == 0 { "N" } else { "R" }}]
            },
            "name": [{"given": [given], "family": family}],
            "birthDate": format!("19{}-0{}-1{}", 50 + i * 7, 1 + i, i)
        }));
    }
    for i in 0..12 {
        out.push(serde_json::json!({
            "resourceType": "RiskAssessment",
            "status": "final",
            "subject": {"display": "a synthetic patient"},
            "prediction": [{"probabilityDecimal": serde_json::Number::from_f64(0.05 + (i as f64) * 0.08).map(Value::Number).unwrap_or(Value::Null)}]
        }));
    }
    for i in 0..8 {
        out.push(serde_json::json!({
            "resourceType": "ValueSet",
            "status": "active",
            "url": format!("http://example.org/fhir/ValueSet/{}/v{i}", if i % 2 == 0 { "a" } else { "b" }),
            "name": format!("Set{i}")
        }));
    }
    out
}

pub fn extra_queries(out: &mut Vec<Query>) {
    let mut push = |kind: &'static str, resource_type: &str, params: &[(&str, &str)]| {
        out.push(Query {
            kind,
            resource_type: resource_type.to_string(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        });
    };
    for value in [
        "zoe", "Zoë", "muller", "MÜLLER", "jose", "nunez", "andre", "d'ete", "bjorn", "oster",
    ] {
        push("string accents", "Patient", &[("name", value)]);
    }
    push(
        "string:exact accents",
        "Patient",
        &[("family:exact", "Müller")],
    );
    push(
        "string:exact accents",
        "Patient",
        &[("family:exact", "Muller")],
    );
    push(
        "string:contains accents",
        "Patient",
        &[("name:contains", "ñe")],
    );
    for prefix in PREFIXES {
        for value in ["0.5", "0.29", "1", "0.13"] {
            push(
                "number",
                "RiskAssessment",
                &[("probability", &format!("{prefix}{value}"))],
            );
        }
    }
    push(
        "uri",
        "ValueSet",
        &[("url", "http://example.org/fhir/ValueSet/a/v2")],
    );
    push(
        "uri:below",
        "ValueSet",
        &[("url:below", "http://example.org/fhir/ValueSet/a")],
    );
    push(
        "uri:above",
        "ValueSet",
        &[("url:above", "http://example.org/fhir/ValueSet/b/v3/extra")],
    );
    push("uri:missing", "ValueSet", &[("url:missing", "false")]);
    push(
        "_profile",
        "Patient",
        &[("_profile", "http://example.org/fhir/StructureDefinition/p1")],
    );
    push("_tag", "Patient", &[("_tag", "http://example.org/tags|t1")]);
    push("_tag", "Patient", &[("_tag", "t0,t2")]);
    push("_security", "Patient", &[("_security", "R")]);
    push(
        "_security:not",
        "Patient",
        &[("_security:not", "R"), ("_tag", "t0,t1,t2")],
    );
}
