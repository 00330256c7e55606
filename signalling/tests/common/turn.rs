//! The `[turn]` configuration the TURN tests give a `sportello` process.

use std::path::{Path, PathBuf};

/// Writes the shared secret (`secret`, as coturn's `static-auth-secret`) and a configuration file
/// with `[turn]` (`urls`, `ttl_s`, `policy`) into `dir`, and returns the configuration's path.
pub fn turn_config(dir: &Path, secret: &str, urls: &[String], ttl_s: u64, policy: &str) -> PathBuf {
    let secret_file = dir.join("turn.secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let config = dir.join("sportello.toml");
    std::fs::write(
        &config,
        format!(
            "[turn]\nurls = {urls:?}\nsecret_file = {:?}\nttl_s = {ttl_s}\npolicy = {policy:?}\n",
            secret_file.display().to_string(),
        ),
    )
    .unwrap();
    config
}
