//! Feeds diagrams to the real Mermaid parser (`tools/mermaid-check`, run
//! under Node), installing its npm packages on first use.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tool_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/mermaid-check")
}

/// Installs the checker's packages (once, under a lock, as test binaries
/// run at the same time).
fn ensure_installed(dir: &Path) {
    let lock = File::create(std::env::temp_dir().join("reactor-mermaid-check.lock"))
        .expect("create the install lock");
    lock.lock().expect("take the install lock");
    if dir.join("node_modules/mermaid/package.json").exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "the Mermaid check needs Node.js 18+ and npm (`apt-get install nodejs npm`): {e}"
            )
        });
    assert!(status.success(), "`npm ci` in {} failed", dir.display());
}

/// Parses each `(name, diagram)` with Mermaid; panics naming every
/// diagram that does not parse, with the parser's message.
pub fn assert_parses(set: &str, diagrams: &[(String, String)]) {
    assert!(!diagrams.is_empty(), "no diagrams to check");
    let dir = tool_dir();
    ensure_installed(&dir);
    let out = std::env::temp_dir().join(format!("reactor-mermaid-{set}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("create the diagram directory");
    for (name, text) in diagrams {
        let file: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        std::fs::write(out.join(format!("{file}.mmd")), text).expect("write a diagram");
    }
    let output = Command::new("node")
        .arg(dir.join("check.mjs"))
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("the Mermaid check needs Node.js 18+ on PATH: {e}"));
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "Mermaid rejected diagrams:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        report.contains(&format!("{n} of {n} diagrams parsed", n = diagrams.len())),
        "{report}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
