//! Recording a bulk export to a recipient outside the organisation: once its files are
//! written, and before anyone may fetch them, one disclosure per patient exported, with
//! the types and counts of that patient's resources in the files.

use std::io::BufRead;
use std::path::Path;

use serde_json::Value;
use store::Store;

use super::record::{Release, Tally, count};
use crate::export::OutputFile;

/// Counts the resources of `files` (in `dir`) by patient and type. Blocking.
fn tally_files(dir: &Path, files: &[OutputFile]) -> Result<Tally, String> {
    let mut tally = Tally::new();
    for file in files {
        let path = dir.join(&file.name);
        let opened = std::fs::File::open(&path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        for line in std::io::BufReader::new(opened).lines() {
            let line = line.map_err(|error| format!("cannot read {}: {error}", path.display()))?;
            if let Ok(resource) = serde_json::from_str::<Value>(&line) {
                count(&mut tally, &resource);
            }
        }
    }
    Ok(tally)
}

/// Records the disclosures of an export job's files. Blocking: called on the job's
/// thread, with a handle to the server's runtime.
pub(crate) fn record_export(
    runtime: &tokio::runtime::Handle,
    store: &Store,
    release: &Release,
    job: &str,
    dir: &Path,
    files: &[OutputFile],
) -> Result<(), String> {
    let tally = tally_files(dir, files)?;
    let disclosures = release.disclosures(tally, &format!("bulk export job {job}"));
    runtime
        .block_on(store.disclosure_add(disclosures))
        .map_err(|error| error.to_string())
}
