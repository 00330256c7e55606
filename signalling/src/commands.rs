//! The certificate commands of the `sportello` binary: `verify`, `registry list`,
//! `certificate issue`, `certificate kinds`, `audit verify` and `purge`. They use the same configuration and data directory as
//! `sportello serve`, so they sign with the same key and trust the same list the server publishes.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use certificates::{
    CertificateKind, ContestualePart, FiscalCode, IssueRequest, Issuer, Marca, TrustList,
};
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
            // A sealed PDF (the digital original): its PAdES seal too.
            let seal_ok = match std::fs::read(as_path) {
                Ok(bytes) if as_path.is_file() && bytes.starts_with(b"%PDF") => {
                    match certificates::seal::verify_seal(&bytes) {
                        Ok(seal) => {
                            writeln!(
                                out,
                                "Sigillo elettronico PAdES valido / PAdES seal valid: {} ({})",
                                seal.subject, seal.signed_at
                            )?;
                            true
                        }
                        Err(e) if bytes.windows(11).any(|w| w == b"/ByteRange ") => {
                            writeln!(out, "Sigillo elettronico NON valido / seal NOT valid: {e}")?;
                            false
                        }
                        // A copy without the seal (a scan, a printed copy): the stamp decides.
                        Err(_) => true,
                    }
                }
                _ => true,
            };
            Ok(valid && seal_ok)
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

/// What `sportello certificate issue` asks for.
#[derive(Debug, Clone, Default)]
pub struct IssueArgs {
    /// The kind code.
    pub kind: String,
    /// The subject's fiscal code.
    pub fiscal_code: String,
    /// `YYYY-MM-DD`, for "alla data" kinds.
    pub as_of: Option<String>,
    /// An exemption code; none means the bollo is due.
    pub exemption: Option<String>,
    /// The stated reason, audited.
    pub reason: Option<String>,
    /// The marca da bollo's 14-digit identifier (with `marca_date`).
    pub marca_id: Option<String>,
    /// The marca's date, `YYYY-MM-DD`.
    pub marca_date: Option<String>,
    /// Contestuale parts (codes); empty: every part that applies.
    pub parts: Vec<String>,
}

/// `sportello certificate issue`: issues one certificate to a PDF file; returns the document.
///
/// A marca is claimed in the data directory's folder of used marche (`crate::marche`), the same
/// one the server uses, and released if the certificate cannot be issued.
pub fn certificate_issue(
    config: &Config,
    args: &IssueArgs,
    out_file: &Path,
) -> anyhow::Result<certificates::IssuedDocument> {
    let kind: CertificateKind = args
        .kind
        .parse()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("unknown certificate kind")?;
    let fiscal_code = FiscalCode::parse(&args.fiscal_code).context("invalid fiscal code")?;
    let as_of = args
        .as_of
        .as_deref()
        .map(certificates::dates::parse_date)
        .transpose()
        .context("--as-of must be YYYY-MM-DD")?;
    let parts = args
        .parts
        .iter()
        .map(|p| {
            p.parse::<ContestualePart>()
                .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .context("unknown contestuale part")?;
    let marca = match (&args.marca_id, &args.marca_date) {
        (Some(id), Some(date)) => {
            let date =
                certificates::dates::parse_date(date).context("--marca-date must be YYYY-MM-DD")?;
            Some(Marca::new(id, date).map_err(|e| anyhow::anyhow!("{e}"))?)
        }
        (None, None) => None,
        _ => anyhow::bail!("--marca-id and --marca-date go together"),
    };
    let issuer = open_issuer(config)?;
    let mut request = IssueRequest::cli(kind, fiscal_code, as_of, args.exemption.clone());
    request.reason = args.reason.clone();
    request.parts = parts;
    request.marca = marca.clone();
    request.officer_name = config.certificates.officer.clone();
    let marche = crate::marche::dir(&config.data_dir);
    if let Some(m) = &marca {
        let using = crate::marche::MarcaUse::new(m, "cli", "sportello-cli");
        if !crate::marche::claim_file(&marche, &using).context("cannot record the marca")? {
            let earlier = crate::marche::used(&marche, &m.id);
            anyhow::bail!(
                "la marca da bollo {} è già stata usata / this marca was already used{}",
                m.id,
                earlier
                    .map(|u| format!(" ({}, {})", u.channel, u.actor))
                    .unwrap_or_default()
            );
        }
    }
    let issued = issuer.issue(&request, OffsetDateTime::now_utc());
    if let (Some(m), Err(_)) = (&marca, &issued) {
        let _ = crate::marche::release_file(&marche, &m.id);
    }
    let document = issued.context("cannot issue the certificate")?;
    std::fs::write(out_file, &document.pdf)
        .with_context(|| format!("cannot write {}", out_file.display()))?;
    Ok(document)
}

/// `sportello certificate kinds`: every kind with its title, legal basis, validity and rules, one
/// block a kind.
pub fn certificate_kinds(out: &mut dyn Write) -> anyhow::Result<()> {
    for kind in CertificateKind::ALL {
        writeln!(out, "{}", kind.code())?;
        writeln!(out, "  titolo / title: {}", kind.title())?;
        writeln!(
            out,
            "  base normativa / legal basis: {}",
            kind.legal_basis()
        )?;
        writeln!(
            out,
            "  validità / validity: {}",
            if kind.expires() {
                "6 mesi / 6 months (art. 41 DPR 445/2000)"
            } else {
                "illimitata / unlimited (art. 41 c. 1 DPR 445/2000)"
            }
        )?;
        let mut rules = Vec::new();
        if kind.is_civil_status() {
            rules.push("stato civile: esente da bollo / civil status, exempt from bollo");
        } else {
            rules.push("bollo € 16,00 salvo esenzione / bollo due unless exempt");
        }
        if kind.needs_as_of() {
            rules.push("richiede la data e il motivo / needs as_of and a reason");
        }
        if kind == CertificateKind::Contestuale {
            rules.push("parti a scelta / parts may be chosen");
        }
        if kind == CertificateKind::ContrattoConvivenza {
            rules.push("solo alle parti del contratto / to the parties only");
        }
        writeln!(out, "  regole / rules: {}", rules.join("; "))?;
    }
    Ok(())
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
