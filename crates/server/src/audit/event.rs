//! One audit record: the columns the store searches on and the details of the
//! AuditEvent, which the store writes as JSON in the style of IHE Basic Audit Log
//! Patterns (BALP) when the trail is read.

use store::{AuditDetail, AuditRecord, Instant};

use super::classify::What;

/// Severity of an ordinary event.
pub(crate) const INFORMATIONAL: &str = "informational";
/// Severity of a refusal (401, 403).
pub(crate) const WARNING: &str = "warning";
/// Severity of a break-the-glass access: the highest the trail uses.
pub(crate) const ALERT: &str = "alert";

/// Who asked, from where and why: what the request tells about its caller.
#[derive(Clone, Debug, Default)]
pub(crate) struct Who {
    /// The user, else the client (`anonymous` when unknown).
    pub agent: Option<String>,
    pub client: Option<String>,
    /// The agent is a user (not a system).
    pub user: bool,
    pub roles: Vec<&'static str>,
    /// The address the request came from.
    pub address: Option<std::net::IpAddr>,
    pub purpose: Option<String>,
    /// The reason given with a break-the-glass purpose.
    pub btg_reason: Option<String>,
}

impl Who {
    pub(crate) fn is_btg(&self) -> bool {
        self.purpose
            .as_deref()
            .is_some_and(|purpose| purpose.eq_ignore_ascii_case("BTG"))
    }
}

/// `0` for success, `4` for a refusal or bad request, `8` for a server failure.
pub(crate) fn outcome_of(status: u16) -> &'static str {
    match status {
        0..400 => "0",
        400..500 => "4",
        _ => "8",
    }
}

/// The record of `what` done by `who`, with HTTP status `status`. One is made for
/// every request, so it holds only what the request gave; its JSON is written when the
/// trail is read.
pub(crate) fn record(who: Who, what: What, status: u16, recorded: Instant) -> AuditRecord {
    let login = what.subtype == "login";
    let severity = if who.is_btg() {
        ALERT
    } else if status == 401 || status == 403 {
        WARNING
    } else {
        INFORMATIONAL
    };
    let mut entities = what.entities;
    if let Some(patient) = &what.patient
        && !entities.contains(patient)
    {
        entities.push(patient.clone());
    }
    AuditRecord {
        recorded,
        type_code: if login { store::LOGIN_TYPE } else { "rest" },
        subtype: if login {
            store::LOGIN_SUBTYPE
        } else {
            what.subtype
        },
        action: what.action,
        outcome: outcome_of(status),
        severity,
        agent: who.agent.unwrap_or_else(|| "anonymous".to_string()),
        patient: what.patient,
        purpose: who.purpose,
        entities,
        detail: AuditDetail {
            status,
            client: who.client,
            user: who.user,
            roles: who.roles,
            address: who.address,
            reason: who.btg_reason,
            operation: what.operation,
            query: what.query,
        },
        body: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_break_the_glass_read_is_an_alert_with_its_reason() {
        let who = Who {
            agent: Some("dr-who".into()),
            client: Some("ehr".into()),
            user: true,
            roles: vec!["clinician"],
            address: "10.0.0.1".parse().ok(),
            purpose: Some("BTG".into()),
            btg_reason: Some("unconscious patient".into()),
        };
        let what = What {
            subtype: "read",
            action: "R",
            entities: vec!["Observation/o1".into()],
            patient: Some("Patient/p1".into()),
            ..What::default()
        };
        let record = record(who, what, 200, Instant(0));
        assert_eq!(record.severity, ALERT);
        assert_eq!(record.purpose.as_deref(), Some("BTG"));
        assert_eq!(record.patient.as_deref(), Some("Patient/p1"));
        assert_eq!(record.entities, ["Observation/o1", "Patient/p1"]);
        assert_eq!(record.detail.reason.as_deref(), Some("unconscious patient"));
        assert!(record.detail.user);
        assert_eq!(record.detail.roles, ["clinician"]);
        assert_eq!((record.type_code, record.subtype), ("rest", "read"));
    }

    #[test]
    fn refusals_and_failures_have_their_outcomes() {
        let who = Who::default();
        let login = What {
            subtype: "login",
            action: "E",
            ..What::default()
        };
        let record = record(who, login, 401, Instant(0));
        assert_eq!(
            (record.type_code, record.subtype, record.outcome),
            (store::LOGIN_TYPE, store::LOGIN_SUBTYPE, "4")
        );
        assert_eq!(record.severity, WARNING);
        assert_eq!(record.detail.status, 401);
        assert_eq!(record.agent, "anonymous");
        assert_eq!(outcome_of(500), "8");
        assert_eq!(outcome_of(201), "0");
    }
}
