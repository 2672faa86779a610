//! `custodian audit`: checks the audit trail's hash chain (`verify`) and lists
//! break-the-glass accesses (`btg`), straight from the database.

use serde_json::Value;
use store::{AuditColumn, AuditFilter, AuditQuery, Instant, Store};

#[derive(clap::Subcommand)]
pub enum AuditCommand {
    /// Walk the audit trail's hash chain: report how many records check out, or the
    /// first broken link (a record changed, removed or reordered) and fail.
    Verify(DatabaseArgs),
    /// List every break-the-glass access since a date: when, who, patient, what, reason.
    Btg(BtgArgs),
}

#[derive(clap::Args)]
pub struct DatabaseArgs {
    /// The database: sqlite:PATH or postgres://USER@HOST:PORT/DATABASE.
    #[arg(
        long,
        env = "CUSTODIAN_DATABASE",
        default_value = "sqlite:custodian-data"
    )]
    database: String,
}

#[derive(clap::Args)]
pub struct BtgArgs {
    /// The first date (or instant) to list, e.g. 2026-12-01 or 2026-12-01T08:00:00Z.
    #[arg(long)]
    since: String,
    #[command(flatten)]
    database: DatabaseArgs,
}

pub fn run(command: AuditCommand) -> Result<(), String> {
    let runtime = crate::runtime()?;
    runtime.block_on(async move {
        match command {
            AuditCommand::Verify(args) => verify(&args).await,
            AuditCommand::Btg(args) => btg(&args).await,
        }
    })
}

async fn open(args: &DatabaseArgs) -> Result<Store, String> {
    Store::connect(&args.database)
        .await
        .map_err(|error| error.to_string())
}

async fn verify(args: &DatabaseArgs) -> Result<(), String> {
    let store = open(args).await?;
    let verification = store
        .audit_verify()
        .await
        .map_err(|error| error.to_string())?;
    match verification.broken {
        None => {
            println!(
                "audit trail OK: {} records, every link checks out",
                verification.count
            );
            Ok(())
        }
        Some(broken) => Err(format!(
            "audit trail BROKEN at record {}: {} ({} records before it check out)",
            broken.seq, broken.problem, verification.count
        )),
    }
}

/// Records per page while listing.
const PAGE: usize = 500;

async fn btg(args: &BtgArgs) -> Result<(), String> {
    let since = Instant::parse_fhir_period(&args.since)
        .map_err(|reason| format!("--since: {reason}"))?
        .start;
    let store = open(&args.database).await?;
    let mut query = AuditQuery {
        filters: vec![
            AuditFilter::Is(AuditColumn::Purpose, vec!["BTG".into()]),
            AuditFilter::Recorded(">=", since),
        ],
        count: PAGE,
        oldest_first: true,
        after: None,
    };
    println!("when\twho\tpatient\twhat\toutcome\treason");
    let mut listed = 0usize;
    loop {
        let page = store
            .audit_search(query.clone())
            .await
            .map_err(|error| error.to_string())?;
        for (_, body) in &page.records {
            println!("{}", line(body));
            listed += 1;
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    eprintln!(
        "{listed} break-the-glass accesses since {}",
        since.to_fhir()
    );
    Ok(())
}

/// One tab-separated line for a break-the-glass AuditEvent.
fn line(body: &str) -> String {
    let event: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let text = |value: &Value| {
        value
            .as_str()
            .unwrap_or("")
            .replace(['\t', '\n', '\r'], " ")
    };
    let when = text(&event["recorded"]);
    let agent = &event["agent"][0];
    let who = match agent["altId"].as_str() {
        Some(client) if client != agent["who"]["identifier"]["value"] => {
            format!(
                "{} (client {client})",
                text(&agent["who"]["identifier"]["value"])
            )
        }
        _ => text(&agent["who"]["identifier"]["value"]),
    };
    let entities = event["entity"].as_array().cloned().unwrap_or_default();
    let patient = entities
        .iter()
        .find(|entity| entity["role"]["code"] == "1")
        .map(|entity| text(&entity["what"]["reference"]))
        .unwrap_or_default();
    let subtypes: Vec<String> = event["subtype"]
        .as_array()
        .map(|codes| codes.iter().map(|code| text(&code["code"])).collect())
        .unwrap_or_default();
    let mut what = subtypes.join(" ");
    for entity in &entities {
        if entity["role"]["code"] == "4" {
            what.push(' ');
            what.push_str(&text(&entity["what"]["reference"]));
        }
    }
    let outcome = match event["outcome"].as_str() {
        Some("0") => "success".to_string(),
        Some(code) => format!("failure {code} ({})", text(&event["outcomeDesc"])),
        None => String::new(),
    };
    let reason = text(&event["purposeOfEvent"][0]["text"]);
    format!("{when}\t{who}\t{patient}\t{what}\t{outcome}\t{reason}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_break_the_glass_line_names_when_who_patient_what_and_why() {
        let body = r#"{"resourceType":"AuditEvent","id":"7","subtype":[{"code":"read"}],"recorded":"2026-12-07T09:00:00.000000Z","outcome":"0","purposeOfEvent":[{"text":"unconscious, no consent on file"}],"agent":[{"who":{"identifier":{"value":"dr-who"}},"altId":"ehr"}],"entity":[{"what":{"reference":"Patient/p1"},"role":{"code":"1"}},{"what":{"reference":"Observation/o1"},"role":{"code":"4"}}]}"#;
        assert_eq!(
            line(body),
            "2026-12-07T09:00:00.000000Z\tdr-who (client ehr)\tPatient/p1\tread Observation/o1\tsuccess\tunconscious, no consent on file"
        );
    }
}
