//! The licences and sources of the Rust dependencies, from `cargo metadata`
//! (what `cargo deny check licenses sources` checks, without a tool to
//! install): every crate compiled into what craftlb ships (the modules and
//! the Lambda, for the Linux targets it builds) must have an SPDX expression
//! satisfiable with the licences in [`ALLOWED`], and every crate the
//! workspace builds for those targets must come from crates.io or this
//! workspace. Advisories are not checked here: the RustSec database is a
//! GitHub repository this project's machines cannot reach.
//!
//! The metadata is filtered to the shipped targets: unfiltered, cargo wants
//! every package of the lock file for every platform (Windows, Android, ...),
//! which no build here downloads, so the check passed only on a machine whose
//! registry held them from elsewhere.

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

/// The packages whose binaries ship: the module binary and the Lambda.
pub const SHIPPED_PACKAGES: &[&str] = &["craftlb-modules", "craftlb-lambda"];

/// The targets they ship for (`make build`, `make dist`).
pub const SHIPPED_TARGETS: &[&str] = &["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"];

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

/// The package ids compiled into the shipped binaries: the closure of
/// [`SHIPPED_PACKAGES`] over normal dependencies (proc macros included: their
/// output is compiled in) in the metadata's resolve graph. Build scripts and
/// dev-dependencies do not end up in a binary.
pub fn shipped_ids(metadata: &Value) -> Result<std::collections::BTreeSet<String>, String> {
    let nodes: std::collections::HashMap<&str, &Value> = metadata["resolve"]["nodes"]
        .as_array()
        .ok_or("cargo metadata has no resolve graph")?
        .iter()
        .filter_map(|n| Some((n["id"].as_str()?, n)))
        .collect();
    let packages = metadata["packages"]
        .as_array()
        .ok_or("cargo metadata has no packages")?;
    let mut todo = Vec::new();
    for name in SHIPPED_PACKAGES {
        let id = packages
            .iter()
            .find(|p| p["name"] == *name && p["source"].is_null())
            .and_then(|p| p["id"].as_str())
            .ok_or_else(|| format!("workspace package {name} not in cargo metadata"))?;
        todo.push(id);
    }
    let mut seen = std::collections::BTreeSet::new();
    while let Some(id) = todo.pop() {
        if !seen.insert(id.to_owned()) {
            continue;
        }
        let node = nodes
            .get(id)
            .ok_or_else(|| format!("{id} missing from the resolve graph"))?;
        for dep in node["deps"].as_array().into_iter().flatten() {
            let normal = dep["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|k| k["kind"].is_null());
            if let (true, Some(pkg)) = (normal, dep["pkg"].as_str()) {
                todo.push(pkg);
            }
        }
    }
    Ok(seen)
}

/// Every package that breaks the rules above: any package of the (filtered)
/// metadata from outside crates.io and the workspace, and any shipped
/// package whose licence is not allowed.
pub fn violations(metadata: &Value) -> Result<Vec<String>, String> {
    let shipped = shipped_ids(metadata)?;
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
        let ships = p["id"].as_str().is_some_and(|i| shipped.contains(i));
        if p["source"].is_null() || !ships {
            continue; // this workspace (Apache-2.0, ours), or not in a binary
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
    Ok(bad)
}

/// `cargo metadata` for the shipped targets, from the local registry only:
/// what the builds fetched is all it may need.
pub fn shipped_metadata() -> Result<Value, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["metadata", "--format-version", "1", "--locked", "--offline"]);
    for t in SHIPPED_TARGETS {
        cmd.args(["--filter-platform", t]);
    }
    let out = cmd
        .current_dir(crate::repo_root())
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata output: {e}"))
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

    /// A workspace whose binary pulls `good` (MIT) and `bad`, and whose
    /// tests pull `devonly` (GPL-3.0) as a dev-dependency.
    fn fake_metadata(bad_licence: &str, bad_source: &str) -> Value {
        let reg = CRATES_IO;
        let pkg = |name: &str, lic: &str, src: Value| {
            serde_json::json!({"name": name, "version": "1.0.0", "id": format!("{name}-id"),
                "license": lic, "license_file": null, "source": src})
        };
        let dep = |name: &str, kind: Value| {
            serde_json::json!({"name": name, "pkg": format!("{name}-id"),
                "dep_kinds": [{"kind": kind, "target": null}]})
        };
        serde_json::json!({
            "packages": [
                pkg("craftlb-modules", "Apache-2.0", Value::Null),
                pkg("craftlb-lambda", "Apache-2.0", Value::Null),
                pkg("good", "MIT", reg.into()),
                pkg("bad", bad_licence, bad_source.into()),
                pkg("devonly", "GPL-3.0", reg.into()),
            ],
            "resolve": {"nodes": [
                {"id": "craftlb-modules-id", "deps": [dep("good", Value::Null), dep("devonly", "dev".into())]},
                {"id": "craftlb-lambda-id", "deps": [dep("bad", Value::Null)]},
                {"id": "good-id", "deps": []},
                {"id": "bad-id", "deps": []},
                {"id": "devonly-id", "deps": []},
            ]}
        })
    }

    #[test]
    fn a_shipped_crate_under_a_licence_not_allowed_is_named() {
        let ok = fake_metadata("MIT OR Apache-2.0", CRATES_IO);
        assert_eq!(violations(&ok), Ok(vec![]));
        let ids = shipped_ids(&ok).unwrap_or_default();
        assert!(ids.contains("bad-id") && ids.contains("good-id"), "{ids:?}");
        assert!(
            !ids.contains("devonly-id"),
            "a dev-dependency does not ship: {ids:?}"
        );

        let gpl = fake_metadata("GPL-2.0-only", CRATES_IO);
        assert_eq!(
            violations(&gpl),
            Ok(vec![
                "bad 1.0.0: licence 'GPL-2.0-only' is not on the allowed list".to_owned()
            ])
        );
        let git = fake_metadata("MIT", "git+https://example.invalid/bad");
        assert_eq!(
            violations(&git),
            Ok(vec![
                "bad 1.0.0: from git+https://example.invalid/bad, not crates.io".to_owned()
            ])
        );
    }

    #[test]
    fn every_shipped_dependency_has_an_allowed_licence_and_comes_from_crates_io() {
        let meta = shipped_metadata().unwrap_or_else(|e| panic!("{e}"));
        let shipped = shipped_ids(&meta).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            shipped.len() > 100,
            "only {} packages ship: the resolve walk is broken",
            shipped.len()
        );
        let bad = violations(&meta).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            bad.is_empty(),
            "{} crate(s):\n{}",
            bad.len(),
            bad.join("\n")
        );
    }
}
