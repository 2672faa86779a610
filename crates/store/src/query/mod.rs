//! Search: a `search::Query` to SQL over the index tables, one page at a time.
//!
//! Plan: every clause compiles to a boolean on `r.rid` and, when positive, a set of
//! rids. A capped count of each set estimates its size; the smallest drives the search
//! (`r.rid IN (set)`) and every other clause is probed per candidate through the
//! rid-first primary keys. When no set is small and the page is in the default order,
//! the resources of the type are scanned in rid order instead, probing each, which
//! stops as soon as the page is full.
//!
//! Before either, a page in the default order walks the smallest set that its index
//! yields in rid order (an equality on a token code or a typed reference), probing the
//! first few thousand candidates: when the set is small, or the matches dense enough
//! to fill the page, that is the answer, without counting or reading any set whole;
//! otherwise the plan above runs.
//!
//! Paging is keyset paging on (sort values, rid); see `cursor`.
//!
//! The same planner and SQL serve both backends: a [`Reader`] runs the statements
//! (SQLite's on a connection, PostgreSQL's in a read-only transaction) and the
//! builder writes the few dialect-specific spellings through [`Dialect`].

mod cursor;
pub(crate) mod dialect;
mod include;
mod sql;

use search::Total;

use self::cursor::{Cursor, Side};
pub(crate) use self::dialect::Dialect;
use self::sql::{Builder, Compiled};
pub(crate) use self::sql::{Sql, Value};
use crate::{SearchPage, SearchRequest, StoreError, Version};

/// What the planner needs from a backend: parameter ids, and statements run on one
/// snapshot of the store. Synchronous: searches run off the async runtime.
pub(crate) trait Reader {
    fn dialect(&self) -> Dialect;
    /// The pid of (type, key), or `None` when nothing was ever indexed under it.
    fn pid(&self, resource_type: &str, key: &str) -> Result<Option<i64>, StoreError>;
    /// The pids of `key` for every type that has it.
    fn pids_of_any_type(&self, key: &str) -> Result<Vec<i64>, StoreError>;
    /// The single integer a `SELECT count(*) ...` returns.
    fn count(&self, sql: &Sql) -> Result<i64, StoreError>;
    /// The integers of several counts, in order: one by one, or in one statement where
    /// that saves round trips.
    fn counts(&self, sqls: &[Sql]) -> Result<Vec<i64>, StoreError> {
        sqls.iter().map(|sql| self.count(sql)).collect()
    }
    /// Rows of a rid and then `values` sort values.
    fn rows(&self, sql: &Sql, values: usize) -> Result<Vec<PageRow>, StoreError>;
    /// The rows of a page, each with the current version of its resource (`None` if it
    /// is gone): `rows` then `fetch`, or one statement where that saves a round trip.
    fn page(&self, sql: &Sql, values: usize) -> Result<Vec<Found>, StoreError> {
        let rows = self.rows(sql, values)?;
        let rids: Vec<i64> = rows.iter().map(|(rid, _)| *rid).collect();
        let mut versions: std::collections::HashMap<i64, Version> =
            self.fetch(&rids)?.into_iter().collect();
        Ok(rows
            .into_iter()
            .map(|row| {
                let version = versions.remove(&row.0);
                (row, version)
            })
            .collect())
    }
    /// Rows of a rid and a resource type.
    fn typed_rids(&self, sql: &Sql) -> Result<Vec<(i64, String)>, StoreError>;
    /// The current versions of the live resources among `rids`, in the order given.
    fn fetch(&self, rids: &[i64]) -> Result<Vec<(i64, Version)>, StoreError>;
    /// The database's query plan of `sql`, one line per step.
    fn plan(&self, sql: &Sql) -> Result<String, StoreError>;
}

/// A set whose count stays below this drives the search; with more matches than
/// this, a scan in rid order fills a page sooner than reading the whole set.
const SELECTIVE: i64 = 100_000;
/// A row of a page: the rid and its sort values.
pub(crate) type PageRow = (i64, Vec<Value>);
/// A row of a page with the current version of its resource.
pub(crate) type Found = (PageRow, Option<Version>);

/// How many candidates a walk along an ordered set probes before giving up (see
/// `walk_first`).
const STREAM_BOUND: i64 = 5_000;
/// `_total=estimate` counts at most this many matches and reports that many when
/// there are more (a lower bound, at a bounded cost).
const ESTIMATE_CAP: i64 = 10_000;

/// The SQL of a search's first page and of its count, each with its query plan
/// (for tuning; the arguments are left out).
pub(crate) fn explain(reader: &dyn Reader, request: &SearchRequest) -> Result<String, StoreError> {
    let query = &request.query;
    let mut builder = Builder::for_query(reader, query);
    let clauses = builder.clauses(&query.clauses, &query.types)?;
    let mut sort = Vec::with_capacity(query.sort.len());
    for key in &query.sort {
        let expression =
            builder.sort_expression(&query.types, &key.param, key.param_type, key.descending)?;
        sort.push((expression, key.descending));
    }
    let estimates = estimate(reader, &clauses)?;
    let plan = Plan {
        clauses: &clauses,
        estimates: &estimates,
        types: &query.types,
        dialect: reader.dialect(),
    };
    let driver = plan.driver(!sort.is_empty());
    let mut out = format!("estimates: {estimates:?}, driver: {driver:?}\n");
    let mut queries = vec![
        ("page", plan.page_sql(driver, &sort, None, request.count)),
        ("count", plan.count_sql(None)),
    ];
    if let Some((index, set)) = clauses.iter().enumerate().find_map(|(index, clause)| {
        clause
            .set
            .as_ref()
            .filter(|_| clause.ordered)
            .map(|set| (index, set))
    }) {
        queries.insert(
            0,
            (
                "walk",
                plan.walk_sql(index, set, None, request.count, false),
            ),
        );
    }
    for (name, sql) in queries {
        out.push_str(&format!("-- {name}\n{}\n", sql.text));
        out.push_str(&reader.plan(&sql)?);
    }
    Ok(out)
}

/// The boolean on `r.rid` "the resource matches every clause of `query`", with its
/// arguments in order: a membership test row by row (bulk export's `_typeFilter`).
pub(crate) fn condition(reader: &dyn Reader, query: &search::Query) -> Result<Sql, StoreError> {
    let mut builder = Builder::for_query(reader, query);
    let mut sql = Sql::new("(TRUE");
    for compiled in builder.clauses(&query.clauses, &query.types)? {
        sql.push(" AND ").append(&compiled.exists);
    }
    sql.push(")");
    Ok(sql)
}

pub(crate) fn search(
    reader: &dyn Reader,
    request: &SearchRequest,
) -> Result<SearchPage, StoreError> {
    let query = &request.query;
    let types = &query.types;
    let mut builder = Builder::for_query(reader, query);
    let clauses = builder.clauses(&query.clauses, types)?;
    let mut sort = Vec::with_capacity(query.sort.len());
    for key in &query.sort {
        let expression =
            builder.sort_expression(types, &key.param, key.param_type, key.descending)?;
        sort.push((expression, key.descending));
    }
    let cursor = request
        .cursor
        .as_deref()
        .map(|text| Cursor::decode(text, sort.len()))
        .transpose()?;
    let walked = if request.count > 0 && sort.is_empty() {
        walk_first(reader, query, &clauses, cursor.as_ref(), request.count)?
    } else {
        None
    };
    // Estimates choose the plan; a walk that answered needs them only for a count,
    // and a count only to choose among several sets.
    let sets = clauses.iter().filter(|clause| clause.set.is_some()).count();
    let counted = matches!(query.total, Total::Accurate | Total::Estimate);
    let estimates = if walked.is_none() || (counted && sets > 1) {
        estimate(reader, &clauses)?
    } else {
        vec![i64::MAX; clauses.len()]
    };
    let plan = Plan {
        clauses: &clauses,
        estimates: &estimates,
        types,
        dialect: reader.dialect(),
    };

    if request.count == 0 {
        let total = match query.total {
            Total::None => None,
            Total::Estimate => Some(plan.count(reader, Some(ESTIMATE_CAP))?),
            Total::Accurate | Total::Unspecified => Some(plan.count(reader, None)?),
        };
        return Ok(SearchPage {
            total,
            ..SearchPage::default()
        });
    }

    let driver = plan.driver(!sort.is_empty());
    let mut rows = match walked {
        Some(rows) => rows,
        None => plan.page(reader, driver, &sort, cursor.as_ref(), request.count)?,
    };
    let more = rows.len() > request.count;
    rows.truncate(request.count);
    let side = cursor.as_ref().map(|cursor| cursor.side);
    if side == Some(Side::Before) {
        rows.reverse();
    }
    let boundary = |side: Side, row: Option<&Found>, shift: i64| {
        let (rid, values) = match (row, &cursor) {
            (Some(((rid, values), _)), _) => (*rid, values.clone()),
            // An empty page: the cursor's own boundary, moved by one rid so that the
            // boundary row itself is on the other page.
            (None, Some(cursor)) => (cursor.rid.saturating_add(shift), cursor.values.clone()),
            (None, None) => return None,
        };
        Some(Cursor { side, values, rid }.encode())
    };
    let (next, previous) = match side {
        None => (
            if more {
                boundary(Side::After, rows.last(), 0)
            } else {
                None
            },
            None,
        ),
        Some(Side::After) => (
            if more {
                boundary(Side::After, rows.last(), 0)
            } else {
                None
            },
            boundary(Side::Before, rows.first(), 1),
        ),
        Some(Side::Before) => (
            boundary(Side::After, rows.last(), -1),
            if more {
                boundary(Side::Before, rows.first(), 0)
            } else {
                None
            },
        ),
    };
    let total = match query.total {
        Total::None => None,
        Total::Accurate => Some(plan.count(reader, None)?),
        Total::Estimate => Some(plan.count(reader, Some(ESTIMATE_CAP))?),
        Total::Unspecified => (side.is_none() && !more).then_some(rows.len() as u64),
    };

    let mut matches = Vec::with_capacity(rows.len());
    let mut keys = Vec::with_capacity(rows.len());
    for ((rid, _), version) in rows {
        if let Some(version) = version {
            keys.push((rid, version.resource_type.clone()));
            matches.push(version);
        }
    }
    let included_rids: Vec<i64> = include::included(reader, &builder, query, &keys)?
        .into_iter()
        .map(|(rid, _)| rid)
        .collect();
    let included = reader
        .fetch(&included_rids)?
        .into_iter()
        .map(|(_, version)| version)
        .collect();
    Ok(SearchPage {
        matches,
        included,
        total,
        next,
        previous,
    })
}

/// A page in the default order walked along the smallest set its index yields in rid
/// order (an equality on a token code or a typed reference), probing the other clauses
/// per candidate, at most [`STREAM_BOUND`] candidates: the answer when that set is
/// smaller than the bound (the walk saw all of it) or when the page fills (its rows are
/// the first matches in rid order); `None` otherwise, and when another clause goes
/// through a chain or `_has` (too dear to probe per candidate).
fn walk_first(
    reader: &dyn Reader,
    query: &search::Query,
    clauses: &[Compiled],
    cursor: Option<&Cursor>,
    count: usize,
) -> Result<Option<Vec<Found>>, StoreError> {
    let chained = query.clauses.iter().any(|clause| {
        clause
            .any_of
            .iter()
            .any(|criterion| !criterion.path.is_empty())
    });
    if chained {
        return Ok(None);
    }
    let ordered: Vec<usize> = (0..clauses.len())
        .filter(|&index| clauses[index].ordered && clauses[index].set.is_some())
        .collect();
    let plan = Plan {
        clauses,
        estimates: &[],
        types: &query.types,
        dialect: reader.dialect(),
    };
    if let [index] = ordered[..] {
        // One ordered set: no choice to make, and its size (up to the bound) comes
        // back with the walk itself, as each row's one value.
        let Some(set) = clauses[index].set.as_ref() else {
            return Ok(None);
        };
        let rows = reader.page(&plan.walk_sql(index, set, cursor, count, true), 1)?;
        let size = match rows.first() {
            Some(((_, values), _)) => match values.first() {
                Some(Value::Integer(size)) => *size,
                _ => STREAM_BOUND,
            },
            None => reader.count(&capped_count(set, STREAM_BOUND))?,
        };
        let rows = rows
            .into_iter()
            .map(|((rid, _), version)| ((rid, Vec::new()), version))
            .collect::<Vec<_>>();
        return Ok((size < STREAM_BOUND || rows.len() > count).then_some(rows));
    }
    let counted: Vec<(usize, Sql)> = ordered
        .iter()
        .filter_map(|&index| {
            let set = clauses[index].set.as_ref()?;
            Some((index, capped_count(set, STREAM_BOUND)))
        })
        .collect();
    let sqls: Vec<Sql> = counted.iter().map(|(_, sql)| sql.clone()).collect();
    let sizes = reader.counts(&sqls)?;
    let mut best: Option<(usize, i64)> = None;
    for ((index, _), size) in counted.iter().zip(sizes) {
        if best.is_none_or(|(_, smallest)| size < smallest) {
            best = Some((*index, size));
        }
    }
    let Some((index, size)) = best else {
        return Ok(None);
    };
    let Some(set) = clauses[index].set.as_ref() else {
        return Ok(None);
    };
    let sql = plan.walk_sql(index, set, cursor, count, false);
    let rows = reader.page(&sql, 0)?;
    Ok((size < STREAM_BOUND || rows.len() > count).then_some(rows))
}

/// `SELECT count(*)` of `set`'s rows, counting at most `cap`.
fn capped_count(set: &Sql, cap: i64) -> Sql {
    let mut sql = Sql::new("SELECT count(*) FROM (SELECT 1 FROM (");
    sql.append(set)
        .push(") AS s LIMIT ")
        .arg(cap)
        .push(") AS c");
    sql
}

/// Each clause's set size, counted up to [`SELECTIVE`] and never past the smallest
/// found so far (most likely selective first, so the counting stays cheap);
/// `i64::MAX` for clauses that have no set.
fn estimate(reader: &dyn Reader, clauses: &[Compiled]) -> Result<Vec<i64>, StoreError> {
    let mut estimates = vec![i64::MAX; clauses.len()];
    let mut order: Vec<usize> = (0..clauses.len()).collect();
    order.sort_by_key(|&index| clauses[index].rank);
    let mut best = SELECTIVE;
    for index in order {
        let Some(set) = &clauses[index].set else {
            continue;
        };
        let count = reader.count(&capped_count(set, best))?;
        // Stopped at the cap: more than the best so far (or than SELECTIVE).
        estimates[index] = if count >= best {
            best.saturating_add(1)
        } else {
            count
        };
        best = best.min(count.max(1));
    }
    Ok(estimates)
}

struct Plan<'a> {
    clauses: &'a [Compiled],
    estimates: &'a [i64],
    types: &'a [String],
    dialect: Dialect,
}

impl Plan<'_> {
    /// The clause whose set drives the search: the smallest, if it is small or if
    /// every match is needed anyway (`all`: a sort or a count); `None` to scan.
    fn driver(&self, all: bool) -> Option<usize> {
        let best = (0..self.clauses.len())
            .filter(|&index| self.clauses[index].set.is_some())
            .min_by_key(|&index| (self.estimates[index], self.clauses[index].rank))?;
        (all || self.estimates[best] < SELECTIVE).then_some(best)
    }

    /// `r.type ...` (kept off the index where the dialect can, when a set drives).
    fn type_condition(&self, sql: &mut Sql, driven: bool) {
        let column = if driven {
            self.dialect.unindexed("r.type")
        } else {
            "r.type".to_string()
        };
        match self.types {
            [] => {
                sql.push("TRUE");
            }
            [one] => {
                sql.push(&format!("{column} = ")).arg(one.clone());
            }
            many => {
                sql.push(&format!("{column} IN ")).list(many);
            }
        }
    }

    /// The conditions on `r` of every clause but `driver`.
    fn others(&self, sql: &mut Sql, driver: Option<usize>) {
        for (index, clause) in self.clauses.iter().enumerate() {
            if Some(index) != driver {
                sql.push(" AND ").append(&clause.exists);
            }
        }
    }

    /// `WHERE` of the matches, on `resource r`.
    fn matching(&self, driver: Option<usize>) -> Sql {
        let mut sql = Sql::default();
        if let Some(set) = driver.and_then(|index| self.clauses[index].set.as_ref()) {
            sql.push("r.rid IN (").append(set).push(") AND ");
        }
        self.type_condition(&mut sql, driver.is_some());
        sql.push(" AND r.deleted = 0");
        self.others(&mut sql, driver);
        sql
    }

    /// The number of matches, at most `cap`. With a driving set, the count never
    /// reads `resource`: index rows exist only for current resources, and their pids
    /// are those of the searched types.
    fn count(&self, reader: &dyn Reader, cap: Option<i64>) -> Result<u64, StoreError> {
        let count = reader.count(&self.count_sql(cap))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    fn count_sql(&self, cap: Option<i64>) -> Sql {
        let driver = self.driver(true);
        let mut rows = match driver.and_then(|index| self.clauses[index].set.as_ref()) {
            Some(set) => {
                let mut sql = Sql::new("SELECT 1 FROM (SELECT rid FROM (");
                sql.append(set).push(") AS s GROUP BY rid) r WHERE TRUE");
                self.others(&mut sql, driver);
                sql
            }
            None => {
                let mut sql = Sql::new("SELECT 1 FROM resource r WHERE ");
                sql.append(&self.matching(None));
                sql
            }
        };
        let mut sql = Sql::new("SELECT count(*) FROM (");
        if let Some(cap) = cap {
            rows.push(" LIMIT ").arg(cap);
        }
        sql.append(&rows).push(") AS c");
        sql
    }

    /// Up to `count + 1` matches on the cursor's side of its boundary, nearest first,
    /// with their sort values.
    fn page(
        &self,
        reader: &dyn Reader,
        driver: Option<usize>,
        sort: &[(Sql, bool)],
        cursor: Option<&Cursor>,
        count: usize,
    ) -> Result<Vec<Found>, StoreError> {
        reader.page(&self.page_sql(driver, sort, cursor, count), sort.len())
    }

    /// A page along `set` in rid order, probing at most [`STREAM_BOUND`] candidates;
    /// `with_size`: each row also carries the set's size, counted up to the bound.
    fn walk_sql(
        &self,
        index: usize,
        set: &Sql,
        cursor: Option<&Cursor>,
        count: usize,
        with_size: bool,
    ) -> Sql {
        let backward = cursor.is_some_and(|cursor| cursor.side == Side::Before);
        let limit = i64::try_from(count).unwrap_or(i64::MAX).saturating_add(1);
        let mut sql = Sql::new("SELECT d.rid");
        if with_size {
            sql.push(", (")
                .append(&capped_count(set, STREAM_BOUND))
                .push(") AS size");
        }
        sql.push(" FROM (SELECT c.rid FROM (");
        sql.append(set).push(") c WHERE TRUE");
        if let Some(cursor) = cursor {
            sql.push(if backward {
                " AND c.rid < "
            } else {
                " AND c.rid > "
            })
            .arg(cursor.rid);
        }
        sql.push(if backward {
            " ORDER BY c.rid DESC LIMIT "
        } else {
            " ORDER BY c.rid LIMIT "
        })
        .arg(STREAM_BOUND)
        .push(&format!(
            ") d {} resource r ON r.rid = d.rid WHERE ",
            self.dialect.join()
        ));
        self.type_condition(&mut sql, true);
        sql.push(" AND r.deleted = 0");
        self.others(&mut sql, Some(index));
        sql.push(if backward {
            " GROUP BY d.rid ORDER BY d.rid DESC LIMIT "
        } else {
            " GROUP BY d.rid ORDER BY d.rid LIMIT "
        })
        .arg(limit);
        sql
    }

    fn page_sql(
        &self,
        driver: Option<usize>,
        sort: &[(Sql, bool)],
        cursor: Option<&Cursor>,
        count: usize,
    ) -> Sql {
        let backward = cursor.is_some_and(|cursor| cursor.side == Side::Before);
        let limit = i64::try_from(count).unwrap_or(i64::MAX).saturating_add(1);
        let mut sql;
        if sort.is_empty() {
            sql = Sql::new("SELECT r.rid FROM resource r WHERE ");
            sql.append(&self.matching(driver));
            if let Some(cursor) = cursor {
                sql.push(if backward {
                    " AND r.rid < "
                } else {
                    " AND r.rid > "
                })
                .arg(cursor.rid);
            }
            sql.push(if backward {
                " ORDER BY r.rid DESC"
            } else {
                " ORDER BY r.rid"
            });
        } else {
            sql = Sql::new("SELECT rid");
            for index in 0..sort.len() {
                sql.push(&format!(", s{index}"));
            }
            sql.push(" FROM (SELECT r.rid AS rid");
            for (index, (expression, _)) in sort.iter().enumerate() {
                sql.push(", ")
                    .append(expression)
                    .push(&format!(" AS s{index}"));
            }
            sql.push(" FROM resource r WHERE ")
                .append(&self.matching(driver))
                .push(") AS p");
            if let Some(cursor) = cursor {
                sql.push(" WHERE ")
                    .append(&keyset(self.dialect, sort, cursor));
            }
            sql.push(" ORDER BY ");
            for (index, (_, descending)) in sort.iter().enumerate() {
                // Missing values last in either direction; a previous page runs reversed.
                let (nulls, values) = match (backward, *descending) {
                    (false, false) => ("ASC", "ASC"),
                    (false, true) => ("ASC", "DESC"),
                    (true, false) => ("DESC", "DESC"),
                    (true, true) => ("DESC", "ASC"),
                };
                sql.push(&format!("(s{index} IS NULL) {nulls}, s{index} {values}, "));
            }
            sql.push(if backward { "rid DESC" } else { "rid ASC" });
        }
        sql.push(" LIMIT ").arg(limit);
        sql
    }
}

/// Rows strictly after (or, for `Before`, strictly before) the cursor's boundary in
/// the order (missing flag, value) per key, then rid.
fn keyset(dialect: Dialect, sort: &[(Sql, bool)], cursor: &Cursor) -> Sql {
    // (expression, ascending, boundary value)
    let mut parts: Vec<(String, bool, Value)> = Vec::new();
    for (index, (_, descending)) in sort.iter().enumerate() {
        let value = cursor.values.get(index).cloned().unwrap_or(Value::Null);
        let missing = i64::from(value == Value::Null);
        parts.push((
            dialect.missing_flag(&format!("s{index}")),
            true,
            Value::Integer(missing),
        ));
        parts.push((format!("s{index}"), !descending, value));
    }
    parts.push(("rid".into(), true, Value::Integer(cursor.rid)));
    let backward = cursor.side == Side::Before;
    let mut sql = Sql::new("(FALSE");
    for (position, (expression, ascending, value)) in parts.iter().enumerate() {
        if *value == Value::Null {
            // Nothing is beyond a missing value within its group.
            continue;
        }
        sql.push(" OR (");
        for (earlier, _, earlier_value) in &parts[..position] {
            sql.push(&format!("{earlier}{}", dialect.is()))
                .arg(earlier_value.clone())
                .push(" AND ");
        }
        let greater = *ascending != backward;
        sql.push(&format!(
            "{expression} {} ",
            if greater { ">" } else { "<" }
        ))
        .arg(value.clone())
        .push(")");
    }
    sql.push(")");
    sql
}
