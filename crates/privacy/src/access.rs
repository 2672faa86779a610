//! Who is asking (`Principal`), what they ask to do (`Interaction` on a type), and the
//! one decision between them (`decide`): role permissions intersected with the token's
//! scopes.
//!
//! This is the only place that says whether a principal may do an interaction on a
//! type. Later checks on single resources (patient compartment, security labels,
//! consent) start from the `Decision` it returns: it says in which context the scopes
//! allowed the interaction, and the principal carries its patient.

use crate::role::Role;
use crate::scope::{Context, Letter, Scopes};

/// An authenticated caller, for the length of one request.
#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    /// The token's subject: a client id or a user name.
    pub subject: String,
    /// The OAuth client the token was issued to, if known.
    pub client_id: Option<String>,
    /// The user the token speaks for, if any (a client-credentials token has none).
    pub user: Option<String>,
    pub roles: Vec<Role>,
    pub scopes: Scopes,
    /// The patient the token is limited to (`patient` launch context).
    pub patient: Option<String>,
    /// Why the caller asks (`purpose of use`, e.g. `TREAT`, `BTG`), from the request.
    pub purpose_of_use: Option<String>,
    /// Who issued the token.
    pub issuer: String,
    /// The token's id (`jti`), for the audit trail.
    pub token_id: Option<String>,
    /// When the token expires, in seconds since the epoch.
    pub expires_at: u64,
    /// Access checks are off (`--insecure-no-auth`): every decision allows.
    pub unchecked: bool,
}

impl Principal {
    /// The principal of a server running without authentication: it may do anything.
    pub fn unchecked() -> Principal {
        Principal {
            subject: "anonymous".into(),
            client_id: None,
            user: None,
            roles: vec![Role::Admin],
            scopes: Scopes::parse("system/*.cruds"),
            patient: None,
            purpose_of_use: None,
            issuer: String::new(),
            token_id: None,
            expires_at: u64::MAX,
            unchecked: true,
        }
    }

    /// A caller who has not authenticated: no roles, no scopes, so every decision
    /// refuses.
    pub fn anonymous() -> Principal {
        Principal {
            subject: "anonymous".into(),
            client_id: None,
            user: None,
            roles: Vec::new(),
            scopes: Scopes::default(),
            patient: None,
            purpose_of_use: None,
            issuer: String::new(),
            token_id: None,
            expires_at: 0,
            unchecked: false,
        }
    }

    /// The patient this principal is limited to, if any: every read path must keep to
    /// that patient's compartment.
    pub fn patient(&self) -> Option<&str> {
        self.patient.as_deref()
    }
}

/// What a request does, in the terms permissions are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interaction {
    Read,
    Vread,
    /// A search of the type (type, system and compartment searches alike).
    Search,
    Create,
    Update,
    Patch,
    Delete,
    /// One resource's history.
    HistoryInstance,
    /// A type's (or, type by type, the system's) history.
    HistoryType,
    /// `$validate`: reads nothing stored, but needs to see the type.
    Validate,
    /// `Patient/[id]/$everything`, checked for each type it returns.
    Everything,
    /// `$export`, checked for each type it exports.
    Export,
}

impl Interaction {
    /// The scope letters the interaction needs.
    pub fn letters(self) -> &'static [Letter] {
        match self {
            Interaction::Read
            | Interaction::Vread
            | Interaction::HistoryInstance
            | Interaction::Validate => &[Letter::Read],
            Interaction::Search | Interaction::HistoryType => &[Letter::Search],
            Interaction::Create => &[Letter::Create],
            Interaction::Update | Interaction::Patch => &[Letter::Update],
            Interaction::Delete => &[Letter::Delete],
            Interaction::Everything | Interaction::Export => &[Letter::Read, Letter::Search],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Interaction::Read => "read",
            Interaction::Vread => "vread",
            Interaction::Search => "search",
            Interaction::Create => "create",
            Interaction::Update => "update",
            Interaction::Patch => "patch",
            Interaction::Delete => "delete",
            Interaction::HistoryInstance | Interaction::HistoryType => "history",
            Interaction::Validate => "$validate",
            Interaction::Everything => "$everything",
            Interaction::Export => "$export",
        }
    }
}

/// The answer to "may this principal do this".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed; the scopes allowed it in this context (`Patient`: only in the
    /// principal's patient compartment).
    Allow(Context),
    /// Refused, and why (safe to show the caller: it names no data).
    Deny(String),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

/// May `principal` do `interaction` on resources of `resource_type`?
///
/// Allowed when one of the principal's roles permits every letter the interaction needs
/// on the type (and, for `$export` and `$everything`, the operation), and the token's
/// scopes allow the same letters. A principal with the patient context and no patient
/// is refused.
pub fn decide(principal: &Principal, interaction: Interaction, resource_type: &str) -> Decision {
    if principal.unchecked {
        return Decision::Allow(Context::System);
    }
    if !fhir::definitions().is_resource_type(resource_type) {
        return Decision::Deny(format!("{resource_type:?} is not a resource type"));
    }
    let letters = interaction.letters();
    let role_allows = principal.roles.iter().any(|role| {
        letters
            .iter()
            .all(|letter| role.letters(resource_type).contains(*letter))
            && match interaction {
                Interaction::Export => role.may_export(),
                Interaction::Everything => role.may_everything(),
                _ => true,
            }
    });
    if !role_allows {
        return Decision::Deny(format!(
            "the role{} {} may not {} {resource_type}",
            if principal.roles.len() == 1 { "" } else { "s" },
            role_names(&principal.roles),
            interaction.as_str(),
        ));
    }
    let mut narrowest = Context::System;
    for letter in letters {
        match principal.scopes.allows(*letter, resource_type) {
            Some(context) => narrowest = narrowest.min(context),
            None => {
                return Decision::Deny(format!(
                    "the token's scopes do not allow {} on {resource_type} (needs scope letter '{}')",
                    interaction.as_str(),
                    letter.as_char()
                ));
            }
        }
    }
    if narrowest == Context::Patient && principal.patient.is_none() {
        return Decision::Deny("the token has patient scopes but no patient context".into());
    }
    Decision::Allow(narrowest)
}

/// May `principal` follow up a bulk release (an export's status and files)? Those who
/// may start one may.
pub fn may_release(principal: &Principal) -> Decision {
    if principal.unchecked || principal.roles.iter().any(|role| role.may_export()) {
        Decision::Allow(Context::System)
    } else {
        Decision::Deny(format!(
            "the role{} {} may not release data in bulk",
            if principal.roles.len() == 1 { "" } else { "s" },
            role_names(&principal.roles)
        ))
    }
}

fn role_names(roles: &[Role]) -> String {
    if roles.is_empty() {
        return "(none)".into();
    }
    roles
        .iter()
        .map(|role| role.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(roles: &[Role], scopes: &str, patient: Option<&str>) -> Principal {
        Principal {
            subject: "test".into(),
            client_id: Some("test".into()),
            user: None,
            roles: roles.to_vec(),
            scopes: Scopes::parse(scopes),
            patient: patient.map(str::to_string),
            purpose_of_use: None,
            issuer: "https://issuer".into(),
            token_id: None,
            expires_at: 0,
            unchecked: false,
        }
    }

    #[test]
    fn effective_permission_is_role_and_scope() {
        // The scope allows it, the role does not.
        let coder = principal(&[Role::Coder], "system/*.cruds", None);
        assert!(!decide(&coder, Interaction::Create, "Observation").is_allowed());
        assert!(decide(&coder, Interaction::Create, "Claim").is_allowed());
        // The role allows it, the scope does not.
        let admin = principal(&[Role::Admin], "system/Patient.r", None);
        assert!(decide(&admin, Interaction::Read, "Patient").is_allowed());
        assert!(!decide(&admin, Interaction::Search, "Patient").is_allowed());
        assert!(!decide(&admin, Interaction::Read, "Observation").is_allowed());
    }

    #[test]
    fn patient_scopes_need_a_patient_and_report_the_context() {
        let with = principal(&[Role::Patient], "patient/*.rs", Some("p1"));
        assert_eq!(
            decide(&with, Interaction::Search, "Observation"),
            Decision::Allow(Context::Patient)
        );
        let without = principal(&[Role::Patient], "patient/*.rs", None);
        assert!(!decide(&without, Interaction::Search, "Observation").is_allowed());
    }

    #[test]
    fn operations_need_the_role_privilege_and_both_letters() {
        let clinician = principal(&[Role::Clinician], "user/*.cruds", None);
        assert!(!decide(&clinician, Interaction::Export, "Patient").is_allowed());
        assert!(decide(&clinician, Interaction::Everything, "Patient").is_allowed());
        let roi = principal(&[Role::RoiSpecialist], "system/*.r", None);
        assert!(!decide(&roi, Interaction::Export, "Patient").is_allowed());
        let roi = principal(&[Role::RoiSpecialist], "system/*.rs", None);
        assert!(decide(&roi, Interaction::Export, "Patient").is_allowed());
    }

    #[test]
    fn denials_say_why_without_data() {
        let coder = principal(&[Role::Coder], "system/*.rs", None);
        let Decision::Deny(reason) = decide(&coder, Interaction::Delete, "Condition") else {
            panic!("allowed");
        };
        assert_eq!(reason, "the role coder may not delete Condition");
    }
}
