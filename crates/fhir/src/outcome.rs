//! OperationOutcome: how every layer reports a problem to a FHIR client.

use serde_json::{Value, json};

/// `OperationOutcome.issue.severity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    pub fn code(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// `OperationOutcome.issue.code` (value set `issue-type`), the subset we raise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueType {
    Invalid,
    Structure,
    Required,
    Value,
    Invariant,
    CodeInvalid,
    Security,
    NotSupported,
    NotFound,
    Deleted,
    TooLong,
    Conflict,
    Processing,
    Exception,
    Informational,
}

impl IssueType {
    pub fn code(self) -> &'static str {
        match self {
            IssueType::Invalid => "invalid",
            IssueType::Structure => "structure",
            IssueType::Required => "required",
            IssueType::Value => "value",
            IssueType::Invariant => "invariant",
            IssueType::CodeInvalid => "code-invalid",
            IssueType::Security => "security",
            IssueType::NotSupported => "not-supported",
            IssueType::NotFound => "not-found",
            IssueType::Deleted => "deleted",
            IssueType::TooLong => "too-long",
            IssueType::Conflict => "conflict",
            IssueType::Processing => "processing",
            IssueType::Exception => "exception",
            IssueType::Informational => "informational",
        }
    }
}

/// An OperationOutcome with a single issue.
pub fn operation_outcome(severity: Severity, code: IssueType, diagnostics: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{
            "severity": severity.code(),
            "code": code.code(),
            "diagnostics": diagnostics,
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_carries_severity_code_and_text() {
        let outcome = operation_outcome(Severity::Error, IssueType::NotFound, "no Patient/x");
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert_eq!(outcome["issue"][0]["severity"], "error");
        assert_eq!(outcome["issue"][0]["code"], "not-found");
        assert_eq!(outcome["issue"][0]["diagnostics"], "no Patient/x");
    }
}
