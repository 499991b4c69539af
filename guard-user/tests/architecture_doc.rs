//! `docs/ARCHITECTURE.md` cannot drift from the code: every path it names exists, and every
//! symbol it names (a `Type::method`, a `CamelCase` type, a `snake_case` or `UPPER_CASE`
//! name, in backticks or in its diagrams) is an identifier of the sources.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// Where a relative path in the document may start.
const BASES: &[&str] = &["", "guard-user/src", "guard-ebpf/src", "tests/src", "docs"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        if p.is_dir() && name != "target" && name != ".git" {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with(file!()) {
            out.push(p);
        }
    }
}

/// Every identifier of the workspace's Rust sources.
fn identifiers() -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(&root(), &mut files);
    let mut ids = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for word in text.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if !word.is_empty() {
                ids.insert(word.to_string());
            }
        }
    }
    ids
}

/// The backticked spans of the prose and the tokens of the diagrams.
fn names(doc: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    for line in doc.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            out.extend(
                line.split(|c: char| c.is_whitespace() || "(),;".contains(c))
                    .filter(|t| t.ends_with(".rs") || t.contains("::"))
                    .map(|t| t.trim_matches(|c: char| "<>-.:".contains(c)).to_string()),
            );
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find('`') {
            let Some(len) = rest[start + 1..].find('`') else {
                break;
            };
            out.push(rest[start + 1..start + 1 + len].to_string());
            rest = &rest[start + len + 2..];
        }
    }
    out
}

fn is_path(s: &str) -> bool {
    !s.starts_with('/')
        && !s.contains('<')
        && (s.contains('/')
            || [".rs", ".md", ".toml", ".sh"]
                .iter()
                .any(|x| s.ends_with(x)))
}

fn path_exists(s: &str) -> bool {
    let s = s.trim_end_matches('/');
    BASES.iter().any(|b| root().join(b).join(s).exists())
}

/// A span that names code: identifiers joined by `::`, written as code is (with `::`, `_` or
/// capitals); plain words and config values are not checked.
fn symbol(s: &str) -> Option<Vec<&str>> {
    let s = s.trim_end_matches("::").trim_end_matches("()");
    let ident = |p: &str| {
        !p.is_empty()
            && p.chars().all(|c| c.is_alphanumeric() || c == '_')
            && !p.starts_with(|c: char| c.is_ascii_digit())
    };
    let parts: Vec<&str> = s.split("::").collect();
    let codelike = s.contains("::") || s.contains('_') || s.chars().any(|c| c.is_uppercase());
    (parts.iter().all(|p| ident(p)) && codelike).then_some(parts)
}

#[test]
fn every_path_and_symbol_the_architecture_names_exists() {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).expect("the document");
    let ids = identifiers();
    let mut missing = Vec::new();
    let mut checked = (0, 0);
    for name in names(&doc) {
        if name.chars().any(char::is_whitespace) {
            continue;
        }
        if is_path(&name) {
            checked.0 += 1;
            if !path_exists(&name) {
                missing.push(format!("path {name}"));
            }
        } else if let Some(parts) = symbol(&name) {
            checked.1 += 1;
            for p in parts.iter().filter(|p| !ids.contains(**p)) {
                missing.push(format!("symbol {p} (in `{name}`)"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md names what does not exist:\n{}",
        missing.join("\n")
    );
    assert!(
        checked.0 >= 10 && checked.1 >= 40,
        "the reader found too little to check ({} paths, {} symbols): is it still reading?",
        checked.0,
        checked.1
    );
}

#[test]
fn the_reader_flags_what_is_gone() {
    let doc = "The `verdicts/undo.rs` file and `DynamicTable::rollback`, with `guard` and `POST /x`.\n\
               ```\n  apply   kernel/gone.rs   Engine::vanished\n```\n";
    let names = names(doc);
    assert!(names.contains(&"verdicts/undo.rs".to_string()), "{names:?}");
    assert!(names.contains(&"kernel/gone.rs".to_string()), "{names:?}");
    assert!(names.contains(&"Engine::vanished".to_string()), "{names:?}");
    assert!(!path_exists("verdicts/undo.rs"));
    assert!(path_exists("verdicts/store.rs"));
    assert_eq!(
        symbol("DynamicTable::rollback"),
        Some(vec!["DynamicTable", "rollback"])
    );
    assert_eq!(symbol("guard"), None, "a plain word is not checked");
    let ids = identifiers();
    assert!(ids.contains("DynamicTable") && !ids.contains("vanished_symbol_xyz"));
}
