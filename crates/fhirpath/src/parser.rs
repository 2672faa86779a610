//! Lexer and precedence-climbing parser, producing the compiled tree directly.

use std::str::FromStr;

use regex::Regex;
use rust_decimal::Decimal;

use crate::Error;
use crate::ast::{BinOp, Expr, Func, Literal, Name, TypeSpec};
use crate::temporal;

/// Deepest expression tree accepted; deeper input is a syntax error, not a stack overflow.
pub const MAX_NESTING_DEPTH: usize = 64;
/// Longest expression accepted, in bytes.
pub const MAX_EXPRESSION_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
enum Tok {
    Ident(String),
    /// A backtick-delimited identifier: never a keyword.
    Quoted(String),
    Str(String),
    Int(i64),
    Dec(Decimal),
    /// Text of a number too large for i64 (only valid as a decimal).
    BigNum(String),
    Date(temporal::Literal),
    Env(String),
    Dollar(String),
    Sym(&'static str),
    End,
}

fn syntax(message: impl Into<String>, position: usize) -> Error {
    Error::Syntax {
        message: message.into(),
        position,
    }
}

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, Error> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let Some(end) = src[i + 2..].find("*/") else {
                    return Err(syntax("unterminated comment", i));
                };
                i += 2 + end + 2;
            }
            b'\'' | b'`' => {
                let (text, next) = string(src, i)?;
                out.push((
                    if c == b'\'' {
                        Tok::Str(text)
                    } else {
                        Tok::Quoted(text)
                    },
                    start,
                ));
                i = next;
            }
            b'0'..=b'9' => {
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                let mut is_decimal = false;
                if bytes.get(i) == Some(&b'.') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    is_decimal = true;
                    i += 1;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                let text = &src[start..i];
                let tok = if is_decimal {
                    Tok::Dec(
                        Decimal::from_str_exact(text)
                            .map_err(|_| syntax("decimal literal out of range", start))?,
                    )
                } else {
                    match text.parse::<i64>() {
                        Ok(n) => Tok::Int(n),
                        Err(_) => Tok::BigNum(text.to_string()),
                    }
                };
                out.push((tok, start));
            }
            b'@' => {
                let Some((lit, len)) = temporal::scan_literal(&src[i + 1..]) else {
                    return Err(syntax("invalid date/time literal", i));
                };
                i += 1 + len;
                // A time zone on a time literal, or trailing garbage, is not allowed.
                if matches!(lit, temporal::Literal::Time(_))
                    && (bytes.get(i) == Some(&b'Z')
                        || (matches!(bytes.get(i), Some(b'+' | b'-'))
                            && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)))
                {
                    return Err(syntax("time literals have no time zone", i));
                }
                if bytes.get(i).is_some_and(u8::is_ascii_alphanumeric) {
                    return Err(syntax("invalid date/time literal", start));
                }
                out.push((Tok::Date(lit), start));
            }
            b'%' => {
                i += 1;
                let name = match bytes.get(i) {
                    Some(b'`' | b'\'') => {
                        let (text, next) = string(src, i)?;
                        i = next;
                        text
                    }
                    _ => {
                        let s = i;
                        while i < bytes.len()
                            && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_')
                        {
                            i += 1;
                        }
                        src[s..i].to_string()
                    }
                };
                if name.is_empty() {
                    return Err(syntax("expected a variable name after %", start));
                }
                out.push((Tok::Env(name), start));
            }
            b'$' => {
                i += 1;
                let s = i;
                while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
                    i += 1;
                }
                out.push((Tok::Dollar(src[s..i].to_string()), start));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                out.push((Tok::Ident(src[start..i].to_string()), start));
            }
            _ => {
                let two = src.get(i..i + 2).unwrap_or("");
                let sym = match two {
                    "<=" => Some("<="),
                    ">=" => Some(">="),
                    "!=" => Some("!="),
                    "!~" => Some("!~"),
                    _ => None,
                };
                if let Some(sym) = sym {
                    out.push((Tok::Sym(sym), start));
                    i += 2;
                    continue;
                }
                let sym = match c {
                    b'.' => ".",
                    b'[' => "[",
                    b']' => "]",
                    b'(' => "(",
                    b')' => ")",
                    b'{' => "{",
                    b'}' => "}",
                    b',' => ",",
                    b'+' => "+",
                    b'-' => "-",
                    b'*' => "*",
                    b'/' => "/",
                    b'&' => "&",
                    b'|' => "|",
                    b'<' => "<",
                    b'>' => ">",
                    b'=' => "=",
                    b'~' => "~",
                    _ => {
                        return Err(syntax(
                            format!("unexpected character {:?}", src[i..].chars().next()),
                            i,
                        ));
                    }
                };
                out.push((Tok::Sym(sym), start));
                i += 1;
            }
        }
    }
    out.push((Tok::End, src.len()));
    Ok(out)
}

/// Reads a quoted string starting at `start` (the quote); returns its value and the index after it.
fn string(src: &str, start: usize) -> Result<(String, usize), Error> {
    let quote = src.as_bytes()[start] as char;
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((offset, c)) = chars.next() {
        match c {
            c if c == quote => return Ok((out, start + 1 + offset + 1)),
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                match e {
                    '\'' | '"' | '`' | '\\' | '/' => out.push(e),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'u' => {
                        let mut code = 0u32;
                        for _ in 0..4 {
                            let digit = chars
                                .next()
                                .and_then(|(_, h)| h.to_digit(16))
                                .ok_or_else(|| syntax("invalid \\u escape", start + 1 + offset))?;
                            code = code * 16 + digit;
                        }
                        out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                    }
                    _ => return Err(syntax("invalid escape", start + 1 + offset)),
                }
            }
            c => out.push(c),
        }
    }
    Err(syntax("unterminated string", start))
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

type Parsed = (Expr, usize);

fn binop(tok: &Tok) -> Option<(BinOp, u8)> {
    Some(match tok {
        Tok::Sym("*") => (BinOp::Mul, 10),
        Tok::Sym("/") => (BinOp::Div, 10),
        Tok::Ident(s) if s == "div" => (BinOp::IntDiv, 10),
        Tok::Ident(s) if s == "mod" => (BinOp::Mod, 10),
        Tok::Sym("+") => (BinOp::Add, 9),
        Tok::Sym("-") => (BinOp::Sub, 9),
        Tok::Sym("&") => (BinOp::Concat, 9),
        Tok::Sym("|") => (BinOp::Union, 7),
        Tok::Sym("<") => (BinOp::Lt, 6),
        Tok::Sym(">") => (BinOp::Gt, 6),
        Tok::Sym("<=") => (BinOp::Le, 6),
        Tok::Sym(">=") => (BinOp::Ge, 6),
        Tok::Sym("=") => (BinOp::Eq, 5),
        Tok::Sym("!=") => (BinOp::Ne, 5),
        Tok::Sym("~") => (BinOp::Equiv, 5),
        Tok::Sym("!~") => (BinOp::NotEquiv, 5),
        Tok::Ident(s) if s == "in" => (BinOp::In, 4),
        Tok::Ident(s) if s == "contains" => (BinOp::Contains, 4),
        Tok::Ident(s) if s == "and" => (BinOp::And, 3),
        Tok::Ident(s) if s == "or" => (BinOp::Or, 2),
        Tok::Ident(s) if s == "xor" => (BinOp::Xor, 2),
        Tok::Ident(s) if s == "implies" => (BinOp::Implies, 1),
        _ => return None,
    })
}

const TYPE_OP_PRECEDENCE: u8 = 8;

/// Words that cannot be identifiers (`as`, `contains`, `in` and `is` can).
fn is_reserved(word: &str) -> bool {
    matches!(
        word,
        "and" | "or" | "xor" | "implies" | "div" | "mod" | "true" | "false"
    )
}

fn check_depth(depth: usize, position: usize) -> Result<usize, Error> {
    if depth > MAX_NESTING_DEPTH {
        Err(syntax(
            format!("expression nested deeper than {MAX_NESTING_DEPTH}"),
            position,
        ))
    } else {
        Ok(depth)
    }
}

impl Parser {
    fn peek(&self) -> &Tok {
        self.toks.get(self.pos).map_or(&Tok::End, |(t, _)| t)
    }

    fn is_sym(&self, sym: &str) -> bool {
        matches!(self.peek(), Tok::Sym(s) if *s == sym)
    }

    fn position(&self) -> usize {
        self.toks.get(self.pos).map_or(0, |(_, p)| *p)
    }

    fn next(&mut self) -> Tok {
        let tok = self.peek().clone();
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        tok
    }

    fn expect(&mut self, sym: &'static str) -> Result<(), Error> {
        if self.is_sym(sym) {
            self.pos += 1;
            Ok(())
        } else {
            Err(syntax(format!("expected '{sym}'"), self.position()))
        }
    }

    fn expression(&mut self, min_prec: u8, depth: usize) -> Result<Parsed, Error> {
        check_depth(depth, self.position())?;
        let (mut left, mut left_depth) = self.unary(depth)?;
        loop {
            let tok = self.peek().clone();
            let position = self.position();
            if let Tok::Ident(word) = &tok
                && (word == "is" || word == "as")
                && TYPE_OP_PRECEDENCE >= min_prec
            {
                self.pos += 1;
                let spec = self.type_spec()?;
                left_depth = check_depth(left_depth + 1, position)?;
                left = if word == "is" {
                    Expr::Is(Box::new(left), Box::new(spec))
                } else {
                    Expr::As(Box::new(left), Box::new(spec))
                };
                continue;
            }
            let Some((op, prec)) = binop(&tok) else { break };
            if prec < min_prec {
                break;
            }
            self.pos += 1;
            let (right, right_depth) = self.expression(prec + 1, depth + 1)?;
            left_depth = check_depth(left_depth.max(right_depth) + 1, position)?;
            left = if op == BinOp::Union {
                // Branches that start with a type name are skipped for other resource types.
                let left = match left {
                    Expr::Binary {
                        op: BinOp::Union, ..
                    } => left,
                    other => other.guarded(),
                };
                Expr::Binary {
                    op,
                    left: Box::new(left),
                    right: Box::new(right.guarded()),
                }
            } else {
                Expr::Binary {
                    op,
                    left: Box::new(left),
                    right: Box::new(right),
                }
            };
        }
        Ok((left, left_depth))
    }

    fn type_spec(&mut self) -> Result<TypeSpec, Error> {
        let first = self.identifier()?;
        if self.is_sym(".") {
            self.pos += 1;
            let second = self.identifier()?;
            return Ok(TypeSpec::new(Some(first), second));
        }
        Ok(TypeSpec::new(None, first))
    }

    fn identifier(&mut self) -> Result<String, Error> {
        match self.next() {
            Tok::Ident(s) if is_reserved(&s) => Err(syntax(
                format!("'{s}' is a keyword; quote it as `{s}`"),
                self.position(),
            )),
            Tok::Ident(s) | Tok::Quoted(s) => Ok(s),
            _ => Err(syntax("expected an identifier", self.position())),
        }
    }

    /// The name after a `.`: any word, keywords included (`Narrative.div`, `x.contains`), as
    /// the reference implementation reads it; only there can it not be an operator.
    fn member_name(&mut self) -> Result<String, Error> {
        match self.next() {
            Tok::Ident(s) | Tok::Quoted(s) => Ok(s),
            _ => Err(syntax("expected an identifier", self.position())),
        }
    }

    fn unary(&mut self, depth: usize) -> Result<Parsed, Error> {
        check_depth(depth, self.position())?;
        match self.peek() {
            Tok::Sym("-") => {
                self.pos += 1;
                let (operand, d) = self.unary(depth + 1)?;
                Ok((
                    Expr::Negate(Box::new(operand)),
                    check_depth(d + 1, self.position())?,
                ))
            }
            Tok::Sym("+") => {
                self.pos += 1;
                self.unary(depth + 1)
            }
            _ => self.postfix(depth),
        }
    }

    fn postfix(&mut self, depth: usize) -> Result<Parsed, Error> {
        let (mut expr, mut expr_depth) = self.term(depth)?;
        loop {
            let position = self.position();
            match self.peek() {
                Tok::Sym(".") => {
                    self.pos += 1;
                    let name = self.member_name()?;
                    let (next, d) = self.invocation(Some(expr), name, expr_depth, depth)?;
                    expr = next;
                    expr_depth = check_depth(d, position)?;
                }
                Tok::Sym("[") => {
                    self.pos += 1;
                    let (index, index_depth) = self.expression(0, depth + 1)?;
                    self.expect("]")?;
                    expr_depth = check_depth(expr_depth.max(index_depth) + 1, position)?;
                    expr = Expr::Indexer {
                        target: Box::new(expr),
                        index: Box::new(index),
                    };
                }
                _ => return Ok((expr, expr_depth)),
            }
        }
    }

    /// A member or function call on `target` (or on the focus, when `None`).
    fn invocation(
        &mut self,
        target: Option<Expr>,
        name: String,
        target_depth: usize,
        depth: usize,
    ) -> Result<Parsed, Error> {
        let position = self.position();
        if !self.is_sym("(") {
            return Ok(match target {
                Some(target) => (
                    Expr::Member {
                        target: Box::new(target),
                        name: Name::new(name),
                    },
                    target_depth + 1,
                ),
                None => (Expr::Identifier(Name::new(name)), 1),
            });
        }
        self.pos += 1;
        let mut args = Vec::new();
        let mut max_depth = target_depth;
        if !self.is_sym(")") {
            loop {
                let (arg, d) = self.expression(0, depth + 1)?;
                max_depth = max_depth.max(d);
                args.push(arg);
                if self.is_sym(",") {
                    self.pos += 1;
                } else {
                    break;
                }
            }
        }
        self.expect(")")?;
        let func = Func::from_name(&name)
            .ok_or_else(|| Error::Semantic(format!("unknown function '{name}'")))?;
        let (min, max) = func.arity();
        if args.len() < min || args.len() > max {
            return Err(Error::Semantic(format!(
                "function '{name}' takes {min}..{max} arguments, got {}",
                args.len()
            )));
        }
        let type_arg = match func {
            Func::Is | Func::As | Func::OfType => Some(Box::new(type_spec_of(&args[0])?)),
            _ => None,
        };
        let regex = match (func, args.first()) {
            (
                Func::Matches | Func::MatchesFull | Func::ReplaceMatches,
                Some(Expr::Literal(Literal::String(pattern))),
            ) => Some(Box::new(compile_regex(pattern, func == Func::MatchesFull)?)),
            _ => None,
        };
        let _ = position;
        Ok((
            Expr::Call {
                target: target.map(Box::new),
                func,
                args,
                type_arg,
                regex,
            },
            max_depth + 1,
        ))
    }

    fn term(&mut self, depth: usize) -> Result<Parsed, Error> {
        let position = self.position();
        let tok = self.next();
        let literal = |l| Ok((Expr::Literal(l), 1));
        match tok {
            Tok::Sym("(") => {
                let (inner, d) = self.expression(0, depth + 1)?;
                self.expect(")")?;
                Ok((inner, d))
            }
            Tok::Sym("{") => {
                self.expect("}")?;
                literal(Literal::Empty)
            }
            Tok::Str(s) => literal(Literal::String(s)),
            Tok::Int(n) => match self.unit()? {
                Some(unit) => literal(Literal::Quantity(Box::new((Decimal::from(n), unit)))),
                None => literal(Literal::Integer(n)),
            },
            Tok::Dec(d) => match self.unit()? {
                Some(unit) => literal(Literal::Quantity(Box::new((d, unit)))),
                None => literal(Literal::Decimal(d)),
            },
            Tok::BigNum(text) => {
                let d = Decimal::from_str(&text)
                    .map_err(|_| syntax("number out of range", position))?;
                literal(Literal::Decimal(d))
            }
            Tok::Date(temporal::Literal::Date(d)) => literal(Literal::Date(d)),
            Tok::Date(temporal::Literal::DateTime(d)) => literal(Literal::DateTime(d)),
            Tok::Date(temporal::Literal::Time(t)) => literal(Literal::Time(t)),
            Tok::Env(name) => Ok((Expr::Variable(name), 1)),
            Tok::Dollar(name) => match name.as_str() {
                "this" => Ok((Expr::This, 1)),
                "index" => Ok((Expr::Index, 1)),
                "total" => Ok((Expr::Total, 1)),
                _ => Err(syntax(format!("unknown ${name}"), position)),
            },
            Tok::Ident(word) if word == "true" => literal(Literal::Boolean(true)),
            Tok::Ident(word) if word == "false" => literal(Literal::Boolean(false)),
            Tok::Ident(word) if is_reserved(&word) => {
                Err(syntax(format!("unexpected keyword '{word}'"), position))
            }
            Tok::Ident(name) | Tok::Quoted(name) => self.invocation(None, name, 0, depth),
            Tok::End => Err(syntax("unexpected end of expression", position)),
            _ => Err(syntax("unexpected token", position)),
        }
    }

    /// A unit after a number: a quoted UCUM string or a calendar keyword.
    fn unit(&mut self) -> Result<Option<String>, Error> {
        match self.peek().clone() {
            Tok::Str(unit) => {
                self.pos += 1;
                Ok(Some(unit))
            }
            Tok::Ident(word) if crate::ucum::calendar_keyword(&word).is_some() => {
                self.pos += 1;
                Ok(Some(word))
            }
            _ => Ok(None),
        }
    }
}

/// The type named by a function argument such as `Patient` or `FHIR.Patient`.
fn type_spec_of(arg: &Expr) -> Result<TypeSpec, Error> {
    match arg {
        Expr::Identifier(name) => Ok(TypeSpec::new(None, name.text.clone())),
        Expr::Member { target, name } => match target.as_ref() {
            Expr::Identifier(ns) => Ok(TypeSpec::new(Some(ns.text.clone()), name.text.clone())),
            _ => Err(Error::Semantic("expected a type name".into())),
        },
        _ => Err(Error::Semantic("expected a type name".into())),
    }
}

/// Compiles a FHIRPath regex: single-line mode (`.` matches newlines), bounded size.
pub(crate) fn compile_regex(pattern: &str, full: bool) -> Result<Regex, Error> {
    let pattern = if full {
        format!("(?s)^(?:{pattern})$")
    } else {
        format!("(?s){pattern}")
    };
    regex::RegexBuilder::new(&pattern)
        .size_limit(1 << 20)
        .nest_limit(64)
        .build()
        .map_err(|e| Error::Execution(format!("invalid regular expression: {e}")))
}

/// Parses and compiles an expression.
pub(crate) fn parse(src: &str) -> Result<Expr, Error> {
    if src.len() > MAX_EXPRESSION_BYTES {
        return Err(syntax("expression too long", MAX_EXPRESSION_BYTES));
    }
    let toks = lex(src)?;
    let mut parser = Parser { toks, pos: 0 };
    let (expr, _) = parser.expression(0, 0)?;
    if !matches!(parser.peek(), Tok::End) {
        return Err(syntax("unexpected token", parser.position()));
    }
    Ok(expr)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tree as an S-expression, to check precedence and literals.
    fn sexpr(expr: &Expr) -> String {
        match expr {
            Expr::Literal(lit) => match lit {
                Literal::Empty => "{}".into(),
                Literal::Boolean(b) => b.to_string(),
                Literal::String(s) => format!("{s:?}"),
                Literal::Integer(i) => i.to_string(),
                Literal::Decimal(d) => format!("{d}d"),
                Literal::Date(d) => format!("@{}", d.fmt_date()),
                Literal::DateTime(d) => format!("@{}", d.fmt_datetime()),
                Literal::Time(t) => format!("@T{t}"),
                Literal::Quantity(q) => format!("({} {:?})", q.0, q.1),
            },
            Expr::Identifier(name) => name.to_string(),
            Expr::This => "$this".into(),
            Expr::Index => "$index".into(),
            Expr::Total => "$total".into(),
            Expr::Variable(name) => format!("%{name}"),
            Expr::Member { target, name } => format!("{}.{name}", sexpr(target)),
            Expr::Call {
                target, func, args, ..
            } => {
                let args: Vec<String> = args.iter().map(sexpr).collect();
                match target {
                    Some(t) => format!("{}.{}({})", sexpr(t), func.name(), args.join(", ")),
                    None => format!("{}({})", func.name(), args.join(", ")),
                }
            }
            Expr::Indexer { target, index } => format!("{}[{}]", sexpr(target), sexpr(index)),
            Expr::Negate(e) => format!("(- {})", sexpr(e)),
            Expr::Binary { op, left, right } => {
                format!("({op:?} {} {})", sexpr(left), sexpr(right))
            }
            Expr::Guarded { expr, .. } => sexpr(expr),
            Expr::Is(e, t) => format!("(is {} {:?}.{})", sexpr(e), t.namespace, t.name),
            Expr::As(e, t) => format!("(as {} {:?}.{})", sexpr(e), t.namespace, t.name),
        }
    }

    fn check(src: &str, expected: &str) {
        match parse(src) {
            Ok(expr) => assert_eq!(sexpr(&expr), expected, "{src}"),
            Err(e) => panic!("{src}: {e}"),
        }
    }

    fn fails(src: &str) {
        assert!(parse(src).is_err(), "{src} should not parse");
    }

    #[test]
    fn precedence() {
        check("1 + 2 * 3", "(Add 1 (Mul 2 3))");
        check("1 + 2 - 3", "(Sub (Add 1 2) 3)");
        check("a or b and c", "(Or a (And b c))");
        check("a implies b or c", "(Implies a (Or b c))");
        check("a = b and c != d", "(And (Eq a b) (Ne c d))");
        check("1 > 2 is Boolean", "(Gt 1 (is 2 None.Boolean))");
        check("1 | 1 is Integer", "(Union 1 (is 1 None.Integer))");
        check("a | b = c", "(Eq (Union a b) c)");
        check("x in y and z", "(And (In x y) z)");
        check("x contains 'a' xor y", "(Xor (Contains x \"a\") y)");
        check("a < b = true", "(Eq (Lt a b) true)");
        check("'a' & 'b' + 'c'", "(Add (Concat \"a\" \"b\") \"c\")");
        check("5 div 2 mod 3", "(Mod (IntDiv 5 2) 3)");
    }

    #[test]
    fn polarity_binds_looser_than_invocation() {
        check("-1.convertsToInteger()", "(- 1.convertsToInteger())");
        check("(-1).abs()", "(- 1).abs()");
        check("-Patient.name.count()", "(- Patient.name.count())");
        check("+1 < +2", "(Lt 1 2)");
        check("2 - -1", "(Sub 2 (- 1))");
    }

    #[test]
    fn paths_functions_and_indexers() {
        check("Patient.name[0].given", "Patient.name[0].given");
        check(
            "name.where(use = 'official').given.first()",
            "name.where((Eq use \"official\")).given.first()",
        );
        check("`Patient`.name.`given`", "Patient.name.given");
        check("$this.length() + $index", "(Add $this.length() $index)");
        check("%resource.id", "%resource.id");
        check("%`vs-administrative-gender`", "%vs-administrative-gender");
        check("%'quoted'", "%quoted");
        check("iif(true, 1, 2)", "iif(true, 1, 2)");
        check(
            "Observation.value as Quantity",
            "(as Observation.value None.Quantity)",
        );
        check(
            "value is FHIR.`Patient`",
            "(is value Some(\"FHIR\").Patient)",
        );
        check("x.contains('a')", "x.contains(\"a\")");
        check("x.as(System.String)", "x.as(System.String)");
    }

    #[test]
    fn literals() {
        check("{}", "{}");
        check("true and false", "(And true false)");
        check("42", "42");
        check("1.50", "1.50d");
        check("1234567890987654321.0", "1234567890987654321.0d");
        check("12345678901234567890", "12345678901234567890d");
        check("1.toString()", "1.toString()");
        check("1.0.toString()", "1.0d.toString()");
    }

    #[test]
    fn string_escapes() {
        check(r"'a\'b'", "\"a'b\"");
        check(r#"'\\\/\f\r\n\t\"\`'"#, "\"\\\\/\\u{c}\\r\\n\\t\\\"`\"");
        check(r"'P\u0065ter'", "\"Peter\"");
        check("'caf\u{e9}'", "\"caf\u{e9}\"");
        fails(r"'\q'");
        fails(r"'\u00'");
        fails("'unterminated");
    }

    #[test]
    fn quantities() {
        check("4 'mg'", "(4 \"mg\")");
        check("10.1 'mg'", "(10.1 \"mg\")");
        check("4 days", "(4 \"days\")");
        check("1 week = 7 'd'", "(Eq (1 \"week\") (7 \"d\"))");
        check("1 'wk'.toString()", "(1 \"wk\").toString()");
        check("2.0 'cm' * 2.0 'm'", "(Mul (2.0 \"cm\") (2.0 \"m\"))");
        // A word that is not a calendar unit is not a unit.
        fails("4 mg");
    }

    #[test]
    fn date_and_time_literals() {
        check(
            "@2014-01-01T10:00:00.000+10:00",
            "@2014-01-01T10:00:00.000+10:00",
        );
        check("@2014-01-01", "@2014-01-01");
        check("@2014", "@2014");
        check("@2015T", "@2015");
        check("@2015-02-04T14:34:28Z", "@2015-02-04T14:34:28Z");
        check("@T12:00", "@T12:00");
        check("@T14:34:28.123", "@T14:34:28.123");
        check(
            "@2015-02-04T14:34:28.is(DateTime)",
            "@2015-02-04T14:34:28.is(DateTime)",
        );
        check(
            "@2014-01-01T08:05-05:00.highBoundary(17)",
            "@2014-01-01T08:05-05:00.highBoundary(17)",
        );
        match parse("@2015T") {
            Ok(Expr::Literal(Literal::DateTime(_))) => {}
            other => panic!("@2015T is a DateTime: {other:?}"),
        }
        match parse("@2015") {
            Ok(Expr::Literal(Literal::Date(_))) => {}
            other => panic!("@2015 is a Date: {other:?}"),
        }
        fails("@2014-13-01");
        fails("@2014-02-30");
        fails("@T25:00");
        fails("@T14:34:28Z");
        fails("@T14:34:28+10:00");
        fails("@");
        fails("@abc");
    }

    #[test]
    fn keywords_after_a_dot_are_member_names() {
        check("Patient.text.div", "Patient.text.div");
        check("Patient.text.`div`", "Patient.text.div");
        check("x.div div 2", "(IntDiv x.div 2)");
        check("x.mod mod x.and", "(Mod x.mod x.and)");
        check(
            "a.and and a.or or a.xor xor a.implies implies a.true",
            "(Implies (Xor (Or (And a.and a.or) a.xor) a.implies) a.true)",
        );
        check("a.is is Boolean", "(is a.is None.Boolean)");
        check("a.as as String", "(as a.as None.String)");
        check("a.in in b.contains", "(In a.in b.contains)");
        check("a.false.not()", "a.false.not()");
        check("a.contains('x')", "a.contains(\"x\")");
        // Elsewhere the reserved words stay keywords.
        fails("div");
        fails("a.b + and");
        fails("a.");
        fails("a.'b'");
    }

    #[test]
    fn comments() {
        check("2 + 2 // comment", "(Add 2 2)");
        check("2 /* a */ + /* b */ 2", "(Add 2 2)");
        fails("2 + 2 /* unterminated");
        fails("2 + 2 /");
    }

    #[test]
    fn compile_time_errors() {
        fails("name.noSuchFunction()");
        fails("substring()");
        fails("where(a, b)");
        fails("x.is(1)");
        fails("x.ofType('Patient')");
        fails("$nope");
        fails("a.");
        fails("(a");
        fails("a b");
        fails("a[1");
        fails("");
        fails("name.matches('(')");
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!(
            "{}1{}",
            "(".repeat(MAX_NESTING_DEPTH + 10),
            ")".repeat(MAX_NESTING_DEPTH + 10)
        );
        fails(&deep);
        let chain = vec!["1"; MAX_NESTING_DEPTH + 10].join(" + ");
        fails(&chain);
        let path = format!("a{}", ".b".repeat(MAX_NESTING_DEPTH + 10));
        fails(&path);
        let minus = format!("{}1", "-".repeat(MAX_NESTING_DEPTH + 10));
        fails(&minus);
        let calls = format!(
            "{}1{}",
            "where(".repeat(MAX_NESTING_DEPTH + 10),
            ")".repeat(MAX_NESTING_DEPTH + 10)
        );
        fails(&calls);
        // Moderate nesting is fine.
        check(&format!("{}1{}", "(".repeat(50), ")".repeat(50)), "1");
        assert!(parse(&vec!["1"; 60].join(" + ")).is_ok());
    }
}
