//! Writing an export: the resources of a store scan as NDJSON files, one or more per
//! type (`Patient.1.ndjson`, `Patient.2.ndjson`, ...), each split at a size limit.
//!
//! The server's export jobs and `custodian export` both write through here. Bodies go
//! out as the store keeps them (compact JSON, one line each), never parsed.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use store::{Instant, ScanRequest, Store, StoreError};

/// One written file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutputFile {
    #[serde(rename = "type")]
    pub resource_type: String,
    /// The file's name in the output directory.
    pub name: String,
    /// Resources (lines) in it.
    pub count: u64,
    pub bytes: u64,
}

/// What an export wrote.
#[derive(Clone, Debug)]
pub struct Exported {
    /// Every change up to this instant is in the files, none after it.
    pub transaction_time: Instant,
    pub files: Vec<OutputFile>,
}

/// How far an export is: resources written, and at most how many there will be.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub done: u64,
    pub estimate: u64,
}

/// Why an export stopped.
#[derive(Debug)]
pub enum ExportError {
    Store(StoreError),
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The progress callback asked to stop.
    Cancelled,
}

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportError::Store(error) => write!(f, "{error}"),
            ExportError::Io { path, error } => {
                write!(f, "cannot write {}: {error}", path.display())
            }
            ExportError::Cancelled => write!(f, "the export was cancelled"),
        }
    }
}

impl std::error::Error for ExportError {}

impl From<StoreError> for ExportError {
    fn from(error: StoreError) -> ExportError {
        ExportError::Store(error)
    }
}

/// Size of the write buffer of each file.
const BUFFER_BYTES: usize = 1 << 20;

/// Writes the resources `request` selects into `dir` (created if needed) as NDJSON,
/// starting a new file of the type before a line that would take it past
/// `max_file_bytes` (a line larger than that gets a file of its own). Blocking.
///
/// `progress` hears the estimate first, then the count after every page; when it
/// answers `false` the export stops with [`ExportError::Cancelled`], leaving the files
/// written so far.
pub fn write_ndjson(
    store: &Store,
    request: &ScanRequest,
    dir: &Path,
    max_file_bytes: u64,
    progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<Exported, ExportError> {
    std::fs::create_dir_all(dir).map_err(|error| ExportError::Io {
        path: dir.to_path_buf(),
        error,
    })?;
    let mut scan = store.scan(request)?;
    let estimate = scan.estimate();
    let mut done = 0;
    if !progress(Progress { done, estimate }) {
        return Err(ExportError::Cancelled);
    }
    let mut files = Files {
        dir,
        max_file_bytes,
        written: Vec::new(),
        open: None,
    };
    while let Some(page) = scan.next_page()? {
        for scanned in &page {
            files.write(&scanned.resource_type, &scanned.body)?;
        }
        done += page.len() as u64;
        if !progress(Progress {
            done,
            estimate: estimate.max(done),
        }) {
            return Err(ExportError::Cancelled);
        }
    }
    files.close()?;
    Ok(Exported {
        transaction_time: scan.transaction_time(),
        files: files.written,
    })
}

/// The output files: the one being written, and those finished.
struct Files<'a> {
    dir: &'a Path,
    max_file_bytes: u64,
    written: Vec<OutputFile>,
    open: Option<(BufWriter<File>, OutputFile)>,
}

impl Files<'_> {
    fn write(&mut self, resource_type: &str, body: &str) -> Result<(), ExportError> {
        let line_bytes = body.len() as u64 + 1;
        let full = |file: &OutputFile| {
            file.resource_type != resource_type
                || (file.bytes > 0 && file.bytes + line_bytes > self.max_file_bytes)
        };
        if self.open.as_ref().is_some_and(|(_, file)| full(file)) {
            self.close()?;
        }
        let (writer, file) = match &mut self.open {
            Some(open) => open,
            None => {
                let number = 1 + self
                    .written
                    .iter()
                    .filter(|file| file.resource_type == resource_type)
                    .count();
                let name = format!("{resource_type}.{number}.ndjson");
                let path = self.dir.join(&name);
                let handle =
                    File::create(&path).map_err(|error| ExportError::Io { path, error })?;
                self.open.insert((
                    BufWriter::with_capacity(BUFFER_BYTES, handle),
                    OutputFile {
                        resource_type: resource_type.to_string(),
                        name,
                        count: 0,
                        bytes: 0,
                    },
                ))
            }
        };
        writer
            .write_all(body.as_bytes())
            .and_then(|()| writer.write_all(b"\n"))
            .map_err(|error| ExportError::Io {
                path: self.dir.join(&file.name),
                error,
            })?;
        file.count += 1;
        file.bytes += line_bytes;
        Ok(())
    }

    fn close(&mut self) -> Result<(), ExportError> {
        if let Some((mut writer, file)) = self.open.take() {
            writer.flush().map_err(|error| ExportError::Io {
                path: self.dir.join(&file.name),
                error,
            })?;
            self.written.push(file);
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn splits_files_at_the_limit() {
        let dir = tempfile_dir();
        let mut files = Files {
            dir: &dir,
            max_file_bytes: 10,
            written: Vec::new(),
            open: None,
        };
        for (resource_type, body) in [
            ("A", "1234"),
            ("A", "1234"),
            ("A", "12345678901234"),
            ("A", "1"),
            ("B", "1"),
        ] {
            files.write(resource_type, body).unwrap();
        }
        files.close().unwrap();
        let summary: Vec<(&str, u64, u64)> = files
            .written
            .iter()
            .map(|file| (file.name.as_str(), file.count, file.bytes))
            .collect();
        assert_eq!(
            summary,
            [
                ("A.1.ndjson", 2, 10),
                ("A.2.ndjson", 1, 15),
                ("A.3.ndjson", 1, 2),
                ("B.1.ndjson", 1, 2)
            ]
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("A.1.ndjson")).unwrap(),
            "1234\n1234\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("custodian-ndjson-test-{}", store::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
