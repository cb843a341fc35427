//! The repository keeps its own promises: every test that docs/CONFORMANCE.md names
//! exists where it says, and every need a test script checks for is one that
//! scripts/setup.sh knows (and so installs). Runs without root in a second.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `crate/file::function` references, with `::function` alone meaning the same file
/// as the reference before it.
fn conformance_references(text: &str) -> Vec<(String, String, String)> {
    let is_ident = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    let mut refs = Vec::new();
    let mut last_file: Option<(String, String)> = None;
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == ':' && bytes[i + 1] == ':' {
            // The function after `::`; in `::module::function` the last name counts.
            let mut name_start = i + 2;
            let mut end = name_start;
            loop {
                while end < bytes.len() && is_ident(bytes[end]) {
                    end += 1;
                }
                let more = end + 2 < bytes.len()
                    && bytes[end] == ':'
                    && bytes[end + 1] == ':'
                    && is_ident(bytes[end + 2]);
                if !more || end == name_start {
                    break;
                }
                name_start = end + 2;
                end = name_start;
            }
            let function: String = bytes[name_start..end].iter().collect();
            // What stands before `::`: `crate/file`, or nothing (same file as before).
            let mut start = i;
            while start > 0
                && (is_ident(bytes[start - 1])
                    || bytes[start - 1] == '/'
                    || bytes[start - 1] == '-')
            {
                start -= 1;
            }
            let before: String = bytes[start..i].iter().collect();
            if !function.is_empty() {
                if let Some((krate, file)) = before.split_once('/') {
                    if !krate.is_empty() && !file.is_empty() && !file.contains('/') {
                        last_file = Some((krate.to_string(), file.to_string()));
                        refs.push((krate.to_string(), file.to_string(), function));
                    }
                } else if before.is_empty() {
                    if let Some((krate, file)) = &last_file {
                        refs.push((krate.clone(), file.clone(), function));
                    }
                }
            }
            i = end;
        } else {
            i += 1;
        }
    }
    refs
}

/// Where `crate/file` may live: a test target, or a module of the crate's sources.
fn candidate_files(krate: &str, file: &str) -> Vec<PathBuf> {
    let root = repo().join("crates").join(krate);
    let mut found = Vec::new();
    for dir in ["tests", "src", "benches", "examples"] {
        let base = root.join(dir);
        for path in [
            base.join(format!("{file}.rs")),
            base.join(file).join("mod.rs"),
        ] {
            if path.is_file() {
                found.push(path);
            }
        }
        // Modules deeper in src/ (src/a/file.rs) count too.
        if dir == "src" {
            collect_named(&base, &format!("{file}.rs"), &mut found);
        }
    }
    found
}

fn collect_named(dir: &Path, name: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_named(&path, name, out);
        } else if path.file_name().is_some_and(|n| n == name) && !out.contains(&path) {
            out.push(path);
        }
    }
}

/// A file defines `fn NAME` (a test, or a proptest case written as `fn NAME(`).
fn defines(path: &Path, function: &str) -> bool {
    let text = fs::read_to_string(path).unwrap_or_default();
    let needle = format!("fn {function}(");
    let dir = path.parent().unwrap();
    // A file that is a module directory's root may keep its tests in sibling files.
    text.contains(&needle)
        || (path.file_name().is_some_and(|n| n == "mod.rs")
            && fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| fs::read_to_string(e.path()).is_ok_and(|t| t.contains(&needle))))
}

#[test]
fn every_test_named_in_conformance_exists() {
    let text =
        fs::read_to_string(repo().join("docs/CONFORMANCE.md")).expect("read docs/CONFORMANCE.md");
    let refs = conformance_references(&text);
    assert!(
        refs.len() > 50,
        "found only {} test references: is the parser broken?",
        refs.len()
    );
    let mut broken = BTreeSet::new();
    for (krate, file, function) in &refs {
        if krate == "crate" && file == "file" {
            continue; // the legend
        }
        let files = candidate_files(krate, file);
        if !files.iter().any(|f| defines(f, function)) {
            broken.insert(format!(
                "{krate}/{file}::{function} ({})",
                if files.is_empty() {
                    "no such file".to_string()
                } else {
                    "no such fn in that file".to_string()
                }
            ));
        }
    }
    assert!(
        broken.is_empty(),
        "docs/CONFORMANCE.md names tests that do not exist:\n  {}",
        broken.into_iter().collect::<Vec<_>>().join("\n  ")
    );
}

#[test]
fn the_parser_sees_continuations_and_skips_prose() {
    let refs = conformance_references(
        "a/b::one, ::two; and c/d::three or Rust's std::fs or x:: and e/f::m::four",
    );
    let names: Vec<String> = refs
        .iter()
        .map(|(k, f, n)| format!("{k}/{f}::{n}"))
        .collect();
    assert_eq!(names, ["a/b::one", "a/b::two", "c/d::three", "e/f::four"]);
}

/// Every `require_root_and_tools NEED...` and `setup.sh --check NEED...` in the test and
/// benchmark scripts names a need that scripts/setup.sh lists, so each package a test
/// uses is one that setup installs.
#[test]
fn every_need_a_script_checks_is_in_setup() {
    let list = Command::new("bash")
        .arg(repo().join("scripts/setup.sh"))
        .arg("--list")
        .output()
        .expect("run scripts/setup.sh --list");
    assert!(list.status.success());
    let known: BTreeSet<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect();
    assert!(
        known.contains("strongswan") && known.contains("capture"),
        "setup --list: {known:?}"
    );

    let mut scripts = Vec::new();
    for dir in ["tests/netns", "bench", "scripts"] {
        collect_with_ext(&repo().join(dir), &mut scripts);
    }
    let mut unknown = BTreeSet::new();
    let mut seen = 0;
    for script in &scripts {
        let text = fs::read_to_string(script).unwrap_or_default();
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            let needs =
                if let Some(rest) = line.trim_start().strip_prefix("require_root_and_tools ") {
                    rest
                } else if let Some((_, rest)) = line.split_once("setup.sh --check ") {
                    rest
                } else {
                    continue;
                };
            for need in needs.split_whitespace().take_while(|w| {
                w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            }) {
                seen += 1;
                if !known.contains(need) {
                    unknown.insert(format!("{}: {need}", script.display()));
                }
            }
        }
    }
    assert!(seen >= 5, "found only {seen} needs in the scripts");
    assert!(
        unknown.is_empty(),
        "scripts check needs that scripts/setup.sh does not list: {unknown:?}"
    );
}

fn collect_with_ext(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_with_ext(&path, out);
        } else if path.extension().is_some_and(|e| e == "sh") {
            out.push(path);
        }
    }
}

#[test]
fn setup_check_names_the_missing_package_and_refuses_unknown_needs() {
    let run = |args: &[&str]| {
        Command::new("bash")
            .arg(repo().join("scripts/setup.sh"))
            .args(args)
            .output()
            .expect("run scripts/setup.sh")
    };
    let unknown = run(&["--check", "no-such-need"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown need 'no-such-need'"));
    // On a PATH with nothing but grep (which setup itself uses) socat cannot be found:
    // the package is named.
    let bare = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/usr/bin/grep", bare.path().join("grep")).unwrap();
    let out = Command::new("/bin/bash")
        .arg(repo().join("scripts/setup.sh"))
        .args(["--check", "socat"])
        .env("PATH", bare.path())
        .output()
        .expect("run scripts/setup.sh");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing Debian package: socat"), "{err}");
}
