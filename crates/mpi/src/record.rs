//! A person record: the generic fields that both a FHIR Patient and the columns of a CSV
//! file map onto. Values are kept as given; the matcher normalises them itself.

use serde::{Deserialize, Serialize};

/// One person as a source system knows them. An empty string is a missing value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The record's id in its source (a CSV row id, a Patient id).
    pub id: String,
    /// Given names, space separated.
    pub given: String,
    /// Family name.
    pub family: String,
    /// Date of birth: `YYYY-MM-DD`, `YYYYMMDD`, or a partial date (`YYYY`, `YYYY-MM`).
    pub birthdate: String,
    /// Administrative sex: `female`, `male`, `other`, `unknown` (or `f`, `m`).
    pub sex: String,
    /// Address lines, in order; a line holding only the house number is fine.
    pub address: Vec<String>,
    pub city: String,
    pub state: String,
    pub postcode: String,
    pub phone: String,
    /// A national person number (US SSN, or its local equivalent).
    pub ssn: String,
    /// Other identifiers; two values only compare when their systems are equal.
    pub identifiers: Vec<Identifier>,
}

/// An identifier value with the system (namespace) that issued it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identifier {
    pub system: String,
    pub value: String,
}

/// The fields a column can be mapped to, by their names on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Id,
    Given,
    Family,
    Birthdate,
    Sex,
    Address,
    City,
    State,
    Postcode,
    Phone,
    Ssn,
    /// An identifier of the named system (`identifier:SYSTEM`).
    Identifier,
}

impl Field {
    /// The field called `name` (`given`, `family`, `birthdate`, ..., `identifier`).
    pub fn from_name(name: &str) -> Option<Field> {
        Some(match name {
            "id" => Field::Id,
            "given" => Field::Given,
            "family" => Field::Family,
            "birthdate" => Field::Birthdate,
            "sex" => Field::Sex,
            "address" => Field::Address,
            "city" => Field::City,
            "state" => Field::State,
            "postcode" => Field::Postcode,
            "phone" => Field::Phone,
            "ssn" => Field::Ssn,
            "identifier" => Field::Identifier,
            _ => return None,
        })
    }

    /// Every field name `from_name` accepts.
    pub const NAMES: [&'static str; 12] = [
        "id",
        "given",
        "family",
        "birthdate",
        "sex",
        "address",
        "city",
        "state",
        "postcode",
        "phone",
        "ssn",
        "identifier:SYSTEM",
    ];
}

impl Record {
    /// Sets `field` from a source value; address lines and identifiers accumulate, a
    /// repeated given name is appended, and an empty value changes nothing.
    pub fn set(&mut self, field: Field, system: &str, value: &str) {
        let value = value.trim();
        if value.is_empty() {
            return;
        }
        let slot = match field {
            Field::Address => {
                self.address.push(value.to_string());
                return;
            }
            Field::Identifier => {
                self.identifiers.push(Identifier {
                    system: system.to_string(),
                    value: value.to_string(),
                });
                return;
            }
            Field::Id => &mut self.id,
            Field::Given => &mut self.given,
            Field::Family => &mut self.family,
            Field::Birthdate => &mut self.birthdate,
            Field::Sex => &mut self.sex,
            Field::City => &mut self.city,
            Field::State => &mut self.state,
            Field::Postcode => &mut self.postcode,
            Field::Phone => &mut self.phone,
            Field::Ssn => &mut self.ssn,
        };
        if !slot.is_empty() {
            slot.push(' ');
        }
        slot.push_str(value);
    }
}
