//! Accounts: operators, supervisors and kiosks, from configuration or generated demo accounts, and
//! the checks of their secrets (argon2 passwords, SHA-256 device-token hashes).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use protocol::Role;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Config, KioskAccount, OperatorAccount, SupervisorAccount};

/// An operator as the server knows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Operator {
    /// Operator id (the login name).
    pub id: String,
    /// Name shown to citizens.
    pub display_name: String,
    /// Service → level 1..=10.
    pub skills: BTreeMap<String, u8>,
    /// ISO 639-1 language codes.
    pub languages: Vec<String>,
    /// Concurrent calls.
    pub capacity: u8,
}

/// A supervisor as the server knows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Supervisor {
    /// Supervisor id (the login name).
    pub id: String,
    /// Name shown in the dashboard.
    pub display_name: String,
}

/// A kiosk as the server knows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kiosk {
    /// Kiosk id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Where it stands.
    pub location: String,
    /// Services offered on its screen.
    pub services: Vec<String>,
}

/// Every account the server accepts, built once at start-up.
#[derive(Debug, Default)]
pub struct Directory {
    operators: HashMap<String, (Arc<Operator>, String)>,
    supervisors: HashMap<String, (Arc<Supervisor>, String)>,
    kiosks: HashMap<String, Arc<Kiosk>>,
    kiosks_by_token: HashMap<[u8; 32], Arc<Kiosk>>,
}

/// An authenticated principal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    /// The role.
    pub role: Role,
    /// Operator or supervisor user name, or kiosk id.
    pub id: String,
}

impl Directory {
    /// Builds the directory from the configured accounts.
    pub fn new(
        operators: &[OperatorAccount],
        supervisors: &[SupervisorAccount],
        kiosks: &[KioskAccount],
    ) -> Self {
        let mut dir = Directory::default();
        for op in operators {
            let operator = Operator {
                id: op.username.clone(),
                display_name: display_or(&op.display_name, &op.username),
                skills: op.skills.clone(),
                languages: op.languages.clone(),
                capacity: op.capacity,
            };
            dir.operators.insert(
                op.username.clone(),
                (Arc::new(operator), op.password_hash.clone()),
            );
        }
        for sup in supervisors {
            let supervisor = Supervisor {
                id: sup.username.clone(),
                display_name: display_or(&sup.display_name, &sup.username),
            };
            dir.supervisors.insert(
                sup.username.clone(),
                (Arc::new(supervisor), sup.password_hash.clone()),
            );
        }
        for k in kiosks {
            let kiosk = Arc::new(Kiosk {
                id: k.id.clone(),
                name: k.name.clone(),
                location: k.location.clone(),
                services: k.services.clone(),
            });
            if let Some(hash) = parse_token_hash(&k.token_hash) {
                dir.kiosks_by_token.insert(hash, kiosk.clone());
            }
            dir.kiosks.insert(k.id.clone(), kiosk);
        }
        dir
    }

    /// Checks a user name and password. This is slow on purpose (argon2): call it off the async
    /// executor. Unknown users cost the same time as known ones, so timing reveals nothing.
    pub fn verify_password(&self, username: &str, password: &str) -> Option<Principal> {
        self.verify_password_with(username, password, &mut Vec::new())
    }

    /// [`Directory::verify_password`] with argon2's working memory supplied by the caller, who
    /// reuses it from check to check (the server keeps one per allowed concurrent check), so that
    /// bursts of logins do not leave the allocator holding many 19 MiB blocks.
    pub fn verify_password_with(
        &self,
        username: &str,
        password: &str,
        memory: &mut Vec<argon2::Block>,
    ) -> Option<Principal> {
        let found = self
            .operators
            .get(username)
            .map(|(op, hash)| (Role::Operator, op.id.clone(), hash.as_str()))
            .or_else(|| {
                self.supervisors
                    .get(username)
                    .map(|(sup, hash)| (Role::Supervisor, sup.id.clone(), hash.as_str()))
            });
        match found {
            Some((role, id, hash)) => {
                verify_with_memory(password, hash, memory).then_some(Principal { role, id })
            }
            None => {
                let _ = verify_with_memory(password, dummy_hash(), memory);
                None
            }
        }
    }

    /// Finds the kiosk whose device token this is.
    pub fn kiosk_by_token(&self, token: &str) -> Option<Arc<Kiosk>> {
        self.kiosks_by_token.get(&token_digest(token)).cloned()
    }

    /// Whether a principal (from a still-valid token) still exists in the directory.
    pub fn contains(&self, principal: &Principal) -> bool {
        match principal.role {
            Role::Operator => self.operators.contains_key(&principal.id),
            Role::Supervisor => self.supervisors.contains_key(&principal.id),
            Role::Kiosk => self.kiosks.contains_key(&principal.id),
        }
    }

    /// The operator with this id.
    pub fn operator(&self, id: &str) -> Option<Arc<Operator>> {
        self.operators.get(id).map(|(op, _)| op.clone())
    }

    /// The kiosk with this id.
    pub fn kiosk(&self, id: &str) -> Option<Arc<Kiosk>> {
        self.kiosks.get(id).cloned()
    }

    /// Every operator, sorted by id.
    pub fn operators(&self) -> Vec<Arc<Operator>> {
        let mut all: Vec<_> = self.operators.values().map(|(op, _)| op.clone()).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Every kiosk, sorted by id.
    pub fn kiosks(&self) -> Vec<Arc<Kiosk>> {
        let mut all: Vec<_> = self.kiosks.values().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Number of (operators, supervisors, kiosks).
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.operators.len(),
            self.supervisors.len(),
            self.kiosks.len(),
        )
    }
}

fn display_or(display: &str, fallback: &str) -> String {
    if display.trim().is_empty() {
        fallback.to_owned()
    } else {
        display.to_owned()
    }
}

fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a real password"))
}

/// Hashes a password with argon2id and a random salt, as a PHC string.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .unwrap_or_default()
}

/// Checks a password against a PHC string; a malformed hash never matches.
pub fn verify_password_hash(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// [`verify_password_hash`] in `memory`, which grows to the hash's memory cost and is kept for
/// the next check. The result compares in constant time; a malformed hash never matches.
pub fn verify_with_memory(password: &str, hash: &str, memory: &mut Vec<argon2::Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(argon2::Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = argon2::Params::try_from(&parsed) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, argon2::Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let hashed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password.as_bytes(),
        salt,
        &mut out,
        &mut memory[..blocks],
    );
    if hashed.is_err() {
        return false;
    }
    // `Output`'s equality is constant-time.
    argon2::password_hash::Output::new(&out).is_ok_and(|computed| computed == expected)
}

/// A new random secret: 32 bytes from the OS, base64url without padding (43 characters).
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The configuration form of a device token's hash: `sha256:<hex>`. Device tokens are long random
/// secrets, so a fast hash is enough and lets the server find the kiosk from the token alone.
pub fn hash_token(token: &str) -> String {
    format!("sha256:{}", hex::encode(token_digest(token)))
}

/// Parses `sha256:<64 hex digits>`.
pub fn parse_token_hash(s: &str) -> Option<[u8; 32]> {
    let hex_part = s.strip_prefix("sha256:")?;
    let bytes = hex::decode(hex_part).ok()?;
    bytes.try_into().ok()
}

/// One demo login, as written to `demo-credentials.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoLogin {
    /// User name.
    pub username: String,
    /// Plain-text password.
    pub password: String,
}

/// One demo kiosk, as written to `demo-credentials.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoKiosk {
    /// Kiosk id.
    pub id: String,
    /// Kiosk name.
    pub name: String,
    /// Plain-text device token.
    pub token: String,
}

/// The demo credentials of one data directory (`DATA_DIR/demo-credentials.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoCredentials {
    /// Operator logins.
    pub operators: Vec<DemoLogin>,
    /// Supervisor logins.
    pub supervisors: Vec<DemoLogin>,
    /// Kiosk tokens.
    pub kiosks: Vec<DemoKiosk>,
}

/// The file name of the demo credentials inside the data directory.
pub const DEMO_CREDENTIALS_FILE: &str = "demo-credentials.json";

struct DemoOperator {
    username: &'static str,
    display_name: &'static str,
    skills: &'static [(&'static str, u8)],
    languages: &'static [&'static str],
    capacity: u8,
}

/// Every demo operator speaks Italian and handles `anagrafe`; they differ in other skills,
/// languages and capacity so that routing has something to decide.
const DEMO_OPERATORS: &[DemoOperator] = &[
    DemoOperator {
        username: "maria.rossi",
        display_name: "Maria Rossi",
        skills: &[("anagrafe", 8), ("stato_civile", 6)],
        languages: &["it", "en"],
        capacity: 3,
    },
    DemoOperator {
        username: "youssef.benali",
        display_name: "Youssef Benali",
        skills: &[("anagrafe", 6)],
        languages: &["it", "ar", "fr"],
        capacity: 2,
    },
    DemoOperator {
        username: "laura.verdi",
        display_name: "Laura Verdi",
        skills: &[("anagrafe", 5), ("stato_civile", 9)],
        languages: &["it", "de", "en"],
        capacity: 1,
    },
];

const DEMO_SUPERVISOR: (&str, &str) = ("anna.ferrari", "Anna Ferrari");

/// The municipality's first three sites: the town hall, a shopping centre and a large employer.
const DEMO_KIOSKS: &[(&str, &str, &str)] = &[
    (
        "municipio",
        "Municipio — Sportello virtuale",
        "Strada della Repubblica 1, Parma",
    ),
    (
        "centro-torri",
        "Centro Torri — Galleria",
        "Centro commerciale Centro Torri, Parma",
    ),
    (
        "barilla",
        "Barilla — Area servizi",
        "Sede aziendale Barilla, Pedrignano (Parma)",
    ),
];

/// The `i`-th demo operator: the three named ones, then generated ones. Every one speaks Italian
/// and handles `anagrafe`; skills, levels, other languages and capacities vary with `i`.
fn demo_operator(i: usize) -> OperatorSpec {
    if let Some(op) = DEMO_OPERATORS.get(i) {
        return OperatorSpec {
            username: op.username.into(),
            display_name: op.display_name.into(),
            skills: op.skills.iter().map(|(s, l)| ((*s).into(), *l)).collect(),
            languages: op.languages.iter().map(|l| (*l).into()).collect(),
            capacity: op.capacity,
        };
    }
    const OTHER: [&str; 5] = ["en", "fr", "de", "ar", "es"];
    let n = i + 1;
    let mut skills = vec![("anagrafe".to_owned(), 4 + (i % 6) as u8)];
    if i % 3 != 0 {
        skills.push(("stato_civile".to_owned(), 3 + (i % 7) as u8));
    }
    let mut languages = vec!["it".to_owned()];
    if i % 4 != 0 {
        languages.push(OTHER[i % OTHER.len()].to_owned());
    }
    OperatorSpec {
        username: format!("operatore-{n:04}"),
        display_name: format!("Operatore {n}"),
        skills,
        languages,
        capacity: 1 + (i % 3) as u8,
    }
}

/// The `i`-th demo kiosk `(id, name, location)`: the three named sites, then generated ones.
fn demo_kiosk(i: usize) -> (String, String, String) {
    if let Some((id, name, location)) = DEMO_KIOSKS.get(i) {
        return ((*id).into(), (*name).into(), (*location).into());
    }
    let n = i + 1;
    (
        format!("chiosco-{n:04}"),
        format!("Chiosco {n}"),
        format!("Sede {n}, Parma"),
    )
}

struct OperatorSpec {
    username: String,
    display_name: String,
    skills: Vec<(String, u8)>,
    languages: Vec<String>,
    capacity: u8,
}

impl DemoCredentials {
    /// Fresh random credentials for the three named demo operators and kiosks.
    pub fn generate() -> Self {
        Self::generate_sized(DEMO_OPERATORS.len(), DEMO_KIOSKS.len())
    }

    /// Fresh random credentials for `operators` demo operators and `kiosks` demo kiosks.
    pub fn generate_sized(operators: usize, kiosks: usize) -> Self {
        let mut creds = DemoCredentials {
            operators: Vec::new(),
            supervisors: vec![DemoLogin {
                username: DEMO_SUPERVISOR.0.into(),
                password: generate_password(),
            }],
            kiosks: Vec::new(),
        };
        creds.extend_to(operators, kiosks);
        creds
    }

    /// Adds the missing demo accounts up to the given counts, keeping those already there.
    /// Returns whether it added any.
    fn extend_to(&mut self, operators: usize, kiosks: usize) -> bool {
        let mut added = false;
        for i in 0..operators {
            let spec = demo_operator(i);
            if !self.operators.iter().any(|l| l.username == spec.username) {
                self.operators.push(DemoLogin {
                    username: spec.username,
                    password: generate_password(),
                });
                added = true;
            }
        }
        for i in 0..kiosks {
            let (id, name, _) = demo_kiosk(i);
            if !self.kiosks.iter().any(|k| k.id == id) {
                self.kiosks.push(DemoKiosk {
                    id,
                    name,
                    token: generate_secret(),
                });
                added = true;
            }
        }
        added
    }

    /// Reads the data directory's three named demo accounts of each kind, creating them on first
    /// use. Processes that share the directory share the credentials.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        Self::load_or_create_sized(data_dir, DEMO_OPERATORS.len(), DEMO_KIOSKS.len())
    }

    /// Reads the data directory's demo credentials, creating them on first use and adding the
    /// accounts missing up to `operators` and `kiosks` (existing ones keep their passwords and
    /// tokens). Returns those accounts only. Processes that share the directory share them: the
    /// change is made under a lock and written whole.
    pub fn load_or_create_sized(
        data_dir: &Path,
        operators: usize,
        kiosks: usize,
    ) -> anyhow::Result<Self> {
        use anyhow::Context;
        let path = data_dir.join(DEMO_CREDENTIALS_FILE);
        let _lock = crate::datadir::lock(&data_dir.join(".demo-credentials.lock"))
            .with_context(|| format!("cannot lock {}", path.display()))?;
        let bytes = crate::datadir::read_or_create(&path, || {
            let mut text =
                serde_json::to_vec_pretty(&DemoCredentials::generate_sized(operators, kiosks))
                    .expect("demo credentials serialize");
            text.push(b'\n');
            text
        })
        .with_context(|| format!("cannot create {}", path.display()))?;
        let mut creds: DemoCredentials = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is damaged; delete it to get new demo credentials",
                path.display()
            )
        })?;
        if creds.extend_to(operators, kiosks) {
            let mut text = serde_json::to_vec_pretty(&creds).expect("demo credentials serialize");
            text.push(b'\n');
            crate::datadir::replace(&path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        let wanted_ops: Vec<String> = (0..operators).map(|i| demo_operator(i).username).collect();
        let wanted_kiosks: Vec<String> = (0..kiosks).map(|i| demo_kiosk(i).0).collect();
        creds.operators.retain(|l| wanted_ops.contains(&l.username));
        creds.kiosks.retain(|k| wanted_kiosks.contains(&k.id));
        Ok(creds)
    }

    /// The demo accounts in configuration form, with freshly hashed passwords.
    pub fn accounts(
        &self,
    ) -> (
        Vec<OperatorAccount>,
        Vec<SupervisorAccount>,
        Vec<KioskAccount>,
    ) {
        let password_of = |logins: &[DemoLogin], user: &str| {
            logins
                .iter()
                .find(|l| l.username == user)
                .map(|l| l.password.clone())
        };
        let operators = (0..self.operators.len() + DEMO_OPERATORS.len())
            .map(demo_operator)
            .filter_map(|op| {
                let password = password_of(&self.operators, &op.username)?;
                Some(OperatorAccount {
                    password_hash: hash_password(&password),
                    username: op.username,
                    display_name: op.display_name,
                    skills: op.skills.into_iter().collect(),
                    languages: op.languages,
                    capacity: op.capacity,
                })
            })
            .collect();
        let supervisors = password_of(&self.supervisors, DEMO_SUPERVISOR.0)
            .map(|password| SupervisorAccount {
                username: DEMO_SUPERVISOR.0.into(),
                display_name: DEMO_SUPERVISOR.1.into(),
                password_hash: hash_password(&password),
            })
            .into_iter()
            .collect();
        let kiosks = (0..self.kiosks.len() + DEMO_KIOSKS.len())
            .map(demo_kiosk)
            .filter_map(|(id, name, location)| {
                let token = &self.kiosks.iter().find(|k| k.id == id)?.token;
                Some(KioskAccount {
                    token_hash: hash_token(token),
                    id,
                    name,
                    location,
                    services: vec!["anagrafe".into(), "stato_civile".into()],
                })
            })
            .collect();
        (operators, supervisors, kiosks)
    }
}

fn generate_password() -> String {
    // 12 characters from an alphabet without look-alikes (no 0/O, 1/l/I): ~70 bits.
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// Builds the directory for a configuration: the configured accounts, plus the demo accounts of the
/// data directory when demo mode is on. Returns the demo credentials too, for printing.
pub fn directory_for(config: &Config) -> anyhow::Result<(Directory, Option<DemoCredentials>)> {
    let mut operators = config.operators.clone();
    let mut supervisors = config.supervisors.clone();
    let mut kiosks = config.kiosks.clone();
    let demo = if config.demo_enabled() {
        let creds = DemoCredentials::load_or_create_sized(
            &config.data_dir,
            config.demo.operators,
            config.demo.kiosks,
        )?;
        let (ops, sups, ks) = creds.accounts();
        // Configured accounts win over demo accounts with the same name.
        for op in ops {
            if !operators.iter().any(|o| o.username == op.username) {
                operators.push(op);
            }
        }
        for sup in sups {
            if !supervisors.iter().any(|s| s.username == sup.username) {
                supervisors.push(sup);
            }
        }
        for k in ks {
            if !kiosks.iter().any(|c| c.id == k.id) {
                kiosks.push(k);
            }
        }
        Some(creds)
    } else {
        None
    };
    Ok((Directory::new(&operators, &supervisors, &kiosks), demo))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_and_unknown_users_fail() {
        let creds = DemoCredentials::generate();
        let (ops, sups, ks) = creds.accounts();
        let dir = Directory::new(&ops, &sups, &ks);
        let login = &creds.operators[0];
        assert_eq!(
            dir.verify_password(&login.username, &login.password),
            Some(Principal {
                role: Role::Operator,
                id: login.username.clone()
            })
        );
        assert_eq!(dir.verify_password(&login.username, "wrong"), None);
        assert_eq!(dir.verify_password("nobody", &login.password), None);
        let sup = &creds.supervisors[0];
        assert_eq!(
            dir.verify_password(&sup.username, &sup.password)
                .map(|p| p.role),
            Some(Role::Supervisor)
        );
    }

    #[test]
    fn verifying_in_reused_memory_matches_the_library() {
        let hash = hash_password("correct horse");
        let mut memory = Vec::new();
        for _ in 0..2 {
            assert!(verify_with_memory("correct horse", &hash, &mut memory));
            assert!(!verify_with_memory("correct horsf", &hash, &mut memory));
        }
        assert_eq!(memory.len(), argon2::Params::default().block_count());
        assert!(verify_password_hash("correct horse", &hash));
        assert!(!verify_with_memory("x", "not a hash", &mut memory));
        // Other parameters (and a hash made elsewhere) verify the same way.
        let params = argon2::Params::new(8 * 1024, 3, 1, None).unwrap();
        let other = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(b"pw", &SaltString::generate(&mut rand::rngs::OsRng))
            .unwrap()
            .to_string();
        assert!(verify_with_memory("pw", &other, &mut memory));
        assert!(!verify_with_memory("pv", &other, &mut memory));
    }

    #[test]
    fn kiosks_are_found_by_token_only() {
        let creds = DemoCredentials::generate();
        let (ops, sups, ks) = creds.accounts();
        let dir = Directory::new(&ops, &sups, &ks);
        let k = &creds.kiosks[1];
        assert_eq!(dir.kiosk_by_token(&k.token).unwrap().id, k.id);
        assert!(dir.kiosk_by_token("not-a-token").is_none());
        assert!(dir.kiosk_by_token(&hash_token(&k.token)).is_none());
    }

    #[test]
    fn demo_accounts_match_the_brief() {
        let creds = DemoCredentials::generate();
        let (ops, sups, ks) = creds.accounts();
        assert_eq!((ops.len(), sups.len(), ks.len()), (3, 1, 3));
        for op in &ops {
            assert!(op.languages.contains(&"it".to_string()));
            assert!(op.skills.contains_key("anagrafe"));
        }
        let capacities: std::collections::BTreeSet<u8> = ops.iter().map(|o| o.capacity).collect();
        assert_eq!(capacities.into_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
        // The generated accounts pass the same validation as configured ones.
        let config = Config {
            operators: ops,
            supervisors: sups,
            kiosks: ks,
            ..Config::default()
        };
        assert_eq!(config.validate(), Vec::<String>::new());
    }

    #[test]
    fn demo_accounts_at_scale_are_mixed_and_grow_without_changing() {
        let dir = tempfile::tempdir().unwrap();
        let small = DemoCredentials::load_or_create_sized(dir.path(), 3, 3).unwrap();
        let big = DemoCredentials::load_or_create_sized(dir.path(), 40, 120).unwrap();
        assert_eq!((big.operators.len(), big.kiosks.len()), (40, 120));
        // The accounts already there keep their passwords and tokens.
        assert_eq!(&big.operators[..3], &small.operators[..]);
        assert_eq!(&big.kiosks[..3], &small.kiosks[..]);
        // Asking for fewer gives fewer, and the file keeps them all.
        let again = DemoCredentials::load_or_create_sized(dir.path(), 4, 5).unwrap();
        assert_eq!((again.operators.len(), again.kiosks.len()), (4, 5));
        assert_eq!(&again.kiosks[..], &big.kiosks[..5]);
        let (ops, sups, ks) = big.accounts();
        assert_eq!((ops.len(), sups.len(), ks.len()), (40, 1, 120));
        let capacities: std::collections::BTreeSet<u8> = ops.iter().map(|o| o.capacity).collect();
        assert_eq!(capacities.len(), 3, "{capacities:?}");
        let languages: std::collections::BTreeSet<&String> =
            ops.iter().flat_map(|o| &o.languages).collect();
        assert!(languages.len() >= 5, "{languages:?}");
        assert!(ops.iter().all(|o| o.skills.contains_key("anagrafe")));
        assert!(ops.iter().any(|o| !o.skills.contains_key("stato_civile")));
        let ids: std::collections::BTreeSet<&String> = ks.iter().map(|k| &k.id).collect();
        assert_eq!(ids.len(), 120, "kiosk ids are unique");
        let config = Config {
            operators: ops,
            supervisors: sups,
            kiosks: ks,
            ..Config::default()
        };
        assert_eq!(config.validate(), Vec::<String>::new());
    }

    #[test]
    fn token_hash_round_trip() {
        let h = hash_token("abc");
        assert!(parse_token_hash(&h).is_some());
        assert!(parse_token_hash("sha256:zz").is_none());
        assert!(parse_token_hash("md5:00").is_none());
    }
}
