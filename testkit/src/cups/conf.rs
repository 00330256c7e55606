//! The private daemon's files: `cups-files.conf`, `cupsd.conf` (Debian's stock one with the
//! listeners, browsing and logging replaced) and its `ServerBin` with the `testkit-pdf` backend.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use anyhow::Context as _;

use super::{Cupsd, BACKEND, INSTALL, STOCK_CONF, SYSTEM_SERVER_BIN};

/// The private scheduler's backend: PostScript from the filter chain to a PDF (`$1` job id, `$3`
/// title, `$6` the file when not on standard input; `DEVICE_URI` = `testkit-pdf:<queue folder>`).
const BACKEND_SCRIPT: &str = r#"#!/bin/sh
# testkit's PDF printer (testkit/src/cups.rs): what cups-pdf does, configured by the device URI.
if [ $# -eq 0 ]; then
  echo 'direct testkit-pdf "Unknown" "testkit PDF printer"'
  exit 0
fi
dir="${DEVICE_URI#testkit-pdf:}"
umask 022
title=$(printf '%s' "$3" | tr -cd 'A-Za-z0-9._-' | cut -c1-64)
[ -n "$title" ] || title=untitled
part="$dir/work/job_$1.part"
if [ -n "$6" ]; then exec <"$6"; fi
echo "INFO: testkit-pdf: job $1 ($title)" >&2
gs -q -dNOPAUSE -dBATCH -dSAFER -sDEVICE=pdfwrite -sOutputFile="$part" - || exit 1
while [ -e "$dir/work/stall" ]; do sleep 0.05; done
mv -f "$part" "$dir/out/$title-job_$1.pdf" || exit 1
echo "$1 $title" >> "$dir/work/completed.log"
exit 0
"#;

impl Cupsd {
    /// Writes `cups-files.conf`, `cupsd.conf` and the private `ServerBin`.
    pub(super) fn configure(&self) -> anyhow::Result<()> {
        let d = self.dir.path();
        // The backend runs as `lp`: it must reach ServerBin and the queue folders.
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
        for sub in [
            "root",
            "root/ppd",
            "root/ssl",
            "spool",
            "spool/tmp",
            "cache",
            "state",
            "log",
        ] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        let bin = d.join("bin");
        std::fs::create_dir_all(bin.join("backend"))?;
        for sub in [
            "cgi-bin", "daemon", "driver", "filter", "monitor", "notifier",
        ] {
            let target = Path::new(SYSTEM_SERVER_BIN).join(sub);
            if target.exists() {
                std::os::unix::fs::symlink(&target, bin.join(sub))?;
            }
        }
        // The system's backends (socket, ipp, lpd…) for queues on other devices; not cups-pdf,
        // which would read its configuration from /etc/cups.
        for entry in std::fs::read_dir(Path::new(SYSTEM_SERVER_BIN).join("backend"))? {
            let entry = entry?;
            if entry.file_name() != "cups-pdf" {
                std::os::unix::fs::symlink(
                    entry.path(),
                    bin.join("backend").join(entry.file_name()),
                )?;
            }
        }
        let backend = bin.join("backend").join(BACKEND);
        std::fs::write(&backend, BACKEND_SCRIPT)?;
        std::fs::set_permissions(&backend, std::fs::Permissions::from_mode(0o755))?;

        let p = |rel: &str| d.join(rel).display().to_string();
        let root = unsafe { libc::geteuid() } == 0;
        let mut files = format!(
            "ServerRoot {}\nRequestRoot {}\nTempDir {}\nCacheDir {}\nStateDir {}\nServerBin {}\n\
             ErrorLog {}\nAccessLog {}\nPageLog {}\nFileDevice No\n",
            p("root"),
            p("spool"),
            p("spool/tmp"),
            p("cache"),
            p("state"),
            p("bin"),
            p("log/error_log"),
            p("log/access_log"),
            p("log/page_log"),
        );
        if root {
            files.push_str("User lp\nGroup lp\nSystemGroup root\n");
        }
        std::fs::write(d.join("root/cups-files.conf"), files)?;

        let stock = std::fs::read_to_string(STOCK_CONF)
            .with_context(|| format!("cannot read {STOCK_CONF}: {INSTALL}"))?;
        let replaced = [
            "Listen",
            "Port",
            "Browsing",
            "BrowseLocalProtocols",
            "WebInterface",
            "LogLevel",
            "IdleExitTimeout",
            "MaxLogSize",
        ];
        let mut conf: String = stock
            .lines()
            .filter(|line| {
                let key = line.split_whitespace().next().unwrap_or("");
                !replaced.contains(&key)
            })
            .map(|line| format!("{line}\n"))
            .collect();
        conf.push_str(&format!(
            "# testkit: a private scheduler (testkit/src/cups.rs)\n\
             Listen 127.0.0.1:{port}\nListen {socket}\nBrowsing No\nWebInterface No\n\
             LogLevel info\nMaxLogSize 0\n\
             # Write job and queue state at once, so a crash loses nothing already accepted.\n\
             DirtyCleanInterval 0\nPreserveJobHistory Yes\nPreserveJobFiles No\n",
            port = self.port,
            socket = self.server().display(),
        ));
        std::fs::write(d.join("root/cupsd.conf"), conf)?;
        Ok(())
    }
}
