//! The licences and sources of every Rust dependency, from `cargo metadata`
//! (what `cargo deny check licenses sources` checks, without a tool to
//! install): each crate's SPDX expression must be satisfiable with the
//! licences in [`ALLOWED`], and every crate must come from crates.io or this
//! workspace. Advisories are not checked here: the RustSec database is a
//! GitHub repository this project's machines cannot reach.

use serde_json::Value;

/// Permissive licences compatible with shipping craftlb as Apache-2.0
/// binaries. A crate under anything else fails the test, naming it.
pub const ALLOWED: &[&str] = &[
    "Apache-2.0",
    "MIT",
    "MIT-0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "Zlib",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    "Unlicense",
    "CC0-1.0",
    "BSL-1.0",
    "OpenSSL",
    "0BSD",
];

const CRATES_IO: &str = "registry+https://github.com/rust-lang/crates.io-index";

/// Whether an SPDX expression (`A OR B`, `A AND (B OR C)`, `A WITH exc`,
/// and the old `A/B` for OR) can be met with `allowed` licences.
pub fn satisfiable(expr: &str, allowed: &[&str]) -> Result<bool, String> {
    let spaced = expr
        .replace('/', " OR ")
        .replace('(', " ( ")
        .replace(')', " ) ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let mut pos = 0;
    let ok = or_expr(&tokens, &mut pos, allowed)?;
    if pos != tokens.len() {
        return Err(format!("unexpected '{}' in '{expr}'", tokens[pos]));
    }
    Ok(ok)
}

fn or_expr(t: &[&str], pos: &mut usize, allowed: &[&str]) -> Result<bool, String> {
    let mut ok = and_expr(t, pos, allowed)?;
    while t.get(*pos) == Some(&"OR") {
        *pos += 1;
        ok |= and_expr(t, pos, allowed)?;
    }
    Ok(ok)
}

fn and_expr(t: &[&str], pos: &mut usize, allowed: &[&str]) -> Result<bool, String> {
    let mut ok = term(t, pos, allowed)?;
    while t.get(*pos) == Some(&"AND") {
        *pos += 1;
        ok &= term(t, pos, allowed)?;
    }
    Ok(ok)
}

fn term(t: &[&str], pos: &mut usize, allowed: &[&str]) -> Result<bool, String> {
    let tok = *t.get(*pos).ok_or("expression ends early")?;
    *pos += 1;
    let ok = if tok == "(" {
        let inner = or_expr(t, pos, allowed)?;
        if t.get(*pos) != Some(&")") {
            return Err("unbalanced '('".into());
        }
        *pos += 1;
        inner
    } else if ["OR", "AND", "WITH", ")"].contains(&tok) {
        return Err(format!("'{tok}' where a licence was expected"));
    } else {
        allowed.contains(&tok)
    };
    // An exception only widens what the licence allows.
    if t.get(*pos) == Some(&"WITH") {
        *pos += 2;
    }
    Ok(ok)
}

/// Every package of the workspace's lock file that breaks the rules above.
pub fn violations(metadata: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    for p in metadata["packages"].as_array().into_iter().flatten() {
        let id = format!(
            "{} {}",
            p["name"].as_str().unwrap_or("?"),
            p["version"].as_str().unwrap_or("?")
        );
        match p["source"].as_str() {
            None | Some(CRATES_IO) => {}
            Some(other) => bad.push(format!("{id}: from {other}, not crates.io")),
        }
        if p["source"].is_null() {
            continue; // this workspace: Apache-2.0, ours
        }
        match p["license"].as_str() {
            Some(l) => match satisfiable(l, ALLOWED) {
                Ok(true) => {}
                Ok(false) => bad.push(format!("{id}: licence '{l}' is not on the allowed list")),
                Err(e) => bad.push(format!("{id}: licence '{l}': {e}")),
            },
            None => bad.push(format!(
                "{id}: no SPDX licence (license_file {})",
                p["license_file"]
            )),
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spdx_expressions() {
        let a = &["MIT", "Apache-2.0"];
        for (e, want) in [
            ("MIT", true),
            ("GPL-3.0", false),
            ("MIT OR GPL-3.0", true),
            ("MIT AND GPL-3.0", false),
            ("MIT/Apache-2.0", true),
            ("(MIT OR GPL-3.0) AND Apache-2.0", true),
            ("(MIT OR GPL-3.0) AND LGPL-2.1", false),
            ("Apache-2.0 WITH LLVM-exception OR GPL-2.0", true),
            ("GPL-2.0 WITH Classpath-exception-2.0", false),
        ] {
            assert_eq!(satisfiable(e, a), Ok(want), "{e}");
        }
        assert!(satisfiable("MIT OR", a).is_err());
        assert!(satisfiable("(MIT", a).is_err());
    }

    #[test]
    fn every_dependency_has_an_allowed_licence_and_comes_from_crates_io() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = std::process::Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--locked", "--offline"])
            .current_dir(crate::repo_root())
            .output()
            .unwrap_or_else(|e| panic!("cargo metadata: {e}"));
        assert!(
            out.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
        let n = meta["packages"].as_array().map_or(0, Vec::len);
        assert!(n > 100, "cargo metadata listed only {n} packages");
        let bad = violations(&meta);
        assert!(
            bad.is_empty(),
            "{} crate(s):\n{}",
            bad.len(),
            bad.join("\n")
        );
    }
}
