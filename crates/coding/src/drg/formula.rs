//! DRG formulas: boolean expressions over attribute atoms (`PDX:hiv & (MCC | CC) & ~AMA`),
//! parsed once into a tree of atom numbers and evaluated against one claim's mask.
//!
//! An atom is an attribute name with an optional prefix: `PDX:` (the principal diagnosis
//! has it), `SDX:` (a secondary diagnosis has it), `ONLY:` (every valid diagnosis has it;
//! only `ONLY:incident` exists), `ANY:` or none (any code of the claim has it). `MCC`, `CC`
//! and `NONE` are the claim's severity for the formula being evaluated. `&` binds tighter
//! than `|`; `~` negates.

use std::collections::HashMap;

use super::Severity;

/// Where an attribute must come from for an atom to hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Any = 0,
    Pdx = 1,
    Sdx = 2,
    Only = 3,
}

/// A compiled formula.
#[derive(Clone, Debug)]
pub enum Expr {
    Atom(u32),
    Severity(Severity),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

/// Interns attribute names and the atoms (scope, name) that formulas use.
#[derive(Default)]
pub struct Atoms {
    pub names: HashMap<String, u32>,
    pub name_list: Vec<String>,
    /// Per name, the atom number of each scope, or `NO_ATOM`.
    pub by_name: Vec<[u32; 4]>,
    pub count: u32,
}

pub const NO_ATOM: u32 = u32::MAX;

impl Atoms {
    /// The number of an attribute name, interned.
    pub fn name(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.names.get(name) {
            return id;
        }
        let id = self.name_list.len() as u32;
        self.names.insert(name.to_string(), id);
        self.name_list.push(name.to_string());
        self.by_name.push([NO_ATOM; 4]);
        id
    }

    fn atom(&mut self, scope: Scope, name: &str) -> u32 {
        let id = self.name(name) as usize;
        let slot = &mut self.by_name[id][scope as usize];
        if *slot == NO_ATOM {
            *slot = self.count;
            self.count += 1;
        }
        *slot
    }

    /// The atom of (scope, name id), if any formula uses it.
    pub fn get(&self, scope: Scope, name: u32) -> Option<u32> {
        let atom = *self.by_name.get(name as usize)?.get(scope as usize)?;
        (atom != NO_ATOM).then_some(atom)
    }
}

/// Parses a formula, interning its atoms.
pub fn parse(text: &str, atoms: &mut Atoms) -> Result<Expr, String> {
    let tokens = tokenize(text);
    let mut parser = Parser {
        tokens: &tokens,
        at: 0,
        atoms,
    };
    let expr = parser.or()?;
    if parser.at != tokens.len() {
        return Err(format!(
            "formula {text:?}: unexpected {:?}",
            tokens[parser.at]
        ));
    }
    Ok(expr)
}

#[derive(Debug, PartialEq)]
enum Token<'a> {
    Open,
    Close,
    And,
    Or,
    Not,
    Word(&'a str),
}

fn tokenize(text: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        let special = matches!(c, '(' | ')' | '&' | '|' | '~') || c.is_whitespace();
        if special {
            if let Some(s) = start.take() {
                tokens.push(Token::Word(&text[s..i]));
            }
            match c {
                '(' => tokens.push(Token::Open),
                ')' => tokens.push(Token::Close),
                '&' => tokens.push(Token::And),
                '|' => tokens.push(Token::Or),
                '~' => tokens.push(Token::Not),
                _ => {}
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        tokens.push(Token::Word(&text[s..]));
    }
    tokens
}

struct Parser<'t, 'a> {
    tokens: &'t [Token<'t>],
    at: usize,
    atoms: &'a mut Atoms,
}

impl Parser<'_, '_> {
    fn or(&mut self) -> Result<Expr, String> {
        let mut terms = vec![self.and()?];
        while self.tokens.get(self.at) == Some(&Token::Or) {
            self.at += 1;
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 {
            terms.swap_remove(0)
        } else {
            Expr::Or(terms)
        })
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut factors = vec![self.factor()?];
        while self.tokens.get(self.at) == Some(&Token::And) {
            self.at += 1;
            factors.push(self.factor()?);
        }
        Ok(if factors.len() == 1 {
            factors.swap_remove(0)
        } else {
            Expr::And(factors)
        })
    }

    fn factor(&mut self) -> Result<Expr, String> {
        let token = self.tokens.get(self.at).ok_or("formula ends early")?;
        self.at += 1;
        match token {
            Token::Not => Ok(Expr::Not(Box::new(self.factor()?))),
            Token::Open => {
                let inner = self.or()?;
                if self.tokens.get(self.at) != Some(&Token::Close) {
                    return Err("formula lacks a closing parenthesis".into());
                }
                self.at += 1;
                Ok(inner)
            }
            Token::Word(word) => Ok(self.word(word)),
            other => Err(format!("formula has {other:?} where an atom belongs")),
        }
    }

    fn word(&mut self, word: &str) -> Expr {
        match word {
            "MCC" => return Expr::Severity(Severity::Mcc),
            "CC" => return Expr::Severity(Severity::Cc),
            "NONE" => return Expr::Severity(Severity::None),
            _ => {}
        }
        let (scope, name) = match word.split_once(':') {
            Some(("PDX", name)) => (Scope::Pdx, name),
            Some(("SDX", name)) => (Scope::Sdx, name),
            Some(("ONLY", name)) => (Scope::Only, name),
            Some((_, name)) => (Scope::Any, name),
            None => (Scope::Any, word),
        };
        Expr::Atom(self.atoms.atom(scope, name))
    }
}

/// One claim's atoms: for each atom, whether it holds and, for procedure attributes that a
/// cluster suppresses, the MDCs in which it does not count (bit n: MDC n).
pub struct Mask {
    present: Vec<bool>,
    suppressed: Vec<u32>,
}

impl Mask {
    pub fn new(atoms: u32) -> Mask {
        Mask {
            present: vec![false; atoms as usize],
            suppressed: vec![0; atoms as usize],
        }
    }

    /// Adds an atom; an atom added several times is suppressed only where every addition is.
    pub fn add(&mut self, atom: u32, suppressed: u32) {
        let at = atom as usize;
        if self.present[at] {
            self.suppressed[at] &= suppressed;
        } else {
            self.present[at] = true;
            self.suppressed[at] = suppressed;
        }
    }

    pub fn holds(&self, atom: u32, mdc: u8) -> bool {
        let at = atom as usize;
        self.present[at] && (mdc >= 32 || self.suppressed[at] & (1 << mdc) == 0)
    }
}

impl Expr {
    pub fn eval(&self, mask: &Mask, mdc: u8, severity: Severity) -> bool {
        match self {
            Expr::Atom(atom) => mask.holds(*atom, mdc),
            Expr::Severity(s) => *s == severity,
            Expr::Not(inner) => !inner.eval(mask, mdc, severity),
            Expr::And(factors) => factors.iter().all(|f| f.eval(mask, mdc, severity)),
            Expr::Or(terms) => terms.iter().any(|t| t.eval(mask, mdc, severity)),
        }
    }

    /// Every atom of the formula.
    pub fn atoms(&self, out: &mut Vec<u32>) {
        match self {
            Expr::Atom(atom) => out.push(*atom),
            Expr::Severity(_) => {}
            Expr::Not(inner) => inner.atoms(out),
            Expr::And(parts) | Expr::Or(parts) => parts.iter().for_each(|p| p.atoms(out)),
        }
    }

    /// The atoms (and severity) that make a true formula true: every true branch of an
    /// `|`, both sides of an `&`, nothing under a `~`.
    pub fn matched(&self, mask: &Mask, mdc: u8, severity: Severity, out: &mut Vec<Matched>) {
        if !self.eval(mask, mdc, severity) {
            return;
        }
        match self {
            Expr::Atom(atom) => out.push(Matched::Atom(*atom)),
            Expr::Severity(s) => out.push(Matched::Severity(*s)),
            Expr::Not(_) => {}
            Expr::And(parts) | Expr::Or(parts) => {
                for part in parts {
                    part.matched(mask, mdc, severity, out);
                }
            }
        }
    }
}

/// An atom that helped a formula match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matched {
    Atom(u32),
    Severity(Severity),
}

#[cfg(test)]
mod tests {
    use super::{Atoms, Mask, Scope, parse};
    use crate::drg::Severity;

    #[test]
    fn and_binds_tighter_than_or_and_suppression_hides_an_atom_in_its_mdc() {
        let mut atoms = Atoms::default();
        let expr = parse("a | b & ~PDX:c", &mut atoms).map_err(|e| e.to_string());
        let Ok(expr) = expr else { panic!("{expr:?}") };
        let name = |atoms: &mut Atoms, n: &str| atoms.name(n);
        let a = name(&mut atoms, "a");
        let b = name(&mut atoms, "b");
        let c = name(&mut atoms, "c");
        let (a, b, c) = (
            atoms.get(Scope::Any, a).unwrap_or(0),
            atoms.get(Scope::Any, b).unwrap_or(0),
            atoms.get(Scope::Pdx, c).unwrap_or(0),
        );
        let mut mask = Mask::new(atoms.count);
        assert!(!expr.eval(&mask, 5, Severity::None));
        mask.add(b, 0);
        assert!(expr.eval(&mask, 5, Severity::None));
        mask.add(c, 0);
        assert!(!expr.eval(&mask, 5, Severity::None));
        mask.add(a, 1 << 5);
        assert!(
            !expr.eval(&mask, 5, Severity::None),
            "a is suppressed in MDC 5"
        );
        assert!(expr.eval(&mask, 6, Severity::None));
    }

    #[test]
    fn severity_atoms_compare_with_the_claim_severity() {
        let mut atoms = Atoms::default();
        let Ok(expr) = parse("(MCC | CC) & x", &mut atoms) else {
            panic!()
        };
        let x = atoms.names["x"];
        let Some(x) = atoms.get(Scope::Any, x) else {
            panic!()
        };
        let mut mask = Mask::new(atoms.count);
        mask.add(x, 0);
        assert!(expr.eval(&mask, 0, Severity::Cc));
        assert!(!expr.eval(&mask, 0, Severity::None));
    }
}
