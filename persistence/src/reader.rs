//! Reading the journal back: every file in LSN order, every frame checked.
//!
//! The end of the last file may hold a record cut short by a crash (a torn
//! tail): a bad frame after which no valid frame follows. It is reported so
//! that recovery can cut it off; it was never acknowledged, since the writer
//! acknowledges only after `fdatasync`. A bad frame anywhere else (in an older
//! file, or followed by a valid frame) is corruption of data that may have
//! been acknowledged: reading stops with an error naming the file and offset.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::frame::{self, BadFrame};
use crate::journal::parse_file_name;

/// Why the journal cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReadError {
    #[error("cannot read {path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("{path} has no valid journal header")]
    Header { path: PathBuf },
    #[error("{path}: corrupt record at offset {offset}: {reason}; refusing to skip it")]
    Corrupt { path: PathBuf, offset: u64, reason: String },
    #[error("{path}: record at offset {offset} has LSN {found}, expected {expected}")]
    Sequence { path: PathBuf, offset: u64, expected: u64, found: u64 },
}

/// A record as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub path: PathBuf,
    pub offset: u64,
    pub lsn: u64,
    pub version: u8,
    pub payload: Vec<u8>,
}

/// Where a torn final record starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub path: PathBuf,
    pub offset: u64,
    /// Bytes from `offset` to the end of the file.
    pub bytes: u64,
    pub reason: String,
}

/// Every record of a journal directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scan {
    pub records: Vec<Record>,
    pub torn: Option<TornTail>,
    /// The journal files, oldest first, with their first LSN.
    pub files: Vec<(u64, PathBuf)>,
}

/// Journal files in `dir`, oldest first.
pub fn journal_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, ReadError> {
    let io = |e: std::io::Error| ReadError::Io { path: dir.to_owned(), reason: e.to_string() };
    let mut files = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.map_err(io)?;
                if let Some(first) = entry.file_name().to_str().and_then(parse_file_name) {
                    files.push((first, entry.path()));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    files.sort();
    Ok(files)
}

/// Whether a valid frame starts anywhere in `bytes` (after a bad one).
fn any_valid_frame(bytes: &[u8]) -> bool {
    (1..bytes.len()).any(|i| frame::decode(&bytes[i..]).is_ok())
}

/// A record in the buffer of its file, as [`walk`] hands it over.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub path: &'a Path,
    pub offset: u64,
    pub lsn: u64,
    pub version: u8,
    pub payload: &'a [u8],
}

/// What [`walk`] found besides the records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WalkEnd {
    pub torn: Option<TornTail>,
    /// The journal files, oldest first, with their first LSN.
    pub files: Vec<(u64, PathBuf)>,
}

/// Reads and checks every record in `dir`, oldest first, handing each to
/// `visit` straight from the file's buffer (one buffer, reused). Stops at the
/// first error, of reading or of `visit`.
pub fn walk<E: From<ReadError>>(
    dir: &Path,
    mut visit: impl FnMut(RecordRef<'_>) -> Result<(), E>,
) -> Result<WalkEnd, E> {
    let files = journal_files(dir)?;
    let mut end = WalkEnd { files: files.clone(), torn: None };
    let mut bytes = Vec::new();
    for (n, (first, path)) in files.iter().enumerate() {
        let last_file = n + 1 == files.len();
        bytes.clear();
        std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read_to_end(&mut f, &mut bytes))
            .map_err(|e| ReadError::Io { path: path.clone(), reason: e.to_string() })?;
        match frame::parse_file_header(&bytes) {
            Some(h) if h == *first => {}
            // A crash while creating the newest file can leave its header short.
            None if last_file && bytes.len() < frame::FILE_HEADER_LEN => {
                end.torn = Some(TornTail {
                    path: path.clone(),
                    offset: 0,
                    bytes: bytes.len() as u64,
                    reason: "file header cut short".into(),
                });
                break;
            }
            _ => return Err(ReadError::Header { path: path.clone() }.into()),
        }
        // Records follow each other within a file; across files recovery checks
        // continuity, since a snapshot may cover a jump.
        let mut expected = *first;
        let mut at = frame::FILE_HEADER_LEN;
        while at < bytes.len() {
            match frame::decode(&bytes[at..]) {
                Ok(f) => {
                    if f.lsn != expected {
                        let found = f.lsn;
                        return Err(
                            ReadError::Sequence { path: path.clone(), offset: at as u64, expected, found }.into()
                        );
                    }
                    visit(RecordRef { path, offset: at as u64, lsn: f.lsn, version: f.version, payload: f.payload })?;
                    expected = f.lsn + 1;
                    at += f.len;
                }
                Err(bad) => {
                    let torn = last_file && (bad == BadFrame::Truncated || !any_valid_frame(&bytes[at..]));
                    if !torn {
                        let reason = bad.to_string();
                        return Err(ReadError::Corrupt { path: path.clone(), offset: at as u64, reason }.into());
                    }
                    end.torn = Some(TornTail {
                        path: path.clone(),
                        offset: at as u64,
                        bytes: (bytes.len() - at) as u64,
                        reason: bad.to_string(),
                    });
                    break;
                }
            }
        }
    }
    Ok(end)
}

/// Reads and checks every record in `dir` into memory (for inspection and tests).
pub fn scan(dir: &Path) -> Result<Scan, ReadError> {
    let mut records = Vec::new();
    let end = walk(dir, |r| {
        records.push(Record {
            path: r.path.to_owned(),
            offset: r.offset,
            lsn: r.lsn,
            version: r.version,
            payload: r.payload.to_vec(),
        });
        Ok::<(), ReadError>(())
    })?;
    Ok(Scan { records, torn: end.torn, files: end.files })
}
