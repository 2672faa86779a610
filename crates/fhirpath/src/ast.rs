//! The compiled form of an expression: function names resolved, literals parsed.

use std::fmt;

use regex::Regex;
use rust_decimal::Decimal;

use crate::model::{self, TypeId};
use crate::temporal::{DateTime, Time};

#[derive(Debug, Clone)]
pub(crate) enum Literal {
    Empty,
    Boolean(bool),
    String(String),
    Integer(i64),
    Decimal(Decimal),
    Date(DateTime),
    DateTime(DateTime),
    Time(Time),
    Quantity(Box<(Decimal, String)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Mul,
    Div,
    IntDiv,
    Mod,
    Add,
    Sub,
    Concat,
    Union,
    Lt,
    Gt,
    Le,
    Ge,
    Eq,
    Ne,
    Equiv,
    NotEquiv,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

/// A type name as written: `Patient`, `FHIR.Patient`, `System.String`.
#[derive(Debug, Clone)]
pub(crate) struct TypeSpec {
    pub namespace: Option<String>,
    pub name: String,
    /// The FHIR type of that name, looked up when compiling.
    pub id: Option<TypeId>,
    /// Whether the type exists (evaluating with an unknown type is an error).
    pub known: bool,
}

impl TypeSpec {
    pub(crate) fn new(namespace: Option<String>, name: String) -> TypeSpec {
        let id = match namespace.as_deref() {
            Some("System") => None,
            _ => model::type_id(&name),
        };
        let known = namespace.is_some() || system_type(&name) || model::is_fhir_type(&name);
        TypeSpec {
            namespace,
            name,
            id,
            known,
        }
    }
}

/// Whether `name` is a System type.
pub(crate) fn system_type(name: &str) -> bool {
    matches!(
        name,
        "Boolean" | "String" | "Integer" | "Decimal" | "Date" | "DateTime" | "Time" | "Quantity"
    )
}

/// A member name, with the FHIR type it may name looked up when compiling (a path such as
/// `Patient.name` starts with a type name).
#[derive(Debug, Clone)]
pub(crate) struct Name {
    pub text: String,
    /// Whether the name starts with a capital letter, as type names do.
    pub capital: bool,
    /// The FHIR type of that name.
    pub type_id: Option<TypeId>,
    /// The element name's number.
    pub symbol: Option<model::Symbol>,
}

impl Name {
    pub(crate) fn new(text: String) -> Name {
        let capital = text.starts_with(|c: char| c.is_ascii_uppercase());
        let type_id = if capital { model::type_id(&text) } else { None };
        let symbol = model::symbol(&text);
        Name {
            text,
            capital,
            type_id,
            symbol,
        }
    }
}

impl std::ops::Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Debug)]
pub(crate) enum Expr {
    Literal(Literal),
    /// A member name at the start of a path, applied to the focus.
    Identifier(Name),
    This,
    Index,
    Total,
    Variable(String),
    Member {
        target: Box<Expr>,
        name: Name,
    },
    Call {
        target: Option<Box<Expr>>,
        func: Func,
        args: Vec<Expr>,
        /// Type argument of `is`/`as`/`ofType`.
        type_arg: Option<Box<TypeSpec>>,
        /// A regex argument given as a literal, compiled once.
        regex: Option<Box<Regex>>,
    },
    Indexer {
        target: Box<Expr>,
        index: Box<Expr>,
    },
    Negate(Box<Expr>),
    Binary {
        op: BinOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    Is(Box<Expr>, Box<TypeSpec>),
    As(Box<Expr>, Box<TypeSpec>),
    /// `expr`, a path that starts with the type name `ty` and so is empty for a resource of
    /// another type (`Practitioner.name` in `Patient.name | Practitioner.name`): the evaluator
    /// skips it for such resources. Only added by the compiler; prints as `expr`.
    Guarded {
        ty: TypeId,
        expr: Box<Expr>,
    },
}

impl Expr {
    /// Wraps a path that starts with a type name in [`Expr::Guarded`].
    pub(crate) fn guarded(self) -> Expr {
        match self.root_type() {
            Some(ty) => Expr::Guarded {
                ty,
                expr: Box::new(self),
            },
            None => self,
        }
    }

    /// The type named at the start of a path whose every step is empty on an empty input
    /// (and evaluates nothing that could fail), such as `Observation.subject.where(…)`.
    fn root_type(&self) -> Option<TypeId> {
        // Arguments evaluated even on an empty input must not be able to fail.
        let integer = |arg: &Expr| matches!(arg, Expr::Literal(Literal::Integer(_)));
        let string = |arg: &Expr| matches!(arg, Expr::Literal(Literal::String(_)));
        match self {
            Expr::Identifier(name) => name.type_id,
            Expr::Member { target, .. } | Expr::Is(target, _) | Expr::As(target, _) => {
                target.root_type()
            }
            Expr::Indexer { target, index } if integer(index) => target.root_type(),
            Expr::Call {
                target: Some(target),
                func,
                args,
                ..
            } => {
                let empty_on_empty = match func {
                    Func::Where
                    | Func::Select
                    | Func::Repeat
                    | Func::OfType
                    | Func::Is
                    | Func::As
                    | Func::Single
                    | Func::First
                    | Func::Last
                    | Func::Tail
                    | Func::Distinct
                    | Func::Children
                    | Func::Descendants
                    | Func::Resolve => true,
                    Func::Skip | Func::Take => args.iter().all(integer),
                    Func::Extension => args.iter().all(string),
                    _ => false,
                };
                if empty_on_empty {
                    target.root_type()
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

macro_rules! functions {
    ($($variant:ident = $name:literal ($min:literal, $max:literal),)*) => {
        /// Every function the engine knows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Func { $($variant,)* }

        impl Func {
            pub(crate) fn from_name(name: &str) -> Option<Func> {
                match name { $($name => Some(Func::$variant),)* _ => None }
            }

            pub(crate) fn arity(self) -> (usize, usize) {
                match self { $(Func::$variant => ($min, $max),)* }
            }

            pub(crate) fn name(self) -> &'static str {
                match self { $(Func::$variant => $name,)* }
            }
        }
    };
}

functions! {
    Empty = "empty"(0, 0),
    Exists = "exists"(0, 1),
    All = "all"(1, 1),
    AllTrue = "allTrue"(0, 0),
    AnyTrue = "anyTrue"(0, 0),
    AllFalse = "allFalse"(0, 0),
    AnyFalse = "anyFalse"(0, 0),
    SubsetOf = "subsetOf"(1, 1),
    SupersetOf = "supersetOf"(1, 1),
    Count = "count"(0, 0),
    Distinct = "distinct"(0, 0),
    IsDistinct = "isDistinct"(0, 0),
    Where = "where"(1, 1),
    Select = "select"(1, 1),
    Repeat = "repeat"(1, 1),
    OfType = "ofType"(1, 1),
    Single = "single"(0, 0),
    First = "first"(0, 0),
    Last = "last"(0, 0),
    Tail = "tail"(0, 0),
    Skip = "skip"(1, 1),
    Take = "take"(1, 1),
    Intersect = "intersect"(1, 1),
    Exclude = "exclude"(1, 1),
    Union = "union"(1, 1),
    Combine = "combine"(1, 1),
    Iif = "iif"(2, 3),
    ToBoolean = "toBoolean"(0, 0),
    ConvertsToBoolean = "convertsToBoolean"(0, 0),
    ToInteger = "toInteger"(0, 0),
    ConvertsToInteger = "convertsToInteger"(0, 0),
    ToDecimal = "toDecimal"(0, 0),
    ConvertsToDecimal = "convertsToDecimal"(0, 0),
    ToString = "toString"(0, 0),
    ConvertsToString = "convertsToString"(0, 0),
    ToDate = "toDate"(0, 0),
    ConvertsToDate = "convertsToDate"(0, 0),
    ToDateTime = "toDateTime"(0, 0),
    ConvertsToDateTime = "convertsToDateTime"(0, 0),
    ToTime = "toTime"(0, 0),
    ConvertsToTime = "convertsToTime"(0, 0),
    ToQuantity = "toQuantity"(0, 1),
    ConvertsToQuantity = "convertsToQuantity"(0, 1),
    IndexOf = "indexOf"(1, 1),
    Substring = "substring"(1, 2),
    StartsWith = "startsWith"(1, 1),
    EndsWith = "endsWith"(1, 1),
    Contains = "contains"(1, 1),
    Upper = "upper"(0, 0),
    Lower = "lower"(0, 0),
    Replace = "replace"(2, 2),
    Matches = "matches"(1, 1),
    MatchesFull = "matchesFull"(1, 1),
    ReplaceMatches = "replaceMatches"(2, 2),
    Length = "length"(0, 0),
    ToChars = "toChars"(0, 0),
    Trim = "trim"(0, 0),
    Split = "split"(1, 1),
    Join = "join"(0, 1),
    Encode = "encode"(1, 1),
    Decode = "decode"(1, 1),
    Escape = "escape"(1, 1),
    Unescape = "unescape"(1, 1),
    Abs = "abs"(0, 0),
    Ceiling = "ceiling"(0, 0),
    Exp = "exp"(0, 0),
    Floor = "floor"(0, 0),
    Ln = "ln"(0, 0),
    Log = "log"(1, 1),
    Power = "power"(1, 1),
    Round = "round"(0, 1),
    Sqrt = "sqrt"(0, 0),
    Truncate = "truncate"(0, 0),
    Children = "children"(0, 0),
    Descendants = "descendants"(0, 0),
    Trace = "trace"(1, 2),
    Now = "now"(0, 0),
    TimeOfDay = "timeOfDay"(0, 0),
    Today = "today"(0, 0),
    Is = "is"(1, 1),
    As = "as"(1, 1),
    Type = "type"(0, 0),
    Not = "not"(0, 0),
    Extension = "extension"(1, 1),
    HasValue = "hasValue"(0, 0),
    GetValue = "getValue"(0, 0),
    Resolve = "resolve"(0, 0),
    MemberOf = "memberOf"(1, 1),
    ConformsTo = "conformsTo"(1, 1),
    HtmlChecks = "htmlChecks"(0, 0),
    Aggregate = "aggregate"(1, 2),
    Sort = "sort"(0, 8),
    LowBoundary = "lowBoundary"(0, 1),
    HighBoundary = "highBoundary"(0, 1),
    Precision = "precision"(0, 0),
    Comparable = "comparable"(1, 1),
}
