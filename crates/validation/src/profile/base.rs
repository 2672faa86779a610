//! The core R4 definition behind a profile's element path, following data types
//! (`Observation.code.coding.system` ends in `Coding.system`) and content references.

use fhir::definitions::ElementDef;

/// How many data types or content references a path may pass through.
const MAX_HOPS: usize = 32;

/// The base definition of `path` (segments after the type name, e.g. `["code", "coding"]`) in
/// `type_name`; `None` when the path does not exist there.
pub(super) fn resolve(type_name: &str, path: &[String]) -> Option<&'static ElementDef> {
    resolve_in(type_name, path, 0)
}

fn resolve_in(type_name: &str, path: &[String], hops: usize) -> Option<&'static ElementDef> {
    if path.is_empty() || hops > MAX_HOPS {
        return None;
    }
    let type_def = fhir::definitions().type_def(type_name)?;
    // The longest prefix of the path that is an element of this type.
    let mut joined = String::new();
    let mut found = None;
    for (i, segment) in path.iter().enumerate() {
        if i > 0 {
            joined.push('.');
        }
        joined.push_str(segment);
        if let Some(el) = type_def.elements.iter().find(|e| e.path == joined) {
            found = Some((i + 1, el));
        }
    }
    let (n, el) = found?;
    if n == path.len() {
        return Some(el);
    }
    let rest = &path[n..];
    if let Some(reference) = el.content_reference.as_deref() {
        // `#Questionnaire.item`: the referenced element's children, in the same type.
        let target = reference.trim_start_matches('#');
        let target = target
            .split_once('.')
            .map_or(target, |(_, relative)| relative);
        let mut rerouted: Vec<String> = target.split('.').map(str::to_string).collect();
        rerouted.extend(rest.iter().cloned());
        return resolve_in(type_name, &rerouted, hops + 1);
    }
    el.types.iter().find_map(|t| resolve_in(t, rest, hops + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Vec<String> {
        p.split('.').map(str::to_string).collect()
    }

    #[test]
    fn follows_types_and_content_references() {
        let found = |t: &str, p: &str| resolve(t, &path(p)).map(|e| e.path.as_str());
        assert_eq!(found("Patient", "contact.name"), Some("contact.name"));
        assert_eq!(found("Observation", "code.coding.system"), Some("system"));
        assert_eq!(found("Patient", "extension.value[x]"), Some("value[x]"));
        assert_eq!(found("Patient", "birthDate.extension"), Some("extension"));
        assert_eq!(
            found("Questionnaire", "item.item.linkId"),
            Some("item.linkId")
        );
        assert_eq!(found("Patient", "nope"), None);
        assert_eq!(found("Patient", "name.nope"), None);
    }
}
