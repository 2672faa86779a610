//! The few spellings in which SQLite's and PostgreSQL's search SQL differ. Everything
//! else the builder writes is the same text for both; placeholders are `?` throughout
//! (the PostgreSQL reader numbers them).

use super::sql::Sql;

/// Which database the SQL is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A `_text` or `_content` search: the column to look in and the words as given.
#[derive(Clone, Debug)]
pub(crate) struct FullText {
    /// `narrative` or `content`.
    pub(crate) column: &'static str,
    pub(crate) words: String,
}

impl Dialect {
    /// `column` is one of `values`, bound as one argument however many there are (a
    /// list of bound values is capped at some thousands by either database, and an
    /// `IN` of literals would make each list a statement of its own): a JSON array,
    /// which holds any text safely.
    pub(crate) fn any_of(self, column: &str, values: &[String]) -> Sql {
        // Strings always serialise; were it ever to fail, the empty text is not JSON and
        // the statement fails, hiding nothing less.
        let array = serde_json::to_string(values).unwrap_or_default();
        let mut sql = Sql::default();
        match self {
            Dialect::Sqlite => {
                sql.push(&format!("{column} IN (SELECT value FROM json_each("))
                    .arg(array)
                    .push("))");
            }
            Dialect::Postgres => {
                sql.push(&format!(
                    "{column} IN (SELECT jsonb_array_elements_text(CAST("
                ))
                .arg(array)
                .push(" AS jsonb)))");
            }
        }
        sql
    }

    /// An inner join. SQLite's `CROSS JOIN` keeps the written join order (the builder
    /// chooses it); PostgreSQL plans the order itself and has no `CROSS JOIN ... ON`.
    pub(crate) fn join(self) -> &'static str {
        match self {
            Dialect::Sqlite => "CROSS JOIN",
            Dialect::Postgres => "JOIN",
        }
    }

    /// `column`, kept off its index where the dialect has a way to say so (SQLite's
    /// unary `+`), so that another index drives.
    pub(crate) fn unindexed(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => format!("+{column}"),
            Dialect::Postgres => column.to_string(),
        }
    }

    /// `a IS b` for a bound value `b`, which may be NULL.
    pub(crate) fn is(self) -> &'static str {
        match self {
            Dialect::Sqlite => " IS ",
            Dialect::Postgres => " IS NOT DISTINCT FROM ",
        }
    }

    /// 1 when `expression` is NULL, else 0, as an integer both sides can compare.
    pub(crate) fn missing_flag(self, expression: &str) -> String {
        match self {
            Dialect::Sqlite => format!("({expression} IS NULL)"),
            Dialect::Postgres => format!("({expression} IS NULL)::int"),
        }
    }

    /// The opening of "position of the bound value in `column`" (1-based, 0 when
    /// absent), closed by the caller after its argument: `...(col, ?)`.
    pub(crate) fn contains(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => format!("instr({column}, "),
            Dialect::Postgres => format!("strpos({column}, "),
        }
    }

    /// "The resource `rid` has every word of `text` (as word prefixes)".
    pub(crate) fn full_text_exists(self, text: &FullText, rid: &str) -> Sql {
        match self {
            Dialect::Sqlite => {
                let mut sql = Sql::new("EXISTS (SELECT 1 FROM sp_text WHERE sp_text MATCH ");
                sql.arg(fts5_query(text))
                    .push(&format!(" AND rowid = {rid})"));
                sql
            }
            Dialect::Postgres => {
                let mut sql = Sql::new(&format!(
                    "EXISTS (SELECT 1 FROM sp_text ft WHERE ft.rid = {rid} AND ft.{} @@ ",
                    text.column
                ));
                sql.push("to_tsquery('simple', ")
                    .arg(tsquery(&text.words))
                    .push("))");
                sql
            }
        }
    }

    /// `SELECT {z}.rid` of every resource with every word of `text`, joined to its
    /// `resource` row as `r{z}` and ending in a `WHERE` the caller extends with `AND`.
    pub(crate) fn full_text_set(self, text: &FullText, z: &str) -> Sql {
        match self {
            Dialect::Sqlite => {
                let mut sql = Sql::new(&format!(
                    "SELECT {z}.rid FROM (SELECT rowid AS rid FROM sp_text WHERE sp_text MATCH "
                ));
                sql.arg(fts5_query(text)).push(&format!(
                    ") {z} JOIN resource r{z} ON r{z}.rid = {z}.rid WHERE TRUE"
                ));
                sql
            }
            Dialect::Postgres => {
                let mut sql = Sql::new(&format!(
                    "SELECT {z}.rid FROM sp_text {z} JOIN resource r{z} ON r{z}.rid = {z}.rid \
                     WHERE {z}.{} @@ to_tsquery('simple', ",
                    text.column
                ));
                sql.arg(tsquery(&text.words)).push(")");
                sql
            }
        }
    }
}

/// The FTS5 query: the column, then every word as a prefix.
fn fts5_query(text: &FullText) -> String {
    let words = search::fts_query(&text.words).unwrap_or_default();
    format!("{} : ({words})", text.column)
}

/// The words of `text` as the full-text index keeps them: split at every character
/// that is not a letter or digit, case and accents folded (as SQLite's `unicode61`
/// tokenizer with `remove_diacritics 2` does).
pub(crate) fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(search::normalize_string)
        .filter(|word| !word.is_empty())
}

/// The text PostgreSQL's `to_tsvector('simple', ...)` is given: the words, one space apart.
pub(crate) fn tsvector_text(text: &str) -> String {
    words(text).collect::<Vec<_>>().join(" ")
}

/// The `tsquery`: every word as a prefix (`'heart':* & 'fail':*`).
pub(crate) fn tsquery(text: &str) -> String {
    words(text)
        .map(|word| format!("'{}':*", word.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(" & ")
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_list_is_one_argument_a_json_array() {
        let values = vec!["a".to_string(), "b\"c".to_string()];
        let sqlite = Dialect::Sqlite.any_of("r.id", &values);
        assert_eq!(sqlite.args.len(), 1);
        let super::super::sql::Value::Text(array) = &sqlite.args[0] else {
            panic!("a text argument")
        };
        let parsed: Vec<String> = serde_json::from_str(array).unwrap_or_default();
        assert_eq!(parsed, values);
        let postgres = Dialect::Postgres.any_of("r.id", &values);
        assert_eq!(postgres.args.len(), 1);
        assert!(postgres.text.contains("jsonb_array_elements_text"));
    }
    use super::*;

    #[test]
    fn words_fold_case_and_accents_and_split_like_the_sqlite_tokenizer() {
        assert_eq!(
            tsvector_text("Müller-Lüdenscheidt, BLOOD.pressure 8867-4"),
            "muller ludenscheidt blood pressure 8867 4"
        );
        assert_eq!(tsquery("heart Fail"), "'heart':* & 'fail':*");
        assert_eq!(tsquery("  "), "");
    }
}
