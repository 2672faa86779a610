//! The accounting of disclosures (HIPAA, 45 CFR 164.528): what a release to a party
//! outside the organisation is, which purposes of use the accounting leaves out, who may
//! ask for a patient's accounting, and the accounting itself.
//!
//! Every release is recorded (`store::Disclosure`); the accounting leaves out what HIPAA
//! leaves out: treatment, payment and health care operations (the HL7 v3 PurposeOfUse
//! codes `TREAT`, `HPAYMT`, `HOPERAT` and their children), and disclosures to the
//! patient or at the patient's request (`PATRQT` and its children, persons involved in
//! the patient's care). Some v3 children of `HOPERAT` are disclosures HIPAA does account
//! for (legal proceedings, decedents, organ donation, government functions, fraud
//! investigation, military), so they stay in. So does `BTG`: a break-the-glass access
//! bypasses the normal authorisation, so nothing shows it served treatment.

use serde::{Deserialize, Serialize};
use store::{Disclosure, Instant, Store};

use crate::PrivacyError;
use crate::access::{Decision, Principal};
use crate::role::Role;

/// The code system of the purpose of use codes.
pub const PURPOSE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

/// How far back an accounting reaches: six years (164.528(a)(3)), in microseconds.
pub const LOOKBACK_US: i64 = 6 * 366 * 24 * 3600 * 1_000_000;

/// A party outside the organisation that receives data: kept on a client or user record
/// (`custodian admin create-client --recipient-name ... --recipient-address ...`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub name: String,
    #[serde(default)]
    pub address: String,
}

/// Longest recipient name or address accepted.
pub const MAX_RECIPIENT_BYTES: usize = 512;

impl Recipient {
    /// A recipient with a checked name and address: not empty (the name), at most
    /// [`MAX_RECIPIENT_BYTES`], no control characters.
    pub fn new(name: &str, address: &str) -> Result<Recipient, PrivacyError> {
        let name = name.trim();
        let address = address.trim();
        if name.is_empty() {
            return Err(PrivacyError::Invalid("a recipient needs a name".into()));
        }
        for (what, text) in [("name", name), ("address", address)] {
            if text.len() > MAX_RECIPIENT_BYTES || text.chars().any(char::is_control) {
                return Err(PrivacyError::Invalid(format!(
                    "a recipient's {what} is at most {MAX_RECIPIENT_BYTES} bytes, without control characters"
                )));
            }
        }
        Ok(Recipient {
            name: name.to_string(),
            address: address.to_string(),
        })
    }
}

/// The HL7 v3 PurposeOfUse codes (v3-ActReason, `_PurposeOfUse`) and their parents.
const PURPOSES: &[(&str, Option<&str>)] = &[
    ("HMARKT", None),
    ("HOPERAT", None),
    ("CAREMGT", Some("HOPERAT")),
    ("DONAT", Some("HOPERAT")),
    ("FRAUD", Some("HOPERAT")),
    ("GOV", Some("HOPERAT")),
    ("HACCRED", Some("HOPERAT")),
    ("HCOMPL", Some("HOPERAT")),
    ("HDECD", Some("HOPERAT")),
    ("HDIRECT", Some("HOPERAT")),
    ("HDM", Some("HOPERAT")),
    ("HLEGAL", Some("HOPERAT")),
    ("HOUTCOMS", Some("HOPERAT")),
    ("HPRGRP", Some("HOPERAT")),
    ("HQUALIMP", Some("HOPERAT")),
    ("HSYSADMIN", Some("HOPERAT")),
    ("LABELING", Some("HOPERAT")),
    ("METAMGT", Some("HOPERAT")),
    ("MEMADMIN", Some("HOPERAT")),
    ("MILCDM", Some("HOPERAT")),
    ("PATADMIN", Some("HOPERAT")),
    ("PATSFTY", Some("HOPERAT")),
    ("PERFMSR", Some("HOPERAT")),
    ("RECORDMGT", Some("HOPERAT")),
    ("SYSDEV", Some("HOPERAT")),
    ("HTEST", Some("HOPERAT")),
    ("TRAIN", Some("HOPERAT")),
    ("HPAYMT", None),
    ("CLMATTCH", Some("HPAYMT")),
    ("COVAUTH", Some("HPAYMT")),
    ("COVERAGE", Some("HPAYMT")),
    ("ELIGDTRM", Some("COVERAGE")),
    ("ELIGVER", Some("COVERAGE")),
    ("ENROLLM", Some("COVERAGE")),
    ("MILDCRG", Some("HPAYMT")),
    ("REMITADV", Some("HPAYMT")),
    ("HRESCH", None),
    ("BIORCH", Some("HRESCH")),
    ("CLINTRCH", Some("HRESCH")),
    ("CLINTRCHNPC", Some("CLINTRCH")),
    ("CLINTRCHPC", Some("CLINTRCH")),
    ("PRECLINTRCH", Some("CLINTRCH")),
    ("DSRCH", Some("HRESCH")),
    ("POARCH", Some("HRESCH")),
    ("TRANSRCH", Some("HRESCH")),
    ("PATRQT", None),
    ("FAMRQT", Some("PATRQT")),
    ("PWATRNY", Some("PATRQT")),
    ("SUPNWK", Some("PATRQT")),
    ("PUBHLTH", None),
    ("DISASTER", Some("PUBHLTH")),
    ("THREAT", Some("PUBHLTH")),
    ("TREAT", None),
    ("CLINTRL", Some("TREAT")),
    ("COC", Some("TREAT")),
    ("ETREAT", Some("TREAT")),
    ("BTG", Some("ETREAT")),
    ("ERTREAT", Some("ETREAT")),
    ("POPHLTH", Some("TREAT")),
];

/// Children of `HOPERAT` and `HPAYMT` that HIPAA accounts for all the same
/// (164.512: judicial proceedings, decedents, organ donation, government functions,
/// health oversight of fraud, military), and `BTG`.
const ACCOUNTED_ANYWAY: &[&str] = &[
    "BTG", "DONAT", "FRAUD", "GOV", "HDECD", "HLEGAL", "MILCDM", "MILDCRG",
];

/// The purpose of use code `text` names (the code alone, or `system|code` with the
/// v3-ActReason system), if it is one.
pub fn purpose_code(text: &str) -> Option<&'static str> {
    let code = match text.split_once('|') {
        Some((system, code)) if system == PURPOSE_SYSTEM => code,
        Some(_) => return None,
        None => text,
    };
    PURPOSES
        .iter()
        .find(|(known, _)| *known == code)
        .map(|(known, _)| *known)
}

/// The code and its ancestors, nearest first.
fn lineage(code: &str) -> Vec<&'static str> {
    let mut lineage = Vec::new();
    let mut current = purpose_code(code);
    while let Some(code) = current {
        lineage.push(code);
        current = PURPOSES
            .iter()
            .find(|(known, _)| *known == code)
            .and_then(|(_, parent)| *parent);
    }
    lineage
}

/// Whether a disclosure for `purpose` belongs in the accounting. Unknown purposes (and
/// none) do: only what HIPAA excludes is left out.
pub fn accounted(purpose: &str) -> bool {
    let lineage = lineage(purpose);
    if lineage.iter().any(|code| ACCOUNTED_ANYWAY.contains(code)) {
        return true;
    }
    !lineage
        .iter()
        .any(|code| matches!(*code, "TREAT" | "HPAYMT" | "HOPERAT" | "PATRQT"))
}

/// May `principal` ask for the accounting of disclosures of `patient`? Release of
/// information, HIM managers, admins and auditors may for any patient; a principal
/// limited to a patient (the patient's own app or account) for that patient only.
/// `None` when the patient is outside a patient-limited principal's compartment (it
/// is not there for it).
pub fn may_account(principal: &Principal, patient: &str) -> Option<Decision> {
    if principal.unchecked {
        return Some(Decision::Allow(crate::Context::System));
    }
    if let Some(own) = principal.patient() {
        return (own == patient).then_some(Decision::Allow(crate::Context::Patient));
    }
    let staff = principal.roles.iter().any(|role| {
        matches!(
            role,
            Role::RoiSpecialist | Role::HimManager | Role::Admin | Role::Auditor
        )
    });
    Some(if staff {
        Decision::Allow(crate::Context::System)
    } else {
        Decision::Deny(
            "only roi_specialist, him_manager, admin, auditor, or the patient, may see an accounting of disclosures"
                .into(),
        )
    })
}

/// The period `[from, to)` an accounting asks for: `start` and `end` are FHIR dates or
/// dateTimes, `end` inclusive (`2026-12-07` takes in the whole day); without `start`, six
/// years back from `now`; without `end`, up to `now`.
pub fn period(
    start: Option<&str>,
    end: Option<&str>,
    now: Instant,
) -> Result<(Instant, Instant), PrivacyError> {
    let parse = |what: &str, text: &str| {
        Instant::parse_fhir_period(text).map_err(|error| {
            PrivacyError::Invalid(format!("{what} is not a FHIR date or dateTime: {error}"))
        })
    };
    let from = match start {
        Some(text) => parse("start", text)?.start,
        None => Instant(now.0.saturating_sub(LOOKBACK_US)),
    };
    let to = match end {
        Some(text) => parse("end", text)?.end,
        None => Instant(now.0.saturating_add(1)),
    };
    Ok((from, to))
}

/// Most disclosures one accounting lists; a longer one asks for a shorter period.
pub const MAX_ENTRIES: usize = 10_000;

/// The accounting of disclosures of `patient` in `[from, to)`: the disclosures the
/// accounting includes, oldest first. `from` may be at most six years before `now`.
pub async fn accounting(
    store: &Store,
    patient: &str,
    from: Instant,
    to: Instant,
    now: Instant,
) -> Result<Vec<Disclosure>, PrivacyError> {
    if from.0 < now.0.saturating_sub(LOOKBACK_US) {
        return Err(PrivacyError::Invalid(
            "an accounting of disclosures reaches back at most six years".into(),
        ));
    }
    if to <= from {
        return Err(PrivacyError::Invalid("end must be after start".into()));
    }
    let found = store
        .disclosures(patient, from, to, MAX_ENTRIES + 1)
        .await?;
    if found.len() > MAX_ENTRIES {
        return Err(PrivacyError::Invalid(format!(
            "more than {MAX_ENTRIES} disclosures in the period; ask for a shorter one"
        )));
    }
    Ok(found
        .into_iter()
        .filter(|disclosure| accounted(&disclosure.purpose))
        .collect())
}

/// The client or user record's recipient, when `principal` acts for a party outside the
/// organisation (the user's, when both have one).
pub async fn external_recipient(
    store: &Store,
    principal: &Principal,
) -> Result<Option<Recipient>, PrivacyError> {
    if let Some(name) = &principal.user
        && let Some(user) = crate::account::user(store, name).await?
        && user.recipient.is_some()
    {
        return Ok(user.recipient);
    }
    if let Some(id) = &principal.client_id
        && let Some(client) = crate::account::client(store, id).await?
    {
        return Ok(client.recipient);
    }
    Ok(None)
}

/// How a disclosure names who released the data.
pub fn releaser(principal: &Principal) -> String {
    match (&principal.user, &principal.client_id) {
        (Some(user), Some(client)) => format!("user {user} (client {client})"),
        (Some(user), None) => format!("user {user}"),
        (None, Some(client)) => format!("client {client}"),
        (None, None) => principal.subject.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn treatment_payment_operations_and_the_patient_are_left_out() {
        for excluded in [
            "TREAT", "ETREAT", "COC", "HPAYMT", "ELIGVER", "COVAUTH", "HOPERAT", "HQUALIMP",
            "HDIRECT", "PATRQT", "FAMRQT", "PWATRNY",
        ] {
            assert!(!accounted(excluded), "{excluded}");
        }
        for included in [
            "HLEGAL",
            "PUBHLTH",
            "THREAT",
            "HRESCH",
            "CLINTRCHPC",
            "BTG",
            "HDECD",
            "DONAT",
            "GOV",
            "HMARKT",
            "unspecified",
            "",
        ] {
            assert!(accounted(included), "{included}");
        }
        assert!(!accounted(&format!("{PURPOSE_SYSTEM}|TREAT")));
    }

    #[test]
    fn purpose_codes_are_the_v3_ones() {
        assert_eq!(purpose_code("HLEGAL"), Some("HLEGAL"));
        assert_eq!(purpose_code(&format!("{PURPOSE_SYSTEM}|BTG")), Some("BTG"));
        assert_eq!(purpose_code("http://other|BTG"), None);
        assert_eq!(purpose_code("legal"), None);
        assert_eq!(lineage("ELIGVER"), ["ELIGVER", "COVERAGE", "HPAYMT"]);
    }

    #[test]
    fn periods_default_to_six_years_and_take_in_the_end_day() {
        let now = Instant::parse_fhir_period("2026-12-07T10:00:00Z")
            .unwrap()
            .start;
        let (from, to) = period(None, None, now).unwrap();
        assert_eq!(from.0, now.0 - LOOKBACK_US);
        assert!(to > now);
        let (from, to) = period(Some("2026-01-01"), Some("2026-06-30"), now).unwrap();
        assert_eq!(from.to_fhir(), "2026-01-01T00:00:00.000000Z");
        assert_eq!(to.to_fhir(), "2026-07-01T00:00:00.000000Z");
        assert!(period(Some("yesterday"), None, now).is_err());
    }

    fn principal(roles: &[Role], patient: Option<&str>) -> Principal {
        let mut principal = Principal::anonymous();
        principal.roles = roles.to_vec();
        principal.patient = patient.map(str::to_string);
        principal
    }

    #[test]
    fn staff_and_the_patient_may_ask_for_an_accounting() {
        for role in [
            Role::RoiSpecialist,
            Role::HimManager,
            Role::Admin,
            Role::Auditor,
        ] {
            let asked = may_account(&principal(&[role], None), "p1");
            assert!(
                asked.is_some_and(|decision| decision.is_allowed()),
                "{role:?}"
            );
        }
        for role in [Role::Clinician, Role::Coder, Role::Patient] {
            let asked = may_account(&principal(&[role], None), "p1");
            assert!(
                asked.is_some_and(|decision| !decision.is_allowed()),
                "{role:?}"
            );
        }
        let own = principal(&[Role::Patient], Some("p1"));
        assert!(may_account(&own, "p1").is_some_and(|decision| decision.is_allowed()));
        assert_eq!(may_account(&own, "p2"), None);
    }

    #[test]
    fn recipients_are_checked() {
        assert!(Recipient::new("  ", "x").is_err());
        assert!(Recipient::new("Firm\nInjected", "").is_err());
        assert!(Recipient::new(&"x".repeat(600), "").is_err());
        let recipient = Recipient::new(" Smith & Jones LLP ", "1 Court St").unwrap();
        assert_eq!(recipient.name, "Smith & Jones LLP");
    }
}
