//! Resource ids: `[A-Za-z0-9\-\.]{1,64}` (FHIR R4, datatypes `id`).

/// Whether `id` is a valid FHIR logical id.
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::is_valid_id;

    #[test]
    fn accepts_the_id_grammar() {
        assert!(is_valid_id("a"));
        assert!(is_valid_id("example-1.2"));
        assert!(is_valid_id(&"x".repeat(64)));
    }

    #[test]
    fn rejects_everything_else() {
        assert!(!is_valid_id(""));
        assert!(!is_valid_id(&"x".repeat(65)));
        assert!(!is_valid_id("a_b"));
        assert!(!is_valid_id("a b"));
        assert!(!is_valid_id("a/b"));
        assert!(!is_valid_id("é"));
    }
}
