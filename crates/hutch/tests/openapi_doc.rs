//! `openapi/hutch.json` is the document the code generates: `hutch openapi` must print it byte
//! for byte, so the copy in the repository stays true to the routes. No sandboxes, no root.

// Integration tests: a failed unwrap is a failed test, reported with its panic message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

#[test]
fn committed_document_is_current() {
    let out = Command::new(env!("CARGO_BIN_EXE_hutch"))
        .arg("openapi")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hutch openapi failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).unwrap();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi/hutch.json");
    let committed = std::fs::read_to_string(&file).unwrap_or_default();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "{} is out of date (first difference at line {}: committed {:?}, generated {:?}); \
             regenerate it with `cargo run -p hutch -- openapi > openapi/hutch.json`",
            file.display(),
            line + 1,
            committed.lines().nth(line),
            generated.lines().nth(line),
        );
    }
}
