//! The compiled-in tables: gzip-compressed or plain tab-separated text from `data/coding/`.
//!
//! The tables are written by `scripts/derive-coding.py` and checked there; a malformed
//! table here is a build defect, so the readers panic with the table's name and line.

use std::io::Read;

/// Decompresses a gzip table, or returns a plain one as text.
pub fn text(name: &str, bytes: &[u8]) -> String {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = String::with_capacity(bytes.len() * 6);
        let mut decoder = flate2::read::GzDecoder::new(bytes);
        if let Err(error) = decoder.read_to_string(&mut out) {
            panic!("data/coding/{name} does not decompress: {error}");
        }
        out
    } else {
        match std::str::from_utf8(bytes) {
            Ok(text) => text.to_string(),
            Err(error) => panic!("data/coding/{name} is not UTF-8: {error}"),
        }
    }
}

/// The rows of a table: its lines split at tabs, each with at least `columns` cells.
pub fn rows<'a>(
    name: &'a str,
    text: &'a str,
    columns: usize,
) -> impl Iterator<Item = Vec<&'a str>> + 'a {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.is_empty())
        .map(move |(index, line)| {
            let cells: Vec<&str> = line.split('\t').collect();
            assert!(
                cells.len() >= columns,
                "data/coding/{name} line {}: {} cells, expected {columns}",
                index + 1,
                cells.len()
            );
            cells
        })
}

/// A number cell of a table.
pub fn number<T: std::str::FromStr>(name: &str, cell: &str) -> T {
    match cell.trim().parse() {
        Ok(value) => value,
        Err(_) => panic!("data/coding/{name}: {cell:?} is not a number"),
    }
}

/// Embeds a table from `data/coding/` and names it.
macro_rules! embedded {
    ($file:literal) => {
        (
            $file,
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../data/coding/",
                $file
            ))
            .as_slice(),
        )
    };
}
pub(crate) use embedded;
