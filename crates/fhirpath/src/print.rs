//! Prints a compiled expression back as canonical FHIRPath text (fully parenthesised).
//!
//! `compile(print(e))` gives the same tree as `e`; the tests check this on every expression
//! in the R4 definitions.

use std::fmt;

use crate::ast::{BinOp, Expr, Literal, TypeSpec};
use crate::temporal::Precision;

fn op_text(op: BinOp) -> &'static str {
    match op {
        BinOp::Mul => "*",
        BinOp::Div => "/",
        BinOp::IntDiv => "div",
        BinOp::Mod => "mod",
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Concat => "&",
        BinOp::Union => "|",
        BinOp::Lt => "<",
        BinOp::Gt => ">",
        BinOp::Le => "<=",
        BinOp::Ge => ">=",
        BinOp::Eq => "=",
        BinOp::Ne => "!=",
        BinOp::Equiv => "~",
        BinOp::NotEquiv => "!~",
        BinOp::In => "in",
        BinOp::Contains => "contains",
        BinOp::And => "and",
        BinOp::Or => "or",
        BinOp::Xor => "xor",
        BinOp::Implies => "implies",
    }
}

fn write_quoted(f: &mut fmt::Formatter<'_>, text: &str, quote: char) -> fmt::Result {
    use fmt::Write;
    f.write_char(quote)?;
    for c in text.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            '\u{c}' => f.write_str("\\f")?,
            c if c == quote => {
                f.write_char('\\')?;
                f.write_char(c)?;
            }
            c if c.is_control() => write!(f, "\\u{:04x}", u32::from(c))?,
            c => f.write_char(c)?,
        }
    }
    f.write_char(quote)
}

fn plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !matches!(
            name,
            "and" | "or" | "xor" | "implies" | "div" | "mod" | "true" | "false"
        )
}

fn write_identifier(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    if plain_identifier(name) {
        f.write_str(name)
    } else {
        write_quoted(f, name, '`')
    }
}

fn write_type(f: &mut fmt::Formatter<'_>, spec: &TypeSpec) -> fmt::Result {
    if let Some(namespace) = &spec.namespace {
        write_identifier(f, namespace)?;
        f.write_str(".")?;
    }
    write_identifier(f, &spec.name)
}

/// Writes `expr` as the target of `.name`/`[i]`, parenthesised when it would bind differently.
fn write_target(f: &mut fmt::Formatter<'_>, expr: &Expr) -> fmt::Result {
    match expr {
        Expr::Negate(_) => write!(f, "({expr})"),
        _ => write!(f, "{expr}"),
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Empty => f.write_str("{}"),
            Literal::Boolean(b) => write!(f, "{b}"),
            Literal::String(s) => write_quoted(f, s, '\''),
            Literal::Integer(i) => write!(f, "{i}"),
            Literal::Decimal(d) if d.scale() == 0 => write!(f, "{d}.0"),
            Literal::Decimal(d) => write!(f, "{d}"),
            Literal::Date(d) => write!(f, "@{}", d.fmt_date()),
            Literal::DateTime(d) if d.precision <= Precision::Day => {
                write!(f, "@{}T", d.fmt_date())
            }
            Literal::DateTime(d) => write!(f, "@{}", d.fmt_datetime()),
            Literal::Time(t) => write!(f, "@T{t}"),
            Literal::Quantity(q) => {
                if crate::ucum::calendar_keyword(&q.1).is_some() {
                    write!(f, "{} {}", q.0, q.1)
                } else {
                    write!(f, "{} ", q.0)?;
                    write_quoted(f, &q.1, '\'')
                }
            }
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Literal(lit) => write!(f, "{lit}"),
            Expr::Identifier(name) => write_identifier(f, name),
            Expr::This => f.write_str("$this"),
            Expr::Index => f.write_str("$index"),
            Expr::Total => f.write_str("$total"),
            Expr::Variable(name) => {
                f.write_str("%")?;
                write_identifier(f, name)
            }
            Expr::Member { target, name } => {
                write_target(f, target)?;
                f.write_str(".")?;
                write_identifier(f, name)
            }
            Expr::Call {
                target,
                func,
                args,
                type_arg,
                ..
            } => {
                if let Some(target) = target {
                    write_target(f, target)?;
                    f.write_str(".")?;
                }
                write!(f, "{}(", func.name())?;
                match type_arg {
                    Some(spec) => write_type(f, spec)?,
                    None => {
                        for (i, arg) in args.iter().enumerate() {
                            if i > 0 {
                                f.write_str(", ")?;
                            }
                            write!(f, "{arg}")?;
                        }
                    }
                }
                f.write_str(")")
            }
            Expr::Indexer { target, index } => {
                write_target(f, target)?;
                write!(f, "[{index}]")
            }
            Expr::Negate(operand) => write!(f, "-({operand})"),
            Expr::Binary { op, left, right } => write!(f, "({left} {} {right})", op_text(*op)),
            Expr::Guarded { expr, .. } => write!(f, "{expr}"),
            Expr::Is(operand, spec) => {
                write!(f, "({operand} is ")?;
                write_type(f, spec)?;
                f.write_str(")")
            }
            Expr::As(operand, spec) => {
                write!(f, "({operand} as ")?;
                write_type(f, spec)?;
                f.write_str(")")
            }
        }
    }
}
