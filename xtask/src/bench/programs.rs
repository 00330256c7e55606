//! What runs each benchmark: the table of benchmark commands ([`BENCHES`]), building what they
//! need before any is timed, and the command line of each.

/// Where the load programs write their reports (`--out`), under the project root.
pub(super) const OUT_DIR: &str = "target/xtask-bench";

/// What runs a benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Program {
    /// `cargo bench -p PACKAGE --bench BENCH`, built beforehand with `cargo bench --no-run` of the
    /// same package (cargo unifies features over the packages of one command, so building several
    /// packages at once would not build what each bench's own command runs).
    Cargo {
        package: &'static str,
        bench: &'static str,
    },
    /// The release `loadtest` binary, built beforehand with `cargo build --release`.
    Loadtest,
}

/// One benchmark command.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bench {
    /// Its name for `--only` and in the tables.
    pub(super) name: &'static str,
    pub(super) program: Program,
    /// Arguments always given (after `--bench BENCH` for cargo).
    args: &'static [&'static str],
    /// Arguments given only without `--quick`.
    full_args: &'static [&'static str],
    /// Arguments given only with `--quick`.
    quick_args: &'static [&'static str],
    /// Environment set only with `--quick`.
    quick_env: &'static [(&'static str, &'static str)],
    /// Whether it takes `--out DIR` (a load program writing its report).
    pub(super) out: bool,
    /// A program that must be on the PATH, or the benchmark is skipped.
    pub(super) needs: Option<&'static str>,
}

/// The defaults the entries of [`BENCHES`] start from.
const DEFAULTS: Bench = Bench {
    name: "",
    program: Program::Loadtest,
    args: &[],
    full_args: &[],
    quick_args: &[],
    quick_env: &[],
    out: false,
    needs: None,
};

/// A load program writing its report (`--out`).
const LOADTEST: Bench = Bench {
    out: true,
    ..DEFAULTS
};

/// Criterion's options for a short run.
const CRITERION_QUICK: &[&str] = &["--", "--warm-up-time", "1", "--measurement-time", "2"];

/// Every benchmark, in the order they run.
pub(super) const BENCHES: &[Bench] = &[
    Bench {
        name: "certificates",
        program: Program::Cargo {
            package: "certificates",
            bench: "certificates",
        },
        quick_args: CRITERION_QUICK,
        ..DEFAULTS
    },
    Bench {
        name: "routing",
        program: Program::Cargo {
            package: "queue",
            bench: "routing",
        },
        quick_args: CRITERION_QUICK,
        quick_env: &[("EVALSHA_N", "20000"), ("EVALSHA_RUNS", "1")],
        ..DEFAULTS
    },
    Bench {
        name: "offer_latency",
        program: Program::Cargo {
            package: "queue",
            bench: "offer_latency",
        },
        quick_env: &[("SAMPLES", "500")],
        ..DEFAULTS
    },
    Bench {
        name: "ewt",
        program: Program::Cargo {
            package: "queue",
            bench: "ewt",
        },
        ..DEFAULTS
    },
    Bench {
        name: "history",
        program: Program::Cargo {
            package: "history",
            bench: "history",
        },
        args: &["--"],
        quick_args: &["--quick"],
        ..DEFAULTS
    },
    Bench {
        name: "sessions",
        program: Program::Cargo {
            package: "signalling",
            bench: "sessions",
        },
        quick_env: &[("SESSIONS", "1000"), ("ACTIVE", "100"), ("RUNS", "3")],
        ..DEFAULTS
    },
    Bench {
        name: "calls",
        program: Program::Cargo {
            package: "signalling",
            bench: "calls",
        },
        quick_env: &[("CALLS", "200")],
        ..DEFAULTS
    },
    Bench {
        name: "medianode_offer",
        program: Program::Cargo {
            package: "medianode",
            bench: "offer",
        },
        quick_env: &[("OFFERS", "50")],
        ..DEFAULTS
    },
    Bench {
        name: "call_cost",
        program: Program::Cargo {
            package: "sfu",
            bench: "call_cost",
        },
        quick_env: &[("SECONDS", "2")],
        ..DEFAULTS
    },
    Bench {
        name: "forward",
        args: &["forward"],
        quick_args: &["--quick"],
        ..DEFAULTS
    },
    Bench {
        name: "load",
        args: &[
            "run",
            "--spawn",
            "target/release/sportello",
            "--kiosks",
            "12",
            "--operators",
            "4",
            "--seed",
            "1",
        ],
        full_args: &["--duration", "45"],
        quick_args: &["--duration", "15"],
        ..LOADTEST
    },
    Bench {
        name: "capacity",
        args: &["capacity", "--spawn", "target/release/sportello"],
        full_args: &[
            "--start", "16", "--step", "16", "--max", "320", "--step-s", "20",
        ],
        quick_args: &[
            "--start", "4", "--step", "4", "--max", "8", "--step-s", "10",
        ],
        ..LOADTEST
    },
    Bench {
        name: "janus",
        args: &[
            "compare-janus",
            "--spawn",
            "target/release/sportello",
            "--spawn-janus",
        ],
        full_args: &["--calls", "4", "--duration", "30"],
        quick_args: &["--calls", "2", "--duration", "10"],
        needs: Some("janus"),
        ..LOADTEST
    },
];

/// Builds what the selected benchmarks run, before any of them is timed: each package's bench
/// executables (`cargo bench --no-run`; a failure here shows again in each bench's own run) and the
/// release `sportello` and `loadtest` binaries. Returns whether the latter built (or were not
/// needed).
pub(super) fn build(selected: &[&Bench]) -> bool {
    let mut packages: Vec<(&str, Vec<&str>)> = Vec::new();
    for bench in selected {
        if let Program::Cargo { package, bench } = bench.program {
            match packages.iter_mut().find(|(p, _)| *p == package) {
                Some((_, benches)) => benches.push(bench),
                None => packages.push((package, vec![bench])),
            }
        }
    }
    for (package, benches) in packages {
        let mut args = vec!["bench", "--no-run", "-p", package];
        for bench in benches {
            args.extend(["--bench", bench]);
        }
        if let Err(e) = crate::step(&format!("build {package} benches"), || crate::cargo(&args)) {
            eprintln!("xtask: {e:#}; running its benches anyway");
        }
    }
    if !selected.iter().any(|b| b.program == Program::Loadtest) {
        return true;
    }
    let built = crate::step("build release binaries", || {
        crate::cargo(&[
            "build",
            "--release",
            "-p",
            "signalling",
            "--bin",
            "sportello",
            "-p",
            "loadtest",
            "--bin",
            "loadtest",
        ])
    });
    if let Err(e) = &built {
        eprintln!("xtask: {e:#}");
    }
    built.is_ok()
}

/// The environment and arguments of `bench`'s command.
pub(super) fn invocation(
    bench: &Bench,
    quick: bool,
) -> (Vec<(&'static str, &'static str)>, Vec<String>) {
    let env = if quick {
        bench.quick_env.to_vec()
    } else {
        Vec::new()
    };
    let mode = if quick {
        bench.quick_args
    } else {
        bench.full_args
    };
    let mut args: Vec<String> = match bench.program {
        Program::Cargo { package, bench } => ["bench", "-p", package, "--bench", bench]
            .map(String::from)
            .to_vec(),
        Program::Loadtest => Vec::new(),
    };
    args.extend(bench.args.iter().chain(mode).map(|a| a.to_string()));
    if bench.out {
        args.push("--out".into());
        args.push(format!("{OUT_DIR}/{}", bench.name));
    }
    (env, args)
}

pub(super) fn program_path(program: Program) -> String {
    match program {
        Program::Cargo { .. } => "cargo".into(),
        Program::Loadtest => "target/release/loadtest".into(),
    }
}

/// The command as one would type it at the project root.
pub(super) fn command_line(bench: &Bench, quick: bool) -> String {
    let (env, args) = invocation(bench, quick);
    let mut words: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    words.push(program_path(bench.program));
    words.extend(args);
    words.join(" ")
}
