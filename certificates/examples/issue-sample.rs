//! Issues one sample certificate from the demo registry into a file, for looking at the layout.
//!
//! Usage: `cargo run -p certificates --example issue-sample -- KIND FISCAL_CODE OUT.pdf [DATA_DIR]`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, cf, out, rest @ ..] = args.as_slice() else {
        return Err("usage: issue-sample KIND FISCAL_CODE OUT.pdf [DATA_DIR]".into());
    };
    let dir = rest
        .first()
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("sportello-sample"));
    let now = time::OffsetDateTime::now_utc();
    let issuer = certificates::Issuer::open(&dir, &certificates::IssuerConfig::default(), now)?;
    let req = certificates::IssueRequest::cli(kind.parse()?, cf.parse()?, None, None);
    let doc = issuer.issue(&req, now)?;
    std::fs::write(out, &doc.pdf)?;
    println!(
        "{} pages, QR version {}, stamp {} chars",
        doc.pages,
        doc.qr_version,
        doc.stamp.len()
    );
    Ok(())
}
