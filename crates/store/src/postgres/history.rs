//! History in PostgreSQL: versions newest first, paged on `last_updated`, which the
//! writers hand out strictly increasing (see `crate::prepared::Clock`), so it serves
//! as the change sequence and `_since` is a bound on it directly. Only versions below
//! the read's horizon show (see `super::horizon`), so that none commits later below a
//! page already read: the part known before the read bounds the SQL, the rest filters
//! the page after it.

use tokio_postgres::Client;

use super::reader::{numbered, typed};
use super::{error, version_from_row};
use crate::crypt::Keyring;
use crate::query::Sql;
use crate::{HistoryPage, HistoryQuery, HistoryScope, StoreError};

pub(super) async fn page(
    client: &Client,
    keys: &Keyring,
    query: &HistoryQuery,
    known_horizon: Option<i64>,
    horizon: impl FnOnce() -> Option<i64>,
) -> Result<HistoryPage, StoreError> {
    let mut filters = Sql::new("TRUE");
    if let Some(known) = known_horizon {
        filters.push(" AND v.last_updated < ").arg(known);
    }
    match &query.scope {
        HistoryScope::System => {}
        HistoryScope::Type(resource_type) => {
            filters.push(" AND v.type = ").arg(resource_type.clone());
        }
        HistoryScope::Instance(resource_type, id) => {
            filters
                .push(" AND v.type = ")
                .arg(resource_type.clone())
                .push(" AND v.id = ")
                .arg(id.clone());
        }
    }
    if let Some(since) = query.since {
        filters.push(" AND v.last_updated >= ").arg(since.0);
    }
    if let Some(at) = query.at {
        filters
            .push(" AND v.last_updated < ")
            .arg(at.end.0)
            .push(
                " AND coalesce((SELECT n.last_updated FROM resource_version n
                   WHERE n.type = v.type AND n.id = v.id AND n.version = v.version + 1), ",
            )
            .arg(i64::MAX)
            .push(") > ")
            .arg(at.start.0);
    }

    let mut count = Sql::new("SELECT count(*) FROM resource_version v WHERE ");
    count.append(&filters);
    let total: i64 = client
        .query_typed_one(&numbered(&count.text), &typed(&count.args))
        .await
        .map_err(error)?
        .get(0);

    let mut page = Sql::new(
        "SELECT v.type, v.id, v.version, v.last_updated, v.method, v.body, v.created
         FROM resource_version v WHERE ",
    );
    page.append(&filters);
    if let Some(before) = query.before {
        page.push(" AND v.last_updated < ").arg(before);
    }
    let limit = i64::try_from(query.count)
        .unwrap_or(i64::MAX)
        .saturating_add(1);
    page.push(" ORDER BY v.last_updated DESC, v.type DESC, v.id DESC, v.version DESC LIMIT ")
        .arg(limit);
    let rows = client
        .query_typed(&numbered(&page.text), &typed(&page.args))
        .await
        .map_err(error)?;
    let horizon = horizon();
    let mut versions = Vec::with_capacity(rows.len().min(query.count));
    let mut next_cursor = None;
    for row in &rows {
        let version = version_from_row(row, keys)?;
        if horizon.is_some_and(|horizon| version.last_updated.0 >= horizon) {
            continue;
        }
        if versions.len() == query.count {
            next_cursor = versions
                .last()
                .map(|version: &crate::Version| version.last_updated.0);
            break;
        }
        versions.push(version);
    }
    // The page was full before the horizon took some: older versions may follow.
    if next_cursor.is_none() && rows.len() > query.count {
        next_cursor = versions
            .last()
            .map(|version| version.last_updated.0)
            .or(horizon);
    }
    Ok(HistoryPage {
        versions,
        total: u64::try_from(total).unwrap_or(0),
        next_cursor,
    })
}
