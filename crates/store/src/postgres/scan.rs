//! Scans for bulk export in PostgreSQL (see `crate::scan`): a connection of its own,
//! outside the pool, holding one read-only repeatable-read transaction (one snapshot)
//! for as long as the scan lives; a plan per type; keyset pages in `rid` order.
//! Dropping the scan closes the connection, which ends the transaction.

use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;

use super::horizon::Times;
use super::reader::{PgReader, numbered, typed};
use super::{PostgresStore, block_on, connect, error};
use crate::params::ParamIds;
use crate::query::{Sql, Value};
use crate::{Instant, Patients, ScanRequest, Scanned, StoreError, query};

/// Resources per page.
const PAGE_ROWS: i64 = 2048;

/// One type's page query: `?` for the type and the rid to continue after, then
/// `args`, then the page size.
struct TypePlan {
    resource_type: String,
    sql: String,
    args: Vec<Value>,
    estimate: u64,
}

pub(crate) struct PostgresScan {
    handle: Handle,
    client: Arc<tokio_postgres::Client>,
    plans: Arc<Vec<TypePlan>>,
    current: usize,
    after_rid: i64,
    transaction_time: Instant,
}

impl PostgresStore {
    pub(crate) fn scan(&self, request: &ScanRequest) -> Result<PostgresScan, StoreError> {
        let handle = self.handle.clone();
        let config = self.config.clone();
        let params = self.params.clone();
        let request = request.clone();
        let times = self.times.clone();
        // Planning looks up pids synchronously, as a search does: on a blocking thread.
        let opened = block_on(&self.handle, async move {
            let blocking = handle.clone();
            blocking
                .spawn_blocking(move || open(&handle, &config, &params, &request, &times))
                .await
        })?;
        opened.map_err(|failure| StoreError::Backend(format!("scan task failed: {failure}")))?
    }
}

fn open(
    handle: &Handle,
    config: &tokio_postgres::Config,
    params: &ParamIds,
    request: &ScanRequest,
    times: &Mutex<Times>,
) -> Result<PostgresScan, StoreError> {
    let client = handle.block_on(connect(config))?;
    // Before the snapshot, and after (see `super::horizon`).
    let start = times
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .read_start();
    handle
        .block_on(client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        .map_err(error)?;
    let reader = PgReader::in_transaction(handle, &client, params);
    let newest: Option<i64> = handle
        .block_on(client.query_one("SELECT max(last_updated) FROM resource_version", &[]))
        .map_err(error)?
        .get(0);
    // A transaction that took an earlier instant may commit after the snapshot: the
    // export's time stays below the first such instant, so that an export `_since`
    // this one finds what it wrote (and may repeat what this one has).
    let horizon = times
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .horizon(start);
    let transaction_time = transaction_time(newest.map_or_else(Instant::now, Instant), horizon);
    let mut types = if request.types.is_empty() {
        stored_types(&reader)?
    } else {
        request.types.clone()
    };
    types.sort();
    types.dedup();
    let mut plans = Vec::with_capacity(types.len());
    for resource_type in types {
        if let Some(plan) = plan(&reader, request, resource_type)? {
            plans.push(plan);
        }
    }
    Ok(PostgresScan {
        handle: handle.clone(),
        client: Arc::new(client),
        plans: Arc::new(plans),
        current: 0,
        after_rid: i64::MIN,
        transaction_time,
    })
}

/// The instant an export's snapshot stands for: the newest version it holds (now, when
/// the store is empty), or just below the horizon when a transaction in flight took an
/// earlier instant.
fn transaction_time(newest: Instant, horizon: Option<i64>) -> Instant {
    match horizon {
        Some(horizon) => Instant(newest.0.min(horizon.saturating_sub(1))),
        None => newest,
    }
}

impl PostgresScan {
    pub(crate) fn transaction_time(&self) -> Instant {
        self.transaction_time
    }

    pub(crate) fn estimate(&self) -> u64 {
        self.plans.iter().map(|plan| plan.estimate).sum()
    }

    pub(crate) fn next_page(&mut self) -> Result<Option<Vec<Scanned>>, StoreError> {
        while let Some(plan) = self.plans.get(self.current) {
            let resource_type = plan.resource_type.clone();
            let (client, plans, current, after_rid) = (
                self.client.clone(),
                self.plans.clone(),
                self.current,
                self.after_rid,
            );
            let rows = block_on(&self.handle, async move {
                let Some(plan) = plans.get(current) else {
                    return Ok(Vec::new());
                };
                let mut args = Vec::with_capacity(plan.args.len() + 3);
                args.push(Value::Text(plan.resource_type.clone()));
                args.push(Value::Integer(after_rid));
                args.extend(plan.args.iter().cloned());
                args.push(Value::Integer(PAGE_ROWS));
                client
                    .query_typed(&plan.sql, &typed(&args))
                    .await
                    .map_err(error)
            })??;
            let mut page = Vec::with_capacity(rows.len());
            let mut last_rid = None;
            for row in &rows {
                last_rid = Some(row.try_get::<_, i64>(0).map_err(error)?);
                page.push(Scanned {
                    resource_type: resource_type.clone(),
                    id: row.try_get(1).map_err(error)?,
                    body: row.try_get(2).map_err(error)?,
                });
            }
            match last_rid {
                Some(rid) if page.len() as i64 == PAGE_ROWS => self.after_rid = rid,
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
fn stored_types(reader: &PgReader<'_>) -> Result<Vec<String>, StoreError> {
    let mut types: Vec<String> = Vec::new();
    loop {
        let after = types.last().cloned().unwrap_or_default();
        let row = reader
            .handle
            .block_on(
                reader
                    .client
                    .query_one("SELECT min(type) FROM resource WHERE type > $1", &[&after]),
            )
            .map_err(error)?;
        match row.get::<_, Option<String>>(0) {
            Some(resource_type) => types.push(resource_type),
            None => return Ok(types),
        }
    }
}

/// The page query of one type, or `None` when the request can select none of it.
fn plan(
    reader: &PgReader<'_>,
    request: &ScanRequest,
    resource_type: String,
) -> Result<Option<TypePlan>, StoreError> {
    let mut sql = Sql::new(
        "SELECT r.rid, r.id, v.body FROM resource r JOIN resource_version v
           ON v.type = r.type AND v.id = r.id AND v.version = r.version AND v.pkey = r.pkey
         WHERE r.type = ? AND r.deleted = 0 AND r.rid > ?",
    );
    if let Some(since) = request.since {
        sql.push(" AND r.last_updated > ").arg(since.0);
    }
    if let Some(patients) = &request.patients {
        let Some(condition) = patient_condition(reader, &resource_type, patients)? else {
            return Ok(None);
        };
        sql.push(" AND ").append(&condition);
    }
    let mut filters = request
        .filters
        .iter()
        .filter(|filter| filter.resource_type == resource_type)
        .peekable();
    if filters.peek().is_some() {
        sql.push(" AND (FALSE");
        for filter in filters {
            sql.push(" OR ")
                .append(&query::condition(reader, &filter.query)?);
        }
        sql.push(")");
    }
    sql.push(" ORDER BY r.rid LIMIT ?");

    let mut count = Sql::new("SELECT count(*) FROM resource WHERE type = ");
    count.arg(resource_type.clone()).push(" AND deleted = 0");
    if let Some(since) = request.since {
        count.push(" AND last_updated > ").arg(since.0);
    }
    let estimate: i64 = reader
        .handle
        .block_on(
            reader
                .client
                .query_typed_one(&numbered(&count.text), &typed(&count.args)),
        )
        .map_err(error)?
        .get(0);
    Ok(Some(TypePlan {
        resource_type,
        sql: numbered(&sql.text),
        args: sql.args,
        estimate: u64::try_from(estimate).unwrap_or(0),
    }))
}

/// "`r` is in the Patient compartment of one of `patients`" (see the SQLite scan);
/// `None` when the type is not in the Patient compartment.
fn patient_condition(
    reader: &PgReader<'_>,
    resource_type: &str,
    patients: &Patients,
) -> Result<Option<Sql>, StoreError> {
    use crate::query::Reader;
    let Some(compartment) = search::compartment("Patient", "", resource_type) else {
        return Ok(None);
    };
    let mut pids = Vec::new();
    for criterion in &compartment.any_of {
        if criterion.param_type == search::ParamType::Reference
            && let Some(pid) = reader.pid(resource_type, &criterion.param)?
        {
            pids.push(pid);
        }
    }
    let ids = match patients {
        Patients::All if resource_type == "Patient" => return Ok(Some(Sql::new("TRUE"))),
        Patients::All => None,
        Patients::Only(ids) => Some(
            serde_json::to_string(ids)
                .map_err(|error| StoreError::Invalid(format!("patient ids: {error}")))?,
        ),
    };
    let mut condition = Sql::new("(FALSE");
    if resource_type == "Patient"
        && let Some(ids) = &ids
    {
        condition
            .push(" OR r.id IN (SELECT jsonb_array_elements_text(CAST(")
            .arg(ids.clone())
            .push(" AS jsonb)))");
    }
    if !pids.is_empty() {
        condition
            .push(" OR EXISTS (SELECT 1 FROM sp_reference x WHERE x.rid = r.rid AND x.pid IN ")
            .list(&pids)
            .push(" AND x.target_type = 'Patient'");
        if let Some(ids) = ids {
            condition
                .push(" AND x.target_id IN (SELECT jsonb_array_elements_text(CAST(")
                .arg(ids)
                .push(" AS jsonb)))");
        }
        condition.push(")");
    }
    condition.push(")");
    Ok(Some(condition))
}
