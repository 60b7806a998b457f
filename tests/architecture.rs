//! ARCHITECTURE.md's module table says which rooms each module may use; this checks the code against it,
//! so that the map stays true: every `crate::<module>` a module's files name must be the module itself or
//! one it is allowed to know.

use std::collections::BTreeSet;
use std::path::Path;

/// The table's rows: module, and the modules it may use.
fn rules() -> Vec<(String, BTreeSet<String>)> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
            .expect("ARCHITECTURE.md");
    let mut rows: Vec<(String, BTreeSet<String>)> = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let module = cells[1].trim_matches('`').to_owned();
        let knows = cells[cells.len() - 2];
        let allowed: BTreeSet<String> = if knows.starts_with("nothing else") {
            BTreeSet::new()
        } else if knows.starts_with("all of the above") {
            rows.iter().map(|(m, _)| m.clone()).collect()
        } else {
            knows
                .split(['(', ','])
                .take_while(|part| !part.contains(')'))
                .map(|part| part.trim().to_owned())
                .filter(|part| !part.is_empty() && !part.contains(' '))
                .collect()
        };
        rows.push((module, allowed));
    }
    rows
}

/// Every `crate::<name>` in the files of `module` (its folder or its single file).
fn used_by(module: &str) -> BTreeSet<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let dir = src.join(module);
    if dir.is_dir() {
        let mut stack = vec![dir];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).expect("src folder").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
    } else {
        files.push(src.join(format!("{module}.rs")));
    }
    let mut used = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source file");
        for (at, _) in text.match_indices("crate::") {
            let name: String = text[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != module {
                used.insert(name);
            }
        }
    }
    used
}

#[test]
fn every_module_uses_only_what_the_architecture_allows() {
    let rules = rules();
    assert!(
        rules.len() >= 8,
        "the module table was not found: {rules:?}"
    );
    let modules: BTreeSet<&str> = rules.iter().map(|(m, _)| m.as_str()).collect();
    for (module, allowed) in &rules {
        for used in used_by(module) {
            if modules.contains(used.as_str()) {
                assert!(
                    allowed.contains(&used),
                    "`{module}` uses `crate::{used}`, which ARCHITECTURE.md does not allow it \
                     (it allows {allowed:?})"
                );
            }
        }
    }
}
