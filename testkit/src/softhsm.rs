//! A smart card for tests: a SoftHSM2 token in its own temporary token folder, holding a card key
//! and certificate (and optionally CA certificates), reachable through the real PKCS#11 module.
//!
//! Each [`Card`] has its own `softhsm2.conf`; give its path to the process under test in the
//! `SOFTHSM2_CONF` environment variable, with [`Card::module`] as the PKCS#11 module. Nothing is
//! shared between cards, so tests may create them in parallel.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, Context as _};

/// The SoftHSM2 PKCS#11 module on Debian.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The security officer PIN of every test card.
pub const SO_PIN: &str = "12345678";

/// A SoftHSM2 token with the card objects; its token folder is deleted when dropped.
pub struct Card {
    dir: tempfile::TempDir,
    conf: PathBuf,
    label: String,
    pin: String,
}

impl Card {
    /// Creates a token labelled `label` with user PIN `pin` (SO PIN [`SO_PIN`]) and stores:
    ///
    /// - the private key `key_pkcs8_der` (PKCS#8 DER) with label `auth` and id `01`;
    /// - its certificate `cert_der` (DER) with label `auth` and id `01`;
    /// - each of `extra_certs` (DER, e.g. the issuing CA) with labels `ca1`, `ca2`, … and ids
    ///   `02`, `03`, ….
    ///
    /// Fails (never skips) if `softhsm2-util` or `pkcs11-tool` are missing: install them with
    /// `apt-get install -y softhsm2 opensc`.
    pub fn create(
        label: &str,
        pin: &str,
        key_pkcs8_der: &[u8],
        cert_der: &[u8],
        extra_certs: &[Vec<u8>],
    ) -> anyhow::Result<Card> {
        if !Path::new(MODULE).exists() {
            bail!("{MODULE} is missing: install it with `apt-get install -y softhsm2 opensc`");
        }
        let dir = tempfile::Builder::new()
            .prefix("testkit-softhsm-")
            .tempdir()
            .context("temporary token folder")?;
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens)?;
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            ),
        )?;
        let card = Card {
            dir,
            conf,
            label: label.to_owned(),
            pin: pin.to_owned(),
        };

        card.run(
            "softhsm2-util",
            &[
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                SO_PIN,
                "--pin",
                pin,
            ],
        )?;

        // softhsm2-util reads PKCS#8 in PEM only.
        let key_file = card.dir.path().join("auth.p8");
        std::fs::write(
            &key_file,
            crate::pki::pem_encode("PRIVATE KEY", key_pkcs8_der),
        )?;
        let key_path = key_file.to_str().context("non-UTF-8 temp path")?;
        let imported = card.run(
            "softhsm2-util",
            &[
                "--import", key_path, "--token", label, "--label", "auth", "--id", "01", "--pin",
                pin,
            ],
        );
        let _ = std::fs::remove_file(&key_file);
        imported?;

        card.write_cert(cert_der, "01", "auth")?;
        for (i, extra) in extra_certs.iter().enumerate() {
            card.write_cert(extra, &format!("{:02x}", i + 2), &format!("ca{}", i + 1))?;
        }
        Ok(card)
    }

    /// The PKCS#11 module to load, `/usr/lib/softhsm/libsofthsm2.so`.
    pub fn module(&self) -> PathBuf {
        PathBuf::from(MODULE)
    }

    /// The `softhsm2.conf` of this card: the value of `SOFTHSM2_CONF` for the process under test.
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// The user PIN.
    pub fn pin(&self) -> &str {
        &self.pin
    }

    /// The token label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The environment variable the process under test needs: `("SOFTHSM2_CONF", <conf>)`.
    pub fn env(&self) -> (&'static str, &Path) {
        ("SOFTHSM2_CONF", &self.conf)
    }

    /// `pkcs11-tool --list-objects` after logging in, as text (for assertions and diagnostics).
    pub fn list_objects(&self) -> anyhow::Result<String> {
        let out = self.run(
            "pkcs11-tool",
            &[
                "--module",
                MODULE,
                "--token-label",
                &self.label,
                "--login",
                "--pin",
                &self.pin,
                "--list-objects",
            ],
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn write_cert(&self, der: &[u8], id: &str, label: &str) -> anyhow::Result<()> {
        let file = self.dir.path().join(format!("{label}.der"));
        std::fs::write(&file, der)?;
        let path = file.to_str().context("non-UTF-8 temp path")?;
        self.run(
            "pkcs11-tool",
            &[
                "--module",
                MODULE,
                "--token-label",
                &self.label,
                "--login",
                "--pin",
                &self.pin,
                "--write-object",
                path,
                "--type",
                "cert",
                "--id",
                id,
                "--label",
                label,
            ],
        )?;
        Ok(())
    }

    /// Runs a tool against this card's token folder and fails with its output if it fails.
    fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<Output> {
        let out = Command::new(tool)
            .args(args)
            .env("SOFTHSM2_CONF", &self.conf)
            .output()
            .with_context(|| {
                format!("cannot run {tool}: install it with `apt-get install -y softhsm2 opensc`")
            })?;
        if !out.status.success() {
            bail!(
                "{tool} {} failed ({}): {}{}",
                args.first().unwrap_or(&""),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{CardStyle, CardSubject, TestCa};

    fn make_card(label: &str, pin: &str) -> (Card, TestCa) {
        let ca = TestCa::new("Card CA");
        let now = time::OffsetDateTime::now_utc();
        let cert = ca.issue_card(
            &CardSubject::new("RSSMRA80A01G337X", "MARIO", "ROSSI", CardStyle::Cie),
            now - time::Duration::days(1),
            now + time::Duration::days(30),
        );
        let card = Card::create(
            label,
            pin,
            &cert.key_pkcs8_der,
            &cert.cert_der,
            &[ca.cert_der()],
        )
        .expect("card");
        (card, ca)
    }

    #[test]
    fn card_lists_key_and_certificates() {
        let (card, _ca) = make_card("CIE-TEST", "87654321");
        assert_eq!(card.pin(), "87654321");
        assert!(card.conf().exists());
        assert_eq!(card.module(), PathBuf::from(MODULE));
        let objects = card.list_objects().expect("list objects");
        assert!(
            objects.contains("Private Key Object; EC"),
            "no private key in:\n{objects}"
        );
        assert!(
            objects.contains("Certificate Object; type = X.509 cert"),
            "no certificate in:\n{objects}"
        );
        assert!(objects.contains("serialNumber=TINIT-RSSMRA80A01G337X"));
        assert!(objects.contains("label:      ca1"));
        assert!(objects.contains("ID:         02"));
        // Key and certificate share id 01.
        assert_eq!(objects.matches("ID:         01").count(), 3, "{objects}");
    }

    #[test]
    fn cards_are_independent_and_removed_on_drop() {
        // Two tokens with the same label at once: each has its own token folder.
        let (a, _) = make_card("SAME-LABEL", "1111");
        let (b, _) = make_card("SAME-LABEL", "2222");
        assert!(a.list_objects().is_ok());
        assert!(b.list_objects().is_ok());
        let folder = a.conf().parent().unwrap().to_owned();
        drop(a);
        assert!(!folder.exists());
        assert!(b.list_objects().is_ok());
    }

    #[test]
    fn wrong_pin_is_refused() {
        let (card, _) = make_card("PIN-TEST", "1234");
        let out = Command::new("pkcs11-tool")
            .args([
                "--module",
                MODULE,
                "--token-label",
                "PIN-TEST",
                "--login",
                "--pin",
                "9999",
                "--list-objects",
            ])
            .env("SOFTHSM2_CONF", card.conf())
            .output()
            .unwrap();
        assert!(!out.status.success());
    }
}
