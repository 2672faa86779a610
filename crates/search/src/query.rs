//! A parsed search: what to match, how to order and page it, and what to include.
//!
//! Every parameter name here is already checked against the registry and typed, so a
//! backend only translates; it never needs to know FHIR's search rules itself.

use crate::ParamType;

/// One search request.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// The types searched: one for a type-level search, several (or none, meaning every
    /// type) for a system-level search with or without `_type`.
    pub types: Vec<String>,
    /// Every clause must hold (repeated parameters are AND).
    pub clauses: Vec<Clause>,
    /// Sort keys, most significant first; empty means the store's stable default order.
    pub sort: Vec<SortKey>,
    /// `_include`s, applied to the page of matches.
    pub includes: Vec<Include>,
    /// `_revinclude`s, applied to the page of matches.
    pub revincludes: Vec<Include>,
    /// `_total`.
    pub total: Total,
    /// What a resource reached through a chain or `_has` must also satisfy to count,
    /// by its type (the reader's visibility: sensitive labels, consents). The searched
    /// types carry theirs as ordinary clauses.
    pub reached: Vec<Reached>,
}

/// The clauses a resource of `resource_type` must satisfy when a chain or `_has`
/// reaches it; a type not listed has none.
#[derive(Clone, Debug, PartialEq)]
pub struct Reached {
    pub resource_type: String,
    pub clauses: Vec<Clause>,
}

/// Any one of the criteria holds (comma-separated values are OR).
#[derive(Clone, Debug, PartialEq)]
pub struct Clause {
    pub any_of: Vec<Criterion>,
}

/// One test on one parameter, possibly reached through chains and `_has`.
#[derive(Clone, Debug, PartialEq)]
pub struct Criterion {
    /// How to get from the searched resource to the resource tested, in order.
    /// Empty for a plain parameter.
    pub path: Vec<Step>,
    /// The type of the resource the test applies to (the searched type when `path` is
    /// empty; for a system-level search with no `_type`, the test applies to any type
    /// that has the parameter, and this is `None`).
    pub resource_type: Option<String>,
    /// The parameter tested, e.g. `name`, `code`, `_id`, `_lastUpdated`.
    pub param: String,
    pub param_type: ParamType,
    pub test: Test,
}

/// One hop of a chain.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// `subject:Patient.` — follow the reference parameter `param` of the current
    /// resource to a `target_type` resource.
    Forward { param: String, target_type: String },
    /// `_has:Observation:patient:` — go to the `source_type` resources whose reference
    /// parameter `param` points at the current resource.
    Reverse { source_type: String, param: String },
}

/// What a value must satisfy.
#[derive(Clone, Debug, PartialEq)]
pub enum Test {
    /// `:missing=true|false`: whether the resource has no value for the parameter.
    Missing(bool),
    /// String parameters (and `:text` on tokens, tested against the index key
    /// `{param}:text`). `value` is normalised with [`crate::normalize_string`] except
    /// for [`StringMatch::Exact`], which compares the original text.
    String { value: String, mode: StringMatch },
    /// Token parameters.
    Token(TokenTest),
    /// `:of-type` on identifiers: `system|code|value` of the identifier's type and its value.
    /// Index key `{param}:of-type`, stored as a token with `system` = type system and
    /// `code` = `{type code}|{value}`.
    OfType {
        system: String,
        code: String,
        value: String,
    },
    /// Reference parameters.
    Reference(ReferenceTest),
    /// Date parameters: `range` is the search value's implicit range.
    Date {
        prefix: Prefix,
        range: crate::DateRange,
    },
    /// Number parameters: `range` is the search value's implicit precision range.
    Number {
        prefix: Prefix,
        range: crate::NumberRange,
    },
    /// Quantity parameters.
    Quantity {
        prefix: Prefix,
        range: crate::NumberRange,
        system: Option<String>,
        code: Option<String>,
    },
    /// Uri parameters.
    Uri { value: String, mode: UriMatch },
    /// Composite parameters: one test per component, in the parameter's component order;
    /// every component must hold on the same composite item. The component at position
    /// `n` is indexed under the key `{param}${n}`.
    Composite(Vec<Test>),
    /// Negation (`:not` on tokens, `ne`-style negations): the resource has no value
    /// for the parameter that passes the inner test (resources with no value pass).
    Not(Box<Test>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StringMatch {
    /// Default: the normalised value starts with the normalised search text.
    StartsWith,
    /// `:exact`: equal, case and accents included.
    Exact,
    /// `:contains`: the normalised value contains the normalised search text.
    Contains,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenTest {
    pub system: SystemMatch,
    /// `None` for `system|` (any code in the system).
    pub code: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SystemMatch {
    /// `code`: any system or none.
    Any,
    /// `|code`: no system.
    None,
    /// `system|code` or `system|`.
    Is(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReferenceTest {
    /// `Type/id`, or a bare `id` (`resource_type` `None`: any type), or `:Type` with an id.
    Local {
        resource_type: Option<String>,
        id: String,
    },
    /// An absolute URL or canonical, compared with the stored URL.
    Url(String),
    /// `:identifier`: the reference's `identifier` (index key `{param}:identifier`,
    /// stored as a token).
    Identifier(TokenTest),
    /// A local reference to any of `ids` (of `resource_type`, when given), one list
    /// however long; on `_id`, the resource's own id. Made by the server for access
    /// rules (the patients whose consents deny something), never parsed from a query.
    AnyOf {
        resource_type: Option<String>,
        /// Shared: a query and its copies hold one list.
        ids: std::sync::Arc<[String]>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UriMatch {
    Exact,
    /// `:below`: the stored uri starts with the search value.
    Below,
    /// `:above`: the search value starts with the stored uri.
    Above,
}

/// Comparison prefixes for ordered values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SortKey {
    /// A parameter of the searched type, or `_id` / `_lastUpdated`.
    pub param: String,
    pub param_type: ParamType,
    pub descending: bool,
}

/// `_include` / `_revinclude`.
#[derive(Clone, Debug, PartialEq)]
pub struct Include {
    /// The type whose reference parameter is followed: for `_include`, the matched
    /// (or already included) resource's type; for `_revinclude`, the type of the
    /// resources brought in.
    pub source_type: String,
    /// The reference parameter; `None` for `*` (every reference parameter of the type).
    pub param: Option<String>,
    /// Only targets of this type (`_include=Observation:subject:Patient`).
    pub target_type: Option<String>,
    /// `:iterate` (also `:recurse`): apply again to what was included, until nothing new.
    pub iterate: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Total {
    /// No `_total`: the server reports a total only when it knows it without counting
    /// (every match fits on the first page).
    #[default]
    Unspecified,
    None,
    Estimate,
    Accurate,
}
