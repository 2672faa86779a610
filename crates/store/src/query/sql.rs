//! Criteria to SQL: each criterion becomes a boolean on a resource's `rid` (an
//! `EXISTS` probe through the rid-first primary keys) and, when it is positive, also a
//! set (`SELECT rid ...` through the pid-first secondary indexes) that can drive a search.
//!
//! Every comparison reproduces `search::Prefix::matches_date` / `matches_number` on the
//! stored `low`/`high`; bounds are computed here in Rust, so SQL only compares.

use search::{
    Criterion, DateRange, NumberRange, ParamType, Prefix, ReferenceTest, Step, StringMatch,
    SystemMatch, Test, TokenTest, UriMatch,
};

use super::Reader;
use super::dialect::{Dialect, FullText};
use crate::StoreError;

/// A value bound to a placeholder, or read back as a sort value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
}

impl From<i64> for Value {
    fn from(value: i64) -> Value {
        Value::Integer(value)
    }
}

impl From<f64> for Value {
    fn from(value: f64) -> Value {
        Value::Real(value)
    }
}

impl From<String> for Value {
    fn from(value: String) -> Value {
        Value::Text(value)
    }
}

/// SQL text with its positional arguments, in order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sql {
    pub(crate) text: String,
    pub(crate) args: Vec<Value>,
}

impl Sql {
    pub(crate) fn new(text: &str) -> Sql {
        Sql {
            text: text.to_string(),
            args: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    /// Appends a `?` bound to `value`.
    pub(crate) fn arg(&mut self, value: impl Into<Value>) -> &mut Sql {
        self.text.push('?');
        self.args.push(value.into());
        self
    }

    pub(crate) fn append(&mut self, other: &Sql) -> &mut Sql {
        self.text.push_str(&other.text);
        self.args.extend(other.args.iter().cloned());
        self
    }

    /// `(?, ?, ...)`.
    pub(crate) fn list<T: Into<Value> + Clone>(&mut self, values: &[T]) -> &mut Sql {
        self.push("(");
        for (index, value) in values.iter().enumerate() {
            if index > 0 {
                self.push(", ");
            }
            self.arg(value.clone());
        }
        self.push(")")
    }
}

/// One table of index rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Table {
    String,
    Token,
    Reference,
    Date,
    Number,
    Quantity,
    Uri,
}

impl Table {
    pub(super) fn name(self) -> &'static str {
        match self {
            Table::String => "sp_string",
            Table::Token => "sp_token",
            Table::Reference => "sp_reference",
            Table::Date => "sp_date",
            Table::Number => "sp_number",
            Table::Quantity => "sp_quantity",
            Table::Uri => "sp_uri",
        }
    }

    pub(super) fn of(param_type: ParamType) -> Option<Table> {
        Some(match param_type {
            ParamType::String => Table::String,
            ParamType::Token => Table::Token,
            ParamType::Reference => Table::Reference,
            ParamType::Date => Table::Date,
            ParamType::Number => Table::Number,
            ParamType::Quantity => Table::Quantity,
            ParamType::Uri => Table::Uri,
            ParamType::Composite | ParamType::Special => return None,
        })
    }
}

/// A clause (or criterion) in both forms.
#[derive(Clone, Debug)]
pub(super) struct Compiled {
    /// A boolean on `r.rid`.
    pub(super) exists: Sql,
    /// `SELECT rid ...` of every match (possibly repeated), when the test is positive.
    pub(super) set: Option<Sql>,
    /// How selective the test usually is, 0 most: breaks ties between estimates.
    pub(super) rank: u8,
    /// Whether `set` reads one range of one value index whose entries are in rid
    /// order (an equality on the indexed values), so it can be walked in rid order
    /// and stopped early instead of being read whole.
    pub(super) ordered: bool,
}

fn invalid(message: impl Into<String>) -> StoreError {
    StoreError::Invalid(message.into())
}

/// Builds SQL for criteria in the reader's dialect; looks up pids as it goes.
pub(super) struct Builder<'a> {
    reader: &'a dyn Reader,
    dialect: Dialect,
    aliases: usize,
    /// What a resource reached through a chain or `_has` must also satisfy, by type.
    reached: Vec<search::Reached>,
}

impl<'a> Builder<'a> {
    pub(super) fn new(reader: &'a dyn Reader) -> Builder<'a> {
        Builder {
            reader,
            dialect: reader.dialect(),
            aliases: 0,
            reached: Vec::new(),
        }
    }

    /// The builder of `query`: chains and `_has` keep to `query.reached`.
    pub(super) fn for_query(reader: &'a dyn Reader, query: &search::Query) -> Builder<'a> {
        let mut builder = Builder::new(reader);
        builder.reached = query.reached.clone();
        builder
    }

    /// `AND` the conditions a resource of `resource_type` at `rid` must satisfy when a
    /// path reaches it (nothing when it has none).
    fn reached_condition(&mut self, resource_type: &str, rid: &str) -> Result<Sql, StoreError> {
        let Some(position) = self
            .reached
            .iter()
            .position(|reached| reached.resource_type == resource_type)
        else {
            return Ok(Sql::default());
        };
        let clauses = self.reached[position].clauses.clone();
        let types = [resource_type.to_string()];
        let mut sql = Sql::default();
        for clause in &clauses {
            sql.push(" AND (");
            if clause.any_of.is_empty() {
                sql.push("FALSE");
            }
            for (index, criterion) in clause.any_of.iter().enumerate() {
                if index > 0 {
                    sql.push(" OR ");
                }
                let one = self.path_exists(&criterion.path, criterion, &types, rid)?;
                sql.append(&one);
            }
            sql.push(")");
        }
        Ok(sql)
    }

    fn alias(&mut self, prefix: &str) -> String {
        self.aliases += 1;
        format!("{prefix}{}", self.aliases)
    }

    /// The pids of `key` for `types` (every type when empty).
    pub(super) fn pids(&self, types: &[String], key: &str) -> Result<Vec<i64>, StoreError> {
        if types.is_empty() {
            return self.reader.pids_of_any_type(key);
        }
        let mut pids = Vec::new();
        for resource_type in types {
            if let Some(pid) = self.reader.pid(resource_type, key)? {
                pids.push(pid);
            }
        }
        Ok(pids)
    }

    /// `alias.pid = ?`, `alias.pid IN (...)`, or false when there is none.
    pub(super) fn pid_condition(
        &self,
        alias: &str,
        types: &[String],
        key: &str,
    ) -> Result<Sql, StoreError> {
        let pids = self.pids(types, key)?;
        let mut sql = Sql::default();
        match pids.as_slice() {
            [] => sql.push("FALSE"),
            [pid] => sql.push(&format!("{alias}.pid = ")).arg(*pid),
            many => sql.push(&format!("{alias}.pid IN ")).list(many),
        };
        Ok(sql)
    }

    /// Every clause of a query. Clauses that are each one negated token test on the same
    /// parameter of the same type (`code:not=a&code:not=b`, or the hidden labels of
    /// `_security`) become one `NOT EXISTS` over the tests OR'd, so a candidate is probed
    /// once for all of them.
    pub(super) fn clauses(
        &mut self,
        clauses: &[search::Clause],
        types: &[String],
    ) -> Result<Vec<Compiled>, StoreError> {
        let mut compiled = Vec::with_capacity(clauses.len());
        // (the first criterion, every token it and its like test)
        let mut negated: Vec<(&Criterion, Vec<TokenTest>)> = Vec::new();
        for clause in clauses {
            if let [criterion] = clause.any_of.as_slice()
                && criterion.path.is_empty()
                && criterion.param_type == ParamType::Token
                && !is_resource_column(&criterion.param)
                && let Test::Not(inner) = &criterion.test
                && let Test::Token(token) = inner.as_ref()
            {
                match negated.iter_mut().find(|(first, _)| {
                    first.param == criterion.param && first.resource_type == criterion.resource_type
                }) {
                    Some((_, tokens)) => tokens.push(token.clone()),
                    None => negated.push((criterion, vec![token.clone()])),
                }
                continue;
            }
            compiled.push(self.clause(&clause.any_of, types)?);
        }
        for (criterion, tokens) in negated {
            if let [_] = tokens.as_slice() {
                compiled.push(self.criterion(criterion, types)?);
                continue;
            }
            let types = final_types(criterion, types);
            // Codes of one system become one `IN` list.
            let mut by_system: Vec<(String, Vec<String>)> = Vec::new();
            let mut others = Vec::new();
            for token in tokens {
                match token {
                    TokenTest {
                        system: SystemMatch::Is(system),
                        code: Some(code),
                    } => match by_system.iter_mut().find(|(known, _)| *known == system) {
                        Some((_, codes)) => codes.push(code),
                        None => by_system.push((system, vec![code])),
                    },
                    other => others.push(other),
                }
            }
            // `ALIAS.pid ... AND (the tests OR'd)`.
            let tests = |builder: &mut Self, x: &str| -> Result<Sql, StoreError> {
                let mut sql = builder.pid_condition(x, &types, &criterion.param)?;
                sql.push(" AND (");
                let mut first = true;
                for (system, codes) in &by_system {
                    if !first {
                        sql.push(" OR ");
                    }
                    first = false;
                    sql.push(&format!("({x}.system = "))
                        .arg(system.clone())
                        .push(&format!(" AND {x}.code IN "))
                        .list(codes)
                        .push(")");
                }
                for token in &others {
                    if !first {
                        sql.push(" OR ");
                    }
                    first = false;
                    let (_, condition) =
                        row_condition(builder.dialect, &Test::Token(token.clone()), x)?;
                    sql.push("(").append(&condition).push(")");
                }
                sql.push(")");
                Ok(sql)
            };
            let mut exists = Sql::new("NOT (");
            if others.is_empty() {
                // Whether any resource at all holds one of the codes, asked once per
                // query through the code index: where none does (the hidden labels of
                // `_security`, most often), no candidate is probed. SQLite asks it
                // first, in the search's own snapshot, and then leaves the clause out,
                // so the count keeps its plain plan; PostgreSQL asks it inside the query
                // and spares a round trip.
                let g = self.alias("g");
                let any = tests(self, &g)?;
                let mut gate = Sql::new(&format!(
                    "EXISTS (SELECT 1 FROM sp_token {g} WHERE {g}.grp = 0 AND "
                ));
                gate.append(&any).push(")");
                if self.dialect == Dialect::Sqlite {
                    let mut ask = Sql::new("SELECT ");
                    ask.append(&gate);
                    if self.reader.count(&ask)? == 0 {
                        continue;
                    }
                } else {
                    exists.append(&gate).push(" AND ");
                }
            }
            let x = self.alias("x");
            let each = tests(self, &x)?;
            exists
                .push(&format!(
                    "EXISTS (SELECT 1 FROM sp_token {x} WHERE {x}.rid = r.rid AND "
                ))
                .append(&each)
                .push("))");
            compiled.push(Compiled {
                exists,
                set: None,
                rank: rank(&criterion.param, &criterion.test),
                ordered: false,
            });
        }
        Ok(compiled)
    }

    /// A clause: any of its criteria holds.
    pub(super) fn clause(
        &mut self,
        criteria: &[Criterion],
        types: &[String],
    ) -> Result<Compiled, StoreError> {
        let mut compiled = Vec::with_capacity(criteria.len());
        for criterion in criteria {
            compiled.push(self.criterion(criterion, types)?);
        }
        if let [one] = compiled.as_slice() {
            return Ok(one.clone());
        }
        let mut exists = Sql::new("(");
        if compiled.is_empty() {
            exists.push("FALSE");
        }
        for (index, one) in compiled.iter().enumerate() {
            if index > 0 {
                exists.push(" OR ");
            }
            exists.append(&one.exists);
        }
        exists.push(")");
        let set = if compiled.iter().all(|one| one.set.is_some()) && !compiled.is_empty() {
            let mut set = Sql::default();
            for (index, one) in compiled.iter().enumerate() {
                if index > 0 {
                    set.push(" UNION ALL ");
                }
                if let Some(one) = &one.set {
                    set.append(one);
                }
            }
            Some(set)
        } else {
            None
        };
        let rank = compiled.iter().map(|one| one.rank).max().unwrap_or(0);
        Ok(Compiled {
            exists,
            set,
            rank,
            ordered: false,
        })
    }

    pub(super) fn criterion(
        &mut self,
        criterion: &Criterion,
        types: &[String],
    ) -> Result<Compiled, StoreError> {
        let exists = self.path_exists(&criterion.path, criterion, types, "r.rid")?;
        let set = self.path_set(&criterion.path, criterion, types)?;
        let rank = rank(&criterion.param, &criterion.test) + u8::from(!criterion.path.is_empty());
        // Equalities on the columns of a value index before its rid: token codes (the
        // index is (pid, code), then rid) and local references ((pid, target_id,
        // target_type), then rid), of one type (one pid).
        let ordered = criterion.path.is_empty()
            && types.len() == 1
            && !matches!(
                criterion.param.as_str(),
                "_id" | "_lastUpdated" | "_text" | "_content"
            )
            && match &criterion.test {
                Test::Token(token) => {
                    token.code.is_some() && criterion.param_type != ParamType::Reference
                }
                // An id names one resource, so its rows share one type in practice;
                // otherwise SQLite sorts, which is still right.
                Test::Reference(ReferenceTest::Local { .. }) => true,
                _ => false,
            };
        Ok(Compiled {
            exists,
            set,
            rank,
            ordered,
        })
    }

    fn path_exists(
        &mut self,
        steps: &[Step],
        criterion: &Criterion,
        types: &[String],
        rid: &str,
    ) -> Result<Sql, StoreError> {
        let Some((step, rest)) = steps.split_first() else {
            let types = final_types(criterion, types);
            return self.test_exists(
                &types,
                &criterion.param,
                criterion.param_type,
                &criterion.test,
                rid,
            );
        };
        let f = self.alias("f");
        let t = self.alias("t");
        let mut sql = Sql::default();
        match step {
            Step::Forward { param, target_type } => {
                let pids = self.pid_condition(&f, types, param)?;
                let inner = self.path_exists(
                    rest,
                    criterion,
                    std::slice::from_ref(target_type),
                    &format!("{t}.rid"),
                )?;
                let reached = self.reached_condition(target_type, &format!("{t}.rid"))?;
                let join = self.dialect.join();
                sql.push(&format!(
                    "EXISTS (SELECT 1 FROM sp_reference {f} {join} resource {t} \
                     ON {t}.type = {f}.target_type AND {t}.id = {f}.target_id \
                     WHERE {f}.rid = {rid} AND {f}.grp = 0 AND "
                ))
                .append(&pids)
                .push(&format!(" AND {f}.target_type = "))
                .arg(target_type.clone())
                .push(&format!(" AND {t}.deleted = 0 AND "))
                .append(&inner)
                .append(&reached)
                .push(")");
            }
            Step::Reverse { source_type, param } => {
                let source = std::slice::from_ref(source_type);
                let pids = self.pid_condition(&f, source, param)?;
                let inner = self.path_exists(rest, criterion, source, &format!("{f}.rid"))?;
                let reached = self.reached_condition(source_type, &format!("{f}.rid"))?;
                let join = self.dialect.join();
                sql.push(&format!(
                    "EXISTS (SELECT 1 FROM resource {t} {join} sp_reference {f} \
                     ON {f}.target_id = {t}.id AND {f}.target_type = {t}.type \
                     WHERE {t}.rid = {rid} AND {f}.grp = 0 AND "
                ))
                .append(&pids)
                .push(" AND ")
                .append(&inner)
                .append(&reached)
                .push(")");
            }
        }
        Ok(sql)
    }

    fn path_set(
        &mut self,
        steps: &[Step],
        criterion: &Criterion,
        types: &[String],
    ) -> Result<Option<Sql>, StoreError> {
        let Some((step, rest)) = steps.split_first() else {
            let types = final_types(criterion, types);
            return self.test_set(
                &types,
                &criterion.param,
                criterion.param_type,
                &criterion.test,
            );
        };
        let f = self.alias("f");
        let t = self.alias("t");
        let mut sql = Sql::default();
        match step {
            Step::Forward { param, target_type } => {
                let Some(inner) =
                    self.path_set(rest, criterion, std::slice::from_ref(target_type))?
                else {
                    return Ok(None);
                };
                let pids = self.pid_condition(&f, types, param)?;
                let reached = self.reached_condition(target_type, &format!("{t}.rid"))?;
                let join = self.dialect.join();
                sql.push(&format!(
                    "SELECT {f}.rid FROM resource {t} {join} sp_reference {f} \
                     ON {f}.target_id = {t}.id AND {f}.target_type = {t}.type \
                     WHERE {t}.rid IN ("
                ))
                .append(&inner)
                .push(&format!(") AND {t}.deleted = 0 AND {t}.type = "))
                .arg(target_type.clone())
                .push(&format!(" AND {f}.grp = 0 AND "))
                .append(&pids)
                .append(&reached);
            }
            Step::Reverse { source_type, param } => {
                let source = std::slice::from_ref(source_type);
                let Some(inner) = self.path_set(rest, criterion, source)? else {
                    return Ok(None);
                };
                let pids = self.pid_condition(&f, source, param)?;
                let reached = self.reached_condition(source_type, &format!("{f}.rid"))?;
                let join = self.dialect.join();
                sql.push(&format!(
                    "SELECT {t}.rid FROM sp_reference {f} {join} resource {t} \
                     ON {t}.type = {f}.target_type AND {t}.id = {f}.target_id \
                     WHERE {f}.rid IN ("
                ))
                .append(&inner)
                .push(&format!(") AND {f}.grp = 0 AND "))
                .append(&pids)
                .append(&reached)
                .push(&format!(" AND {t}.deleted = 0"));
                if !types.is_empty() {
                    sql.push(&format!(" AND {t}.type IN ")).list(types);
                }
            }
        }
        Ok(Some(sql))
    }

    /// The boolean "the resource `rid` passes `test` on `param`".
    fn test_exists(
        &mut self,
        types: &[String],
        param: &str,
        param_type: ParamType,
        test: &Test,
        rid: &str,
    ) -> Result<Sql, StoreError> {
        if let Some(matching) = full_text_match(param, test)? {
            return Ok(self.dialect.full_text_exists(&matching, rid));
        }
        if is_resource_column(param) {
            let z = self.alias("z");
            let condition =
                resource_column_condition(self.dialect, param, test, &z)?.unwrap_or_default();
            let mut sql = Sql::new(&format!(
                "EXISTS (SELECT 1 FROM resource {z} WHERE {z}.rid = {rid} AND "
            ));
            sql.append(&condition).push(")");
            return Ok(sql);
        }
        let mut sql = Sql::default();
        match test {
            Test::Missing(missing) => {
                let (table, key) = missing_target(types, param, param_type)?;
                let x = self.alias("x");
                let pids = self.pid_condition(&x, types, &key)?;
                sql.push(if *missing { "NOT EXISTS" } else { "EXISTS" })
                    .push(&format!(
                        " (SELECT 1 FROM {} {x} WHERE {x}.rid = {rid} AND ",
                        table.name()
                    ))
                    .append(&pids)
                    .push(")");
            }
            Test::Not(inner) => {
                let inner = self.test_exists(types, param, param_type, inner, rid)?;
                sql.push("NOT (").append(&inner).push(")");
            }
            Test::Composite(tests) => {
                let (from, first) = self.composite(types, param, tests)?;
                sql.push("EXISTS (SELECT 1 ")
                    .append(&from)
                    .push(&format!(" AND {first}.rid = {rid})"));
            }
            _ => {
                let x = self.alias("x");
                let (table, condition) = row_condition(self.dialect, test, &x)?;
                let pids = self.pid_condition(&x, types, &key_for(param, param_type, test))?;
                sql.push(&format!(
                    "EXISTS (SELECT 1 FROM {} {x} WHERE {x}.rid = {rid} AND ",
                    table.name()
                ))
                .append(&pids)
                .push(" AND ")
                .append(&condition)
                .push(")");
            }
        }
        Ok(sql)
    }

    /// `SELECT rid` of every resource passing `test`; `None` for negations.
    fn test_set(
        &mut self,
        types: &[String],
        param: &str,
        param_type: ParamType,
        test: &Test,
    ) -> Result<Option<Sql>, StoreError> {
        if matches!(test, Test::Missing(true) | Test::Not(_)) {
            return Ok(None);
        }
        if let Some(matching) = full_text_match(param, test)? {
            let z = self.alias("z");
            let mut sql = self.dialect.full_text_set(&matching, &z);
            if !types.is_empty() {
                sql.push(&format!(" AND r{z}.type IN ")).list(types);
            }
            return Ok(Some(sql));
        }
        let z = self.alias("z");
        if is_resource_column(param)
            && let Some(condition) = resource_column_condition(self.dialect, param, test, &z)?
        {
            let mut sql = Sql::new(&format!(
                "SELECT {z}.rid FROM resource {z} WHERE {z}.deleted = 0 AND "
            ));
            if !types.is_empty() {
                sql.push(&format!("{z}.type IN ")).list(types).push(" AND ");
            }
            sql.append(&condition);
            return Ok(Some(sql));
        }
        // The secondary indexes leave out composite components (group > 0), to keep
        // writes cheap: composites are only ever probed, never a driving set. Every
        // other key has group 0, which the sets say so the partial indexes apply.
        if param_type == ParamType::Composite {
            return Ok(None);
        }
        let mut sql = Sql::default();
        let x = self.alias("x");
        match test {
            Test::Missing(_) => {
                let (table, key) = missing_target(types, param, param_type)?;
                let pids = self.pid_condition(&x, types, &key)?;
                sql.push(&format!(
                    "SELECT {x}.rid FROM {} {x} WHERE {x}.grp = 0 AND ",
                    table.name()
                ))
                .append(&pids);
            }
            Test::Composite(_) => return Ok(None),
            _ => {
                let (table, condition) = row_condition(self.dialect, test, &x)?;
                let pids = self.pid_condition(&x, types, &key_for(param, param_type, test))?;
                sql.push(&format!(
                    "SELECT {x}.rid FROM {} {x} WHERE {x}.grp = 0 AND ",
                    table.name()
                ))
                .append(&pids)
                .push(" AND ")
                .append(&condition);
            }
        }
        Ok(Some(sql))
    }

    /// `FROM c0 JOIN c1 ON same rid and group ... WHERE each component passes`, and the
    /// first component's alias.
    fn composite(
        &mut self,
        types: &[String],
        param: &str,
        tests: &[Test],
    ) -> Result<(Sql, String), StoreError> {
        if tests.is_empty() {
            return Err(invalid(format!(
                "composite search on {param} without components"
            )));
        }
        let mut from = Sql::new("FROM ");
        let mut conditions = Sql::default();
        let mut first = String::new();
        for (index, test) in tests.iter().enumerate() {
            if matches!(test, Test::Missing(_) | Test::Not(_) | Test::Composite(_)) {
                return Err(invalid(format!(
                    "a component of composite parameter {param} cannot take a modifier"
                )));
            }
            let c = self.alias("c");
            let (table, condition) = row_condition(self.dialect, test, &c)?;
            let pids = self.pid_condition(&c, types, &format!("{param}${index}"))?;
            if index == 0 {
                from.push(&format!("{} {c}", table.name()));
                first = c.clone();
            } else {
                from.push(&format!(
                    " JOIN {} {c} ON {c}.rid = {first}.rid AND {c}.grp = {first}.grp",
                    table.name()
                ));
                conditions.push(" AND ");
            }
            conditions.append(&pids).push(" AND ").append(&condition);
        }
        from.push(" WHERE ").append(&conditions);
        Ok((from, first))
    }

    /// The sort value of `param` for `r`: its smallest value ascending, its largest
    /// descending (dates and numbers: low end ascending, high end descending).
    pub(super) fn sort_expression(
        &self,
        types: &[String],
        param: &str,
        param_type: ParamType,
        descending: bool,
    ) -> Result<Sql, StoreError> {
        match param {
            "_id" => return Ok(Sql::new("r.id")),
            "_lastUpdated" => return Ok(Sql::new("r.last_updated")),
            _ => {}
        }
        let aggregate = if descending { "max" } else { "min" };
        let (table, column) = match param_type {
            ParamType::String => (Table::String, "value"),
            ParamType::Token => (Table::Token, "code"),
            ParamType::Reference => (Table::Reference, "target_id"),
            ParamType::Uri => (Table::Uri, "uri"),
            ParamType::Date | ParamType::Number | ParamType::Quantity => (
                Table::of(param_type).unwrap_or(Table::Date),
                if descending { "high" } else { "low" },
            ),
            ParamType::Composite | ParamType::Special => {
                return Err(invalid(format!("cannot sort by {param}")));
            }
        };
        let pids = self.pid_condition("s", types, param)?;
        let mut sql = Sql::new(&format!(
            "(SELECT {aggregate}(s.{column}) FROM {} s WHERE s.rid = r.rid AND ",
            table.name()
        ));
        sql.append(&pids).push(")");
        Ok(sql)
    }
}

/// The types whose pids a criterion's final test uses.
fn final_types(criterion: &Criterion, types: &[String]) -> Vec<String> {
    match &criterion.resource_type {
        Some(resource_type) => vec![resource_type.clone()],
        None => types.to_vec(),
    }
}

fn rank(param: &str, test: &Test) -> u8 {
    match (param, test) {
        ("_id", _) => 0,
        ("_lastUpdated", _) => 2,
        (_, Test::Missing(_) | Test::Not(_)) => 4,
        (
            _,
            Test::String {
                mode: StringMatch::Contains,
                ..
            },
        ) => 3,
        (
            _,
            Test::String {
                mode: StringMatch::StartsWith,
                ..
            }
            | Test::Uri {
                mode: UriMatch::Below | UriMatch::Above,
                ..
            },
        ) => 1,
        (_, Test::Date { .. } | Test::Number { .. } | Test::Quantity { .. }) => 2,
        _ => 0,
    }
}

/// The index key a test reads.
fn key_for(param: &str, param_type: ParamType, test: &Test) -> String {
    match test {
        Test::String { .. } if param_type == ParamType::Token => format!("{param}:text"),
        Test::OfType { .. } => format!("{param}:of-type"),
        Test::Reference(ReferenceTest::Identifier(_)) => format!("{param}:identifier"),
        _ => param.to_string(),
    }
}

/// Where `:missing` looks: the parameter's own rows, or a composite's first component.
fn missing_target(
    types: &[String],
    param: &str,
    param_type: ParamType,
) -> Result<(Table, String), StoreError> {
    if let Some(table) = Table::of(param_type) {
        return Ok((table, param.to_string()));
    }
    if param_type == ParamType::Composite {
        let component = types
            .iter()
            .filter_map(|resource_type| search::param(resource_type, param))
            .find_map(|definition| definition.components.first())
            .and_then(|component| Table::of(component.param_type));
        if let Some(table) = component {
            return Ok((table, format!("{param}$0")));
        }
    }
    Err(invalid(format!("{param} does not support :missing")))
}

/// The words of a `_text` (narrative) or `_content` (every string) search, each
/// matched as a word prefix; `None` for other parameters.
fn full_text_match(param: &str, test: &Test) -> Result<Option<FullText>, StoreError> {
    let column = match param {
        "_text" => "narrative",
        "_content" => "content",
        _ => return Ok(None),
    };
    let Test::String { value, .. } = test else {
        return Err(invalid(format!(
            "{param} takes words to look for, not a modifier"
        )));
    };
    if search::fts_query(value).is_none() {
        return Err(invalid(format!("{param} needs at least one word")));
    }
    Ok(Some(FullText {
        column,
        words: value.clone(),
    }))
}

fn is_resource_column(param: &str) -> bool {
    param == "_id" || param == "_lastUpdated"
}

/// `_id` and `_lastUpdated` are columns of `resource`, not index rows: the condition on
/// alias `z`, or `None` for any other parameter.
fn resource_column_condition(
    dialect: Dialect,
    param: &str,
    test: &Test,
    z: &str,
) -> Result<Option<Sql>, StoreError> {
    let mut sql = Sql::default();
    match (param, test) {
        ("_id" | "_lastUpdated", Test::Missing(missing)) => {
            sql.push(if *missing { "FALSE" } else { "TRUE" });
        }
        ("_id" | "_lastUpdated", Test::Not(inner)) => {
            let inner = resource_column_condition(dialect, param, inner, z)?
                .unwrap_or_else(|| Sql::new("FALSE"));
            sql.push("NOT (").append(&inner).push(")");
        }
        ("_id", Test::Token(TokenTest { system, code })) => match (system, code) {
            (SystemMatch::Is(_), _) => {
                sql.push("FALSE");
            }
            (_, Some(code)) => {
                sql.push(&format!("{z}.id = ")).arg(code.clone());
            }
            (_, None) => {
                sql.push("TRUE");
            }
        },
        ("_id", Test::String { value, .. } | Test::Uri { value, .. }) => {
            sql.push(&format!("{z}.id = ")).arg(value.clone());
        }
        ("_id", Test::Reference(ReferenceTest::Local { id, .. })) => {
            sql.push(&format!("{z}.id = ")).arg(id.clone());
        }
        ("_id", Test::Reference(ReferenceTest::AnyOf { ids, .. })) => {
            sql.append(&dialect.any_of(&format!("{z}.id"), ids));
        }
        ("_lastUpdated", Test::Date { prefix, range }) => {
            return Ok(Some(date_condition(
                *prefix,
                *range,
                &format!("{z}.last_updated"),
                High::Point,
            )));
        }
        ("_id" | "_lastUpdated", _) => {
            return Err(invalid(format!("unsupported test on {param}")));
        }
        _ => return Ok(None),
    }
    Ok(Some(sql))
}

/// The table a test's rows live in, and the condition on one row (alias `a`).
fn row_condition(dialect: Dialect, test: &Test, a: &str) -> Result<(Table, Sql), StoreError> {
    let mut sql = Sql::default();
    let table = match test {
        Test::String { value, mode } => {
            match mode {
                StringMatch::StartsWith => {
                    prefix_range(&mut sql, &format!("{a}.value"), value);
                }
                StringMatch::Exact => {
                    sql.push(&format!("{a}.value = "))
                        .arg(search::normalize_string(value))
                        .push(&format!(" AND {a}.exact = "))
                        .arg(value.clone());
                }
                StringMatch::Contains => {
                    sql.push(&dialect.contains(&format!("{a}.value")))
                        .arg(value.clone())
                        .push(") > 0");
                }
            }
            Table::String
        }
        Test::Token(token) | Test::Reference(ReferenceTest::Identifier(token)) => {
            token_condition(&mut sql, token, a);
            Table::Token
        }
        Test::OfType {
            system,
            code,
            value,
        } => {
            sql.push(&format!("{a}.code = "))
                .arg(format!("{code}|{value}"))
                .push(&format!(" AND {a}.system = "))
                .arg(system.clone());
            Table::Token
        }
        Test::Reference(ReferenceTest::Local { resource_type, id }) => {
            sql.push(&format!("{a}.target_id = ")).arg(id.clone());
            if let Some(resource_type) = resource_type {
                sql.push(&format!(" AND {a}.target_type = "))
                    .arg(resource_type.clone());
            }
            Table::Reference
        }
        Test::Reference(ReferenceTest::AnyOf { resource_type, ids }) => {
            sql.append(&dialect.any_of(&format!("{a}.target_id"), ids));
            if let Some(resource_type) = resource_type {
                sql.push(&format!(" AND {a}.target_type = "))
                    .arg(resource_type.clone());
            }
            Table::Reference
        }
        Test::Reference(ReferenceTest::Url(url)) => {
            sql.push(&format!("{a}.url = "))
                .arg(url.clone())
                .push(&format!(" AND {a}.url <> ''"));
            Table::Reference
        }
        Test::Date { prefix, range } => {
            sql = date_condition(
                *prefix,
                *range,
                &format!("{a}.low"),
                High::Column(&format!("{a}.high")),
            );
            Table::Date
        }
        Test::Number { prefix, range } => {
            sql = number_condition(*prefix, *range, a);
            Table::Number
        }
        Test::Quantity {
            prefix,
            range,
            system,
            code,
        } => {
            sql = number_condition(*prefix, *range, a);
            if let Some(code) = code {
                sql.push(&format!(" AND {a}.code = ")).arg(code.clone());
            }
            if let Some(system) = system {
                sql.push(&format!(" AND {a}.system = ")).arg(system.clone());
            }
            Table::Quantity
        }
        Test::Uri { value, mode } => {
            let column = format!("{a}.uri");
            match mode {
                UriMatch::Exact => {
                    sql.push(&format!("{column} = ")).arg(value.clone());
                }
                UriMatch::Below => prefix_range(&mut sql, &column, value),
                UriMatch::Above => {
                    // Every prefix of the value, so the index answers.
                    let mut prefixes: Vec<&str> =
                        value.char_indices().map(|(at, _)| &value[..at]).collect();
                    prefixes.push(value);
                    if prefixes.len() <= 1000 {
                        sql.push(&format!("{column} IN "))
                            .list(&prefixes.iter().map(|p| p.to_string()).collect::<Vec<_>>());
                    } else {
                        sql.push("substr(")
                            .arg(value.clone())
                            .push(&format!(", 1, length({column})) = {column}"));
                    }
                }
            }
            Table::Uri
        }
        Test::Missing(_) | Test::Not(_) | Test::Composite(_) => {
            return Err(StoreError::Backend("not a test on one index row".into()));
        }
    };
    Ok((table, sql))
}

fn token_condition(sql: &mut Sql, token: &TokenTest, a: &str) {
    match (&token.system, &token.code) {
        (SystemMatch::Any, Some(code)) => {
            sql.push(&format!("{a}.code = ")).arg(code.clone());
        }
        (SystemMatch::None, Some(code)) => {
            sql.push(&format!("{a}.code = "))
                .arg(code.clone())
                .push(&format!(" AND {a}.system = ''"));
        }
        (SystemMatch::Is(system), Some(code)) => {
            sql.push(&format!("{a}.code = "))
                .arg(code.clone())
                .push(&format!(" AND {a}.system = "))
                .arg(system.clone());
        }
        (SystemMatch::Any, None) => {
            sql.push("TRUE");
        }
        (SystemMatch::None, None) => {
            sql.push(&format!("{a}.system = ''"));
        }
        (SystemMatch::Is(system), None) => {
            sql.push(&format!("{a}.system = ")).arg(system.clone());
        }
    }
}

/// `column` starts with `prefix`, as a range the index can scan.
fn prefix_range(sql: &mut Sql, column: &str, prefix: &str) {
    sql.push(&format!("{column} >= ")).arg(prefix.to_string());
    if let Some(end) = successor(prefix) {
        sql.push(&format!(" AND {column} < ")).arg(end);
    }
}

/// The smallest string greater than every string that starts with `prefix` (UTF-8
/// byte order is code point order), or `None` when there is none.
pub(super) fn successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        if (0xD800..0xE000).contains(&next) {
            next = 0xE000;
        }
        if let Some(next) = char::from_u32(next) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// How a date's high end is stored.
enum High<'a> {
    /// A column.
    Column(&'a str),
    /// An instant: `high` is `low + 1` (microseconds), written in terms of `low` so
    /// the index on `low` answers.
    Point,
}

/// [`Prefix::matches_date`] of the stored range (`low`, `high`) against `search`.
fn date_condition(prefix: Prefix, search: DateRange, low: &str, high: High<'_>) -> Sql {
    let mut sql = Sql::default();
    let high_gt = |sql: &mut Sql, bound: i64| match &high {
        High::Column(column) => {
            sql.push(&format!("{column} > ")).arg(bound);
        }
        High::Point => {
            sql.push(&format!("{low} >= ")).arg(bound);
        }
    };
    let high_le = |sql: &mut Sql, bound: i64| match &high {
        High::Column(column) => {
            sql.push(&format!("{column} <= ")).arg(bound);
        }
        High::Point => {
            sql.push(&format!("{low} < ")).arg(bound);
        }
    };
    let high_ge = |sql: &mut Sql, bound: i64| match &high {
        High::Column(column) => {
            sql.push(&format!("{column} >= ")).arg(bound);
        }
        High::Point => {
            sql.push(&format!("{low} >= ")).arg(bound.saturating_sub(1));
        }
    };
    let contained = |sql: &mut Sql| {
        sql.push("(")
            .push(&format!("{low} >= "))
            .arg(search.low)
            .push(" AND ");
        high_le(sql, search.high);
        sql.push(")");
    };
    // Stored ranges have low <= high (the writer leaves out any other), so when the
    // search range is well formed the extra bounds below only narrow the index scan.
    let hints = search.low <= search.high;
    match prefix {
        Prefix::Eq => contained(&mut sql),
        Prefix::Ne => {
            sql.push("NOT ");
            contained(&mut sql);
        }
        Prefix::Gt => high_gt(&mut sql, search.high),
        Prefix::Lt => {
            sql.push(&format!("{low} < ")).arg(search.low);
        }
        Prefix::Ge => {
            if hints {
                high_ge(&mut sql, search.low);
                sql.push(" AND ");
            }
            sql.push("(");
            high_gt(&mut sql, search.high);
            sql.push(" OR ");
            contained(&mut sql);
            sql.push(")");
        }
        Prefix::Le => {
            if hints {
                sql.push(&format!("{low} <= "))
                    .arg(search.high)
                    .push(" AND ");
            }
            sql.push(&format!("({low} < ")).arg(search.low).push(" OR ");
            contained(&mut sql);
            sql.push(")");
        }
        Prefix::Sa => {
            sql.push(&format!("{low} >= ")).arg(search.high);
        }
        Prefix::Eb => high_le(&mut sql, search.low),
        Prefix::Ap => {
            let width = search.high.saturating_sub(search.low);
            let slack = (width / 10).max(86_400_000_000);
            sql.push(&format!("{low} < "))
                .arg(search.high.saturating_add(slack))
                .push(" AND ");
            high_gt(&mut sql, search.low.saturating_sub(slack));
        }
    }
    sql
}

/// [`Prefix::matches_number`] of the stored range (`a.low`, `a.high`) against `search`.
fn number_condition(prefix: Prefix, search: NumberRange, a: &str) -> Sql {
    let mut sql = Sql::default();
    let value = search.value;
    let contained = |sql: &mut Sql| {
        sql.push(&format!("({a}.low >= "))
            .arg(search.low)
            .push(&format!(" AND {a}.high < "))
            .arg(search.high)
            .push(")");
    };
    match prefix {
        Prefix::Eq => contained(&mut sql),
        Prefix::Ne => {
            sql.push("NOT ");
            contained(&mut sql);
        }
        Prefix::Gt => {
            sql.push(&format!("{a}.high > ")).arg(value);
        }
        Prefix::Lt => {
            sql.push(&format!("{a}.low < ")).arg(value);
        }
        Prefix::Ge => {
            sql.push(&format!("{a}.high >= ")).arg(value);
        }
        Prefix::Le => {
            sql.push(&format!("{a}.low <= ")).arg(value);
        }
        Prefix::Sa => {
            sql.push(&format!("{a}.low > ")).arg(value);
        }
        Prefix::Eb => {
            sql.push(&format!("{a}.high < ")).arg(value);
        }
        Prefix::Ap => {
            let slack = (value * 0.1).abs();
            sql.push(&format!("{a}.low <= "))
                .arg(value + slack)
                .push(&format!(" AND {a}.high >= "))
                .arg(value - slack);
        }
    }
    sql
}
