//! The print chaos run's count: the PDFs the printer wrote, matched by title (the job id) to the
//! jobs requested and reported printed, and the detail of every job printed twice or lost.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use protocol::incall::PrintState;

use super::chaos::Seen;

/// One file the PDF printer wrote: `<title>-job_<cups id>.pdf`.
pub struct PdfFile {
    pub name: String,
    pub title: String,
    /// Ends with `%%EOF`.
    pub complete: bool,
}

fn ends_with_eof(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| {
        let tail = &b[b.len().saturating_sub(64)..];
        tail.trim_ascii_end().ends_with(b"%%EOF")
    })
}

/// The PDFs in `dir`, by name.
pub fn pdf_files(dir: &Path) -> anyhow::Result<Vec<PdfFile>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("pdf") {
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let title = stem
            .rsplit_once("-job_")
            .map_or(stem, |(title, _)| title)
            .to_owned();
        files.push(PdfFile {
            complete: ends_with_eof(&path),
            name,
            title,
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// The jobs against the files.
pub struct Counts<'a> {
    /// Title → its files.
    pub by_title: HashMap<&'a str, Vec<&'a PdfFile>>,
    /// Jobs with more than one file.
    pub twice: Vec<&'a str>,
    /// Jobs with no file.
    pub no_file: Vec<&'a str>,
    /// Jobs never reported printed.
    pub not_reported: Vec<&'a str>,
    /// Jobs with no file or never reported printed.
    pub lost: HashSet<&'a str>,
    /// Files of no job this program requested.
    pub unexpected: Vec<&'a str>,
    /// Files without `%%EOF`.
    pub incomplete: usize,
    /// Jobs reported failed at some point.
    pub failed_reports: usize,
}

impl<'a> Counts<'a> {
    /// Matches `files` to the jobs `seen` requested.
    pub fn of(files: &'a [PdfFile], seen: &'a Seen) -> Counts<'a> {
        let mut by_title: HashMap<&str, Vec<&PdfFile>> = HashMap::new();
        for f in files {
            by_title.entry(f.title.as_str()).or_default().push(f);
        }
        let mut twice: Vec<&str> = by_title
            .iter()
            .filter(|(title, fs)| seen.sent.contains_key(**title) && fs.len() > 1)
            .map(|(title, _)| *title)
            .collect();
        twice.sort();
        let mut no_file: Vec<&str> = seen
            .sent
            .keys()
            .map(String::as_str)
            .filter(|id| !by_title.contains_key(id))
            .collect();
        no_file.sort();
        let mut not_reported: Vec<&str> = seen
            .sent
            .keys()
            .map(String::as_str)
            .filter(|id| !seen.printed_at.contains_key(*id))
            .collect();
        not_reported.sort();
        let lost: HashSet<&str> = no_file.iter().chain(&not_reported).copied().collect();
        let unexpected: Vec<&str> = files
            .iter()
            .filter(|f| !seen.sent.contains_key(&f.title))
            .map(|f| f.name.as_str())
            .collect();
        let incomplete = files.iter().filter(|f| !f.complete).count();
        let failed_reports = seen
            .updates
            .values()
            .filter(|u| u.iter().any(|(s, _)| *s == PrintState::Failed))
            .count();
        Counts {
            by_title,
            twice,
            no_file,
            not_reported,
            lost,
            unexpected,
            incomplete,
            failed_reports,
        }
    }

    /// Prints, for each job printed twice or lost (20 at most), its files, its updates and the
    /// agent's and server's log lines that name it; then the unexpected files.
    pub fn print_failures(&self, seen: &Seen, agent_log: &str, server_log: &str) {
        for id in self.twice.iter().chain(self.lost.iter()).take(20) {
            let files: Vec<&str> = self
                .by_title
                .get(id)
                .map(|fs| fs.iter().map(|f| f.name.as_str()).collect())
                .unwrap_or_default();
            println!(
                "\n--- job {id}: files {files:?}; updates {:?}",
                seen.updates.get(*id)
            );
            for line in agent_log
                .lines()
                .filter(|l| l.contains(id) && !l.starts_with("===="))
            {
                println!("  agent: {line}");
            }
            for line in server_log.lines().filter(|l| l.contains(id)) {
                println!("  server: {line}");
            }
        }
        if !self.unexpected.is_empty() {
            println!("\nunexpected files: {:?}", self.unexpected);
        }
    }
}
