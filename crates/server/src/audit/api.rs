//! `AuditEvent` over the API, served from the audit trail: read, vread and search for
//! principals who may read it (auditor, admin); create, update, patch and delete are
//! 405 for everyone, since only the server writes the trail.
//!
//! Search parameters: `date` (with `eq`, `ge`, `gt`, `le`, `lt`, `sa`, `eb`),
//! `patient`, `agent` (the user, else the client), `altid` (the client), `entity`,
//! `action`, `outcome`, `subtype`, `type`, `purpose-of-use`, `_count`, `_sort` (`date`
//! or `-date`, the default) and the page cursor `_cursor`. Values separated by commas
//! are alternatives; repeated parameters must all hold.

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use privacy::Interaction;
use store::{AuditColumn, AuditFilter, AuditQuery, Instant};

use crate::AppState;
use crate::auth::authorize;
use crate::error::ApiError;
use crate::extract::FhirRequest;
use crate::response::json_response;

/// 405 for any change to the audit trail (the body is left unread; `drain` reads it).
pub(crate) async fn refuse_change(method: Method) -> ApiError {
    refusal(&method)
}

fn refusal(method: &Method) -> ApiError {
    ApiError::not_supported(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} of AuditEvent is not allowed: the audit trail is written by the server alone and never changed"
        ),
    )
}

/// 405 for a Bundle entry that would change an AuditEvent (`interaction`: create,
/// update, patch or delete).
pub(crate) fn entry_refusal(interaction: &str) -> ApiError {
    ApiError::not_supported(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{interaction} of AuditEvent is not allowed: the audit trail is written by the server alone and never changed"
        ),
    )
}

/// `GET AuditEvent/[id]`.
pub(crate) async fn read(
    State(state): State<AppState>,
    request: FhirRequest,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&request.principal, Interaction::Read, "AuditEvent")?;
    read_seq(&state, &request, &id).await
}

/// `GET AuditEvent/[id]/_history/[version]`: every record has version 1.
pub(crate) async fn vread(
    State(state): State<AppState>,
    request: FhirRequest,
    Path((id, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    authorize(&request.principal, Interaction::Vread, "AuditEvent")?;
    if version != "1" {
        return Err(ApiError::not_found(format!(
            "AuditEvent/{id} has no version {version}"
        )));
    }
    read_seq(&state, &request, &id).await
}

async fn read_seq(state: &AppState, request: &FhirRequest, id: &str) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found(format!("AuditEvent/{id} is not known"));
    let seq: i64 = id.parse().map_err(|_| not_found())?;
    if let Some(trail) = &state.audit {
        trail.flush().await;
    }
    let body = state.store.audit_read(seq).await?.ok_or_else(not_found)?;
    Ok(json_response(StatusCode::OK, body, request.output))
}

/// `GET AuditEvent?...` and `POST AuditEvent/_search`.
pub(crate) async fn search(
    State(state): State<AppState>,
    request: FhirRequest,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    authorize(&request.principal, Interaction::Search, "AuditEvent")?;
    let mut params = request.params.clone();
    params.extend(form_urlencoded::parse(&body).into_owned());
    let limits = &state.config.limits;
    let query = parse(&params, limits.page_size_default, limits.page_size_max)?;
    if let Some(trail) = &state.audit {
        trail.flush().await;
    }
    let count = query.count;
    let page = state.store.audit_search(query).await?;
    let base = &state.config.base_url;
    let kept: Vec<&(String, String)> = params
        .iter()
        .filter(|(name, _)| name != "_cursor")
        .collect();
    let link = |cursor: Option<i64>| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &kept {
            if name != "_count" {
                query.append_pair(name, value);
            }
        }
        query.append_pair("_count", &count.to_string());
        if let Some(cursor) = cursor {
            query.append_pair("_cursor", &cursor.to_string());
        }
        serde_json::to_string(&format!("{base}/AuditEvent?{}", query.finish()))
            .unwrap_or_else(|_| "\"\"".into())
    };
    let mut text =
        String::with_capacity(256 + page.records.iter().map(|r| r.1.len() + 96).sum::<usize>());
    text.push_str(
        r#"{"resourceType":"Bundle","type":"searchset","link":[{"relation":"self","url":"#,
    );
    text.push_str(&link(None));
    text.push('}');
    if let Some(next) = page.next {
        text.push_str(r#",{"relation":"next","url":"#);
        text.push_str(&link(Some(next)));
        text.push('}');
    }
    text.push_str(r#"],"entry":["#);
    for (index, (seq, body)) in page.records.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        text.push_str(r#"{"fullUrl":"#);
        text.push_str(
            &serde_json::to_string(&format!("{base}/AuditEvent/{seq}"))
                .unwrap_or_else(|_| "\"\"".into()),
        );
        text.push_str(r#","resource":"#);
        text.push_str(body);
        text.push_str(r#","search":{"mode":"match"}}"#);
    }
    text.push_str("]}");
    Ok(json_response(StatusCode::OK, text, request.output))
}

/// The store's query for the search parameters, or 400 naming the one at fault.
fn parse(
    params: &[(String, String)],
    count_default: usize,
    count_max: usize,
) -> Result<AuditQuery, ApiError> {
    let mut query = AuditQuery {
        count: count_default,
        ..AuditQuery::default()
    };
    for (name, value) in params {
        let values = || -> Result<Vec<String>, ApiError> {
            let values: Vec<String> = value
                .split(',')
                .map(|value| {
                    // A token's system is not kept: `system|code` matches on the code.
                    value.rsplit('|').next().unwrap_or(value).trim().to_string()
                })
                .filter(|value| !value.is_empty())
                .collect();
            if values.is_empty() {
                return Err(ApiError::bad_request(format!("{name} needs a value")));
            }
            Ok(values)
        };
        let column = match name.as_str() {
            "patient" => {
                let references = values()?
                    .into_iter()
                    .map(|value| {
                        if value.starts_with("Patient/") {
                            value
                        } else {
                            format!("Patient/{value}")
                        }
                    })
                    .collect();
                query
                    .filters
                    .push(AuditFilter::Is(AuditColumn::Patient, references));
                continue;
            }
            "entity" => {
                query.filters.push(AuditFilter::Entity(values()?));
                continue;
            }
            "date" => {
                query.filters.extend(date(value)?);
                continue;
            }
            "_count" => {
                let count: usize = value.parse().map_err(|_| {
                    ApiError::bad_request(format!("_count {value:?} is not a whole number"))
                })?;
                query.count = count.min(count_max);
                continue;
            }
            "_cursor" => {
                query.after = Some(value.parse().map_err(|_| {
                    ApiError::bad_request(format!("_cursor {value:?} is not a page cursor"))
                })?);
                continue;
            }
            "_sort" => {
                query.oldest_first = match value.as_str() {
                    "date" | "_lastUpdated" => true,
                    "-date" | "-_lastUpdated" => false,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "AuditEvent sorts by date or -date only, not {value:?}"
                        )));
                    }
                };
                continue;
            }
            "_format" | "_pretty" => continue,
            "agent" => AuditColumn::Agent,
            "altid" => AuditColumn::Agent,
            "action" => AuditColumn::Action,
            "outcome" => AuditColumn::Outcome,
            "subtype" => AuditColumn::Subtype,
            "type" => AuditColumn::Type,
            "purpose-of-use" => AuditColumn::Purpose,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown or unsupported search parameter {name:?} for AuditEvent"
                )));
            }
        };
        let mut values = values()?;
        if name == "agent" {
            // `agent` is a reference: `Practitioner/x` or a bare name both mean the name.
            for value in &mut values {
                if let Some((_, id)) = value.split_once('/') {
                    *value = id.to_string();
                }
            }
        }
        query.filters.push(AuditFilter::Is(column, values));
    }
    Ok(query)
}

/// The conditions of a `date` parameter on `recorded`.
fn date(value: &str) -> Result<Vec<AuditFilter>, ApiError> {
    let (prefix, text) = match value.get(..2) {
        Some(prefix @ ("eq" | "ge" | "gt" | "le" | "lt" | "sa" | "eb")) => (prefix, &value[2..]),
        Some("ne" | "ap") => {
            return Err(ApiError::bad_request(format!(
                "date {value:?}: the prefixes ne and ap are not supported on AuditEvent"
            )));
        }
        _ => ("eq", value),
    };
    let period = Instant::parse_fhir_period(text)
        .map_err(|reason| ApiError::bad_request(format!("date: {reason}")))?;
    Ok(match prefix {
        "ge" => vec![AuditFilter::Recorded(">=", period.start)],
        "gt" | "sa" => vec![AuditFilter::Recorded(">=", period.end)],
        "le" => vec![AuditFilter::Recorded("<", period.end)],
        "lt" | "eb" => vec![AuditFilter::Recorded("<", period.start)],
        _ => vec![
            AuditFilter::Recorded(">=", period.start),
            AuditFilter::Recorded("<", period.end),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn parameters_become_filters() {
        let query = parse(
            &params(&[
                ("patient", "p1,Patient/p2"),
                (
                    "outcome",
                    "http://terminology.hl7.org/CodeSystem/audit-event-outcome|4",
                ),
                ("_count", "5000"),
                ("_sort", "date"),
            ]),
            50,
            1000,
        )
        .unwrap();
        assert_eq!(
            query.filters,
            [
                AuditFilter::Is(
                    AuditColumn::Patient,
                    vec!["Patient/p1".into(), "Patient/p2".into()]
                ),
                AuditFilter::Is(AuditColumn::Outcome, vec!["4".into()]),
            ]
        );
        assert_eq!(query.count, 1000);
        assert!(query.oldest_first);
    }

    #[test]
    fn dates_bound_the_recorded_instant() {
        let filters = date("ge2026-01-02").unwrap();
        let start = Instant::parse_fhir_period("2026-01-02").unwrap().start;
        assert_eq!(filters, [AuditFilter::Recorded(">=", start)]);
        assert_eq!(date("2026").unwrap().len(), 2);
        assert!(date("ne2026").is_err());
        assert!(date("yesterday").is_err());
    }

    #[test]
    fn unknown_parameters_are_refused() {
        assert!(parse(&params(&[("name", "x")]), 50, 1000).is_err());
        assert!(parse(&params(&[("_sort", "agent")]), 50, 1000).is_err());
    }
}
