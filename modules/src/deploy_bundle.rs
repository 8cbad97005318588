/*!
`deploy_bundle`: the deploy bundle a node boots from — a gzipped tar of
the playbook, roles, vars and module binaries — built byte-for-byte the
same from the same inputs.

Same bytes, same SHA-256: the S3 object is put, the launch template's user
data (which carries the hash) changes and the fleet rolls only when a file
in the bundle did. So nothing run-specific enters it: entries sorted, mtime
0, owner root, modes normalised to 0755/0644 (0600 for `files`), symlinks
kept as links, gzip without name or time. The file on disk is rewritten
only when its bytes differ.
*/

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::{Compression, GzBuilder};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::protocol::{Ctx, Default, Failure, Module, Param, Response, RunFuture, Spec, Type};

pub const NAME: &str = "deploy_bundle";

pub static MODULE: Module = Module {
    name: NAME,
    spec: &SPEC,
    doc: include_str!("../docs/deploy_bundle.yml"),
    run: |ctx| -> RunFuture { Box::pin(run(ctx)) },
};

pub static SPEC: Spec = Spec {
    params: &[
        Param::path("dest")
            .required()
            .doc(&["The bundle (a .tar.gz) to write."]),
        Param::path("root")
            .required()
            .doc(&["The directory I(paths) are relative to; archive names are relative to it too."]),
        Param::list("paths", Type::Str).required().doc(&[
            "Files and directories under I(root) to include (directories recursively).",
        ]),
        Param::list("exclude", Type::Str)
            .default(Default::List(&["__pycache__", "molecule", ".git"]))
            .doc(&["Names of files or directories (any path component) left out."]),
        Param::dict("rename").default(Default::EmptyDict).doc(&[
            "Archive names changed: a name among the I(paths)' entries => the name it is stored under \
             (e.g. the node's binary for its CPU stored under the one name its library links point to).",
        ]),
        Param::dict("files").default(Default::EmptyDict).doc(&[
            "Generated files: archive name => text content, mode 0600. Added after I(paths); a name may \
             not be one of theirs.",
        ]),
    ],
    ..Spec::EMPTY
};

#[derive(Debug, Deserialize)]
struct Args {
    dest: PathBuf,
    root: PathBuf,
    paths: Vec<String>,
    exclude: Vec<String>,
    rename: BTreeMap<String, String>,
    files: Map<String, Value>,
}

/// One archive entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir,
    File { data: Vec<u8>, mode: u32 },
    Link(PathBuf),
}

fn rel_name(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Collects `paths` under `root` into name => entry (sorted by name).
pub fn collect(
    root: &Path,
    paths: &[String],
    exclude: &[String],
) -> Result<BTreeMap<String, Entry>, Failure> {
    let mut out = BTreeMap::new();
    for p in paths {
        let rel = Path::new(p);
        if rel.is_absolute() || rel.components().any(|c| c.as_os_str() == "..") {
            return Err(Failure::msg(format!(
                "paths: '{p}' must be relative to root, without '..'"
            )));
        }
        let full = root.join(rel);
        if std::fs::symlink_metadata(&full).is_err() {
            return Err(Failure::msg(format!(
                "paths: '{p}' does not exist under root '{}'",
                root.display()
            )));
        }
        walk(root, rel, exclude, &mut out)?;
    }
    Ok(out)
}

fn walk(
    root: &Path,
    rel: &Path,
    exclude: &[String],
    out: &mut BTreeMap<String, Entry>,
) -> Result<(), Failure> {
    if rel
        .components()
        .any(|c| exclude.iter().any(|x| c.as_os_str() == x.as_str()))
    {
        return Ok(());
    }
    let full = root.join(rel);
    let io = |e: std::io::Error| Failure::msg(format!("{}: {e}", full.display()));
    let meta = std::fs::symlink_metadata(&full).map_err(io)?;
    let name = rel_name(rel);
    if meta.file_type().is_symlink() {
        out.insert(name, Entry::Link(std::fs::read_link(&full).map_err(io)?));
    } else if meta.is_dir() {
        out.insert(name, Entry::Dir);
        let mut children: Vec<PathBuf> = std::fs::read_dir(&full)
            .map_err(io)?
            .map(|d| d.map(|d| rel.join(d.file_name())))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        children.sort();
        for c in children {
            walk(root, &c, exclude, out)?;
        }
    } else {
        use std::os::unix::fs::PermissionsExt;
        let exec = meta.permissions().mode() & 0o111 != 0;
        out.insert(
            name,
            Entry::File {
                data: std::fs::read(&full).map_err(io)?,
                mode: if exec { 0o755 } else { 0o644 },
            },
        );
    }
    Ok(())
}

/// Moves entries to other archive names; a name must exist and its new name
/// must not (no entry silently replaced).
pub fn rename(
    entries: &mut BTreeMap<String, Entry>,
    renames: &BTreeMap<String, String>,
) -> Result<(), Failure> {
    for (from, to) in renames {
        if entries.contains_key(to) {
            return Err(Failure::msg(format!(
                "rename: '{from}' => '{to}', but '{to}' is one of the paths' entries too"
            )));
        }
        let entry = entries.remove(from).ok_or_else(|| {
            Failure::msg(format!("rename: '{from}' is not one of the paths' entries"))
        })?;
        entries.insert(to.clone(), entry);
    }
    Ok(())
}

/// The archive bytes: the same entries give the same bytes.
pub fn archive(entries: &BTreeMap<String, Entry>) -> Result<Vec<u8>, Failure> {
    let io = |e: std::io::Error| Failure::msg(format!("build the bundle: {e}"));
    let gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, entry) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        match entry {
            Entry::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                tar.append_data(&mut h, format!("{name}/"), std::io::empty())
                    .map_err(io)?;
            }
            Entry::File { data, mode } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                tar.append_data(&mut h, name, data.as_slice()).map_err(io)?;
            }
            Entry::Link(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                tar.append_link(&mut h, name, target).map_err(io)?;
            }
        }
    }
    let mut gz = tar.into_inner().map_err(io)?;
    gz.flush().map_err(io)?;
    gz.finish().map_err(io)
}

pub fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn write_atomically(dest: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::msg(format!("write '{}': {e}", dest.display()));
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = dest.with_extension(format!("tmp.{}", std::process::id()));
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, dest).map_err(io)
}

pub async fn run(ctx: Ctx) -> Result<Response, Failure> {
    let a: Args = ctx.params.typed()?;
    let mut entries = collect(&a.root, &a.paths, &a.exclude)?;
    rename(&mut entries, &a.rename)?;
    for (name, content) in &a.files {
        if entries.contains_key(name) {
            return Err(Failure::msg(format!(
                "files: '{name}' is also one of the paths' files"
            )));
        }
        let text = content
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| content.to_string());
        entries.insert(
            name.clone(),
            Entry::File {
                data: text.into_bytes(),
                mode: 0o600,
            },
        );
    }
    let bytes = archive(&entries)?;
    let sha = hex(&bytes);
    let before = std::fs::read(&a.dest).ok().map(|b| hex(&b));
    let changed = before.as_deref() != Some(sha.as_str());
    if changed && !ctx.check_mode {
        write_atomically(&a.dest, &bytes)?;
    }
    let mut data = Map::new();
    data.insert("path".into(), json!(a.dest));
    data.insert("sha256".into(), json!(sha));
    data.insert("size".into(), json!(bytes.len()));
    data.insert("entries".into(), json!(entries.len()));
    Ok(Response {
        changed,
        data,
        diff: Some((json!({"sha256": before}), json!({"sha256": sha}))),
        warnings: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = d.path();
        let w = |f: &str, s: &str| {
            std::fs::create_dir_all(p.join(f).parent().unwrap_or(p))
                .unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(p.join(f), s).unwrap_or_else(|e| panic!("{e}"));
        };
        w("playbooks/deploy.yml", "- hosts: all\n");
        w("roles/lb/tasks/main.yml", "---\n");
        w("roles/lb/molecule/default/converge.yml", "x");
        w("bin/tool", "#!/bin/sh\n");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p.join("bin/tool"), std::fs::Permissions::from_mode(0o700))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(p.join("library")).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink("../bin/tool", p.join("library/mod"))
            .unwrap_or_else(|e| panic!("{e}"));
        d
    }

    fn paths() -> Vec<String> {
        ["playbooks", "roles", "bin", "library"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn same_inputs_same_bytes_whatever_the_times() {
        let d = tree();
        let ex = vec!["molecule".to_owned()];
        let e1 = collect(d.path(), &paths(), &ex).unwrap_or_else(|f| panic!("{}", f.msg));
        assert!(!e1.keys().any(|k| k.contains("molecule")), "{e1:?}");
        assert_eq!(
            e1.get("library/mod"),
            Some(&Entry::Link("../bin/tool".into()))
        );
        assert!(matches!(
            e1.get("bin/tool"),
            Some(Entry::File { mode: 0o755, .. })
        ));
        let a1 = archive(&e1).unwrap_or_else(|f| panic!("{}", f.msg));
        // Touch every file: the bytes stay the same.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        std::fs::write(d.path().join("playbooks/deploy.yml"), "- hosts: all\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let e2 = collect(d.path(), &paths(), &ex).unwrap_or_else(|f| panic!("{}", f.msg));
        assert_eq!(
            hex(&a1),
            hex(&archive(&e2).unwrap_or_else(|f| panic!("{}", f.msg)))
        );
        // A content change changes them.
        std::fs::write(d.path().join("roles/lb/tasks/main.yml"), "--- # x\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let e3 = collect(d.path(), &paths(), &ex).unwrap_or_else(|f| panic!("{}", f.msg));
        assert_ne!(
            hex(&a1),
            hex(&archive(&e3).unwrap_or_else(|f| panic!("{}", f.msg)))
        );

        // And it is a tar.gz that tar reads back, links as links.
        let mut names = Vec::new();
        let mut t = tar::Archive::new(flate2::read::GzDecoder::new(a1.as_slice()));
        for e in t.entries().unwrap_or_else(|e| panic!("{e}")) {
            let e = e.unwrap_or_else(|e| panic!("{e}"));
            let ty = e.header().entry_type();
            names.push(format!(
                "{} {:?} {:o}",
                e.path().unwrap_or_default().display(),
                ty,
                e.header().mode().unwrap_or(0)
            ));
        }
        assert!(
            names.contains(&"library/mod Symlink 777".to_owned()),
            "{names:?}"
        );
        assert!(
            names.contains(&"bin/tool Regular 755".to_owned()),
            "{names:?}"
        );
    }

    #[test]
    fn paths_must_stay_under_root() {
        let d = tree();
        for bad in ["../etc", "/etc", "missing"] {
            assert!(
                collect(d.path(), &[bad.to_owned()], &[]).is_err_and(|f| f.msg.contains(bad)),
                "{bad}"
            );
        }
    }

    #[test]
    fn rename_moves_an_entry_and_never_overwrites_one() {
        let d = tree();
        let mut e = collect(d.path(), &paths(), &[]).unwrap_or_else(|f| panic!("{}", f.msg));
        let tool = e.get("bin/tool").cloned();
        let moved = BTreeMap::from([("bin/tool".to_owned(), "bin/other".to_owned())]);
        rename(&mut e, &moved).unwrap_or_else(|f| panic!("{}", f.msg));
        assert_eq!(e.get("bin/other"), tool.as_ref());
        assert!(!e.contains_key("bin/tool"));
        // Gone now, so renaming it again names it.
        assert!(rename(&mut e, &moved).is_err_and(|f| f.msg.contains("'bin/tool'")));
        let clash = BTreeMap::from([("bin/other".to_owned(), "library/mod".to_owned())]);
        assert!(rename(&mut e, &clash).is_err_and(|f| f.msg.contains("'library/mod' is one of")));
        assert!(
            e.contains_key("bin/other"),
            "a refused rename keeps the entry"
        );
    }
}
