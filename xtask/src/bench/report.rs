//! The generated section of `BENCHMARKS.md`: numbers, targets and ratios as the tables show them,
//! the machine, runs and figures tables, and replacing the section in the file.

use std::fmt::Write as _;

use serde_json::Value;

use super::figures::Target::{AtLeast, AtMost, Below};
use super::figures::{leaves, value_of, Figure, Key, Target, FIGURES};
use super::machine::Machine;
use super::run::{Outcome, Run};
use super::{Options, BEGIN, END};

/// A number as the tables show it: three significant digits, thousands separated by commas.
pub(super) fn number(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x == 0.0 {
        return "0".into();
    }
    if x.abs() >= 1000.0 {
        let digits = format!("{:.0}", x.abs());
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        return if x < 0.0 { format!("-{out}") } else { out };
    }
    let decimals = (2 - x.abs().log10().floor() as i32).max(0) as usize;
    let text = format!("{x:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// A JSON value as the tables show it, with `unit` after a number.
fn shown(value: &Value, unit: &str) -> String {
    match value {
        Value::Number(n) => format!("{}{unit}", number(n.as_f64().unwrap_or(f64::NAN))),
        Value::Null => "null (not measured)".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Target {
    pub(super) fn shown(self, unit: &str) -> String {
        match self {
            AtLeast(v) => format!("≥ {}{unit}", number(v)),
            AtMost(v) => format!("≤ {}{unit}", number(v)),
            Below(v) => format!("< {}{unit}", number(v)),
            Target::True => "true".into(),
        }
    }

    /// The ratio column: measured ÷ target and whether it is met.
    pub(super) fn ratio(self, value: &Value) -> String {
        let verdict = |met: bool| if met { "met" } else { "**missed**" };
        match (self, value) {
            (Target::True, Value::Bool(b)) => verdict(*b).into(),
            (AtLeast(t) | AtMost(t) | Below(t), Value::Number(n)) => {
                let v = n.as_f64().unwrap_or(f64::NAN);
                let met = match self {
                    AtLeast(_) => v >= t,
                    AtMost(_) => v <= t,
                    _ => v < t,
                };
                format!("{} ({})", number(v / t), verdict(met))
            }
            _ => "—".into(),
        }
    }
}

fn key_text(key: Key) -> String {
    match key {
        Key::Path(path) => format!("`{path}`"),
        Key::Ratio(a, b) => format!("`{a}` ÷ `{b}`"),
    }
}

/// A table cell: no line breaks or pipes.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The generated section, markers included.
pub(super) fn render_section(machine: &Machine, options: &Options, runs: &[Run]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{BEGIN}");
    let _ = writeln!(s, "## Latest `cargo xtask bench` run\n");
    let mut how = String::from("cargo xtask bench");
    if options.quick {
        how.push_str(" --quick");
    }
    if !options.only.is_empty() {
        let _ = write!(how, " --only {}", options.only.join(","));
    }
    let _ = writeln!(
        s,
        "Written by `{how}` on {}; do not edit between the markers (the next run replaces it).{}\n",
        machine.date,
        if options.quick {
            " **Quick run**: short runs and small sizes, so these are smoke figures, not measurements."
        } else {
            ""
        }
    );
    let _ = writeln!(s, "| machine | |\n|---|---|");
    for (what, value) in [
        ("cores", &machine.cores),
        ("CPU", &machine.cpu),
        ("RAM", &machine.ram),
        ("kernel", &machine.kernel),
        ("load average before (1, 5, 15 min)", &machine.load_before),
        ("load average after", &machine.load_after),
        ("date", &machine.date),
    ] {
        let _ = writeln!(s, "| {what} | {} |", cell(value));
    }
    let _ = writeln!(
        s,
        "\n| benchmark | command | result | seconds |\n|---|---|---|---|"
    );
    for run in runs {
        let result = match &run.outcome {
            Outcome::Figures(_) => "ok".to_owned(),
            Outcome::Failed(why) => format!("**failed**: {why}"),
            Outcome::Skipped(why) => format!("skipped: {why}"),
        };
        let _ = writeln!(
            s,
            "| {} | `{}` | {} | {} |",
            run.bench,
            cell(&run.command),
            cell(&result),
            number(run.seconds)
        );
    }
    let _ = writeln!(
        s,
        "\n| command | figure | measured | target | ratio |\n|---|---|---|---|---|"
    );
    for run in runs {
        let Outcome::Figures(figures) = &run.outcome else {
            continue;
        };
        let named: Vec<&Figure> = FIGURES.iter().filter(|f| f.bench == run.bench).collect();
        // The command once per benchmark, on its first row.
        let mut command = format!("`{}`", cell(&run.command));
        let mut row = |figure: String, measured: String, target: String, ratio: String| {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                std::mem::take(&mut command),
                cell(&figure),
                cell(&measured),
                cell(&target),
                cell(&ratio)
            );
        };
        for f in &named {
            let value = value_of(figures, f.key);
            row(
                format!("{} ({})", f.what, key_text(f.key)),
                shown(&value, f.unit),
                f.target.map_or("—".into(), |t| t.shown(f.unit)),
                f.target.map_or("—".into(), |t| t.ratio(&value)),
            );
        }
        // The keys the table does not name, on one row (their names carry their units).
        let others: Vec<String> = leaves(figures)
            .into_iter()
            .filter(|(key, _)| {
                !named
                    .iter()
                    .any(|f| matches!(f.key, Key::Path(p) if p == key))
            })
            .map(|(key, value)| format!("`{key}` {}", shown(value, "")))
            .collect();
        if !others.is_empty() {
            row(
                "other figures".into(),
                others.join(", "),
                "—".into(),
                "—".into(),
            );
        }
    }
    let _ = write!(s, "{END}");
    s
}

/// `doc` with its generated section replaced by `section` (which carries the markers), or with
/// `section` inserted before the first `## ` heading (at the end when there is none).
pub(super) fn rewrite(doc: &str, section: &str) -> String {
    if let (Some(begin), Some(end)) = (doc.find(BEGIN), doc.find(END)) {
        if begin < end {
            return format!("{}{section}{}", &doc[..begin], &doc[end + END.len()..]);
        }
    }
    let at = if doc.starts_with("## ") {
        Some(0)
    } else {
        doc.find("\n## ").map(|i| i + 1)
    };
    match at {
        Some(at) => format!("{}{section}\n\n{}", &doc[..at], &doc[at..]),
        None => format!("{}\n\n{section}\n", doc.trim_end()),
    }
}
