//! A ledger of effects in a file: the external system of tests whose
//! runs span processes (each appends its lines; the harness reads them).

use std::io::Write as _;
use std::path::PathBuf;

/// A file of lines, appended by every process.
#[derive(Clone)]
pub struct FileLedger(pub PathBuf);

impl FileLedger {
    /// Appends `line`.
    pub fn write(&self, line: String) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.0)
            .unwrap();
        f.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    /// Every line so far, in order.
    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.0)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}
