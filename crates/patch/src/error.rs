//! Why a patch failed.

use std::fmt;

/// Whether the patch itself is wrong, or it is right but cannot be applied to this resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The patch is not a valid FHIRPath Patch `Parameters` resource (HTTP 400).
    BadPatch,
    /// The patch is valid but does not fit the resource: a path selects no element or more
    /// than one, an index is out of range, an element does not exist on the type (HTTP 422).
    Unprocessable,
}

/// Why a patch failed; no operation of a failed patch is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchError {
    pub kind: ErrorKind,
    /// The index in `Parameters.parameter` of the operation that failed (from 0);
    /// `None` when the patch as a whole is wrong (not a `Parameters` resource).
    pub operation: Option<usize>,
    /// What is wrong, naming the operation's type and path where known.
    pub message: String,
}

impl PatchError {
    pub(crate) fn bad_patch(operation: Option<usize>, message: impl Into<String>) -> PatchError {
        PatchError {
            kind: ErrorKind::BadPatch,
            operation,
            message: message.into(),
        }
    }

    pub(crate) fn unprocessable(operation: usize, message: impl Into<String>) -> PatchError {
        PatchError {
            kind: ErrorKind::Unprocessable,
            operation: Some(operation),
            message: message.into(),
        }
    }

    /// Whether the patch document itself is invalid (as opposed to not applicable).
    pub fn is_bad_patch(&self) -> bool {
        self.kind == ErrorKind::BadPatch
    }
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.operation {
            Some(index) => write!(f, "FHIRPath Patch operation {index}: {}", self.message),
            None => write!(f, "FHIRPath Patch: {}", self.message),
        }
    }
}

impl std::error::Error for PatchError {}
