//! The layers of `guard-user/src`, and a check that imports point one way: a module may
//! import only modules of a lower layer (the crate root's helpers and its own files aside).
//! Read from the source, every `use crate::...` and every `crate::<module>::` path, so a
//! wrong-way import fails here, named, rather than growing a cycle.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

/// Bottom first. A module's imports must come from rows above its own.
const LAYERS: &[&[&str]] = &[
    // Entries, kinds, TTL bounds, address words, clocks: what all the rest speaks of.
    &["model"],
    // Parsed input: list files, the config.
    &["lists"],
    &["config"],
    // The XDP object, its maps and pins, attachment.
    &["kernel"],
    // What decides, each over its own state.
    &["protect", "rate", "state", "auto", "shape"],
    &["verdicts"],
    &["fleet"],
    // Everything together, then what serves it.
    &["engine"],
    &["control"],
];

/// Wrong-way imports allowed for now, each to be removed by moving what it needs down. The
/// test fails when one of these goes away, so this list only shrinks; it is empty.
const KNOWN: &[(&str, &str)] = &[];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|row| row.contains(&module))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `text` without its `//` comments (doc comments name modules freely).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules of `crate::` that `code` names: in `use crate::{a::x, b}` groups
/// and in paths such as `crate::a::f()`.
fn crate_modules(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let end = group.find(';').unwrap_or(group.len());
            let mut depth = 0;
            let mut item = String::new();
            for c in group[..end].chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.extend(head(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 || c != '{' {
                    item.push(c);
                }
            }
            found.extend(head(&item));
        } else {
            found.extend(head(after));
        }
        rest = after;
    }
    found
}

/// The first path segment of `item`, when it names a module (`a` of `a::b`, not `error_chain`).
fn head(item: &str) -> Option<String> {
    let item = item.trim();
    let name: String = item
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty() && layer(&name).is_some()).then_some(name)
}

/// Every import against the direction, as (file under src/, module it imports).
fn wrong_way() -> Vec<(String, String)> {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut wrong = Vec::new();
    for path in files {
        let rel = path
            .strip_prefix(&root)
            .expect("under src")
            .to_string_lossy()
            .into_owned();
        let own = rel
            .split('/')
            .next()
            .expect("a path")
            .trim_end_matches(".rs");
        // The binaries and the crate root sit above every layer.
        let Some(own_layer) = layer(own) else {
            assert!(
                own == "bin" || own == "lib",
                "{rel}: module {own} is in no layer of tests/architecture.rs"
            );
            continue;
        };
        let text = std::fs::read_to_string(&path).expect("read source");
        for module in crate_modules(&code(&text)) {
            let theirs = layer(&module).expect("a known module");
            if module != own && theirs >= own_layer {
                wrong.push((rel.clone(), module));
            }
        }
    }
    wrong.sort();
    wrong
}

#[test]
fn every_module_is_in_a_layer() {
    let mut found: Vec<String> = std::fs::read_dir(src())
        .expect("src")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .map(|n| n.trim_end_matches(".rs").to_string())
        .filter(|n| n != "lib" && n != "bin")
        .collect();
    found.sort();
    let mut listed: Vec<String> = LAYERS
        .iter()
        .flat_map(|r| r.iter())
        .map(|m| m.to_string())
        .collect();
    listed.sort();
    assert_eq!(found, listed, "the modules of src/ and the rows of LAYERS");
}

#[test]
fn imports_point_down_the_layers() {
    let wrong = wrong_way();
    let new: Vec<String> = wrong
        .iter()
        .filter(|(file, module)| !KNOWN.contains(&(file.as_str(), module.as_str())))
        .map(|(file, module)| {
            let own = file
                .split('/')
                .next()
                .unwrap_or(file)
                .trim_end_matches(".rs");
            format!(
                "src/{file} imports crate::{module}: {own} (layer {}) may import only layers \
                 below it, and {module} is layer {}",
                layer(own).unwrap_or(0),
                layer(module).unwrap_or(0)
            )
        })
        .collect();
    assert!(
        new.is_empty(),
        "imports against the layers:\n{}",
        new.join("\n")
    );
    let gone: Vec<String> = KNOWN
        .iter()
        .filter(|(file, module)| !wrong.iter().any(|(f, m)| f == file && m == module))
        .map(|(file, module)| format!("src/{file} -> {module}"))
        .collect();
    assert!(
        gone.is_empty(),
        "no longer imported against the layers; remove from KNOWN:\n{}",
        gone.join("\n")
    );
}

#[test]
fn the_reader_finds_grouped_nested_and_inline_paths() {
    let text = "use crate::{\n    model::{Kind, clock::x},\n    state::Stored,\n};\n\
                fn f() { crate::engine::go(); crate::error_chain(e); }\n\
                // crate::fleet in a comment\n";
    let found: Vec<String> = crate_modules(&code(text)).into_iter().collect();
    assert_eq!(found, ["engine", "model", "state"]);
}

/// Every Rust source of the repository (its crates' `src`, `tests`, the fuzz targets).
fn repository_sources() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in [
        "guard-common/src",
        "guard-ebpf/src",
        "guard-user/src",
        "guard-user/tests",
        "tests/src",
        "tests/tests",
        "xtask/src",
        "fuzz/fuzz_targets",
    ] {
        let dir = root.join(dir);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        }
    }
    files
}

#[test]
fn no_source_file_is_over_400_lines() {
    let sources = repository_sources();
    assert!(sources.len() > 100, "found only {} sources", sources.len());
    let long: Vec<String> = sources
        .iter()
        .filter_map(|p| {
            let lines = std::fs::read_to_string(p)
                .expect("read source")
                .lines()
                .count();
            (lines > 400).then(|| format!("{}: {lines} lines", p.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "split these by concern:\n{}",
        long.join("\n")
    );
}
