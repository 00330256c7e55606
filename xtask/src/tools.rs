//! Tools the deployment tests run that must not be *installed* on the machine, put inside the clone
//! under `target/tools/` (so nothing is cached or changed outside it):
//!
//! - Debian packages whose installation would start a system service: `prometheus` (for
//!   `promtool check rules` / `promtool test rules`, and a private Prometheus that scrapes a real
//!   server) and `nginx` (the TLS reverse-proxy example, run privately). Their `.deb` is fetched
//!   with `apt-get download` and unpacked with `dpkg-deb -x`; the binaries land in
//!   `target/tools/bin/`. Installing them with apt-get would start a Prometheus on :9090 and an
//!   nginx on :80 as system services, which the tests must never rely on or change.
//! - PyPI's `kubernetes-validate` (the Kubernetes objects' JSON schemas, every version, offline)
//!   and `openapi-spec-validator` (checks `/api/v1/openapi.json` against the OpenAPI 3.1 schema),
//!   in a virtual environment at `target/tools/venv/`.
//!
//! Each tool is fetched only when missing. The tests look for exactly these paths
//! (`<workspace>/target/tools/bin/NAME`, `<workspace>/target/tools/venv/bin/kubernetes-validate`)
//! and say "run cargo xtask deps" when one is absent.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// (binary, its path inside the package, the Debian package).
const DEB_TOOLS: &[(&str, &str, &str)] = &[
    ("promtool", "usr/bin/promtool", "prometheus"),
    ("prometheus", "usr/bin/prometheus", "prometheus"),
    ("nginx", "usr/sbin/nginx", "nginx"),
];

/// The PyPI package for the Kubernetes schema checks, pinned so that a schema update cannot turn
/// the suite red overnight.
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";

/// The PyPI package that validates the OpenAPI document, pinned for the same reason.
const OPENAPI_SPEC_VALIDATOR: &str = "openapi-spec-validator==0.9.0";

fn tools_dir(root: &Path) -> PathBuf {
    root.join("target/tools")
}

/// Fetches every missing tool. A tool that cannot be fetched is reported, not fatal: the tests that
/// need it fail with a message that names it.
pub fn ensure(root: &Path) -> Result<()> {
    let dir = tools_dir(root);
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).with_context(|| format!("cannot create {}", bin.display()))?;
    let mut packages: Vec<&str> = DEB_TOOLS
        .iter()
        .filter(|(name, _, _)| !bin.join(name).is_file())
        .map(|(_, _, package)| *package)
        .collect();
    packages.dedup();
    for package in packages {
        if let Err(e) = unpack_deb(&dir, package) {
            eprintln!(
                "xtask: cannot fetch {package} into {}: {e:#}",
                dir.display()
            );
        }
    }
    for (bin, requirement) in [
        ("kubernetes-validate", KUBERNETES_VALIDATE),
        ("openapi-spec-validator", OPENAPI_SPEC_VALIDATOR),
    ] {
        if !dir.join("venv/bin").join(bin).is_file() {
            if let Err(e) = python_venv(&dir.join("venv"), requirement) {
                eprintln!("xtask: cannot install {requirement}: {e:#}");
            }
        }
    }
    Ok(())
}

/// `apt-get download PACKAGE` into `DIR/debs`, `dpkg-deb -x` into `DIR/PACKAGE`, and copies the
/// binaries [`DEB_TOOLS`] names into `DIR/bin`.
fn unpack_deb(dir: &Path, package: &str) -> Result<()> {
    let debs = dir.join("debs");
    std::fs::create_dir_all(&debs)?;
    eprintln!("xtask: fetching Debian's {package} into {}", debs.display());
    let download = || {
        Command::new("apt-get")
            .args(["download", "-q", package])
            .current_dir(&debs)
            .status()
            .context("cannot run apt-get")
    };
    if !download()?.success() {
        // A fresh machine may have no package lists yet.
        let _ = Command::new("apt-get").args(["update", "-q"]).status();
        let status = download()?;
        if !status.success() {
            bail!("apt-get download {package} failed ({status})");
        }
    }
    let deb = std::fs::read_dir(&debs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .with_context(|| format!("apt-get download left no {package}_*.deb"))?;
    let unpacked = dir.join(package);
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&unpacked)
        .status()
        .context("cannot run dpkg-deb")?;
    if !status.success() {
        bail!("dpkg-deb -x {} failed ({status})", deb.display());
    }
    for (name, inner, _) in DEB_TOOLS.iter().filter(|(_, _, p)| *p == package) {
        let target = dir.join("bin").join(name);
        std::fs::copy(unpacked.join(inner), &target)
            .with_context(|| format!("{package} has no {inner}"))?;
    }
    Ok(())
}

/// A virtual environment with a package added, pip's cache inside the clone.
fn python_venv(venv: &Path, requirement: &str) -> Result<()> {
    eprintln!("xtask: installing {requirement} into {}", venv.display());
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(venv)
        .status()
        .context("cannot run python3 -m venv")?;
    if !status.success() {
        bail!("python3 -m venv failed ({status})");
    }
    let cache = venv.parent().unwrap_or(venv).join("pip-cache");
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "--disable-pip-version-check", requirement])
        .env("PIP_CACHE_DIR", cache)
        .status()
        .context("cannot run the venv's pip")?;
    if !status.success() {
        bail!("pip install {requirement} failed ({status})");
    }
    Ok(())
}
