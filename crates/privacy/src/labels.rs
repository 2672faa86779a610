//! Sensitive-data labels: the `meta.security` codes that hide a resource from anyone
//! without an explicit permission for them.
//!
//! Two kinds: the confidentiality codes R (restricted) and V (very restricted), which
//! HIM roles may see, and sensitivity codes such as PSY, ETH, HIV and SUD (42 CFR Part
//! 2), which need a `sensitive/CODE` (or `sensitive/*`) scope on the token whatever the
//! role. Without the permission a labelled resource is invisible, not refused.

use serde_json::Value;

use crate::access::Principal;
use crate::role::Role;
use crate::scope::Scope;

/// The code system of the confidentiality codes (R, V, ...).
pub const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
/// The code system of the sensitivity codes (PSY, HIV, ...).
pub const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

/// The confidentiality codes that hide a resource.
pub const CONFIDENTIALITY_CODES: [&str; 2] = ["R", "V"];

/// The sensitivity codes that hide a resource (information sensitivity policies of
/// v3 ActCode: behavioural health, substance use, HIV and sexual health, genetics,
/// violence).
pub const SENSITIVITY_CODES: [&str; 14] = [
    "BH", "ETH", "ETHUD", "GDIS", "HIV", "MST", "OPIOIDUD", "PSY", "PSYTHPN", "SDV", "SEX",
    "SICKLE", "STD", "SUD",
];

/// The scope prefix that grants sight of a sensitivity code (`sensitive/HIV`), or of
/// all of them (`sensitive/*`).
pub const SCOPE_PREFIX: &str = "sensitive/";

/// A security label: a code in a code system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    pub system: &'static str,
    pub code: &'static str,
}

/// Every label that hides a resource.
pub fn restricted() -> impl Iterator<Item = Label> {
    let confidentiality = CONFIDENTIALITY_CODES.iter().map(|code| Label {
        system: CONFIDENTIALITY,
        code,
    });
    let sensitivity = SENSITIVITY_CODES.iter().map(|code| Label {
        system: ACT_CODE,
        code,
    });
    confidentiality.chain(sensitivity)
}

/// Whether `text` is a sensitivity scope (`sensitive/HIV`, `sensitive/*`).
pub fn is_scope(text: &str) -> bool {
    text.strip_prefix(SCOPE_PREFIX)
        .is_some_and(|code| code == "*" || SENSITIVITY_CODES.contains(&code))
}

/// Whether `principal` has the explicit permission to see resources labelled `label`.
///
/// R: admin, him_manager and roi_specialist. V: him_manager only. A sensitivity code:
/// the token's `sensitive/CODE` or `sensitive/*` scope, whatever the role.
pub fn may_see(principal: &Principal, label: Label) -> bool {
    if principal.unchecked {
        return true;
    }
    let has_role = |roles: &[Role]| principal.roles.iter().any(|role| roles.contains(role));
    match (label.system, label.code) {
        (CONFIDENTIALITY, "R") => has_role(&[Role::Admin, Role::HimManager, Role::RoiSpecialist]),
        (CONFIDENTIALITY, "V") => has_role(&[Role::HimManager]),
        (ACT_CODE, code) => principal.scopes.iter().any(|scope| match scope {
            Scope::Other(text) => text
                .strip_prefix(SCOPE_PREFIX)
                .is_some_and(|granted| granted == "*" || granted == code),
            Scope::Resource(_) => false,
        }),
        _ => true,
    }
}

/// The restricted labels `principal` may not see.
pub fn hidden_from(principal: &Principal) -> Vec<Label> {
    restricted()
        .filter(|label| !may_see(principal, *label))
        .collect()
}

/// The `meta.security` codings of `resource`, as (system, code); a coding without a
/// system has the system "".
pub fn labels_of(resource: &Value) -> Vec<(&str, &str)> {
    resource["meta"]["security"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|coding| {
            let code = coding.get("code")?.as_str()?;
            let system = coding.get("system").and_then(Value::as_str).unwrap_or("");
            Some((system, code))
        })
        .collect()
}

/// Whether `resource` carries one of `hidden`.
pub fn carries_any(resource: &Value, hidden: &[Label]) -> bool {
    labels_of(resource).iter().any(|(system, code)| {
        hidden
            .iter()
            .any(|label| label.system == *system && label.code == *code)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Scopes;
    use serde_json::json;

    fn principal(roles: &[Role], scopes: &str) -> Principal {
        let mut principal = Principal::anonymous();
        principal.roles = roles.to_vec();
        principal.scopes = Scopes::parse(scopes);
        principal
    }

    const R: Label = Label {
        system: CONFIDENTIALITY,
        code: "R",
    };
    const V: Label = Label {
        system: CONFIDENTIALITY,
        code: "V",
    };
    const HIV: Label = Label {
        system: ACT_CODE,
        code: "HIV",
    };

    #[test]
    fn confidentiality_follows_the_role_and_sensitivity_the_scope() {
        let clinician = principal(&[Role::Clinician], "user/*.cruds");
        assert!(!may_see(&clinician, R));
        assert!(!may_see(&clinician, HIV));
        let him = principal(&[Role::HimManager], "user/*.cruds");
        assert!(may_see(&him, R));
        assert!(may_see(&him, V));
        assert!(!may_see(&him, HIV));
        let roi = principal(&[Role::RoiSpecialist], "system/*.rs sensitive/HIV");
        assert!(may_see(&roi, R));
        assert!(!may_see(&roi, V));
        assert!(may_see(&roi, HIV));
        assert!(!may_see(
            &roi,
            Label {
                system: ACT_CODE,
                code: "PSY"
            }
        ));
        let all = principal(&[Role::Clinician], "user/*.rs sensitive/*");
        assert!(
            hidden_from(&all)
                .iter()
                .all(|label| label.system == CONFIDENTIALITY)
        );
        assert!(hidden_from(&Principal::unchecked()).is_empty());
    }

    #[test]
    fn a_resource_carries_a_label_by_system_and_code() {
        let labelled = json!({"resourceType": "Observation", "meta": {"security": [
            {"system": CONFIDENTIALITY, "code": "R"}]}});
        let other_system = json!({"resourceType": "Observation", "meta": {"security": [
            {"system": "http://example.org", "code": "R"}]}});
        assert!(carries_any(&labelled, &[R]));
        assert!(!carries_any(&labelled, &[V, HIV]));
        assert!(!carries_any(&other_system, &[R]));
        assert!(!carries_any(&json!({"resourceType": "Patient"}), &[R]));
    }

    #[test]
    fn sensitivity_scopes_are_known_codes() {
        assert!(is_scope("sensitive/HIV"));
        assert!(is_scope("sensitive/*"));
        assert!(!is_scope("sensitive/FOO"));
        assert!(!is_scope("HIV"));
    }
}
