//! The module structure ARCHITECTURE.md describes, checked on the source: no import cycle among
//! `src/` modules, and configuration read by string key only in the `config` module.

mod common;
use common::REPO;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/steps/uplink.rs` → `steps::uplink`; `src/netmodel/mod.rs` → `netmodel`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    parts
}

/// The unit a cycle is counted between: the groups of related modules (`host::ovs`,
/// `steps::uplink`, …) keep their second level; the rest is the top-level module.
fn node(parts: &[String]) -> String {
    let grouped = ["host", "steps", "commands", "render"];
    match parts {
        [g, sub, ..] if grouped.contains(&g.as_str()) => format!("{g}::{sub}"),
        [top, ..] => top.clone(),
        [] => "crate".into(),
    }
}

/// The code of a file without comments and without its unit tests.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Module paths a file names: `crate::a::b`, `super::x`, and the items of `use crate::{…}`.
fn references(module: &[String], text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let path_at = |rest: &str| -> Vec<String> {
        rest.split("::")
            .take_while(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
            })
            .map(String::from)
            .collect()
    };
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + 7..];
        if rest.starts_with('{') {
            let inner = &rest[1..rest.find('}').unwrap_or(1)];
            for item in inner.split(',') {
                out.push(path_at(item.trim()));
            }
        } else {
            out.push(path_at(rest));
        }
    }
    let parent: Vec<String> = module[..module.len().saturating_sub(1)].to_vec();
    for (i, _) in text.match_indices("super::") {
        let rest = &text[i + 7..];
        let items: Vec<&str> = if rest.starts_with('{') {
            rest[1..rest.find('}').unwrap_or(1)].split(',').collect()
        } else {
            vec![rest]
        };
        for item in items {
            let mut p = parent.clone();
            p.extend(path_at(item.trim()));
            out.push(p);
        }
    }
    out
}

#[test]
fn no_import_cycle_among_modules() {
    let src = Path::new(REPO).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> = files
        .iter()
        .map(|f| (module_of(&src, f), f.clone()))
        .collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &modules {
        let from = node(module);
        for r in references(module, &code(&fs::read_to_string(file).unwrap())) {
            // The longest prefix that is a module of ours.
            let Some(to) = (1..=r.len())
                .rev()
                .map(|k| r[..k].to_vec())
                .find(|p| modules.contains_key(p))
            else {
                continue;
            };
            let to = node(&to);
            if to != from {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    assert!(
        edges
            .get("steps::uplink")
            .is_some_and(|e| e.contains("netmodel")),
        "the reference scan finds nothing: {edges:#?}"
    );
    // Depth-first search for a path back to where it started.
    fn back_to(
        start: &str,
        at: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in edges.get(at).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if back_to(start, next, edges, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    for start in edges.keys() {
        let mut path = vec![start.clone()];
        let mut seen = BTreeSet::new();
        assert!(
            !back_to(start, start, &edges, &mut path, &mut seen),
            "import cycle: {} -> {start}",
            path.join(" -> ")
        );
    }
}

#[test]
fn configuration_is_read_by_key_only_in_the_config_module() {
    let src = Path::new(REPO).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = Vec::new();
    let config = src.join("config");
    for f in files.iter().filter(|f| !f.starts_with(&config)) {
        let text = code(&fs::read_to_string(f).unwrap());
        for getter in [".str(\"", ".bool(\"", ".int(\"", ".list(\""] {
            if text.contains(getter) {
                found.push(format!("{} uses {getter}", f.display()));
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

/// The layers of ARCHITECTURE.md, top first. A module imports only from layers below its own:
/// `steps` (with `undo`) may use `ledger`, `config`, `host` and below, never `commands`; `host`
/// never `config` or `ledger`; the pure modules nothing of ours but what is below them. `cli`
/// (the arguments) sits under the commands that read them.
const LAYERS: &[&[&str]] = &[
    &["main"],
    &["commands"],
    &["cli"],
    &["steps"],
    &["ledger"],
    &["config"],
    &["host"],
    &["render", "inject"],
    &["netmodel"],
    &["report", "error", "version", "fault"],
];

fn layer_of(top: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&top))
}

#[test]
fn imports_point_down_the_layers() {
    let src = Path::new(REPO).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut wrong = Vec::new();
    let mut seen = 0;
    for f in &files {
        let module = module_of(&src, f);
        let Some(from) = module.first().cloned() else {
            continue;
        };
        if from == "lib" {
            continue;
        }
        let from_layer = layer_of(&from).unwrap_or_else(|| {
            panic!("src module `{from}` is in no layer of ARCHITECTURE.md (add it to LAYERS)")
        });
        for r in references(&module, &code(&fs::read_to_string(f).unwrap())) {
            let Some(to) = r.first() else { continue };
            if *to == from || !modules.iter().any(|m| m.first() == Some(to)) {
                continue;
            }
            seen += 1;
            let to_layer = layer_of(to).unwrap_or(usize::MAX);
            if to_layer <= from_layer {
                wrong.push(format!("{} imports {}", module.join("::"), r.join("::")));
            }
        }
    }
    assert!(
        seen > 50,
        "the reference scan finds almost nothing ({seen})"
    );
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

/// A file that grows past this holds more than one concern: split it along them.
const MAX_LINES: usize = 700;

#[test]
fn no_source_file_is_over_700_lines() {
    let src = Path::new(REPO).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = fs::read_to_string(f).unwrap().lines().count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:#?}");
}
