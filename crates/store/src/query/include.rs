//! `_include` and `_revinclude` on a page of matches, with `:iterate`.

use std::collections::HashSet;

use search::{Include, ParamType, Query};

use super::Reader;
use super::sql::{Builder, Sql};
use crate::StoreError;

/// Rounds of `:iterate` after the first.
const MAX_ROUNDS: usize = 10;
/// Most resources included in one page.
pub(super) const MAX_INCLUDED: usize = 10_000;
/// Most rids bound in one statement.
const CHUNK: usize = 500;

/// The rids (with types) that the includes of `query` bring in for `matches`, in
/// the order found, none of them a match, each once.
pub(super) fn included(
    reader: &dyn Reader,
    builder: &Builder<'_>,
    query: &Query,
    matches: &[(i64, String)],
) -> Result<Vec<(i64, String)>, StoreError> {
    if query.includes.is_empty() && query.revincludes.is_empty() {
        return Ok(Vec::new());
    }
    let mut seen: HashSet<i64> = matches.iter().map(|(rid, _)| *rid).collect();
    let mut found: Vec<(i64, String)> = Vec::new();
    let mut sources: Vec<(i64, String)> = matches.to_vec();
    for round in 0..=MAX_ROUNDS {
        let mut new = Vec::new();
        for include in query.includes.iter().filter(|i| round == 0 || i.iterate) {
            for hit in forward(reader, builder, include, &sources)? {
                if seen.insert(hit.0) {
                    new.push(hit);
                }
            }
        }
        for include in query.revincludes.iter().filter(|i| round == 0 || i.iterate) {
            for hit in reverse(reader, builder, include, &sources)? {
                if seen.insert(hit.0) {
                    new.push(hit);
                }
            }
        }
        if new.is_empty() {
            break;
        }
        let room = MAX_INCLUDED.saturating_sub(found.len());
        new.truncate(room);
        found.extend(new.iter().cloned());
        if found.len() >= MAX_INCLUDED {
            break;
        }
        sources = new;
    }
    Ok(found)
}

/// The pid condition on alias `s` for the include's parameter, or every reference
/// parameter of its source type for `*`.
fn pid_condition(builder: &Builder<'_>, include: &Include) -> Result<Sql, StoreError> {
    let types = std::slice::from_ref(&include.source_type);
    match &include.param {
        Some(param) => builder.pid_condition("s", types, param),
        None => {
            let mut pids = Vec::new();
            for definition in search::params_for(&include.source_type) {
                if definition.param_type == ParamType::Reference {
                    pids.extend(builder.pids(types, &definition.code)?);
                }
            }
            let mut sql = Sql::default();
            if pids.is_empty() {
                sql.push("FALSE");
            } else {
                sql.push("s.pid IN ").list(&pids);
            }
            Ok(sql)
        }
    }
}

/// What the sources of the include's source type point at.
fn forward(
    reader: &dyn Reader,
    builder: &Builder<'_>,
    include: &Include,
    sources: &[(i64, String)],
) -> Result<Vec<(i64, String)>, StoreError> {
    let rids: Vec<i64> = sources
        .iter()
        .filter(|(_, resource_type)| *resource_type == include.source_type)
        .map(|(rid, _)| *rid)
        .collect();
    let pids = pid_condition(builder, include)?;
    let mut hits = Vec::new();
    for chunk in rids.chunks(CHUNK) {
        let mut sql = Sql::new(&format!(
            "SELECT DISTINCT t.rid, t.type FROM sp_reference s {} resource t
             ON t.type = s.target_type AND t.id = s.target_id
             WHERE s.grp = 0 AND s.rid IN ",
            reader.dialect().join()
        ));
        sql.list(chunk)
            .push(" AND ")
            .append(&pids)
            .push(" AND t.deleted = 0");
        if let Some(target_type) = &include.target_type {
            sql.push(" AND t.type = ").arg(target_type.clone());
        }
        sql.push(" ORDER BY t.rid");
        hits.extend(reader.typed_rids(&sql)?);
    }
    Ok(hits)
}

/// The resources of the include's source type that point at any of the sources.
fn reverse(
    reader: &dyn Reader,
    builder: &Builder<'_>,
    include: &Include,
    sources: &[(i64, String)],
) -> Result<Vec<(i64, String)>, StoreError> {
    let rids: Vec<i64> = sources
        .iter()
        .filter(|(_, resource_type)| {
            include
                .target_type
                .as_ref()
                .is_none_or(|target| target == resource_type)
        })
        .map(|(rid, _)| *rid)
        .collect();
    let pids = pid_condition(builder, include)?;
    let mut hits = Vec::new();
    for chunk in rids.chunks(CHUNK) {
        let mut sql = Sql::new("SELECT DISTINCT s.rid, CAST(");
        sql.arg(include.source_type.clone())
            .push(&format!(
                " AS TEXT) FROM resource m {} sp_reference s
                 ON s.target_id = m.id AND s.target_type = m.type
                 WHERE m.rid IN ",
                reader.dialect().join()
            ))
            .list(chunk)
            .push(" AND s.grp = 0 AND ")
            .append(&pids)
            .push(" ORDER BY s.rid");
        hits.extend(reader.typed_rids(&sql)?);
    }
    Ok(hits)
}
