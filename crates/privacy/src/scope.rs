//! SMART on FHIR scopes, v2 (`patient/Observation.rs`) and v1 (`user/*.read`), parsed
//! into what they permit.
//!
//! A scope names a context (`patient`, `user`, `system`), a resource type or `*`, and
//! the interactions it allows: `c`reate, `r`ead, `u`pdate, `d`elete, `s`earch.
//! v2 scopes may narrow themselves with `?param=value` (granular scopes); those
//! restrictions are kept, and until the search filtering that applies them exists, a
//! restricted scope grants nothing (deny by default).
//! Identity and launch scopes (`openid`, `fhirUser`, `launch/patient`, `offline_access`
//! ...) are kept as they are and permit no interaction.

use std::fmt;

/// Who a resource scope speaks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Context {
    /// The patient in the launch context: only that patient's compartment.
    Patient,
    /// Whatever the user may see.
    User,
    /// A backend system, no user.
    System,
}

impl Context {
    fn parse(text: &str) -> Option<Context> {
        match text {
            "patient" => Some(Context::Patient),
            "user" => Some(Context::User),
            "system" => Some(Context::System),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Context::Patient => "patient",
            Context::User => "user",
            Context::System => "system",
        }
    }
}

/// The five SMART v2 interaction letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Letter {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Letter {
    /// The order SMART v2 writes them in.
    pub const ALL: [Letter; 5] = [
        Letter::Create,
        Letter::Read,
        Letter::Update,
        Letter::Delete,
        Letter::Search,
    ];

    fn bit(self) -> u8 {
        match self {
            Letter::Create => 1,
            Letter::Read => 2,
            Letter::Update => 4,
            Letter::Delete => 8,
            Letter::Search => 16,
        }
    }

    pub fn as_char(self) -> char {
        match self {
            Letter::Create => 'c',
            Letter::Read => 'r',
            Letter::Update => 'u',
            Letter::Delete => 'd',
            Letter::Search => 's',
        }
    }
}

/// A set of interaction letters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Letters(u8);

impl Letters {
    pub const NONE: Letters = Letters(0);
    pub const ALL: Letters = Letters(31);

    pub fn of(letters: &[Letter]) -> Letters {
        Letters(letters.iter().fold(0, |bits, letter| bits | letter.bit()))
    }

    pub fn contains(self, letter: Letter) -> bool {
        self.0 & letter.bit() != 0
    }

    pub fn covers(self, other: Letters) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// `cruds` in SMART v2 order: each letter at most once, in order.
    fn parse_v2(text: &str) -> Option<Letters> {
        let mut bits = 0u8;
        let mut last = None;
        for c in text.chars() {
            let position = Letter::ALL
                .iter()
                .position(|letter| letter.as_char() == c)?;
            if last.is_some_and(|last| position <= last) {
                return None;
            }
            last = Some(position);
            bits |= Letter::ALL[position].bit();
        }
        (bits != 0).then_some(Letters(bits))
    }

    /// The v1 suffixes: `read` is `rs`, `write` is `cud`, `*` is everything.
    fn parse_v1(text: &str) -> Option<Letters> {
        match text {
            "read" => Some(Letters::of(&[Letter::Read, Letter::Search])),
            "write" => Some(Letters::of(&[
                Letter::Create,
                Letter::Update,
                Letter::Delete,
            ])),
            "*" => Some(Letters::ALL),
            _ => None,
        }
    }
}

impl fmt::Display for Letters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for letter in Letter::ALL {
            if self.contains(letter) {
                write!(f, "{}", letter.as_char())?;
            }
        }
        Ok(())
    }
}

/// One parsed scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `context/Type.letters[?param=value&...]`.
    Resource(ResourceScope),
    /// Anything else that is a well-formed SMART scope: `openid`, `fhirUser`, `profile`,
    /// `launch`, `launch/patient`, `launch/encounter`, `offline_access`, `online_access`.
    Other(String),
}

/// A scope on resources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceScope {
    pub context: Context,
    /// A resource type, or `*`.
    pub resource_type: String,
    pub letters: Letters,
    /// Granular restrictions (`?category=laboratory`), in the order written.
    pub restrictions: Vec<(String, String)>,
    /// The text as the client wrote it.
    pub text: String,
}

impl ResourceScope {
    fn matches_type(&self, resource_type: &str) -> bool {
        self.resource_type == "*" || self.resource_type == resource_type
    }

    /// Whether this scope allows everything `other` allows.
    pub fn covers(&self, other: &ResourceScope) -> bool {
        self.context == other.context
            && (self.resource_type == "*" || self.resource_type == other.resource_type)
            && self.letters.covers(other.letters)
            && (self.restrictions.is_empty() || self.restrictions == other.restrictions)
    }
}

/// The non-resource scopes a client may ask for.
const OTHER_SCOPES: [&str; 8] = [
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
];

/// Longest scope string accepted, and most scopes in one set.
const MAX_SCOPE_BYTES: usize = 256;
const MAX_SCOPES: usize = 200;

impl Scope {
    /// Parses one scope; `None` when it is not a SMART scope we understand.
    pub fn parse(text: &str) -> Option<Scope> {
        if text.is_empty() || text.len() > MAX_SCOPE_BYTES {
            return None;
        }
        if OTHER_SCOPES.contains(&text) || crate::labels::is_scope(text) {
            return Some(Scope::Other(text.to_string()));
        }
        let (context, rest) = text.split_once('/')?;
        let context = Context::parse(context)?;
        let (body, query) = match rest.split_once('?') {
            Some((body, query)) => (body, Some(query)),
            None => (rest, None),
        };
        let (resource_type, action) = body.split_once('.')?;
        let type_ok = resource_type == "*"
            || (resource_type.chars().next().is_some_and(char::is_uppercase)
                && resource_type.chars().all(|c| c.is_ascii_alphanumeric())
                && fhir::definitions().is_resource_type(resource_type));
        if !type_ok {
            return None;
        }
        let (letters, v1) = match Letters::parse_v1(action) {
            Some(letters) => (letters, true),
            None => (Letters::parse_v2(action)?, false),
        };
        let restrictions = match query {
            None => Vec::new(),
            // Granular restrictions are a v2 feature.
            Some(_) if v1 => return None,
            Some(query) => {
                let mut pairs = Vec::new();
                for pair in query.split('&') {
                    let (name, value) = pair.split_once('=')?;
                    if name.is_empty() || value.is_empty() {
                        return None;
                    }
                    pairs.push((name.to_string(), value.to_string()));
                }
                pairs
            }
        };
        Some(Scope::Resource(ResourceScope {
            context,
            resource_type: resource_type.to_string(),
            letters,
            restrictions,
            text: text.to_string(),
        }))
    }

    pub fn text(&self) -> &str {
        match self {
            Scope::Resource(scope) => &scope.text,
            Scope::Other(text) => text,
        }
    }
}

/// A parsed scope string, as a token carries it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scopes {
    scopes: Vec<Scope>,
}

impl Scopes {
    /// Parses a space-separated scope string, dropping what is not a scope we know
    /// (a token from another issuer may carry scopes of its own).
    pub fn parse(text: &str) -> Scopes {
        let scopes = text
            .split_ascii_whitespace()
            .take(MAX_SCOPES)
            .filter_map(Scope::parse)
            .collect();
        Scopes { scopes }
    }

    /// Parses a scope string strictly: every scope must be one we know.
    pub fn parse_strict(text: &str) -> Result<Scopes, String> {
        let mut scopes = Vec::new();
        for (count, word) in text.split_ascii_whitespace().enumerate() {
            if count >= MAX_SCOPES {
                return Err(format!("more than {MAX_SCOPES} scopes"));
            }
            scopes.push(Scope::parse(word).ok_or_else(|| format!("unknown scope {word:?}"))?);
        }
        Ok(Scopes { scopes })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.scopes.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    /// The widest context in which some unrestricted scope allows `letter` on
    /// `resource_type` (`system` over `user` over `patient`), or `None`.
    pub fn allows(&self, letter: Letter, resource_type: &str) -> Option<Context> {
        self.resource_scopes()
            .filter(|scope| {
                scope.restrictions.is_empty()
                    && scope.letters.contains(letter)
                    && scope.matches_type(resource_type)
            })
            .map(|scope| scope.context)
            .max()
    }

    /// Whether some scope has the patient context (a token limited to one patient).
    pub fn has_patient_context(&self) -> bool {
        self.resource_scopes()
            .any(|scope| scope.context == Context::Patient)
    }

    fn resource_scopes(&self) -> impl Iterator<Item = &ResourceScope> {
        self.scopes.iter().filter_map(|scope| match scope {
            Scope::Resource(scope) => Some(scope),
            Scope::Other(_) => None,
        })
    }

    /// What of `requested` these scopes (the allowed ones) cover: a resource scope is
    /// kept when one allowed scope covers it, any other when it is allowed as written.
    pub fn grant(&self, requested: &Scopes) -> Scopes {
        let scopes = requested
            .scopes
            .iter()
            .filter(|wanted| match wanted {
                Scope::Resource(wanted) => {
                    self.resource_scopes().any(|allowed| allowed.covers(wanted))
                }
                Scope::Other(text) => self
                    .scopes
                    .iter()
                    .any(|allowed| matches!(allowed, Scope::Other(other) if other == text)),
            })
            .cloned()
            .collect();
        Scopes { scopes }
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, scope) in self.scopes.iter().enumerate() {
            if index > 0 {
                f.write_str(" ")?;
            }
            f.write_str(scope.text())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(text: &str) -> ResourceScope {
        match Scope::parse(text) {
            Some(Scope::Resource(scope)) => scope,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn v2_scopes_parse_into_context_type_and_letters() {
        let scope = resource("patient/Observation.rs");
        assert_eq!(scope.context, Context::Patient);
        assert_eq!(scope.resource_type, "Observation");
        assert_eq!(scope.letters.to_string(), "rs");
        assert_eq!(resource("user/*.cruds").letters, Letters::ALL);
        assert_eq!(resource("system/*.rs").context, Context::System);
    }

    #[test]
    fn v1_scopes_map_to_v2_letters() {
        assert_eq!(resource("patient/*.read").letters.to_string(), "rs");
        assert_eq!(
            resource("user/Observation.write").letters.to_string(),
            "cud"
        );
        assert_eq!(resource("user/*.*").letters, Letters::ALL);
    }

    #[test]
    fn granular_restrictions_are_kept_and_grant_nothing_yet() {
        let scope = resource("patient/Observation.rs?category=laboratory&status=final");
        assert_eq!(
            scope.restrictions,
            vec![
                ("category".to_string(), "laboratory".to_string()),
                ("status".to_string(), "final".to_string())
            ]
        );
        let scopes = Scopes::parse("patient/Observation.rs?category=laboratory");
        assert_eq!(scopes.allows(Letter::Read, "Observation"), None);
    }

    #[test]
    fn malformed_scopes_are_refused() {
        for text in [
            "",
            "patient",
            "patient/Observation",
            "patient/Observation.sr",
            "patient/Observation.rr",
            "patient/Observation.x",
            "admin/Observation.rs",
            "patient/NotAType.rs",
            "patient/observation.rs",
            "patient/Observation.read?category=x",
            "patient/Observation.rs?category",
        ] {
            assert_eq!(Scope::parse(text), None, "{text}");
        }
        assert!(Scopes::parse_strict("patient/*.rs bogus").is_err());
    }

    #[test]
    fn identity_and_launch_scopes_are_tolerated() {
        let scopes =
            Scopes::parse_strict("openid fhirUser launch/patient offline_access patient/*.rs")
                .unwrap();
        assert_eq!(scopes.iter().count(), 5);
        assert_eq!(
            scopes.allows(Letter::Read, "Patient"),
            Some(Context::Patient)
        );
    }

    #[test]
    fn allows_answers_per_letter_type_and_widest_context() {
        let scopes = Scopes::parse("patient/Observation.rs system/Patient.r");
        assert_eq!(
            scopes.allows(Letter::Search, "Observation"),
            Some(Context::Patient)
        );
        assert_eq!(scopes.allows(Letter::Create, "Observation"), None);
        assert_eq!(
            scopes.allows(Letter::Read, "Patient"),
            Some(Context::System)
        );
        assert_eq!(scopes.allows(Letter::Search, "Patient"), None);
        assert_eq!(scopes.allows(Letter::Read, "Encounter"), None);
    }

    #[test]
    fn grant_keeps_what_the_allowed_scopes_cover() {
        let allowed = Scopes::parse("system/*.rs system/Observation.c openid");
        let requested = Scopes::parse(
            "system/Patient.r system/Observation.cr system/Observation.c system/*.d openid fhirUser",
        );
        assert_eq!(
            allowed.grant(&requested).to_string(),
            "system/Patient.r system/Observation.c openid"
        );
    }
}
