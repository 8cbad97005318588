/*!
A module's documentation, with its `options:` generated from its spec.

The sidecar file (`modules/docs/<module>.yml`) holds what only prose can
say — description, notes, EXAMPLES, RETURN — and one marker line where the
options go. Everything `ansible-doc` shows about a parameter (description,
type, default, choices, aliases, required, elements, sub-options) is written
here from the [`Spec`] the module validates with, so the two cannot drift.
Scalars are written as JSON strings, which YAML reads as double-quoted
scalars: no text can break the YAML.
*/

use serde_json::Value;

use crate::protocol::{Param, Spec, Type};

/// Said of every `no_log` parameter (Ansible's docs have no field for it).
pub const NO_LOG_NOTE: &str = "Never logged or returned (C(no_log)).";

/// The line in a sidecar doc that the generated options replace.
pub const MARKER: &str = "  # options: generated from the module's spec";

fn quote(s: &str) -> String {
    Value::from(s).to_string()
}

/// A choice as the doc shows it: ints as numbers, the rest as strings.
fn choice(p: &Param, c: &str) -> String {
    match (p.ty, c.parse::<i64>()) {
        (Type::Int, Ok(n)) => n.to_string(),
        _ => quote(c),
    }
}

fn flow(items: impl Iterator<Item = String>) -> String {
    format!("[{}]", items.collect::<Vec<_>>().join(", "))
}

/// The options of `spec` (its includes too) as YAML at `indent`.
pub fn options(spec: &Spec, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for p in spec.all_params() {
        out.push_str(&format!("{pad}{}:\n", p.name));
        out.push_str(&format!("{pad}  description:\n"));
        for line in p.description {
            out.push_str(&format!("{pad}    - {}\n", quote(line)));
        }
        if p.no_log {
            out.push_str(&format!("{pad}    - {}\n", quote(NO_LOG_NOTE)));
        }
        out.push_str(&format!("{pad}  type: {}\n", p.ty.name()));
        if p.required {
            out.push_str(&format!("{pad}  required: true\n"));
        }
        if let Some(d) = p.default {
            // Lists in YAML flow style with yamllint's spacing; JSON for the rest.
            let shown = match d.to_value() {
                Value::Array(items) => flow(items.iter().map(ToString::to_string)),
                v => v.to_string(),
            };
            out.push_str(&format!("{pad}  default: {shown}\n"));
        }
        if !p.choices.is_empty() {
            let list = flow(p.choices.iter().map(|c| choice(p, c)));
            out.push_str(&format!("{pad}  choices: {list}\n"));
        }
        if !p.aliases.is_empty() {
            let list = flow(p.aliases.iter().map(|a| quote(a)));
            out.push_str(&format!("{pad}  aliases: {list}\n"));
        }
        if let Some(e) = p.elements {
            out.push_str(&format!("{pad}  elements: {}\n", e.name()));
        }
        if let Some(sub) = p.options {
            out.push_str(&format!("{pad}  suboptions:\n"));
            out.push_str(&options(sub, indent + 4));
        }
    }
    out
}

/// The sidecar doc with the options in place of [`MARKER`].
pub fn render(sidecar: &str, spec: &Spec) -> Result<String, String> {
    if sidecar.lines().filter(|l| *l == MARKER).count() != 1 {
        return Err(format!(
            "the sidecar doc must hold the line {MARKER:?} exactly once (under DOCUMENTATION)"
        ));
    }
    let generated = format!("  options:\n{}", options(spec, 4));
    Ok(sidecar
        .lines()
        .map(|l| if l == MARKER { generated.trim_end() } else { l })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n")
}

/// Every parameter needs a description: `ansible-doc` and the collection
/// checks require one. Returns the names (with their path) that lack it.
pub fn undocumented(spec: &Spec) -> Vec<String> {
    let mut out = Vec::new();
    for p in spec.all_params() {
        if p.description.is_empty() {
            out.push(p.name.to_owned());
        }
        if let Some(sub) = p.options {
            out.extend(
                undocumented(sub)
                    .into_iter()
                    .map(|n| format!("{}.{n}", p.name)),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Default;

    static SUB: Spec = Spec {
        params: &[Param::str("name").required().doc(&["Hook name."])],
        ..Spec::EMPTY
    };
    static SPEC: Spec = Spec {
        params: &[
            Param::str("state")
                .choices(&["present", "absent"])
                .default(Default::Str("present"))
                .doc(&["Whether it exists: \"yes\" or no."]),
            Param::int("interval")
                .choices(&["10", "30"])
                .doc(&["Seconds."]),
            Param::list_of("hooks", &SUB)
                .aliases(&["lifecycle_hooks"])
                .doc(&["Hooks."]),
        ],
        ..Spec::EMPTY
    };

    #[test]
    fn options_are_yaml_with_json_scalars_and_suboptions() {
        let text = options(&SPEC, 4);
        assert_eq!(
            text,
            "    state:\n      description:\n        - \"Whether it exists: \\\"yes\\\" or no.\"\n      type: str\n      default: \"present\"\n      choices: [\"present\", \"absent\"]\n\
             \x20   interval:\n      description:\n        - \"Seconds.\"\n      type: int\n      choices: [10, 30]\n\
             \x20   hooks:\n      description:\n        - \"Hooks.\"\n      type: list\n      aliases: [\"lifecycle_hooks\"]\n      elements: dict\n      suboptions:\n\
             \x20       name:\n          description:\n            - \"Hook name.\"\n          type: str\n          required: true\n"
        );
    }

    #[test]
    fn render_needs_the_marker_once() {
        let doc = format!("DOCUMENTATION:\n  module: x\n{MARKER}\n  author: [me]\n");
        let out = render(&doc, &SPEC).unwrap_or_else(|e| panic!("{e}"));
        assert!(out.contains("  options:\n    state:\n"), "{out}");
        assert!(out.ends_with("  author: [me]\n"), "{out}");
        assert!(render("DOCUMENTATION: {}\n", &SPEC).is_err());
        assert!(undocumented(&SPEC).is_empty());
        static BARE: Spec = Spec {
            params: &[Param::list_of("hooks", &BARE_SUB)],
            ..Spec::EMPTY
        };
        static BARE_SUB: Spec = Spec {
            params: &[Param::str("name")],
            ..Spec::EMPTY
        };
        assert_eq!(undocumented(&BARE), vec!["hooks", "hooks.name"]);
    }
}
