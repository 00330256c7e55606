//! Regenerates `certificates/data/demo-registry.json` from the deterministic generator.

fn main() -> std::io::Result<()> {
    let data = certificates::registry::demo::generate();
    let text = serde_json::to_string_pretty(&data).map_err(std::io::Error::other)? + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/demo-registry.json");
    std::fs::write(&path, text)?;
    println!("wrote {} people to {}", data.people.len(), path.display());
    Ok(())
}
