//! The certificate commands of the `sportello` binary: `verify`, `registry list`,
//! `certificate issue`, `audit verify` and `purge`. They use the same configuration and data directory as
//! `sportello serve`, so they sign with the same key and trust the same list the server publishes.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use certificates::{CertificateKind, FiscalCode, IssueRequest, Issuer, TrustList};
use time::OffsetDateTime;

use crate::config::Config;

fn open_issuer(config: &Config) -> anyhow::Result<Issuer> {
    Issuer::open(
        &config.data_dir,
        &config.certificates,
        OffsetDateTime::now_utc(),
    )
    .context("cannot open the certificates service")
}

/// `sportello verify INPUT [--trust-list FILE]`: INPUT is a PDF, an image or a file holding the
/// stamp text, or the stamp text itself. Without `--trust-list` the data directory's signer is
/// trusted. Prints the signed content; returns whether the stamp is valid.
pub fn verify(
    config: &Config,
    input: &str,
    trust_list: Option<&Path>,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let trust: TrustList = match trust_list {
        Some(path) => serde_json::from_slice(
            &std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        )
        .with_context(|| format!("{} is not a Sportello trust list", path.display()))?,
        None => open_issuer(config)?.trust_list(),
    };
    let now = OffsetDateTime::now_utc();
    let as_path = Path::new(input);
    let result = if as_path.is_file() {
        certificates::verify_file(as_path, &trust, now)
    } else {
        certificates::verify_text(input, &trust, now)
    };
    match result {
        Ok(verified) => {
            let valid = !verified.development;
            writeln!(
                out,
                "{}",
                if valid {
                    "VALIDO / VALID"
                } else {
                    "NON VALIDO: firmato con la chiave di sviluppo / NOT VALID: signed with the development key"
                }
            )?;
            write!(out, "{}", verified.report())?;
            Ok(valid)
        }
        Err(error) => {
            writeln!(out, "NON VALIDO / NOT VALID: {error}")?;
            Ok(false)
        }
    }
}

/// `sportello registry list`: fiscal code, names, birth date, one person a line.
pub fn registry_list(config: &Config, out: &mut dyn Write) -> anyhow::Result<()> {
    let issuer = open_issuer(config)?;
    for person in issuer
        .registry()
        .list()
        .context("cannot list the registry")?
    {
        writeln!(out, "{}", person.line())?;
    }
    Ok(())
}

/// `sportello certificate issue`: issues one certificate to a PDF file; returns the document.
pub fn certificate_issue(
    config: &Config,
    kind: &str,
    fiscal_code: &str,
    as_of: Option<&str>,
    exemption: Option<&str>,
    out_file: &Path,
) -> anyhow::Result<certificates::IssuedDocument> {
    let kind: CertificateKind = kind
        .parse()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("unknown certificate kind")?;
    let fiscal_code = FiscalCode::parse(fiscal_code).context("invalid fiscal code")?;
    let as_of = as_of
        .map(certificates::dates::parse_date)
        .transpose()
        .context("--as-of must be YYYY-MM-DD")?;
    let issuer = open_issuer(config)?;
    let request = IssueRequest::cli(kind, fiscal_code, as_of, exemption.map(str::to_owned));
    let document = issuer
        .issue(&request, OffsetDateTime::now_utc())
        .context("cannot issue the certificate")?;
    std::fs::write(out_file, &document.pdf)
        .with_context(|| format!("cannot write {}", out_file.display()))?;
    Ok(document)
}

/// `sportello audit verify [FILE]`: checks the hash chain of the audit log (default: the data
/// directory's) and returns the number of records and the head hash.
pub fn audit_verify(
    config: &Config,
    file: Option<PathBuf>,
) -> anyhow::Result<certificates::AuditSummary> {
    let path = file
        .or_else(|| config.certificates.audit_log.clone())
        .unwrap_or_else(|| config.data_dir.join("audit.log"));
    certificates::audit_verify(&path)
        .with_context(|| format!("audit log {} does not verify", path.display()))
}

/// `sportello purge --documents-older-than-days N`: deletes the issued documents in `dir` (each
/// `<id>.pdf` with its `<id>.json`) last written more than `older_than` before `now`; returns their
/// ids, sorted. With `dry_run` nothing is deleted. Other files are left alone.
pub fn purge_documents(
    dir: &Path,
    older_than: std::time::Duration,
    now: std::time::SystemTime,
    dry_run: bool,
) -> anyhow::Result<Vec<String>> {
    let mut purged = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(purged),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("pdf") {
            continue;
        }
        let Some(id) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
            continue;
        };
        let written = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .with_context(|| format!("cannot read the time of {}", path.display()))?;
        if now.duration_since(written).unwrap_or_default() <= older_than {
            continue;
        }
        if !dry_run {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot delete {}", path.display()))?;
            let meta: PathBuf = path.with_extension("json");
            match std::fs::remove_file(&meta) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot delete {}", meta.display()))
                }
            }
        }
        purged.push(id);
    }
    purged.sort();
    Ok(purged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn purge_deletes_only_documents_past_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        for (id, age) in [("old", 40), ("edge", 29), ("new", 1)] {
            for ext in ["pdf", "json"] {
                let path = dir.path().join(format!("{id}.{ext}"));
                std::fs::write(&path, b"x").unwrap();
                let file = std::fs::File::options().write(true).open(&path).unwrap();
                file.set_modified(now - day * age).unwrap();
            }
        }
        std::fs::write(dir.path().join("notes.txt"), b"kept").unwrap();
        let listed = purge_documents(dir.path(), day * 30, now, true).unwrap();
        assert_eq!(listed, ["old"]);
        assert!(
            dir.path().join("old.pdf").exists(),
            "a dry run deletes nothing"
        );
        assert_eq!(
            purge_documents(dir.path(), day * 30, now, false).unwrap(),
            ["old"]
        );
        assert!(!dir.path().join("old.pdf").exists() && !dir.path().join("old.json").exists());
        for kept in ["edge.pdf", "edge.json", "new.pdf", "new.json", "notes.txt"] {
            assert!(dir.path().join(kept).exists(), "{kept}");
        }
        assert!(purge_documents(&dir.path().join("none"), day, now, false)
            .unwrap()
            .is_empty());
    }
}
