//! Node.js packages for the scripts that tests run (`console-web/tests`): `npm ci` when a package
//! the test needs is missing from `node_modules`, with npm's cache under the clone's `target/`.

use std::path::Path;

/// Installs the packages of `dir`'s lock file when one of `packages` is missing from its
/// `node_modules` (offline-friendly: nothing runs when they are there), with npm's cache in
/// `target/npm-cache` two folders up (`console-web/tests` → the clone), so nothing lands outside
/// the clone. Panics with what to install when npm is missing or fails.
pub fn ensure_node_modules(dir: &Path, packages: &[&str]) {
    if packages.iter().all(|p| {
        dir.join("node_modules")
            .join(p)
            .join("package.json")
            .exists()
    }) {
        return;
    }
    let out = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .env("npm_config_cache", dir.join("../../target/npm-cache"))
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run npm ({e}): install Node.js with `apt-get install -y nodejs npm`")
        });
    assert!(
        out.status.success(),
        "npm ci in {} failed: {}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
