//! Project automation, run as `cargo xtask <command>`:
//!
//! - `test`: install missing system packages the suites need (apt-get, when root) and the tools
//!   of `deps`, check the tidy rules, `cargo fmt --check`, `cargo clippy -D warnings`, install the
//!   browser tests' npm packages into `console-web/tests/node_modules` (`npm ci`, only when
//!   missing or older than the lock file), and `cargo test --workspace`. This is exactly what `.ci/run` calls.
//! - `tidy`: only the tidy rules (module docs, no stray `todo!`, `unimplemented!` or ignored tests,
//!   only the dependency arrows between crates that `ARCHITECTURE.md` allows: [`arrows`]).
//! - `deps`: only the system packages, and the tools unpacked into `target/tools/` ([`tools`]:
//!   promtool, Prometheus and nginx from Debian's packages without installing their services;
//!   PyPI's kubernetes-validate in a venv).
//! - `fuzz [--seconds N] [target…]`: build the fuzz targets and run each for N seconds ([`fuzz`]).
//!   `test` ends with every target for `FUZZ_SECONDS` (10 by default) when `CI` or
//!   `FUZZ_SECONDS` is set; `FUZZ_SECONDS=0` skips it.
//! - `bench [--quick] [--only NAME[,NAME…]] [--no-write]`: build release once, run every benchmark
//!   (the `cargo bench` ones and the `loadtest` programs, including the standard load scenario),
//!   take the JSON object each prints as its last line, and rewrite the generated section of
//!   `BENCHMARKS.md` (machine, command, figure, measured, target, ratio) between its markers
//!   ([`bench`]). `--quick` makes short runs, `--only` picks benchmarks, `--no-write` only prints.
//! - `web-demo`: the web channel to try by hand ([`web_demo`]): the test OpenID provider of the
//!   browser tests and `sportello` signing citizens in through it, on loopback.
//!
//! In CI (`CI` set) cargo runs with `CARGO_INCREMENTAL=0`: a clean clone gains nothing from
//! incremental caches, and they cost gigabytes of disk. `test` first says how much disk is free
//! under `target/` and warns when it looks too little for a full build.

mod arrows;
mod bench;
mod fuzz;
mod tools;
mod web_demo;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// System packages the test suites need: (a binary on the PATH, or an absolute path, whose absence
/// means the package is missing; the Debian package providing it).
const SYSTEM_PACKAGES: &[(&str, &str)] = &[
    // The Redis store's conformance, concurrency and crash tests; the server's Redis tests. It also
    // runs the sentinels of testkit's RedisSentinelCluster (`redis-server CONF --sentinel`), so the
    // separate redis-sentinel package (a system service) is not needed.
    ("redis-server", "redis-server"),
    // deploy/local-cluster (and so signalling/tests/cluster.rs) waits for Redis and asks the
    // sentinels with redis-cli.
    ("redis-cli", "redis-tools"),
    // The certificates' independence test: render the PDF, read the QR with another decoder, check
    // the PDF structure, and verify the COSE signature with Python's own CBOR and crypto stacks.
    ("pdftoppm", "poppler-utils"),
    ("zbarimg", "zbar-tools"),
    ("qpdf", "qpdf"),
    ("/usr/bin/python3", "python3"),
    ("/usr/lib/python3/dist-packages/cbor2", "python3-cbor2"),
    (
        "/usr/lib/python3/dist-packages/cryptography",
        "python3-cryptography",
    ),
    // The browser verifier's stamp.js is checked under Node; the browser tests run under Node.
    ("node", "nodejs"),
    ("npm", "npm"),
    // The browser media tests (signalling/tests/browser_media.rs) drive Debian's Chromium.
    ("/usr/bin/chromium", "chromium"),
    // In-call printing: a private cupsd (its filters, Debian's stock cupsd.conf) with a PDF printer
    // as the kiosk's printer (testkit::cups): cups-pdf's PPD, Ghostscript for the PDF.
    ("/usr/sbin/cupsd", "cups"),
    ("gs", "ghostscript"),
    ("lp", "cups-client"),
    // The kiosk agent's tests read CUPS job attributes over IPP and check RSA card signatures;
    // testkit::tsa answers RFC 3161 queries with `openssl ts` (the PAdES B-T seal's tests).
    ("ipptool", "cups-ipp-utils"),
    ("openssl", "openssl"),
    (
        "/usr/share/ppd/cups-pdf/CUPS-PDF_opt.ppd",
        "printer-driver-cups-pdf",
    ),
    // CIE/CNS cards: SoftHSM2 as the PKCS#11 token, opensc's pkcs11-tool to load it (testkit::softhsm).
    ("/usr/lib/softhsm/libsofthsm2.so", "softhsm2"),
    ("pkcs11-tool", "opensc"),
    // The peer SFU of `loadtest compare-janus`: a private Janus with its videocall plugin
    // (testkit::janus, loadtest/tests/janus.rs).
    ("janus", "janus"),
    // The systemd units (signalling/tests/deploy_systemd.rs): `systemd-analyze verify` and
    // `systemd-analyze security --offline=true`.
    ("systemd-analyze", "systemd"),
    // TURN (signalling/tests/turn_relay.rs): a private coturn relays two Chromium pages' media.
    // The package's own service stays disabled (/etc/default/coturn); tests never use it.
    ("turnserver", "coturn"),
    // deploy/compose (signalling/tests/deploy_compose.rs): `docker-compose config` validates it.
    ("docker-compose", "docker-compose"),
    // deploy/kubernetes (signalling/tests/deploy_kubernetes.rs): `kubectl kustomize` renders it.
    ("kubectl", "kubernetes-client"),
    // The fuzz targets: libfuzzer-sys builds libFuzzer with the C++ compiler.
    ("c++", "g++"),
    // The history database's PostgreSQL tests: a private server of their own from the newest
    // /usr/lib/postgresql/<N>/bin (testkit::postgres). pg_ctlcluster comes with the server (in
    // postgresql-common), unlike /usr/lib/postgresql, which postgresql-client fills too. The
    // system cluster `main` is never used; ensure_system_packages keeps apt from creating it.
    ("/usr/bin/pg_ctlcluster", "postgresql"),
];

/// The browser tests' npm project (playwright-core), installed inside the clone.
const BROWSER_TESTS: &str = "console-web/tests";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = project_root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("tidy") => tidy(&root),
        Some("deps") => ensure_system_packages().and_then(|()| tools::ensure(&root)),
        Some("fuzz") => fuzz::command(&root, &args[1..]),
        Some("bench") => bench::command(&root, &args[1..]),
        Some("web-demo") => browser_test_packages().and_then(|()| web_demo::run(&root)),
        _ => {
            eprintln!(
                "usage: cargo xtask <test|tidy|deps|web-demo> [extra cargo test args]\n       \
                 cargo xtask fuzz [--seconds N] [{}]\n       \
                 {} (NAME: {})",
                fuzz::TARGETS.join("|"),
                bench::USAGE,
                bench::names().join(", ")
            );
            std::process::exit(2);
        }
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Roughly what a clean `cargo xtask test` writes under `target/` (measured: see the CI notes in
/// `BENCHMARKS.md`), with some room.
const DISK_NEEDED_GIB: f64 = 8.0;

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

fn test(extra: &[String]) -> Result<()> {
    let started = std::time::Instant::now();
    report_free_disk(&project_root());
    ensure_system_packages()?;
    tools::ensure(&project_root())?;
    step("tidy", || tidy(&project_root()))?;
    step("rustfmt", || cargo(&["fmt", "--all", "--", "--check"]))?;
    step("clippy", || {
        cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ])
    })?;
    step("npm ci", browser_test_packages)?;
    step("tests", || {
        let mut args: Vec<&str> = vec!["test", "--workspace", "--locked"];
        args.extend(extra.iter().map(String::as_str));
        cargo(&args)
    })?;
    // A short bounded run of every fuzz target: in CI, or when asked for.
    let fuzz_seconds = std::env::var("FUZZ_SECONDS").ok();
    if fuzz_seconds.is_some() || in_ci() {
        let seconds = match fuzz_seconds {
            Some(s) => s.parse().with_context(|| format!("FUZZ_SECONDS={s}"))?,
            None => 10,
        };
        if seconds > 0 {
            step("fuzz", || {
                fuzz::run(&project_root(), fuzz::TARGETS, seconds)
            })?;
        }
    }
    eprintln!(
        "xtask: all checks passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn step(name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    let started = std::time::Instant::now();
    eprintln!("xtask: == {name} ==");
    let result = f();
    eprintln!(
        "xtask: {name} {} in {:.1} s",
        if result.is_ok() { "ok" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    result
}

/// Prints the free disk space where the build goes (`df`), and warns when it is below
/// [`DISK_NEEDED_GIB`]: a build that fills the disk fails with rustc's "No space left on device"
/// deep inside the test step, long after this could have said so.
fn report_free_disk(root: &Path) {
    let output = Command::new("df").args(["-Pk"]).arg(root).output();
    let free_kib = output.ok().and_then(|o| {
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let line = text.lines().nth(1)?.to_owned();
        line.split_whitespace().nth(3)?.parse::<u64>().ok()
    });
    match free_kib {
        Some(kib) => {
            let gib = kib as f64 / (1024.0 * 1024.0);
            eprintln!("xtask: {gib:.1} GiB free on the disk of {}", root.display());
            if gib < DISK_NEEDED_GIB {
                eprintln!(
                    "xtask: warning: a full build needs about {DISK_NEEDED_GIB} GiB; \
                     `cargo clean` or free some space if the build fails with \
                     \"No space left on device\""
                );
            }
        }
        None => eprintln!("xtask: cannot tell the free disk space (df)"),
    }
}

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(args);
    if in_ci() {
        command.env("CARGO_INCREMENTAL", "0");
    }
    let status = command
        .status()
        .with_context(|| format!("cannot run cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Installs the browser tests' npm packages from their lock file when `node_modules` is missing,
/// inside the clone (npm's download cache too, under `target/`) so nothing is kept elsewhere.
fn browser_test_packages() -> Result<()> {
    let root = project_root();
    let dir = root.join(BROWSER_TESTS);
    // npm ci writes node_modules/.package-lock.json: when it is as new as the lock file, the
    // packages are the locked ones (a lock file changed by a pull is installed again).
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(installed), Some(locked)) = (
        modified(&dir.join("node_modules/.package-lock.json")),
        modified(&dir.join("package-lock.json")),
    ) {
        if installed >= locked {
            eprintln!("xtask: {BROWSER_TESTS}/node_modules is up to date");
            return Ok(());
        }
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .env("npm_config_cache", root.join("target/npm-cache"))
        .current_dir(&dir)
        .status()
        .context("cannot run npm (install nodejs)")?;
    if !status.success() {
        bail!("npm ci in {BROWSER_TESTS} failed ({status})");
    }
    Ok(())
}

fn have(binary: &str) -> bool {
    if binary.starts_with('/') {
        return Path::new(binary).exists();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|dir| dir.join(binary).is_file())
}

/// Installs the Debian packages of any missing binary, when this process may (root with apt-get).
fn ensure_system_packages() -> Result<()> {
    let missing: Vec<&str> = SYSTEM_PACKAGES
        .iter()
        .filter(|(binary, _)| !have(binary))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !is_root || !have("apt-get") {
        eprintln!(
            "xtask: missing system packages {missing:?}; install them (apt-get install {}) \
             or the tests that need them will fail",
            missing.join(" ")
        );
        return Ok(());
    }
    if missing.contains(&"postgresql") {
        no_main_postgres_cluster();
    }
    eprintln!("xtask: installing {missing:?} with apt-get");
    let env = [("DEBIAN_FRONTEND", "noninteractive")];
    let update = Command::new("apt-get")
        .args(["update", "-q"])
        .envs(env)
        .status()?;
    if !update.success() {
        eprintln!("xtask: apt-get update failed; trying the install anyway");
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .envs(env)
        .status()?;
    if !status.success() {
        bail!("apt-get install {} failed", missing.join(" "));
    }
    Ok(())
}

/// Keeps Debian's `postgresql` from creating and starting a system cluster `main` (port 5432) when
/// apt installs it: the tests never use one (testkit::postgres runs its own). A drop-in in
/// `createcluster.d`, which postgresql-common's `createcluster.conf` includes (Debian 12 does),
/// rather than `createcluster.conf` itself, so that dpkg meets no foreign conffile to ask about.
/// A failure only costs an idle cluster, so it is reported, not fatal.
fn no_main_postgres_cluster() {
    let dir = Path::new("/etc/postgresql-common/createcluster.d");
    let written = std::fs::create_dir_all(dir).and_then(|()| {
        std::fs::write(
            dir.join("sportello-tests.conf"),
            "# cargo xtask: the tests run private servers (testkit::postgres)\n\
             create_main_cluster = false\n",
        )
    });
    if let Err(e) = written {
        eprintln!(
            "xtask: cannot turn off PostgreSQL's `main` cluster in {} ({e})",
            dir.display()
        );
    }
}

/// The tidy rules: every Rust file starts with module docs (`//!`), and no source adds a stray
/// `todo!`, `unimplemented!` or an ignored test; and the dependency arrows are those of
/// `ARCHITECTURE.md` ([`arrows`]).
fn tidy(root: &Path) -> Result<()> {
    // Built from parts so this file does not trip its own check.
    let forbidden = [
        format!("{}!(", "todo"),
        format!("{}!(", "unimplemented"),
        format!("#[{}", "ignore"),
    ];
    let mut problems = Vec::new();
    let mut files = Vec::new();
    collect_rust_files(root, &mut files)?;
    for file in &files {
        let text = std::fs::read_to_string(file)?;
        let rel = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        let is_module = rel.contains("/src/");
        if is_module && !text.trim_start().starts_with("//!") {
            problems.push(format!("{rel}: missing module docs (//!) at the top"));
        }
        for (n, line) in text.lines().enumerate() {
            for bad in &forbidden {
                if line.contains(bad.as_str()) {
                    problems.push(format!("{rel}:{}: contains {bad}", n + 1));
                }
            }
        }
    }
    problems.extend(arrows::tidy(root)?);
    if problems.is_empty() {
        eprintln!("xtask: tidy checked {} files", files.len());
        Ok(())
    } else {
        for p in &problems {
            eprintln!("tidy: {p}");
        }
        bail!("{} tidy problem(s)", problems.len())
    }
}

fn collect_rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if entry.file_type()?.is_dir() {
            // `third_party/` holds vendored crates, kept as their upstream wrote them.
            if name.starts_with('.')
                || name == "target"
                || name == "node_modules"
                || name == "third_party"
            {
                continue;
            }
            collect_rust_files(&path, out)?;
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
    Ok(())
}
