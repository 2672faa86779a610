//! The errors of the matching engine, each naming what was wrong.

/// Everything that can go wrong in matching.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the model is not valid JSON: {0}")]
    ModelFormat(serde_json::Error),
    #[error("the model does not fit this build: {0}")]
    InvalidModel(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("the column map: {0}")]
    ColumnMap(String),
    #[error("a left record was added after right ones: add all left records first")]
    LinkOrder,
    #[error("nothing to train on: {0}")]
    NothingToTrain(String),
    #[error("a record without an id cannot be indexed")]
    MissingId,
    #[error("more than {0} records: record positions are 32-bit")]
    TooManyRecords(u64),
}
