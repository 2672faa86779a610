//! Break-the-glass: who may override label and consent restrictions in an emergency.
//!
//! The request states purpose of use `BTG` and a reason; the server then lifts the
//! restrictions on one patient's data for that principal for a limited time, and the
//! audit trail records it at high severity.

use crate::access::Principal;
use crate::role::Role;

/// The purpose-of-use code that asks to break the glass.
pub const PURPOSE: &str = "BTG";

/// The roles that may break the glass: those who treat patients. Others (admin,
/// him_manager, roi_specialist, ...) reach labelled data through their permissions, or
/// not at all; an emergency override is a care decision.
pub const ROLES: [Role; 1] = [Role::Clinician];

/// Whether `principal` asks to break the glass (purpose of use `BTG`, any case).
pub fn asks(principal: &Principal) -> bool {
    principal
        .purpose_of_use
        .as_deref()
        .is_some_and(|purpose| purpose.eq_ignore_ascii_case(PURPOSE))
}

/// Whether `principal` may break the glass; the refusal says why.
pub fn may_break(principal: &Principal) -> Result<(), String> {
    if principal.unchecked || principal.roles.iter().any(|role| ROLES.contains(role)) {
        return Ok(());
    }
    let names: Vec<&str> = principal.roles.iter().map(|role| role.as_str()).collect();
    Err(format!(
        "the role{} {} may not break the glass (only clinician may)",
        if names.len() == 1 { "" } else { "s" },
        if names.is_empty() {
            "(none)".to_string()
        } else {
            names.join(", ")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clinicians_break_the_glass() {
        let mut principal = Principal::anonymous();
        principal.purpose_of_use = Some("btg".into());
        assert!(asks(&principal));
        principal.roles = vec![Role::Clinician];
        assert!(may_break(&principal).is_ok());
        principal.roles = vec![Role::HimManager, Role::Admin];
        assert_eq!(
            may_break(&principal),
            Err("the roles him_manager, admin may not break the glass (only clinician may)".into())
        );
        principal.purpose_of_use = Some("TREAT".into());
        assert!(!asks(&principal));
    }
}
