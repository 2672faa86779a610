//! Audit records waiting to be chained, packed one after another in one buffer.
//!
//! A server makes a record per request and the store chains them on one thread, a
//! few thousand at a time. As separate values each record was a dozen allocations
//! made on a request thread and freed on the writer's; packed, a record costs no
//! allocation at all, and the writer reads its columns in place.
//!
//! Each record is its instant (8 bytes), then its texts, each as a length (4 bytes)
//! and UTF-8; an absent optional text has the length `u32::MAX`. The body comes last,
//! after a tag: the record's detail, ready to store, or an AuditEvent of its own, which
//! gets its id when it is chained.

use crate::StoreError;

use super::{AuditRecord, Columns};

/// Marks an absent optional text.
const ABSENT: u32 = u32::MAX;
/// The body is the stored detail.
const DETAIL: u8 = 0;
/// The body is an AuditEvent the caller made, without its id.
const OWN: u8 = 1;

/// Records to append, packed (see the module documentation).
#[derive(Debug, Default)]
pub struct AuditBatch {
    bytes: Vec<u8>,
    count: usize,
    /// Reused for each record's detail text.
    scratch: String,
}

/// A packed record, read in place: its columns before it is chained (`seq` 0, no
/// `prev_hash`), and whether its body is an AuditEvent of the caller's own, which gets
/// its id when chained; otherwise the body is the stored detail.
pub(crate) struct Pending<'a> {
    pub columns: Columns<'a>,
    pub own: bool,
}

impl AuditBatch {
    pub fn new() -> AuditBatch {
        AuditBatch::default()
    }

    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Empties the batch, keeping its room.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.count = 0;
    }

    /// Packs `record` after the others.
    pub fn push(&mut self, record: &AuditRecord) {
        let bytes = &mut self.bytes;
        bytes.extend_from_slice(&record.recorded.0.to_le_bytes());
        for text in [
            record.type_code,
            record.subtype,
            record.action,
            record.outcome,
            record.severity,
            &record.agent,
        ] {
            put(bytes, Some(text));
        }
        put(bytes, record.patient.as_deref());
        put(bytes, record.purpose.as_deref());
        // The entity column: " a b " (see `StoredAudit::entity`), or empty.
        if record.entities.is_empty() {
            put(bytes, Some(""));
        } else {
            let length: usize = record.entities.iter().map(|e| e.len() + 1).sum::<usize>() + 1;
            bytes.extend_from_slice(&length_of(length).to_le_bytes());
            for reference in &record.entities {
                bytes.push(b' ');
                bytes.extend_from_slice(reference.as_bytes());
            }
            bytes.push(b' ');
        }
        match &record.body {
            Some(body) => {
                bytes.push(OWN);
                put(bytes, Some(body));
            }
            None => {
                bytes.push(DETAIL);
                self.scratch.clear();
                record.detail.write_text(&mut self.scratch);
                put(bytes, Some(&self.scratch));
            }
        }
        self.count += 1;
    }

    /// The records, in the order they were pushed.
    pub(crate) fn records(&self) -> Records<'_> {
        Records {
            bytes: &self.bytes,
            at: 0,
        }
    }
}

impl From<&[AuditRecord]> for AuditBatch {
    fn from(records: &[AuditRecord]) -> AuditBatch {
        let mut batch = AuditBatch::new();
        for record in records {
            batch.push(record);
        }
        batch
    }
}

impl From<Vec<AuditRecord>> for AuditBatch {
    fn from(records: Vec<AuditRecord>) -> AuditBatch {
        AuditBatch::from(records.as_slice())
    }
}

/// A length as packed. Texts are far below 4 GiB (request bodies are capped well
/// below); a longer one would be cut by `put`, never wrap.
fn length_of(length: usize) -> u32 {
    u32::try_from(length).unwrap_or(ABSENT - 1).min(ABSENT - 1)
}

fn put(bytes: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => {
            let length = length_of(text.len());
            bytes.extend_from_slice(&length.to_le_bytes());
            bytes.extend_from_slice(&text.as_bytes()[..length as usize]);
        }
        None => bytes.extend_from_slice(&ABSENT.to_le_bytes()),
    }
}

/// Reads the records of a batch.
pub(crate) struct Records<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Records<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], StoreError> {
        let end = self
            .at
            .checked_add(count)
            .filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            return Err(StoreError::Invalid(
                "a packed audit record is cut short".into(),
            ));
        };
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn number<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn optional(&mut self) -> Result<Option<&'a str>, StoreError> {
        let length = u32::from_le_bytes(self.number()?);
        if length == ABSENT {
            return Ok(None);
        }
        let text = self.take(length as usize)?;
        // Packed from `&str`s; checked all the same, so a fault is reported.
        std::str::from_utf8(text)
            .map(Some)
            .map_err(|_| StoreError::Invalid("a packed audit record is not UTF-8".into()))
    }

    fn text(&mut self) -> Result<&'a str, StoreError> {
        self.optional()?
            .ok_or_else(|| StoreError::Invalid("a packed audit record lacks a text".into()))
    }

    fn record(&mut self) -> Result<Pending<'a>, StoreError> {
        let recorded = i64::from_le_bytes(self.number()?);
        let mut columns = Columns {
            seq: 0,
            recorded,
            type_code: self.text()?,
            subtype: self.text()?,
            action: self.text()?,
            outcome: self.text()?,
            severity: self.text()?,
            agent: self.text()?,
            patient: self.optional()?,
            purpose: self.optional()?,
            entity: self.text()?,
            body: "",
            prev_hash: "",
        };
        let own = match self.number::<1>()? {
            [DETAIL] => false,
            [OWN] => true,
            _ => {
                return Err(StoreError::Invalid(
                    "a packed audit record has an unknown body".into(),
                ));
            }
        };
        columns.body = self.text()?;
        Ok(Pending { columns, own })
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Pending<'a>, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.bytes.len() {
            return None;
        }
        let record = self.record();
        if record.is_err() {
            // Stop after the first fault.
            self.at = self.bytes.len();
        }
        Some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Instant;
    use crate::audit::AuditDetail;

    fn record(agent: &str, entities: &[&str], body: Option<&str>) -> AuditRecord {
        AuditRecord {
            recorded: Instant(-42),
            type_code: "rest",
            subtype: "read",
            action: "R",
            outcome: "0",
            severity: "informational",
            agent: agent.into(),
            patient: None,
            purpose: Some("TREAT".into()),
            entities: entities.iter().map(|e| e.to_string()).collect(),
            detail: AuditDetail {
                status: 200,
                ..AuditDetail::default()
            },
            body: body.map(str::to_string),
        }
    }

    #[test]
    fn records_read_back_as_they_were_packed() {
        let mut batch = AuditBatch::new();
        batch.push(&record("ana", &["Patient/1", "Observation/ö"], None));
        batch.push(&record("", &[], Some(r#"{"resourceType":"AuditEvent"}"#)));
        assert_eq!(batch.len(), 2);
        let records: Vec<Pending<'_>> = batch.records().collect::<Result<_, _>>().unwrap();
        assert_eq!(records.len(), 2);
        let first = &records[0].columns;
        assert_eq!(first.recorded, -42);
        assert_eq!(
            (first.type_code, first.subtype, first.action, first.outcome),
            ("rest", "read", "R", "0")
        );
        assert_eq!((first.severity, first.agent), ("informational", "ana"));
        assert_eq!((first.patient, first.purpose), (None, Some("TREAT")));
        assert_eq!(first.entity, " Patient/1 Observation/ö ");
        assert_eq!((first.body, records[0].own), (r#"{"status":200}"#, false));
        let second = &records[1].columns;
        assert_eq!((second.agent, second.entity), ("", ""));
        assert_eq!(
            (second.body, records[1].own),
            (r#"{"resourceType":"AuditEvent"}"#, true)
        );
        batch.clear();
        assert!(batch.is_empty() && batch.records().next().is_none());
    }

    #[test]
    fn a_cut_batch_is_an_error_not_a_panic() {
        let mut batch = AuditBatch::new();
        batch.push(&record("ana", &["Patient/1"], None));
        for keep in 0..batch.bytes.len() {
            let cut = Records {
                bytes: &batch.bytes[..keep],
                at: 0,
            };
            let read: Vec<_> = cut.collect();
            assert!(
                keep == 0 || read.iter().any(Result::is_err),
                "cut at {keep}"
            );
        }
    }
}
