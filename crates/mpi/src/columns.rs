//! Reading records from CSV: a column map (`given=given_name,family=surname,...`) says
//! which column feeds which field.

use std::io::Read;

use crate::error::Error;
use crate::record::{Field, Record};

/// Which columns feed which fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnMap {
    /// (field, identifier system, column name), in the order given.
    entries: Vec<(Field, String, String)>,
}

impl ColumnMap {
    /// Parses `field=column,field=column,...`. `address` may repeat (one line per
    /// column, in order), and `identifier:SYSTEM=column` maps an identifier of SYSTEM.
    pub fn parse(text: &str) -> Result<ColumnMap, Error> {
        let mut entries = Vec::new();
        for item in text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let Some((field, column)) = item.split_once('=') else {
                return Err(Error::ColumnMap(format!("{item:?} is not field=column")));
            };
            let (field_name, system) = match field.trim().split_once(':') {
                Some((name, system)) => (name, system.trim()),
                None => (field.trim(), ""),
            };
            let Some(field) = Field::from_name(field_name) else {
                return Err(Error::ColumnMap(format!(
                    "unknown field {field_name:?} (fields: {})",
                    Field::NAMES.join(", ")
                )));
            };
            if (field == Field::Identifier) == system.is_empty() {
                return Err(Error::ColumnMap(format!(
                    "{item:?}: only identifier takes a system, and it needs one (identifier:SYSTEM=column)"
                )));
            }
            entries.push((field, system.to_string(), column.trim().to_string()));
        }
        if entries.is_empty() {
            return Err(Error::ColumnMap("no columns are mapped".into()));
        }
        Ok(ColumnMap { entries })
    }

    /// The column names this map reads.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(_, _, column)| column.as_str())
    }
}

/// Reads CSV with a header row from `input`, handing each row to `each` as a record.
/// A mapped column missing from the header is an error naming it; a short row is an
/// error naming its line.
pub fn read_records(
    input: impl Read,
    map: &ColumnMap,
    mut each: impl FnMut(&Record) -> Result<(), Error>,
) -> Result<u64, Error> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(input);
    let header = reader.headers()?.clone();
    let mut plan = Vec::with_capacity(map.entries.len());
    for (field, system, column) in &map.entries {
        let Some(position) = header.iter().position(|name| name.trim() == column) else {
            return Err(Error::ColumnMap(format!(
                "column {column:?} is not in the header ({})",
                header.iter().collect::<Vec<_>>().join(", ")
            )));
        };
        plan.push((*field, system.as_str(), position));
    }
    let mut row = csv::StringRecord::new();
    let mut record = Record::default();
    let mut rows = 0;
    while reader.read_record(&mut row)? {
        record_clear(&mut record);
        for (field, system, position) in &plan {
            record.set(*field, system, row.get(*position).unwrap_or(""));
        }
        each(&record)?;
        rows += 1;
    }
    Ok(rows)
}

/// Empties a record, keeping its buffers.
fn record_clear(record: &mut Record) {
    for text in [
        &mut record.id,
        &mut record.given,
        &mut record.family,
        &mut record.birthdate,
        &mut record.sex,
        &mut record.city,
        &mut record.state,
        &mut record.postcode,
        &mut record.phone,
        &mut record.ssn,
    ] {
        text.clear();
    }
    record.address.clear();
    record.identifiers.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_map_onto_fields() -> Result<(), Error> {
        let map = ColumnMap::parse(
            "id=rec_id, given=first,family=last,address=number,address=street,identifier:urn:mrn=mrn",
        )?;
        let csv = "rec_id,first,last,number,street,mrn,ignored\nr1,Ann,Lee,7,Main St,M-1,x\nr2,,Ng,,,,y\n";
        let mut records = Vec::new();
        let rows = read_records(csv.as_bytes(), &map, |record| {
            records.push(record.clone());
            Ok(())
        })?;
        assert_eq!(rows, 2);
        assert_eq!(records[0].id, "r1");
        assert_eq!(
            records[0].address,
            vec!["7".to_string(), "Main St".to_string()]
        );
        assert_eq!(records[0].identifiers[0].system, "urn:mrn");
        assert_eq!(records[1].given, "");
        assert!(records[1].address.is_empty());
        Ok(())
    }

    #[test]
    fn a_bad_map_names_the_problem() {
        let error = |text: &str| {
            ColumnMap::parse(text)
                .map_err(|error| error.to_string())
                .err()
        };
        assert_eq!(
            error("nickname=x"),
            Some(format!(
                "the column map: unknown field \"nickname\" (fields: {})",
                Field::NAMES.join(", ")
            ))
        );
        assert!(error("given").is_some());
        assert!(error("identifier=x").is_some());
        assert!(error("").is_some());
        let map = ColumnMap::parse("given=first_name");
        let missing =
            map.and_then(|map| read_records("given_name\nann\n".as_bytes(), &map, |_| Ok(())));
        assert_eq!(
            missing.map_err(|error| error.to_string()),
            Err("the column map: column \"first_name\" is not in the header (given_name)".into())
        );
    }
}
