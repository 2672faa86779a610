//! Planner statistics kept up with the data. PostgreSQL's autovacuum analyses a table
//! only after a tenth of it changed and its next wake-up (a minute); right after a
//! load, plans made on the empty tables' statistics can take minutes instead of
//! milliseconds. So the store itself runs `ANALYZE`, in the background, each time the
//! versions it wrote since the last one reach a quarter of the store's size (at least
//! `FIRST`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use deadpool_postgres::Pool;

/// Versions written before the first `ANALYZE`.
const FIRST: u64 = 1_000;

#[derive(Clone)]
pub(super) struct Analyzer {
    state: Arc<State>,
    pool: Pool,
}

struct State {
    /// Versions written since the last `ANALYZE` started.
    written: AtomicU64,
    /// Versions to write before the next.
    threshold: AtomicU64,
    running: AtomicBool,
}

impl Analyzer {
    pub(super) fn new(pool: Pool, resources: u64) -> Analyzer {
        Analyzer {
            state: Arc::new(State {
                written: AtomicU64::new(0),
                threshold: AtomicU64::new(FIRST.max(resources / 4)),
                running: AtomicBool::new(false),
            }),
            pool,
        }
    }

    /// Counts `versions` committed; starts an `ANALYZE` when they reach the threshold.
    pub(super) fn wrote(&self, versions: u64) {
        let state = &self.state;
        let written = state.written.fetch_add(versions, Ordering::Relaxed) + versions;
        if written < state.threshold.load(Ordering::Relaxed)
            || state.running.swap(true, Ordering::AcqRel)
        {
            return;
        }
        state.written.store(0, Ordering::Relaxed);
        let analyzer = self.clone();
        tokio::spawn(async move {
            let state = &analyzer.state;
            match analyzer.run().await {
                Ok(resources) => state
                    .threshold
                    .store(FIRST.max(resources / 4), Ordering::Relaxed),
                Err(error) => tracing::warn!(%error, "ANALYZE failed"),
            }
            state.running.store(false, Ordering::Release);
        });
    }

    /// Analyses every table; returns the resources there are now.
    async fn run(&self) -> Result<u64, String> {
        let client = self.pool.get().await.map_err(|error| error.to_string())?;
        client
            .batch_execute(
                "ANALYZE resource_key, resource, resource_version, search_param, sp_string,
                 sp_token, sp_reference, sp_date, sp_number, sp_quantity, sp_uri, sp_text",
            )
            .await
            .map_err(|error| error.to_string())?;
        let resources: i64 = client
            .query_one(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = 'resource'::regclass",
                &[],
            )
            .await
            .map_err(|error| error.to_string())?
            .get(0);
        Ok(u64::try_from(resources).unwrap_or(0))
    }
}
