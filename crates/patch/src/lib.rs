//! FHIRPath Patch, as FHIR R4 defines it (<http://hl7.org/fhir/R4/fhirpatch.html>).
//!
//! A patch is a `Parameters` resource with one `operation` parameter per change; each has
//! the parts `type` (add, insert, delete, replace, move), `path` (FHIRPath) and, as the type
//! needs, `name`, `value`, `index`, `source` and `destination`. [`apply`] applies them in
//! order, all or none.
//!
//! Paths select elements with the `fhirpath` engine, whose items borrow the JSON nodes of
//! the resource: each selected node is found by pointer identity while walking the resource
//! once, which gives its JSON location, and the edit is made there. Element names,
//! cardinalities and choice types come from the compiled-in R4 definitions
//! (`fhir::definitions()`), walked from the `resourceType` along the location.
//! A new property goes after the existing ones of its object (its `_name` right after it);
//! a replaced one keeps its place.
//!
//! This crate knows nothing about storage or HTTP.

mod edit;
mod error;
mod locate;
mod parse;
mod types;
mod value;

use serde_json::Value;

pub use error::{ErrorKind, PatchError};
pub use parse::{MAX_OPERATIONS, MAX_PART_DEPTH};

use locate::Location;
use parse::OperationKind;

/// Applies the FHIRPath Patch `patch` (a `Parameters` resource) to `resource`.
///
/// Either every operation applies or `resource` is left as it was. The patch is checked
/// as a whole first, so a malformed patch ([`ErrorKind::BadPatch`]) is reported before any
/// operation that does not fit the resource ([`ErrorKind::Unprocessable`]).
///
/// Per operation type:
/// - `add`: `path` selects exactly one element; `name` with `value` is added to it
///   (appended to a list when `name` repeats, an error when it does not and has a value).
/// - `insert`: `path` selects all the items of one existing list; `value` goes in at `index`
///   (0 to the length). An absent list cannot be selected; `add` creates it.
/// - `delete`: `path` selects at most one element, which is removed with its `_name`
///   sibling; objects and lists left empty are removed. Selecting nothing is not an error.
/// - `replace`: `path` selects exactly one element, whose value (and `_name`) is replaced.
/// - `move`: `path` selects all the items of one list; item `source` moves to `destination`.
///
/// A `value` is a `value[x]` (kept as given, numbers with their exact text, with its
/// `_value[x]` as the new element's `_name`), a `resource`, or nested `part`s naming the
/// element's children (lists where the definitions say an element repeats). For a choice
/// element named without its type (`deceased`), the `value[x]` type names the property
/// (`deceasedBoolean`); replace may change a choice's type.
pub fn apply(resource: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let operations = parse::parse_patch(patch)
        .map_err(|(index, message)| PatchError::bad_patch(index, message))?;
    let mut working = resource.clone();
    for (index, operation) in operations.iter().enumerate() {
        apply_one(&mut working, operation).map_err(|message| {
            PatchError::unprocessable(
                index,
                format!(
                    "{} at `{}`: {message}",
                    operation.kind.code(),
                    operation.path.source()
                ),
            )
        })?;
    }
    *resource = working;
    Ok(())
}

fn apply_one(document: &mut Value, operation: &parse::Operation) -> Result<(), String> {
    let locations = locate::select(&operation.path, document)?;
    match &operation.kind {
        OperationKind::Add { name, value } => {
            edit::add(document, exactly_one(&locations)?, name, value)
        }
        OperationKind::Insert { index, value } => edit::insert(document, &locations, *index, value),
        OperationKind::Delete => match locations.as_slice() {
            [] => Ok(()),
            [location] => edit::delete(document, location),
            more => Err(format!(
                "the path selects {} elements; delete removes one",
                more.len()
            )),
        },
        OperationKind::Replace { value } => {
            edit::replace(document, exactly_one(&locations)?, value)
        }
        OperationKind::Move {
            source,
            destination,
        } => edit::move_item(document, &locations, *source, *destination),
    }
}

fn exactly_one(locations: &[Location]) -> Result<&Location, String> {
    match locations {
        [location] => Ok(location),
        [] => Err("no content found: the path selects no element".into()),
        more => Err(format!(
            "the path selects {} elements; exactly one is needed",
            more.len()
        )),
    }
}
