//! HIM roles and what each may do: the permission matrix of docs/security.md.
//!
//! Resource types fall into classes (clinical, administrative, financial, conformance,
//! privacy and audit); a role grants interaction letters per class, and may run the
//! operations that release data in bulk (`$export`) or whole records (`$everything`).
//! Nobody creates, changes or deletes AuditEvent through the API.

use std::fmt;
use std::str::FromStr;

use crate::scope::{Letter, Letters};

/// A role of a user or client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Runs the server: every interaction except writing the audit trail.
    Admin,
    /// Manages the record: corrections, amendments, retention (delete), releases.
    HimManager,
    /// Codes encounters: reads clinical data, writes codes and claims.
    Coder,
    /// Release of information: reads the record and releases it (`$export`,
    /// `$everything`); records authorisations (Consent).
    RoiSpecialist,
    /// Treats patients: reads and writes clinical data.
    Clinician,
    /// Reviews access: reads the audit trail and who the actors are, not clinical content.
    Auditor,
    /// A patient: reads their own record (the compartment filter comes with the token's
    /// patient context).
    Patient,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Admin,
        Role::HimManager,
        Role::Coder,
        Role::RoiSpecialist,
        Role::Clinician,
        Role::Auditor,
        Role::Patient,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::HimManager => "him_manager",
            Role::Coder => "coder",
            Role::RoiSpecialist => "roi_specialist",
            Role::Clinician => "clinician",
            Role::Auditor => "auditor",
            Role::Patient => "patient",
        }
    }

    /// The letters this role has on `resource_type`.
    pub fn letters(self, resource_type: &str) -> Letters {
        let class = Class::of(resource_type);
        let read = Letters::of(&[Letter::Read, Letter::Search]);
        let read_write =
            Letters::of(&[Letter::Create, Letter::Read, Letter::Update, Letter::Search]);
        match (self, class) {
            // The audit trail is append-only: the server writes it, nobody else.
            (Role::Admin | Role::Auditor, Class::Audit) => read,
            (_, Class::Audit) => Letters::NONE,
            (Role::Admin | Role::HimManager, _) => Letters::ALL,
            (Role::Coder, Class::Financial) => read_write,
            (Role::Coder, _) if CODED_TYPES.contains(&resource_type) => read_write,
            (Role::Coder, _) => read,
            (Role::RoiSpecialist, Class::Privacy) => read_write,
            (Role::RoiSpecialist, _) if resource_type == "DocumentReference" => read_write,
            (Role::RoiSpecialist, _) => read,
            (Role::Clinician, Class::Clinical | Class::Administrative) => read_write,
            (Role::Clinician, Class::Conformance | Class::Privacy) => read,
            (Role::Clinician, Class::Financial) => Letters::NONE,
            (Role::Auditor, Class::Administrative | Class::Privacy | Class::Conformance) => read,
            (Role::Auditor, _) if resource_type == "Provenance" => read,
            (Role::Auditor, Class::Clinical | Class::Financial) => Letters::NONE,
            (Role::Patient, Class::Clinical | Class::Administrative | Class::Privacy) => read,
            (Role::Patient, Class::Conformance) => read,
            (Role::Patient, Class::Financial) => read,
        }
    }

    /// Whether this role may release data in bulk (`$export`).
    pub fn may_export(self) -> bool {
        matches!(self, Role::Admin | Role::HimManager | Role::RoiSpecialist)
    }

    /// Whether this role may ask for a patient's whole record (`$everything`).
    pub fn may_everything(self) -> bool {
        !matches!(self, Role::Auditor)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| {
                let known: Vec<&str> = Role::ALL.iter().map(|role| role.as_str()).collect();
                format!("unknown role {text:?} (one of {})", known.join(", "))
            })
    }
}

impl serde::Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Role, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Clinical types a coder assigns codes on (diagnoses, procedures, the encounter's
/// diagnosis list and the account it bills to).
const CODED_TYPES: [&str; 4] = ["Encounter", "Condition", "Procedure", "EpisodeOfCare"];

/// Kinds of resource types, for the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Everything not named below: the clinical record.
    Clinical,
    /// Who and where: patients, practitioners, organisations, devices, groups.
    Administrative,
    /// Billing and coverage.
    Financial,
    /// Definitions the server runs on: profiles, value sets, search parameters.
    Conformance,
    /// Consent.
    Privacy,
    /// AuditEvent.
    Audit,
}

const ADMINISTRATIVE: [&str; 12] = [
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "RelatedPerson",
    "Person",
    "Organization",
    "OrganizationAffiliation",
    "Location",
    "HealthcareService",
    "Endpoint",
    "Device",
    "Group",
];

const FINANCIAL: [&str; 15] = [
    "Account",
    "ChargeItem",
    "ChargeItemDefinition",
    "Claim",
    "ClaimResponse",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "ExplanationOfBenefit",
    "Invoice",
    "PaymentNotice",
    "PaymentReconciliation",
];

const CONFORMANCE: [&str; 14] = [
    "CapabilityStatement",
    "CodeSystem",
    "CompartmentDefinition",
    "ConceptMap",
    "GraphDefinition",
    "ImplementationGuide",
    "MessageDefinition",
    "NamingSystem",
    "OperationDefinition",
    "SearchParameter",
    "StructureDefinition",
    "StructureMap",
    "TerminologyCapabilities",
    "ValueSet",
];

impl Class {
    pub fn of(resource_type: &str) -> Class {
        if resource_type == "AuditEvent" {
            Class::Audit
        } else if resource_type == "Consent" {
            Class::Privacy
        } else if ADMINISTRATIVE.contains(&resource_type) {
            Class::Administrative
        } else if FINANCIAL.contains(&resource_type) {
            Class::Financial
        } else if CONFORMANCE.contains(&resource_type) {
            Class::Conformance
        } else {
            Class::Clinical
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nobody_writes_the_audit_trail_and_only_auditors_and_admins_read_it() {
        for role in Role::ALL {
            let letters = role.letters("AuditEvent");
            assert!(!letters.contains(Letter::Create), "{role}");
            assert!(!letters.contains(Letter::Update), "{role}");
            assert!(!letters.contains(Letter::Delete), "{role}");
            let reads = matches!(role, Role::Admin | Role::Auditor);
            assert_eq!(letters.contains(Letter::Read), reads, "{role}");
        }
    }

    #[test]
    fn roles_parse_and_print() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn coders_write_codes_not_observations() {
        assert!(Role::Coder.letters("Claim").contains(Letter::Create));
        assert!(Role::Coder.letters("Condition").contains(Letter::Update));
        assert!(!Role::Coder.letters("Observation").contains(Letter::Create));
        assert!(Role::Coder.letters("Observation").contains(Letter::Read));
        assert!(!Role::Coder.letters("Condition").contains(Letter::Delete));
    }

    #[test]
    fn auditors_do_not_read_clinical_content() {
        assert!(!Role::Auditor.letters("Observation").contains(Letter::Read));
        assert!(Role::Auditor.letters("Practitioner").contains(Letter::Read));
        assert!(Role::Auditor.letters("Provenance").contains(Letter::Read));
    }
}
