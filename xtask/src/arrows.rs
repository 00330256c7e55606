//! The tidy rule on dependency arrows between the workspace's crates.
//!
//! `ARCHITECTURE.md` ("Dependency arrows") writes down which crate may depend on which: the
//! protocol depends on no crate of ours, the domain crates (queue, certificates) know nothing of
//! the server or each other, the SFU borrows only the protocol's media types, the clients never
//! link the server, `testkit` is only ever a dev-dependency (or one of `loadtest`, itself a test
//! tool), and nothing depends on the server or
//! on `xtask`. [`ALLOWED`] is the same table as data. [`check`] compares it with the arrows that
//! `cargo metadata --format-version 1 --no-deps` reports and [`check_map`] with the table printed in
//! `ARCHITECTURE.md`, so an arrow that breaks the map fails `cargo xtask tidy` (and therefore
//! `cargo xtask test`), and so does a map that no longer matches the rule.
//!
//! Kinds: a crate in a row's `normal` list may be a normal or a dev-dependency of that row's crate;
//! one in its `dev` list only a dev-dependency (tests, benches, examples). No build-dependency
//! arrow is allowed at all. Target-specific and optional dependencies count like any other.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// The arrows one crate may have to other crates of the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The crate the arrows leave from.
    pub krate: &'static str,
    /// Crates it may depend on (as a normal or a dev-dependency).
    pub normal: &'static [&'static str],
    /// Crates it may depend on only as a dev-dependency.
    pub dev: &'static [&'static str],
}

/// Every crate of the workspace and the only arrows it may have. As strict as the code allows:
/// each arrow here exists today. Change it together with `ARCHITECTURE.md`.
pub const ALLOWED: &[Rule] = &[
    Rule {
        krate: "protocol",
        normal: &[],
        dev: &[],
    },
    Rule {
        krate: "queue",
        normal: &[],
        dev: &["testkit"],
    },
    Rule {
        krate: "certificates",
        normal: &[],
        dev: &["testkit"],
    },
    Rule {
        krate: "history",
        normal: &[],
        dev: &["testkit"],
    },
    Rule {
        krate: "sfu",
        normal: &["protocol"],
        dev: &[],
    },
    Rule {
        krate: "medianode",
        normal: &["protocol", "sfu"],
        dev: &[],
    },
    Rule {
        krate: "kiosk-client",
        normal: &["protocol", "sfu"],
        dev: &["testkit"],
    },
    Rule {
        krate: "signalling",
        normal: &[
            "protocol",
            "queue",
            "certificates",
            "history",
            "sfu",
            "medianode",
        ],
        dev: &["kiosk-client", "testkit", "loadtest"],
    },
    Rule {
        krate: "loadtest",
        normal: &["protocol", "certificates", "sfu", "kiosk-client", "testkit"],
        dev: &[],
    },
    Rule {
        krate: "testkit",
        normal: &[],
        dev: &[],
    },
    Rule {
        krate: "xtask",
        normal: &[],
        dev: &[],
    },
];

/// The section of `ARCHITECTURE.md` that states [`ALLOWED`].
pub const MAP_SECTION: &str = "## Dependency arrows";

/// The kind of a dependency, as `cargo metadata` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `[dependencies]`.
    Normal,
    /// `[dev-dependencies]`: tests, benches and examples only.
    Dev,
    /// `[build-dependencies]`.
    Build,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Normal => "normal",
            Kind::Dev => "dev",
            Kind::Build => "build",
        })
    }
}

/// One dependency of a workspace package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The package depended on (its real name, whatever it is renamed to in the manifest).
    pub name: String,
    /// Its kind.
    pub kind: Kind,
    /// Whether it comes from no registry or git source (a path dependency): only such a
    /// dependency can be a crate of this workspace.
    pub local: bool,
}

/// A package of the workspace with its dependencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// The package name.
    pub name: String,
    /// Every dependency it declares.
    pub dependencies: Vec<Dependency>,
}

/// Something that breaks the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// An arrow that the table does not allow.
    Forbidden {
        /// The crate that depends.
        from: String,
        /// The crate depended on.
        to: String,
        /// How.
        kind: Kind,
    },
    /// A workspace crate with no row in the table.
    Unlisted(String),
    /// A row of the table for a crate the workspace does not have.
    Stale(String),
    /// `ARCHITECTURE.md` does not state the table as it is.
    Map(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Forbidden { from, to, kind } => write!(
                f,
                "{from} → {to} ({kind} dependency) is not an allowed arrow; see \
                 ARCHITECTURE.md, \"Dependency arrows\" (and ALLOWED in xtask/src/arrows.rs)"
            ),
            Problem::Unlisted(krate) => write!(
                f,
                "workspace crate {krate} has no row of allowed arrows; add one to ALLOWED in \
                 xtask/src/arrows.rs and to ARCHITECTURE.md"
            ),
            Problem::Stale(krate) => write!(
                f,
                "ALLOWED in xtask/src/arrows.rs has a row for {krate}, which is not a workspace crate"
            ),
            Problem::Map(what) => write!(f, "ARCHITECTURE.md, \"Dependency arrows\": {what}"),
        }
    }
}

/// The workspace's packages and their dependencies, from the JSON of
/// `cargo metadata --format-version 1 --no-deps`.
pub fn packages(metadata: &Value) -> Result<Vec<Package>> {
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .context("cargo metadata: no workspace_members")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut out = Vec::new();
    for package in metadata["packages"]
        .as_array()
        .context("cargo metadata: no packages")?
    {
        if !package["id"]
            .as_str()
            .is_some_and(|id| members.contains(id))
        {
            continue;
        }
        let name = package["name"]
            .as_str()
            .context("cargo metadata: a package without a name")?;
        let mut dependencies = Vec::new();
        for dep in package["dependencies"].as_array().into_iter().flatten() {
            let kind = match dep["kind"].as_str() {
                None => Kind::Normal,
                Some("dev") => Kind::Dev,
                Some("build") => Kind::Build,
                Some(other) => bail!("cargo metadata: {name} has a dependency of kind {other:?}"),
            };
            dependencies.push(Dependency {
                name: dep["name"]
                    .as_str()
                    .with_context(|| format!("cargo metadata: {name} has a nameless dependency"))?
                    .to_owned(),
                kind,
                local: dep["source"].is_null(),
            });
        }
        out.push(Package {
            name: name.to_owned(),
            dependencies,
        });
    }
    Ok(out)
}

/// Every way `packages` (the whole workspace) breaks [`ALLOWED`].
pub fn check(packages: &[Package]) -> Vec<Problem> {
    check_against(ALLOWED, packages)
}

fn check_against(table: &[Rule], packages: &[Package]) -> Vec<Problem> {
    let rules: BTreeMap<&str, &Rule> = table.iter().map(|r| (r.krate, r)).collect();
    let workspace: BTreeSet<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    let mut problems = Vec::new();
    for package in packages {
        let Some(rule) = rules.get(package.name.as_str()) else {
            problems.push(Problem::Unlisted(package.name.clone()));
            continue;
        };
        // A crate may name one dependency twice (a normal and a dev entry, or per target).
        let arrows: BTreeSet<(&str, Kind)> = package
            .dependencies
            .iter()
            .filter(|d| d.local && workspace.contains(d.name.as_str()))
            .map(|d| (d.name.as_str(), d.kind))
            .collect();
        for (to, kind) in arrows {
            let allowed = match kind {
                Kind::Normal => rule.normal.contains(&to),
                Kind::Dev => rule.normal.contains(&to) || rule.dev.contains(&to),
                Kind::Build => false,
            };
            if !allowed {
                problems.push(Problem::Forbidden {
                    from: package.name.clone(),
                    to: to.to_owned(),
                    kind,
                });
            }
        }
    }
    for rule in table {
        if !workspace.contains(rule.krate) {
            problems.push(Problem::Stale(rule.krate.to_owned()));
        }
    }
    problems
}

/// One row of the map's table: the crates in its "may depend on" and "may dev-depend on" cells.
type MapRow = (BTreeSet<String>, BTreeSet<String>);

/// The rows of the table under [`MAP_SECTION`] in `ARCHITECTURE.md`, by crate. A row is a
/// Markdown table line whose first cell is one crate name in backticks; the names in backticks in
/// its second and third cells are the allowed arrows.
fn map_rows(text: &str) -> Option<BTreeMap<String, MapRow>> {
    let start = text.lines().position(|l| l.trim_end() == MAP_SECTION)?;
    let mut rows = BTreeMap::new();
    for line in text.lines().skip(start + 1) {
        if line.starts_with("## ") {
            break;
        }
        let cells: Vec<&str> = line.trim().split('|').collect();
        // `| a | b | c |` splits into ["", a, b, c, ""].
        if cells.len() != 5 || !cells[0].is_empty() {
            continue;
        }
        let names = |cell: &str| -> BTreeSet<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        };
        let krate = names(cells[1]);
        if krate.len() != 1 {
            continue;
        }
        let krate = krate.into_iter().next().unwrap_or_default();
        rows.insert(krate, (names(cells[2]), names(cells[3])));
    }
    Some(rows)
}

/// Every difference between [`ALLOWED`] and the table `ARCHITECTURE.md` prints.
pub fn check_map(architecture: &str) -> Vec<Problem> {
    check_map_against(ALLOWED, architecture)
}

fn check_map_against(table: &[Rule], architecture: &str) -> Vec<Problem> {
    let Some(mut rows) = map_rows(architecture) else {
        return vec![Problem::Map(format!("no section {MAP_SECTION:?}"))];
    };
    let mut problems = Vec::new();
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    for rule in table {
        match rows.remove(rule.krate) {
            None => problems.push(Problem::Map(format!("no row for `{}`", rule.krate))),
            Some((normal, dev)) => {
                if normal != set(rule.normal) || dev != set(rule.dev) {
                    problems.push(Problem::Map(format!(
                        "the row of `{}` says {:?} / dev {:?}, the rule says {:?} / dev {:?}",
                        rule.krate, normal, dev, rule.normal, rule.dev
                    )));
                }
            }
        }
    }
    for krate in rows.keys() {
        problems.push(Problem::Map(format!(
            "a row for `{krate}`, which the rule does not have"
        )));
    }
    problems
}

/// Runs `cargo metadata --format-version 1 --no-deps` in `root` and returns its JSON.
pub fn metadata(root: &Path) -> Result<Value> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(root)
        .output()
        .context("cannot run cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    serde_json::from_slice(&output.stdout).context("cargo metadata printed no JSON")
}

/// The rule as tidy runs it: the workspace's arrows against [`ALLOWED`], and `ARCHITECTURE.md`'s
/// table against [`ALLOWED`]; one line per problem.
pub fn tidy(root: &Path) -> Result<Vec<String>> {
    let packages = packages(&metadata(root)?)?;
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md"))
        .context("cannot read ARCHITECTURE.md")?;
    let mut problems = check(&packages);
    problems.extend(check_map(&architecture));
    Ok(problems.iter().map(|p| format!("arrows: {p}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask lives in the workspace")
    }

    /// The real workspace's metadata, as tidy reads it.
    fn real_metadata() -> Value {
        metadata(root()).expect("cargo metadata of this workspace")
    }

    /// Adds the arrow `from → to` of `kind` to `metadata`, shaped as cargo prints a path dependency.
    fn add_arrow(metadata: &mut Value, from: &str, to: &str, kind: Option<&str>) {
        let path = root().join(to).display().to_string();
        let package = metadata["packages"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|p| p["name"] == from)
            .unwrap_or_else(|| panic!("no package {from} in the metadata"));
        package["dependencies"].as_array_mut().unwrap().push(json!({
            "name": to, "source": null, "req": "*", "kind": kind, "rename": null,
            "optional": false, "uses_default_features": true, "features": [],
            "target": null, "registry": null, "path": path,
        }));
    }

    fn check_metadata(metadata: &Value) -> Vec<Problem> {
        check(&packages(metadata).expect("metadata parses"))
    }

    fn forbidden(from: &str, to: &str, kind: Kind) -> Problem {
        Problem::Forbidden {
            from: from.into(),
            to: to.into(),
            kind,
        }
    }

    #[test]
    fn the_workspace_as_it_is_passes() {
        let metadata = real_metadata();
        let packages = packages(&metadata).unwrap();
        // Every crate of the table is there, with the arrows the Cargo.toml files declare.
        let names: BTreeSet<&str> = packages.iter().map(|p| p.name.as_str()).collect();
        let table: BTreeSet<&str> = ALLOWED.iter().map(|r| r.krate).collect();
        assert_eq!(names, table);
        let signalling = packages.iter().find(|p| p.name == "signalling").unwrap();
        assert!(signalling
            .dependencies
            .iter()
            .any(|d| d.name == "testkit" && d.kind == Kind::Dev && d.local));
        assert_eq!(check(&packages), vec![]);
    }

    #[test]
    fn architecture_md_states_the_same_table() {
        let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
        assert_eq!(check_map(&text), vec![]);
        // And tidy, which runs both checks on the real files, finds nothing.
        assert_eq!(tidy(root()).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn protocol_depending_on_signalling_fails() {
        let mut metadata = real_metadata();
        add_arrow(&mut metadata, "protocol", "signalling", None);
        assert_eq!(
            check_metadata(&metadata),
            vec![forbidden("protocol", "signalling", Kind::Normal)]
        );
    }

    #[test]
    fn testkit_as_a_normal_or_build_dependency_fails() {
        for (kind, name) in [(Kind::Normal, None), (Kind::Build, Some("build"))] {
            let mut metadata = real_metadata();
            add_arrow(&mut metadata, "signalling", "testkit", name);
            assert_eq!(
                check_metadata(&metadata),
                vec![forbidden("signalling", "testkit", kind)],
                "testkit as a {kind} dependency of signalling"
            );
        }
        // As a dev-dependency it is allowed (signalling already has that arrow: adding it again
        // changes nothing).
        let mut metadata = real_metadata();
        add_arrow(&mut metadata, "signalling", "testkit", Some("dev"));
        assert_eq!(check_metadata(&metadata), vec![]);
    }

    #[test]
    fn every_arrow_the_map_forbids_fails() {
        // The invariants of ARCHITECTURE.md, one forbidden arrow each.
        let cases = [
            ("protocol", "queue", None),
            ("queue", "signalling", None),
            ("queue", "protocol", None),
            ("queue", "certificates", None),
            ("certificates", "signalling", None),
            ("certificates", "queue", Some("dev")),
            ("sfu", "signalling", None),
            ("sfu", "queue", None),
            ("sfu", "testkit", None),
            ("kiosk-client", "signalling", None),
            ("kiosk-client", "signalling", Some("dev")),
            ("kiosk-client", "queue", None),
            ("testkit", "signalling", None),
            ("testkit", "protocol", None),
            ("xtask", "protocol", None),
            ("signalling", "kiosk-client", None),
            ("signalling", "protocol", Some("build")),
        ];
        for (from, to, kind) in cases {
            let mut metadata = real_metadata();
            add_arrow(&mut metadata, from, to, kind);
            let problems = check_metadata(&metadata);
            assert_eq!(problems.len(), 1, "{from} → {to} ({kind:?}): {problems:?}");
            assert!(
                matches!(&problems[0], Problem::Forbidden { from: f, to: t, .. } if f == from && t == to),
                "{problems:?}"
            );
        }
    }

    #[test]
    fn a_registry_crate_with_a_workspace_name_is_no_arrow() {
        let mut metadata = real_metadata();
        add_arrow(&mut metadata, "protocol", "queue", None);
        let deps = metadata["packages"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|p| p["name"] == "protocol")
            .unwrap()["dependencies"]
            .as_array_mut()
            .unwrap();
        let last = deps.last_mut().unwrap();
        last["source"] = json!("registry+https://github.com/rust-lang/crates.io-index");
        last.as_object_mut().unwrap().remove("path");
        assert_eq!(check_metadata(&metadata), vec![]);
    }

    #[test]
    fn a_crate_without_a_row_fails() {
        let mut metadata = real_metadata();
        let id = "path+file:///work/newcrate#0.1.0";
        metadata["packages"].as_array_mut().unwrap().push(json!({
            "name": "newcrate", "id": id, "dependencies": [],
        }));
        metadata["workspace_members"]
            .as_array_mut()
            .unwrap()
            .push(json!(id));
        assert_eq!(
            check_metadata(&metadata),
            vec![Problem::Unlisted("newcrate".into())]
        );
        // And a row for a crate that is gone is stale.
        let packages: Vec<Package> = packages(&real_metadata())
            .unwrap()
            .into_iter()
            .filter(|p| p.name != "xtask")
            .collect();
        assert_eq!(check(&packages), vec![Problem::Stale("xtask".into())]);
    }

    #[test]
    fn the_table_keeps_the_invariants_of_the_map() {
        let rule = |krate: &str| ALLOWED.iter().find(|r| r.krate == krate).unwrap();
        let everywhere = |krate: &str| {
            ALLOWED
                .iter()
                .filter(|r| r.normal.contains(&krate) || r.dev.contains(&krate))
                .map(|r| r.krate)
                .collect::<Vec<_>>()
        };
        // The protocol, the certificates and the tools depend on no crate of ours (the
        // certificates' bench uses testkit).
        for krate in ["protocol", "certificates", "testkit", "xtask"] {
            assert_eq!(rule(krate).normal, &[] as &[&str], "{krate}");
        }
        for krate in ["protocol", "testkit", "xtask"] {
            assert_eq!(rule(krate).dev, &[] as &[&str], "{krate}");
        }
        assert_eq!(rule("certificates").dev, &["testkit"]);
        // Nothing depends on the server or on xtask.
        assert!(everywhere("signalling").is_empty());
        assert!(everywhere("xtask").is_empty());
        // testkit is only ever a dev-dependency, but of the load programs, themselves a test tool.
        assert!(ALLOWED
            .iter()
            .all(|r| r.krate == "loadtest" || !r.normal.contains(&"testkit")));
        assert!(
            everywhere("loadtest") == ["signalling"]
                && rule("signalling").dev.contains(&"loadtest")
        );
        // The queue and the SFU know no other domain crate; the SFU only the protocol's types.
        assert_eq!(rule("queue").normal, &[] as &[&str]);
        assert_eq!(rule("sfu").normal, &["protocol"]);
        // Only the server, the media plane and the clients (bots included) know the protocol.
        assert_eq!(
            everywhere("protocol"),
            ["sfu", "medianode", "kiosk-client", "signalling", "loadtest"]
        );
        // The media node's API sits beside the SFU and is used only by the server.
        assert_eq!(rule("medianode").normal, &["protocol", "sfu"]);
        assert_eq!(everywhere("medianode"), ["signalling"]);
        // No crate lists itself, and no arrow is listed twice.
        for r in ALLOWED {
            let all: Vec<&str> = r.normal.iter().chain(r.dev).copied().collect();
            let unique: BTreeSet<&str> = all.iter().copied().collect();
            assert_eq!(all.len(), unique.len(), "{}", r.krate);
            assert!(!unique.contains(r.krate), "{}", r.krate);
        }
    }

    #[test]
    fn a_map_that_differs_from_the_rule_fails() {
        let table = "# Map\n\n## Dependency arrows\n\n\
                     | crate | may depend on | may dev-depend on |\n|---|---|---|\n\
                     | `protocol` | — | — |\n\
                     | `sfu` | `protocol` | — |\n\
                     \n## Next\n\n| `queue` | `signalling` | — |\n";
        let rules = [
            Rule {
                krate: "protocol",
                normal: &[],
                dev: &[],
            },
            Rule {
                krate: "sfu",
                normal: &["protocol"],
                dev: &[],
            },
        ];
        // The rows after the section do not count.
        assert_eq!(check_map_against(&rules, table), vec![]);
        let wider = table.replace("| `protocol` | — | — |", "| `protocol` | `sfu` | — |");
        assert_eq!(check_map_against(&rules, &wider).len(), 1);
        let missing = table.replace("| `sfu` | `protocol` | — |\n", "");
        assert_eq!(
            check_map_against(&rules, &missing),
            vec![Problem::Map("no row for `sfu`".into())]
        );
        assert_eq!(check_map_against(&rules, "# Map\n").len(), 1);
    }
}
