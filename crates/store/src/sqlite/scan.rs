//! Scans for bulk export (see `crate::scan`): a connection of its own holding one read
//! transaction (one snapshot), a plan per type, and keyset pages in `rid` order.
//!
//! Each type's page is one statement: the `(type, deleted)` index yields its resources in
//! `rid` order from the last page's boundary on, each row joins its current version for
//! the body, and the patient and `_typeFilter` conditions are probed per row through the
//! rid-first keys of the index tables, so nothing is read whole or sorted.

use std::sync::Arc;

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params_from_iter};

use super::reader::{SqliteReader, sqlite_value};
use super::{SqliteStore, body_at, params::ParamIds, schema};
use crate::crypt::Keyring;
use crate::{Instant, Patients, ScanRequest, Scanned, StoreError, query};

/// Resources per page.
const PAGE_ROWS: usize = 2048;

/// One type's page query and what it needs.
struct TypePlan {
    resource_type: String,
    /// `SELECT rid, id, body ...`; arguments: the type, the rid to continue after, then
    /// `args`, then the page size.
    sql: String,
    args: Vec<SqlValue>,
    estimate: u64,
}

pub(crate) struct SqliteScan {
    connection: Connection,
    plans: Vec<TypePlan>,
    /// The plan being read, and the last rid it gave.
    current: usize,
    after_rid: i64,
    transaction_time: Instant,
    keys: Arc<Keyring>,
}

impl SqliteStore {
    pub(crate) fn scan(&self, request: &ScanRequest) -> Result<SqliteScan, StoreError> {
        // A reader has a small page cache and no memory map, so one pass over
        // everything keeps memory flat.
        let connection = schema::open_reader(&self.path)?;
        // Deferred: the snapshot starts at the first read, the one just below.
        connection.execute_batch("BEGIN")?;
        let newest: Option<i64> = connection
            .query_row(
                "SELECT last_updated FROM resource_version ORDER BY seq DESC LIMIT 1",
                [],
                |row| row.get(0),
            )
            .optional()?;
        let transaction_time = newest.map_or_else(Instant::now, Instant);
        let mut types = if request.types.is_empty() {
            stored_types(&connection)?
        } else {
            request.types.clone()
        };
        types.sort();
        types.dedup();
        let mut plans = Vec::with_capacity(types.len());
        for resource_type in types {
            if let Some(plan) = plan(
                &connection,
                &self.params,
                &self.keys,
                request,
                resource_type,
            )? {
                plans.push(plan);
            }
        }
        Ok(SqliteScan {
            connection,
            plans,
            current: 0,
            after_rid: i64::MIN,
            transaction_time,
            keys: self.keys.clone(),
        })
    }
}

impl SqliteScan {
    pub(crate) fn transaction_time(&self) -> Instant {
        self.transaction_time
    }

    pub(crate) fn estimate(&self) -> u64 {
        self.plans.iter().map(|plan| plan.estimate).sum()
    }

    pub(crate) fn next_page(&mut self) -> Result<Option<Vec<Scanned>>, StoreError> {
        while let Some(plan) = self.plans.get(self.current) {
            let mut args = Vec::with_capacity(plan.args.len() + 3);
            args.push(SqlValue::Text(plan.resource_type.clone()));
            args.push(SqlValue::Integer(self.after_rid));
            args.extend(plan.args.iter().cloned());
            args.push(SqlValue::Integer(PAGE_ROWS as i64));
            let mut page = Vec::with_capacity(PAGE_ROWS);
            let mut last_rid = None;
            {
                let mut statement = self.connection.prepare_cached(&plan.sql)?;
                let mut rows = statement.query(params_from_iter(args.iter()))?;
                while let Some(row) = rows.next()? {
                    last_rid = Some(row.get::<_, i64>(0)?);
                    page.push(Scanned {
                        resource_type: plan.resource_type.clone(),
                        id: row.get(1)?,
                        body: body_at(row, 2, &self.keys)?.unwrap_or_default(),
                    });
                }
            }
            match last_rid {
                Some(rid) if page.len() == PAGE_ROWS => self.after_rid = rid,
                _ => {
                    self.current += 1;
                    self.after_rid = i64::MIN;
                }
            }
            if !page.is_empty() {
                return Ok(Some(page));
            }
        }
        Ok(None)
    }
}

/// Every type with a resource row, in name order: one index seek per type.
fn stored_types(connection: &Connection) -> Result<Vec<String>, StoreError> {
    let mut statement = connection.prepare("SELECT min(type) FROM resource WHERE type > ?1")?;
    let mut types: Vec<String> = Vec::new();
    loop {
        let after = types.last().map_or("", String::as_str);
        let next: Option<String> = statement.query_row([after], |row| row.get(0))?;
        match next {
            Some(resource_type) => types.push(resource_type),
            None => return Ok(types),
        }
    }
}

/// The page query of one type, or `None` when the request can select none of it (a
/// type outside the Patient compartment in a patient-level scan).
fn plan(
    connection: &Connection,
    params: &ParamIds,
    keys: &Keyring,
    request: &ScanRequest,
    resource_type: String,
) -> Result<Option<TypePlan>, StoreError> {
    let mut sql = String::from(
        "SELECT r.rid, r.id, v.body FROM resource r CROSS JOIN resource_version v ON v.seq = r.seq
         WHERE r.type = ? AND r.deleted = 0 AND r.rid > ?",
    );
    let mut args = Vec::new();
    if let Some(since) = request.since {
        // `+`: keep it off the (type, last_updated) index, so the rows come in rid order.
        sql.push_str(" AND +r.last_updated > ?");
        args.push(SqlValue::Integer(since.0));
    }
    if let Some(patients) = &request.patients {
        let Some((condition, condition_args)) =
            patient_condition(connection, params, &resource_type, patients)?
        else {
            return Ok(None);
        };
        sql.push_str(" AND ");
        sql.push_str(&condition);
        args.extend(condition_args);
    }
    let mut filters = request
        .filters
        .iter()
        .filter(|filter| filter.resource_type == resource_type)
        .peekable();
    if filters.peek().is_some() {
        sql.push_str(" AND (0");
        for filter in filters {
            let condition =
                query::condition(&SqliteReader::new(connection, params, keys), &filter.query)?;
            sql.push_str(" OR ");
            sql.push_str(&condition.text);
            args.extend(condition.args.into_iter().map(sqlite_value));
        }
        sql.push(')');
    }
    sql.push_str(" ORDER BY r.rid LIMIT ?");

    let estimate: i64 = match request.since {
        Some(since) => connection
            .prepare_cached(
                "SELECT count(*) FROM resource WHERE type = ?1 AND last_updated > ?2 AND deleted = 0",
            )?
            .query_row((&resource_type, since.0), |row| row.get(0))?,
        None => connection
            .prepare_cached("SELECT count(*) FROM resource WHERE type = ?1 AND deleted = 0")?
            .query_row([&resource_type], |row| row.get(0))?,
    };
    Ok(Some(TypePlan {
        resource_type,
        sql,
        args,
        estimate: u64::try_from(estimate).unwrap_or(0),
    }))
}

/// "`r` is in the Patient compartment of one of `patients`": a reference to the patient
/// in one of the type's compartment parameters, or, for a Patient, being one of them.
/// `None` when the type is not in the Patient compartment.
fn patient_condition(
    connection: &Connection,
    params: &ParamIds,
    resource_type: &str,
    patients: &Patients,
) -> Result<Option<(String, Vec<SqlValue>)>, StoreError> {
    let Some(compartment) = search::compartment("Patient", "", resource_type) else {
        return Ok(None);
    };
    let mut pids = Vec::new();
    for criterion in &compartment.any_of {
        if criterion.param_type == search::ParamType::Reference
            && let Some(pid) = params.lookup(connection, resource_type, &criterion.param)?
        {
            pids.push(pid.to_string());
        }
    }
    let ids = match patients {
        Patients::All if resource_type == "Patient" => return Ok(Some(("1".into(), Vec::new()))),
        Patients::All => None,
        Patients::Only(ids) => Some(
            serde_json::to_string(ids)
                .map_err(|error| StoreError::Invalid(format!("patient ids: {error}")))?,
        ),
    };
    let mut args = Vec::new();
    let mut condition = String::from("(0");
    if resource_type == "Patient"
        && let Some(ids) = &ids
    {
        condition.push_str(" OR r.id IN (SELECT value FROM json_each(?))");
        args.push(SqlValue::Text(ids.clone()));
    }
    if !pids.is_empty() {
        // pids are integers from the store, not input: safe to inline.
        condition.push_str(&format!(
            " OR EXISTS (SELECT 1 FROM sp_reference x WHERE x.rid = r.rid AND x.pid IN ({}) \
             AND x.target_type = 'Patient'",
            pids.join(", ")
        ));
        if let Some(ids) = ids {
            condition.push_str(" AND x.target_id IN (SELECT value FROM json_each(?))");
            args.push(SqlValue::Text(ids));
        }
        condition.push(')');
    }
    condition.push(')');
    Ok(Some((condition, args)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.
mod tests {
    use serde_json::{Value, json};

    use crate::{Instant, Method, Patients, ScanRequest, Store, Write};

    fn open() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite:{}", dir.path().display())).unwrap();
        (store, dir)
    }

    fn put(resource: Value) -> Write {
        let Value::Object(resource) = resource else {
            unreachable!()
        };
        Write::Update {
            resource_type: resource["resourceType"].as_str().unwrap().to_string(),
            id: resource["id"].as_str().unwrap().to_string(),
            resource,
            if_match: None,
            method: Method::Update,
        }
    }

    fn observation(id: &str, patient: &str, code: &str) -> Value {
        json!({"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": format!("Patient/{patient}")}})
    }

    #[tokio::test]
    async fn pages_walk_the_type_index_in_rid_order() {
        let (store, dir) = open();
        store
            .write_all(vec![put(observation("o", "p", "1-1"))])
            .await
            .unwrap();
        let request = ScanRequest {
            since: Some(Instant(0)),
            patients: Some(Patients::Only(vec!["p".into()])),
            ..ScanRequest::default()
        };
        let scan = store.scan(&request).unwrap();
        let crate::scan::ScanBackend::Sqlite(scan) = &scan.backend else {
            panic!("a SQLite store made another backend's scan");
        };
        let plan = &scan.plans[0];
        let connection = super::schema::open_reader(&dir.path().join("custodian.db")).unwrap();
        let mut statement = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {}", plan.sql))
            .unwrap();
        let mut args = vec![
            rusqlite::types::Value::Text("Observation".into()),
            rusqlite::types::Value::Integer(0),
        ];
        args.extend(plan.args.iter().cloned());
        args.push(rusqlite::types::Value::Integer(10));
        let details: Vec<String> = statement
            .query_map(rusqlite::params_from_iter(args.iter()), |row| row.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let details = details.join("\n");
        assert!(details.contains("resource_type_deleted"), "{details}");
        assert!(!details.contains("TEMP B-TREE"), "{details}");
    }
}
