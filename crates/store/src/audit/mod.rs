//! The audit trail: an append-only, hash-chained table of AuditEvents.
//!
//! Each record is stored once, with a few columns to search on, the AuditEvent JSON,
//! and two hashes: `prev_hash`, the hash of the record before it, and `hash`, SHA-256
//! over `prev_hash` and the record's canonical form (every column, each prefixed with
//! its length). The chain order is the table order (`seq`, with no gaps); a head row
//! (`audit_head`) holds the last sequence number and hash, so records cut from the end
//! show too. Appends are serialised: on SQLite by the one writer thread, on PostgreSQL
//! by a lock on the head row, in the same transaction as the writes they record.
//!
//! [`Verification`] walks the chain and names the first broken link.

use sha2::{Digest, Sha256};

use crate::{Instant, StoreError};

/// The hash before the first record.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The start every stored AuditEvent's JSON has; the store puts the id after it.
const PREFIX: &str = r#"{"resourceType":"AuditEvent""#;

mod batch;
mod render;

pub use batch::AuditBatch;
use batch::Pending;

pub use render::{LOGIN_SUBTYPE, LOGIN_TYPE};

/// One audit record to append; the store gives it its sequence number (its id) and
/// writes its AuditEvent JSON when the trail is read.
#[derive(Clone, Debug)]
pub struct AuditRecord {
    /// When the event happened.
    pub recorded: Instant,
    /// The event type's code (`rest`, or [`LOGIN_TYPE`]).
    pub type_code: &'static str,
    /// The interaction (`read`, `search-type`, `create`, ..., or [`LOGIN_SUBTYPE`]).
    pub subtype: &'static str,
    /// `C`, `R`, `U`, `D` or `E`.
    pub action: &'static str,
    /// `0` success, `4` minor failure, `8` serious failure.
    pub outcome: &'static str,
    /// `informational` or, for break-the-glass and refusals, something higher.
    pub severity: &'static str,
    /// Who: the user, else the client (`anonymous` when unknown).
    pub agent: String,
    /// The patient concerned, `Patient/ID`, when known.
    pub patient: Option<String>,
    /// The purpose of use the caller stated.
    pub purpose: Option<String>,
    /// References of the resources concerned (`Type/id`).
    pub entities: Vec<String>,
    /// The rest of what the AuditEvent says.
    pub detail: AuditDetail,
    /// An AuditEvent an operation made itself, stored as it is instead of one written
    /// from the fields: JSON starting `{"resourceType":"AuditEvent",`, without `id`.
    pub body: Option<String>,
}

/// What an AuditEvent says beyond the searchable columns.
#[derive(Clone, Debug, Default)]
pub struct AuditDetail {
    /// The HTTP status of the answer.
    pub status: u16,
    /// The client the caller used.
    pub client: Option<String>,
    /// The agent is a user (rather than a system).
    pub user: bool,
    /// The caller's roles.
    pub roles: Vec<&'static str>,
    /// The address the request came from.
    pub address: Option<std::net::IpAddr>,
    /// The reason given with a break-the-glass purpose.
    pub reason: Option<String>,
    /// The operation's name (`$export`), for an operation.
    pub operation: Option<String>,
    /// The search's query string, for a search.
    pub query: Option<String>,
}

/// [`AuditDetail`] as the table keeps it (a small JSON object, always starting with
/// `{"status"`, so it cannot be taken for a whole AuditEvent).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct StoredDetail {
    status: u16,
    client: Option<String>,
    user: bool,
    roles: Vec<String>,
    address: Option<String>,
    reason: Option<String>,
    operation: Option<String>,
    query: Option<String>,
}

impl AuditDetail {
    /// Writes the stored text: a small JSON object without the absent parts.
    fn write_text(&self, out: &mut String) {
        let mut number = [0u8; 20];
        out.push_str(r#"{"status":"#);
        out.push_str(decimal_str(&mut number, i64::from(self.status)));
        let text = |out: &mut String, key: &str, value: &Option<String>| {
            if let Some(value) = value {
                out.push_str(key);
                render::string(out, value);
            }
        };
        text(out, r#","client":"#, &self.client);
        if self.user {
            out.push_str(r#","user":true"#);
        }
        if !self.roles.is_empty() {
            out.push_str(r#","roles":["#);
            for (index, role) in self.roles.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                render::string(out, role);
            }
            out.push(']');
        }
        match self.address {
            // Written by hand: `to_string` cost a fifth of building the record.
            Some(std::net::IpAddr::V4(address)) => {
                out.push_str(r#","address":""#);
                for (index, octet) in address.octets().into_iter().enumerate() {
                    if index > 0 {
                        out.push('.');
                    }
                    out.push_str(decimal_str(&mut number, i64::from(octet)));
                }
                out.push('"');
            }
            Some(address) => {
                out.push_str(r#","address":""#);
                out.push_str(&address.to_string());
                out.push('"');
            }
            None => {}
        }
        text(out, r#","reason":"#, &self.reason);
        text(out, r#","operation":"#, &self.operation);
        text(out, r#","query":"#, &self.query);
        out.push('}');
    }
}

/// A record as the table holds it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StoredAudit {
    pub seq: i64,
    pub recorded: i64,
    pub type_code: String,
    pub subtype: String,
    pub action: String,
    pub outcome: String,
    pub severity: String,
    pub agent: String,
    pub patient: Option<String>,
    pub purpose: Option<String>,
    /// The entity references, each followed by a space and the first preceded by one,
    /// so `instr(entity, ' Type/id ')` finds one.
    pub entity: String,
    pub body: String,
    pub prev_hash: String,
    pub hash: String,
}

/// Parts of the JSON that nearly every AuditEvent repeats (the trail's codes and their
/// systems). A stored body holds each as [`MARK`] and one letter, about a third of the
/// text; [`expand`] puts them back. The mark is a control character, which JSON text
/// never holds unescaped, so it cannot be mistaken for content.
const REPEATED: [&str; 20] = [
    r#""agent":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/extra-security-role-type","code":"dataprocessor"}]},"who":{"identifier":{"system":"urn:custodian:agent","value":"#,
    r#""source":{"observer":{"display":"custodian"},"type":[{"system":"http://terminology.hl7.org/CodeSystem/security-source-type","code":"4"}]}"#,
    r#""type":{"system":"http://terminology.hl7.org/CodeSystem/audit-event-type","code":"rest"}"#,
    r#""type":{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type","code":"#,
    r#""role":{"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"#,
    r#""subtype":[{"system":"http://hl7.org/fhir/restful-interaction","code":"#,
    r#"{"url":"urn:custodian:audit-severity","valueCode":"informational"}"#,
    r#""role":[{"coding":[{"system":"urn:custodian:role","code":"#,
    r#"{"what":{"reference":"#,
    r#","network":{"address":"#,
    r#","outcomeDesc":"HTTP "#,
    "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
    "http://terminology.hl7.org/CodeSystem/security-source-type",
    "http://terminology.hl7.org/CodeSystem/audit-event-type",
    "http://terminology.hl7.org/CodeSystem/audit-entity-type",
    "http://terminology.hl7.org/CodeSystem/object-role",
    "http://terminology.hl7.org/CodeSystem/v3-ActReason",
    "http://hl7.org/fhir/restful-interaction",
    "http://dicom.nema.org/resources/ontology/DCM",
    "urn:custodian:audit-severity",
];

/// Marks a repeated part in a stored body.
const MARK: char = '\u{1}';

/// For each byte, the parts of [`REPEATED`] that start with it (a bit per part).
const STARTS: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut index = 0;
    while index < REPEATED.len() {
        table[REPEATED[index].as_bytes()[0] as usize] |= 1 << index;
        index += 1;
    }
    table
};

/// `body` with the repeated parts marked, in one pass: at each byte only the parts
/// that start with it are tried, and the first (the longest of overlapping ones, by the
/// order of [`REPEATED`]) that matches is marked.
pub(crate) fn compact(body: &str) -> String {
    let bytes = body.as_bytes();
    let mut out = String::with_capacity(body.len());
    let mut copied = 0;
    let mut at = 0;
    while at < bytes.len() {
        let mut candidates = STARTS[bytes[at] as usize];
        let mut matched = None;
        while candidates != 0 {
            let index = candidates.trailing_zeros() as usize;
            candidates &= candidates - 1;
            if bytes[at..].starts_with(REPEATED[index].as_bytes()) {
                matched = Some(index);
                break;
            }
        }
        match matched {
            Some(index) => {
                // Every part starts with an ASCII byte, so `at` is a char boundary.
                out.push_str(&body[copied..at]);
                out.push(MARK);
                out.push(letter(index));
                at += REPEATED[index].len();
                copied = at;
            }
            None => at += 1,
        }
    }
    out.push_str(&body[copied..]);
    out
}

/// A stored body as AuditEvent JSON: the marked parts put back.
pub(crate) fn expand(stored: &str) -> String {
    if !stored.contains(MARK) {
        return stored.to_string();
    }
    let mut text = String::with_capacity(stored.len() * 3);
    let mut chars = stored.chars();
    while let Some(c) = chars.next() {
        if c != MARK {
            text.push(c);
            continue;
        }
        let code = chars.next();
        match code.and_then(|code| REPEATED.get((code as usize).wrapping_sub('A' as usize))) {
            Some(part) => text.push_str(part),
            // Not a mark this code wrote: keep it as it is (verification reads the
            // stored text, so nothing is hidden).
            None => {
                text.push(c);
                text.extend(code);
            }
        }
    }
    text
}

fn letter(index: usize) -> char {
    char::from(b'A' + index as u8)
}

impl StoredAudit {
    /// The record's AuditEvent JSON.
    pub(crate) fn render(&self) -> String {
        render::render(self)
    }

    /// SHA-256 over the previous hash and every column, in hex (see [`Columns::hash`]).
    pub(crate) fn compute_hash(&self) -> String {
        let columns = Columns {
            seq: self.seq,
            recorded: self.recorded,
            type_code: &self.type_code,
            subtype: &self.subtype,
            action: &self.action,
            outcome: &self.outcome,
            severity: &self.severity,
            agent: &self.agent,
            patient: self.patient.as_deref(),
            purpose: self.purpose.as_deref(),
            entity: &self.entity,
            body: &self.body,
            prev_hash: &self.prev_hash,
        };
        String::from_utf8_lossy(&columns.hash(&mut Vec::new())).into_owned()
    }
}

/// A record's columns, borrowed: what is stored and hashed.
pub(crate) struct Columns<'a> {
    pub seq: i64,
    pub recorded: i64,
    pub type_code: &'a str,
    pub subtype: &'a str,
    pub action: &'a str,
    pub outcome: &'a str,
    pub severity: &'a str,
    pub agent: &'a str,
    pub patient: Option<&'a str>,
    pub purpose: Option<&'a str>,
    pub entity: &'a str,
    pub body: &'a str,
    pub prev_hash: &'a str,
}

impl Columns<'_> {
    /// SHA-256 over the previous hash and every column, in lowercase hex: each column as
    /// its length in decimal, `:`, its text and `;`; a missing optional column is `-`, a
    /// present one `+` and its text. The canonical form is gathered in `canonical` (a
    /// buffer the caller may reuse) and hashed in one update (an update per part cost
    /// more than the hashing).
    pub(crate) fn hash(&self, canonical: &mut Vec<u8>) -> [u8; 64] {
        canonical.clear();
        let mut length = [0u8; 20];
        let mut field = |out: &mut Vec<u8>, prefix: &[u8], text: &[u8]| {
            out.extend_from_slice(decimal(&mut length, (prefix.len() + text.len()) as i64));
            out.push(b':');
            out.extend_from_slice(prefix);
            out.extend_from_slice(text);
            out.push(b';');
        };
        let mut number = [0u8; 20];
        field(canonical, b"", self.prev_hash.as_bytes());
        field(canonical, b"", decimal(&mut number, self.seq));
        field(canonical, b"", decimal(&mut number, self.recorded));
        for text in [
            self.type_code,
            self.subtype,
            self.action,
            self.outcome,
            self.severity,
            self.agent,
        ] {
            field(canonical, b"", text.as_bytes());
        }
        for optional in [self.patient, self.purpose] {
            match optional {
                Some(text) => field(canonical, b"+", text.as_bytes()),
                None => field(canonical, b"-", b""),
            }
        }
        field(canonical, b"", self.entity.as_bytes());
        field(canonical, b"", self.body.as_bytes());
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 64];
        for (index, byte) in Sha256::digest(&canonical[..]).into_iter().enumerate() {
            hex[2 * index] = HEX[usize::from(byte >> 4)];
            hex[2 * index + 1] = HEX[usize::from(byte & 15)];
        }
        hex
    }
}

/// [`decimal`] as text.
fn decimal_str(buffer: &mut [u8; 20], value: i64) -> &str {
    // Digits and a sign are ASCII.
    std::str::from_utf8(decimal(buffer, value)).unwrap_or("0")
}

/// `value` in decimal, as `to_string` writes it, in the end of `buffer` (20 bytes hold
/// any `i64`, sign included).
fn decimal(buffer: &mut [u8; 20], value: i64) -> &[u8] {
    let mut rest = value.unsigned_abs();
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if value < 0 {
        at -= 1;
        buffer[at] = b'-';
    }
    &buffer[at..]
}

/// Chains the records of `batch` after the head `(seq, hash)`, handing each record's
/// columns and hash to `row` (to insert it); returns the new head. Nothing is
/// allocated per record, but for an AuditEvent the caller made, which gets its id here.
pub(crate) fn chain_batch(
    batch: &AuditBatch,
    head: (i64, &str),
    mut row: impl FnMut(&Columns<'_>, &str) -> Result<(), StoreError>,
) -> Result<(i64, String), StoreError> {
    let (mut seq, head_hash) = head;
    let mut prev = [0u8; 64];
    if head_hash.len() != prev.len() || !head_hash.is_ascii() {
        return Err(StoreError::Backend(
            "the audit trail's head hash is not a SHA-256 in hex".into(),
        ));
    }
    prev.copy_from_slice(head_hash.as_bytes());
    let mut canonical = Vec::with_capacity(1024);
    for pending in batch.records() {
        let Pending { mut columns, own } = pending?;
        seq += 1;
        let own_body;
        if own {
            own_body = own_with_id(columns.body, seq)?;
            columns.body = &own_body;
        }
        columns.seq = seq;
        // Hex digits are ASCII.
        columns.prev_hash = std::str::from_utf8(&prev).unwrap_or(GENESIS);
        let hash = columns.hash(&mut canonical);
        row(&columns, std::str::from_utf8(&hash).unwrap_or(GENESIS))?;
        prev = hash;
    }
    Ok((seq, String::from_utf8_lossy(&prev).into_owned()))
}

/// The stored body of an AuditEvent a caller made: its id (the sequence number) put
/// first, and the repeated parts marked.
fn own_with_id(body: &str, seq: i64) -> Result<String, StoreError> {
    let rest = body.strip_prefix(PREFIX).ok_or_else(|| {
        StoreError::Invalid("an audit record must be an AuditEvent JSON object".into())
    })?;
    let separator = if rest.starts_with('}') { "" } else { "," };
    Ok(compact(&format!(
        r#"{PREFIX},"id":"{seq}"{separator}{}"#,
        rest.trim_start_matches(',')
    )))
}

/// [`chain_batch`] with the rows collected, for a backend that inserts them together.
pub(crate) fn chain_all(
    batch: &AuditBatch,
    head: (i64, &str),
) -> Result<(Vec<StoredAudit>, (i64, String)), StoreError> {
    let mut rows = Vec::with_capacity(batch.len());
    let head = chain_batch(batch, head, |columns, hash| {
        rows.push(StoredAudit {
            seq: columns.seq,
            recorded: columns.recorded,
            type_code: columns.type_code.to_string(),
            subtype: columns.subtype.to_string(),
            action: columns.action.to_string(),
            outcome: columns.outcome.to_string(),
            severity: columns.severity.to_string(),
            agent: columns.agent.to_string(),
            patient: columns.patient.map(str::to_string),
            purpose: columns.purpose.map(str::to_string),
            entity: columns.entity.to_string(),
            body: columns.body.to_string(),
            prev_hash: columns.prev_hash.to_string(),
            hash: hash.to_string(),
        });
        Ok(())
    })?;
    Ok((rows, head))
}

/// What a key of the deferred lookup index (`audit_key`, SQLite) stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Patient,
    Agent,
}

/// The key of a patient or an agent in the deferred lookup index: FNV-1a (64 bits)
/// over a letter for its kind and the text. It is stored, so it must never change.
/// Two texts may share a key; searches compare the column too.
pub(crate) fn lookup_key(kind: KeyKind, text: &str) -> i64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let letter = match kind {
        KeyKind::Patient => b'p',
        KeyKind::Agent => b'a',
    };
    let mut hash = OFFSET;
    for byte in std::iter::once(letter).chain(text.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash as i64
}

/// A condition of an audit search.
#[derive(Clone, Debug, PartialEq)]
pub enum AuditFilter {
    /// A column equals one of the values.
    Is(AuditColumn, Vec<String>),
    /// One of the records' entities is one of these references.
    Entity(Vec<String>),
    /// `recorded` compared with an instant: `>=`, `>`, `<=`, `<` or `=`.
    Recorded(&'static str, Instant),
}

/// A searchable column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditColumn {
    Type,
    Subtype,
    Action,
    Outcome,
    Severity,
    Agent,
    Patient,
    Purpose,
}

impl AuditColumn {
    pub(crate) fn name(self) -> &'static str {
        match self {
            AuditColumn::Type => "type",
            AuditColumn::Subtype => "subtype",
            AuditColumn::Action => "action",
            AuditColumn::Outcome => "outcome",
            AuditColumn::Severity => "severity",
            AuditColumn::Agent => "agent",
            AuditColumn::Patient => "patient",
            AuditColumn::Purpose => "purpose",
        }
    }
}

/// A search of the audit trail: every filter holds (AND); pages by sequence number.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub filters: Vec<AuditFilter>,
    /// Records per page.
    pub count: usize,
    /// Oldest first; otherwise newest first.
    pub oldest_first: bool,
    /// Continue after this sequence number (the previous page's last), in the order.
    pub after: Option<i64>,
}

/// A page of audit records.
#[derive(Clone, Debug)]
pub struct AuditPage {
    /// Sequence number and AuditEvent JSON of each record.
    pub records: Vec<(i64, String)>,
    /// The cursor of the next page, when there is one.
    pub next: Option<i64>,
}

/// The WHERE clause (possibly empty) and its text arguments for `query`, with
/// placeholders made by `placeholder(n)` for the n-th argument (from 1). Instants are
/// passed as text too and cast by the caller's SQL (`cast_int`). With `keyed`, the
/// patient and agent are looked up in the deferred index `audit_key` (SQLite), and in
/// the rows it does not cover yet.
pub(crate) fn where_clause(
    query: &AuditQuery,
    placeholder: &dyn Fn(usize) -> String,
    cast_int: &dyn Fn(String) -> String,
    keyed: bool,
) -> (String, Vec<String>) {
    let mut conditions = Vec::new();
    let mut args: Vec<String> = Vec::new();
    let next = |args: &mut Vec<String>, value: String| {
        args.push(value);
        placeholder(args.len())
    };
    for filter in &query.filters {
        match filter {
            AuditFilter::Is(column @ (AuditColumn::Patient | AuditColumn::Agent), values)
                if keyed =>
            {
                let kind = if *column == AuditColumn::Patient {
                    KeyKind::Patient
                } else {
                    KeyKind::Agent
                };
                let keys: Vec<String> = values
                    .iter()
                    .map(|value| cast_int(next(&mut args, lookup_key(kind, value).to_string())))
                    .collect();
                let list: Vec<String> = values
                    .iter()
                    .map(|value| next(&mut args, value.clone()))
                    .collect();
                // Keys may collide, so the column is compared as well.
                conditions.push(format!(
                    "seq IN (SELECT list.value \
                         FROM audit_key, json_each(audit_key.seqs) AS list \
                         WHERE audit_key.key IN ({keys}) \
                         UNION ALL SELECT seq FROM audit_event \
                         WHERE seq > (SELECT upto FROM audit_key_head)) \
                     AND {column} IN ({list})",
                    column = column.name(),
                    list = list.join(", "),
                    keys = keys.join(", "),
                ));
            }
            AuditFilter::Is(column, values) => {
                let list: Vec<String> = values
                    .iter()
                    .map(|value| next(&mut args, value.clone()))
                    .collect();
                conditions.push(format!("{} IN ({})", column.name(), list.join(", ")));
            }
            AuditFilter::Entity(references) => {
                let list: Vec<String> = references
                    .iter()
                    .map(|reference| {
                        let slot = next(&mut args, format!("% {reference} %"));
                        format!("entity LIKE {slot}")
                    })
                    .collect();
                conditions.push(format!("({})", list.join(" OR ")));
            }
            AuditFilter::Recorded(op, instant) => {
                let slot = next(&mut args, instant.0.to_string());
                conditions.push(format!("recorded {op} {}", cast_int(slot)));
            }
        }
    }
    if let Some(after) = query.after {
        let slot = next(&mut args, after.to_string());
        let op = if query.oldest_first { ">" } else { "<" };
        conditions.push(format!("seq {op} {}", cast_int(slot)));
    }
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    (clause, args)
}

/// What a walk along the chain found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    /// Records checked.
    pub count: u64,
    /// The first broken link, if any.
    pub broken: Option<BrokenLink>,
}

/// Where the chain breaks, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokenLink {
    /// The sequence number of the first record that does not check out.
    pub seq: i64,
    pub problem: String,
}

/// Checks the records one by one in table order.
pub(crate) struct ChainCheck {
    count: u64,
    last_seq: i64,
    last_hash: String,
    pub(crate) broken: Option<BrokenLink>,
}

impl ChainCheck {
    pub(crate) fn new() -> ChainCheck {
        ChainCheck {
            count: 0,
            last_seq: 0,
            last_hash: GENESIS.to_string(),
            broken: None,
        }
    }

    /// Checks the next row; false once the chain is broken.
    pub(crate) fn next(&mut self, row: &StoredAudit) -> bool {
        if self.broken.is_some() {
            return false;
        }
        let expected = self.last_seq + 1;
        let problem = if row.seq != expected {
            Some(format!(
                "expected record {expected} after record {}, found record {}: records are missing or were reordered",
                self.last_seq, row.seq
            ))
        } else if row.prev_hash != self.last_hash {
            Some(format!(
                "its prev_hash does not match the hash of record {}: a record was changed, removed or reordered",
                self.last_seq
            ))
        } else if row.compute_hash() != row.hash {
            Some("its content does not match its hash: the record was changed".to_string())
        } else {
            None
        };
        if let Some(problem) = problem {
            self.broken = Some(BrokenLink {
                seq: row.seq,
                problem,
            });
            return false;
        }
        self.count += 1;
        self.last_seq = row.seq;
        self.last_hash.clone_from(&row.hash);
        true
    }

    /// Ends the walk against the head row.
    pub(crate) fn finish(mut self, head: (i64, String)) -> Verification {
        if self.broken.is_none() && (head.0 != self.last_seq || head.1 != self.last_hash) {
            self.broken = Some(BrokenLink {
                seq: self.last_seq + 1,
                problem: format!(
                    "the chain ends at record {} but its head says {}: records were removed from the end, or the head was changed",
                    self.last_seq, head.0
                ),
            });
        }
        Verification {
            count: self.count,
            broken: self.broken,
        }
    }
}

/// Records read per page when walking the chain.
pub(crate) const VERIFY_PAGE: i64 = 2000;

#[cfg(test)]
mod tests {
    use super::*;

    fn record(body: &str) -> AuditRecord {
        AuditRecord {
            recorded: Instant(5),
            type_code: "rest",
            subtype: "read",
            action: "R",
            outcome: "0",
            severity: "informational",
            agent: "app".into(),
            patient: Some("Patient/1".into()),
            purpose: None,
            entities: vec!["Patient/1".into()],
            detail: AuditDetail::default(),
            body: Some(body.into()),
        }
    }

    #[test]
    fn chaining_sets_the_id_and_links_each_record_to_the_one_before() {
        let records = [
            record(r#"{"resourceType":"AuditEvent","action":"R"}"#),
            record(r#"{"resourceType":"AuditEvent"}"#),
        ];
        let (rows, head) = chain_all(&AuditBatch::from(&records[..]), (0, GENESIS)).unwrap();
        assert_eq!(
            rows[0].body,
            r#"{"resourceType":"AuditEvent","id":"1","action":"R"}"#
        );
        assert_eq!(rows[1].body, r#"{"resourceType":"AuditEvent","id":"2"}"#);
        assert_eq!(rows[0].entity, " Patient/1 ");
        assert_eq!(rows[1].prev_hash, rows[0].hash);
        assert_eq!(head, (2, rows[1].hash.clone()));
        let mut check = ChainCheck::new();
        assert!(rows.iter().all(|row| check.next(row)));
        assert_eq!(check.finish(head).broken, None);
    }

    #[test]
    fn a_body_that_is_not_an_audit_event_is_refused() {
        let records = [record(r#"{"resourceType":"Patient"}"#)];
        assert!(chain_all(&AuditBatch::from(&records[..]), (0, GENESIS)).is_err());
    }

    #[test]
    fn the_check_names_the_first_broken_link() {
        let records: Vec<AuditRecord> = (0..4)
            .map(|_| record(r#"{"resourceType":"AuditEvent"}"#))
            .collect();
        let (rows, head) = chain_all(&AuditBatch::from(&records[..]), (0, GENESIS)).unwrap();
        let walk = |rows: &[StoredAudit]| {
            let mut check = ChainCheck::new();
            for row in rows {
                check.next(row);
            }
            check.finish(head.clone())
        };
        assert_eq!(walk(&rows).count, 4);
        let mut changed = rows.clone();
        changed[2].agent = "someone else".into();
        assert_eq!(walk(&changed).broken.unwrap().seq, 3);
        let mut removed = rows.clone();
        removed.remove(1);
        assert_eq!(walk(&removed).broken.unwrap().seq, 3);
        let mut cut = rows.clone();
        cut.pop();
        assert_eq!(walk(&cut).broken.unwrap().seq, 4);
        let mut swapped = rows.clone();
        swapped.swap(1, 2);
        (swapped[1].seq, swapped[2].seq) = (2, 3);
        assert_eq!(walk(&swapped).broken.unwrap().seq, 2);
    }

    #[test]
    fn stored_bodies_mark_the_repeated_parts_and_read_back_whole() {
        let body = r#"{"resourceType":"AuditEvent","id":"2","extension":[{"url":"urn:custodian:audit-severity","valueCode":"informational"}],"type":{"system":"http://terminology.hl7.org/CodeSystem/audit-event-type","code":"rest"},"subtype":[{"system":"http://hl7.org/fhir/restful-interaction","code":"read"}],"action":"R","recorded":"2026-12-07T10:54:27.252774Z","outcome":"0","outcomeDesc":"HTTP 200","agent":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/extra-security-role-type","code":"dataprocessor"}]},"who":{"identifier":{"system":"urn:custodian:agent","value":"ward-app"}},"requestor":true,"role":[{"coding":[{"system":"urn:custodian:role","code":"clinician"}]}],"network":{"address":"127.0.0.1","type":"2"}}],"source":{"observer":{"display":"custodian"},"type":[{"system":"http://terminology.hl7.org/CodeSystem/security-source-type","code":"4"}]},"entity":[{"what":{"reference":"Patient/p1"},"type":{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type","code":"1"},"role":{"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"1"}}],"purposeOfEvent":[{"text":"a \\u0001A in a reason stays text"}]}"#;
        let stored = compact(body);
        assert!(
            stored.len() * 2 < body.len(),
            "{} of {} bytes",
            stored.len(),
            body.len()
        );
        assert_eq!(expand(&stored), body);
        // Text without marks, and a stray mark, read back as they are.
        assert_eq!(expand(r#"{"a":"b"}"#), r#"{"a":"b"}"#);
        assert_eq!(expand("x\u{1}"), "x\u{1}");
        assert_eq!(expand("x\u{1}z"), "x\u{1}z");
    }

    #[test]
    fn ordinary_records_keep_their_details_and_read_back_as_audit_events() {
        let record = AuditRecord {
            recorded: Instant(1_765_104_867_252_774),
            type_code: "rest",
            subtype: "search-type",
            action: "E",
            outcome: "0",
            severity: "alert",
            agent: "dr \"who\"".into(),
            patient: Some("Patient/p1".into()),
            purpose: Some("BTG".into()),
            entities: vec!["Observation/o1".into(), "Patient/p1".into()],
            detail: AuditDetail {
                status: 200,
                client: Some("ehr".into()),
                user: true,
                roles: vec!["clinician", "coder"],
                address: "10.0.0.1".parse().ok(),
                reason: Some("unconscious patient".into()),
                operation: None,
                query: Some("code=1234-5".into()),
            },
            body: None,
        };
        let (rows, _) = chain_all(&AuditBatch::from(vec![record]), (0, GENESIS)).unwrap();
        assert!(rows[0].body.len() < 200, "{}", rows[0].body);
        let json: serde_json::Value = serde_json::from_str(&rows[0].render()).unwrap();
        assert_eq!(json["resourceType"], "AuditEvent");
        assert_eq!(json["id"], "1");
        assert_eq!(json["recorded"], "2025-12-07T10:54:27.252774Z");
        assert_eq!(json["subtype"][0]["code"], "search-type");
        assert_eq!(json["outcomeDesc"], "HTTP 200");
        assert_eq!(json["extension"][0]["valueCode"], "alert");
        assert_eq!(json["extension"][1]["valueString"], "unconscious patient");
        assert_eq!(json["purposeOfEvent"][0]["coding"][0]["code"], "BTG");
        let agent = &json["agent"][0];
        assert_eq!(agent["who"]["identifier"]["value"], "dr \"who\"");
        assert_eq!(agent["type"]["coding"][0]["code"], "humanuser");
        assert_eq!(agent["altId"], "ehr");
        assert_eq!(agent["role"][1]["coding"][0]["code"], "coder");
        assert_eq!(agent["network"]["address"], "10.0.0.1");
        assert_eq!(json["entity"][0]["what"]["reference"], "Patient/p1");
        assert_eq!(json["entity"][1]["what"]["reference"], "Observation/o1");
        assert_eq!(json["entity"][2]["query"], "Y29kZT0xMjM0LTU=");
        assert_eq!(json["entity"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn details_write_the_status_and_either_kind_of_address() {
        for (address, written) in [
            ("192.168.10.255", r#""address":"192.168.10.255""#),
            ("0.0.0.0", r#""address":"0.0.0.0""#),
            ("2001:db8::1", r#""address":"2001:db8::1""#),
        ] {
            let detail = AuditDetail {
                status: 404,
                address: address.parse().ok(),
                ..AuditDetail::default()
            };
            let mut text = String::new();
            detail.write_text(&mut text);
            assert!(text.starts_with(r#"{"status":404"#), "{text}");
            assert!(text.contains(written), "{text}");
        }
    }

    #[test]
    fn lookup_keys_are_fnv1a_over_the_kind_and_the_text() {
        // FNV-1a's published value for "a", and one worked out apart from this code.
        assert_eq!(lookup_key(KeyKind::Agent, "") as u64, 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            lookup_key(KeyKind::Patient, "Patient/p1"),
            -2_610_795_783_332_444_310
        );
        assert_ne!(
            lookup_key(KeyKind::Patient, "x"),
            lookup_key(KeyKind::Agent, "x")
        );
    }

    #[test]
    fn the_hash_is_sha256_over_each_column_with_its_length() {
        // Worked out independently: every stored chain depends on this exact form.
        let row = StoredAudit {
            seq: 7,
            recorded: -12,
            type_code: "rest".into(),
            subtype: "read".into(),
            action: "R".into(),
            outcome: "0".into(),
            severity: "informational".into(),
            agent: "ana".into(),
            patient: Some("Patient/p1".into()),
            purpose: None,
            entity: " Patient/p1 ".into(),
            body: r#"{"status":200}"#.into(),
            prev_hash: GENESIS.into(),
            hash: String::new(),
        };
        assert_eq!(
            row.compute_hash(),
            "d54543ea12f24f7b4e50c9df5fac31655ae9e567f28663855514d44159c20e41"
        );
        let mut buffer = [0u8; 20];
        assert_eq!(
            decimal(&mut buffer, i64::MIN),
            i64::MIN.to_string().as_bytes()
        );
        assert_eq!(decimal(&mut buffer, 0), b"0");
    }
}
