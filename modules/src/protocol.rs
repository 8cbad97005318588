/*!
The Ansible module protocol, in one place.

Ansible runs a binary module as `module <args-file>`; the file holds one JSON
object: the task's arguments plus `_ansible_*` keys (check mode, diff, no_log,
verbosity, …). The module must print exactly one JSON object on stdout and
exit 0 (success) or 1 (failure). Because Ansible knows nothing about a binary
module's arguments, everything `AnsibleModule` does for Python modules happens
here: the argument spec, Ansible's type coercions, the cross-parameter rules,
check mode, diff, and masking of `no_log` values in everything returned.

Modules declare a [`Spec`] and an async `run` function; [`run_module`] does
the rest, including turning a panic into a failure JSON.
*/

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;

use serde_json::{Map, Value, json};

/// What Ansible itself puts in place of a `no_log` value.
pub const NO_LOG_MASK: &str = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER";

/// Environment switch used by the test suite to prove that a panic inside a
/// module still produces one JSON object: when it names the running module,
/// the module panics right after its arguments validated.
pub const PANIC_SWITCH_ENV: &str = "CRAFTLB_FAULT_PANIC";

/// The type of a parameter, with Ansible's names and coercion rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Str,
    Bool,
    Int,
    Float,
    List,
    Dict,
    Path,
    /// Dict or list serialised to a JSON string; strings pass unchanged.
    Json,
    Raw,
}

impl Type {
    /// The name Ansible's argument specs and docs use.
    pub fn name(self) -> &'static str {
        match self {
            Type::Str => "str",
            Type::Bool => "bool",
            Type::Int => "int",
            Type::Float => "float",
            Type::List => "list",
            Type::Dict => "dict",
            Type::Path => "path",
            Type::Json => "json",
            Type::Raw => "raw",
        }
    }
}

/// A parameter's default, as it would be written in an Ansible arg spec.
///
/// Defaults are for how a task behaves (`state`, `purge_tags`, `wait`…),
/// never for a setting of the AWS resource: a default turns into a desired
/// value on every run, and an update would "change" what the user never
/// asked to change. A resource setting AWS defaults at creation is left out
/// of the spec's defaults and applied by the module's create.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Default {
    Str(&'static str),
    Int(i64),
    Bool(bool),
    List(&'static [&'static str]),
    EmptyDict,
}

impl Default {
    pub fn to_value(self) -> Value {
        match self {
            Default::Str(s) => Value::from(s),
            Default::Int(i) => Value::from(i),
            Default::Bool(b) => Value::from(b),
            Default::List(items) => Value::from(items.to_vec()),
            Default::EmptyDict => Value::Object(Map::new()),
        }
    }
}

/// One entry of an argument spec. Built with const methods so that a module's
/// spec is a `static`; its documentation is generated from it (see
/// [`crate::doc`]), so the two cannot disagree.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub ty: Type,
    pub required: bool,
    pub default: Option<Default>,
    /// Allowed values, compared after coercion through their string form.
    pub choices: &'static [&'static str],
    pub aliases: &'static [&'static str],
    /// Element type for lists.
    pub elements: Option<Type>,
    pub no_log: bool,
    /// The documentation: one entry per paragraph.
    pub description: &'static [&'static str],
    /// Sub-options of a dict, or of each dict of a list.
    pub options: Option<&'static Spec>,
}

impl Param {
    pub const fn new(name: &'static str, ty: Type) -> Param {
        Param {
            name,
            ty,
            required: false,
            default: None,
            choices: &[],
            aliases: &[],
            elements: None,
            no_log: false,
            description: &[],
            options: None,
        }
    }
    pub const fn str(name: &'static str) -> Param {
        Param::new(name, Type::Str)
    }
    pub const fn bool(name: &'static str) -> Param {
        Param::new(name, Type::Bool)
    }
    pub const fn int(name: &'static str) -> Param {
        Param::new(name, Type::Int)
    }
    pub const fn path(name: &'static str) -> Param {
        Param::new(name, Type::Path)
    }
    pub const fn dict(name: &'static str) -> Param {
        Param::new(name, Type::Dict)
    }
    pub const fn list(name: &'static str, elements: Type) -> Param {
        let mut p = Param::new(name, Type::List);
        p.elements = Some(elements);
        p
    }
    /// A list of dicts, each validated against `options`.
    pub const fn list_of(name: &'static str, options: &'static Spec) -> Param {
        let mut p = Param::list(name, Type::Dict);
        p.options = Some(options);
        p
    }
    /// A dict validated against `options`.
    pub const fn dict_of(name: &'static str, options: &'static Spec) -> Param {
        let mut p = Param::dict(name);
        p.options = Some(options);
        p
    }
    pub const fn required(mut self) -> Param {
        self.required = true;
        self
    }
    pub const fn default(mut self, d: Default) -> Param {
        self.default = Some(d);
        self
    }
    pub const fn choices(mut self, c: &'static [&'static str]) -> Param {
        self.choices = c;
        self
    }
    pub const fn aliases(mut self, a: &'static [&'static str]) -> Param {
        self.aliases = a;
        self
    }
    pub const fn no_log(mut self) -> Param {
        self.no_log = true;
        self
    }
    pub const fn doc(mut self, description: &'static [&'static str]) -> Param {
        self.description = description;
        self
    }
}

/// `required_if`: when `param` equals `value`, the listed parameters are
/// required (all of them, or at least one when `any` is set).
#[derive(Debug, Clone, Copy)]
pub struct RequiredIf {
    pub param: &'static str,
    pub value: &'static str,
    pub requires: &'static [&'static str],
    pub any: bool,
}

/// A module's whole argument spec (or the spec of a sub-option).
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub params: &'static [Param],
    /// Shared specs whose parameters and rules this one takes as its own:
    /// [`crate::aws::AWS`] gives every AWS module its connection parameters
    /// in one line.
    pub includes: &'static [&'static Spec],
    pub mutually_exclusive: &'static [&'static [&'static str]],
    pub required_together: &'static [&'static [&'static str]],
    pub required_one_of: &'static [&'static [&'static str]],
    pub required_if: &'static [RequiredIf],
    pub supports_check_mode: bool,
}

impl Spec {
    pub const EMPTY: Spec = Spec {
        params: &[],
        includes: &[],
        mutually_exclusive: &[],
        required_together: &[],
        required_one_of: &[],
        required_if: &[],
        supports_check_mode: true,
    };

    /// Every parameter: the spec's own, then those of its includes.
    pub fn all_params(&self) -> impl Iterator<Item = &'static Param> + '_ {
        self.params
            .iter()
            .chain(self.includes.iter().flat_map(|s| s.params.iter()))
    }

    fn groups(
        &self,
        pick: fn(&Spec) -> &'static [&'static [&'static str]],
    ) -> impl Iterator<Item = &'static [&'static str]> + '_ {
        pick(self)
            .iter()
            .chain(self.includes.iter().flat_map(move |s| pick(s).iter()))
            .copied()
    }

    fn param(&self, name: &str) -> Option<&'static Param> {
        self.all_params().find(|p| p.name == name)
    }
}

/// Validated, coerced parameters. Every key of the spec is present (as
/// `null` when neither given nor defaulted), so lookups never miss.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    values: Map<String, Value>,
    secrets: Vec<String>,
}

impl Params {
    pub fn value(&self, name: &str) -> Option<&Value> {
        self.values.get(name).filter(|v| !v.is_null())
    }
    pub fn str(&self, name: &str) -> Option<&str> {
        self.value(name).and_then(Value::as_str)
    }
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.value(name).and_then(Value::as_bool)
    }
    pub fn int(&self, name: &str) -> Option<i64> {
        self.value(name).and_then(Value::as_i64)
    }
    pub fn dict(&self, name: &str) -> Option<&Map<String, Value>> {
        self.value(name).and_then(Value::as_object)
    }
    /// A list of strings (lists are validated, so non-strings only appear for
    /// `raw` elements and are skipped).
    pub fn str_list(&self, name: &str) -> Option<Vec<String>> {
        self.value(name).and_then(Value::as_array).map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
    }
    pub fn is_set(&self, name: &str) -> bool {
        self.value(name).is_some()
    }
    /// The parameters as a module's own typed struct (after validation,
    /// so a mismatch here is a bug in the module's struct, not user input).
    pub fn typed<T: serde::de::DeserializeOwned>(&self) -> Result<T, ArgError> {
        serde_json::from_value(Value::Object(self.values.clone())).map_err(|e| {
            ArgError(
                mask(
                    Value::from(format!(
                        "internal error: parameters do not fit the module's types: {e}"
                    )),
                    &self.secrets,
                )
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            )
        })
    }
    /// All parameters, `no_log` ones masked: what goes into `invocation`.
    pub fn masked(&self) -> Value {
        mask(Value::Object(self.values.clone()), &self.secrets)
    }
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }
}

/// A rejected argument set; the message follows Ansible's own wording so
/// users recognise it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError(pub String);

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ArgError {}

/// Flags Ansible passes along with the arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnsibleFlags {
    pub check_mode: bool,
    pub diff: bool,
    pub no_log: bool,
    pub verbosity: i64,
}

/// Splits the `_ansible_*` keys off the raw arguments.
pub fn split_internal(raw: Map<String, Value>) -> (Map<String, Value>, AnsibleFlags) {
    let mut args = Map::new();
    let mut flags = AnsibleFlags::default();
    for (k, v) in raw {
        match k.as_str() {
            "_ansible_check_mode" => flags.check_mode = coerce_bool(&v).unwrap_or(false),
            "_ansible_diff" => flags.diff = coerce_bool(&v).unwrap_or(false),
            "_ansible_no_log" => flags.no_log = coerce_bool(&v).unwrap_or(false),
            "_ansible_verbosity" => flags.verbosity = v.as_i64().unwrap_or(0),
            _ if k.starts_with("_ansible_") => {}
            _ => {
                args.insert(k, v);
            }
        }
    }
    (args, flags)
}

/// Validates `args` against `spec`: aliases, unknown keys, types, choices,
/// defaults, then the cross-parameter rules — in the order Ansible applies
/// them, so the first error reported is the one Ansible would report.
/// Sub-options are validated the same way, each error naming where it was
/// found (`... found in lifecycle_hooks`).
pub fn validate(spec: &Spec, args: Map<String, Value>) -> Result<Params, ArgError> {
    let mut secrets = Vec::new();
    let values = validate_in(spec, args, None, &mut secrets)?;
    Ok(Params { values, secrets })
}

fn found_in(msg: String, path: Option<&str>) -> ArgError {
    ArgError(match path {
        Some(p) => format!("{msg} found in {p}"),
        None => msg,
    })
}

fn validate_in(
    spec: &Spec,
    mut args: Map<String, Value>,
    path: Option<&str>,
    secrets: &mut Vec<String>,
) -> Result<Map<String, Value>, ArgError> {
    let err = |msg: String| found_in(msg, path);
    // Aliases first: an alias and its canonical name together is ambiguous.
    for p in spec.all_params() {
        for alias in p.aliases {
            if let Some(v) = args.remove(*alias) {
                if args.contains_key(p.name) {
                    return Err(err(format!(
                        "parameters are mutually exclusive: {}|{alias} (alias of {0})",
                        p.name
                    )));
                }
                args.insert(p.name.to_owned(), v);
            }
        }
    }

    let unknown: Vec<&str> = args
        .keys()
        .filter(|k| spec.param(k).is_none())
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        let mut supported: Vec<String> = spec
            .all_params()
            .map(|p| {
                if p.aliases.is_empty() {
                    p.name.to_owned()
                } else {
                    format!("{} ({})", p.name, p.aliases.join(", "))
                }
            })
            .collect();
        supported.sort();
        let which = match path {
            Some(p) => format!("{}. Supported parameters for {p}", unknown.join(", ")),
            None => format!("{}. Supported parameters", unknown.join(", ")),
        };
        return Err(ArgError(format!(
            "Unsupported parameters: {which} include: {}.",
            supported.join(", ")
        )));
    }

    // Secrets are collected before any error can quote a value.
    for p in spec.all_params().filter(|p| p.no_log) {
        if let Some(v) = args.get(p.name) {
            collect_strings(v, secrets);
        }
    }

    let missing: Vec<&str> = spec
        .all_params()
        .filter(|p| p.required && args.get(p.name).is_none_or(Value::is_null))
        .map(|p| p.name)
        .collect();
    if !missing.is_empty() {
        return Err(err(format!(
            "missing required arguments: {}",
            missing.join(", ")
        )));
    }

    let mut values = Map::new();
    for p in spec.all_params() {
        let given = args.remove(p.name).filter(|v| !v.is_null());
        let name = match path {
            Some(parent) => format!("{parent}.{}", p.name),
            None => p.name.to_owned(),
        };
        let mut v = match given {
            Some(v) => coerce(&name, p.ty, p.elements, v, p.no_log)?,
            None => p.default.map(Default::to_value).unwrap_or(Value::Null),
        };
        if !p.choices.is_empty() && !v.is_null() {
            check_choice(p, &v)?;
        }
        if let Some(sub) = p.options {
            v = match v {
                Value::Object(o) => Value::Object(validate_in(sub, o, Some(&name), secrets)?),
                Value::Array(items) => Value::Array(
                    items
                        .into_iter()
                        .enumerate()
                        .map(|(i, item)| match item {
                            Value::Object(o) => {
                                validate_in(sub, o, Some(&format!("{name}[{i}]")), secrets)
                                    .map(Value::Object)
                            }
                            other => Err(type_error(
                                &format!("{name}[{i}]"),
                                Type::Dict,
                                &other,
                                p.no_log,
                                "not a dictionary",
                            )),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                other => other,
            };
        }
        values.insert(p.name.to_owned(), v);
    }
    let set = |name: &str| values.get(name).is_some_and(|v| !v.is_null());

    for group in spec.groups(|s| s.mutually_exclusive) {
        if group.iter().filter(|n| set(n)).count() > 1 {
            return Err(err(format!(
                "parameters are mutually exclusive: {}",
                group.join("|")
            )));
        }
    }
    for group in spec.groups(|s| s.required_one_of) {
        if !group.iter().any(|n| set(n)) {
            return Err(err(format!(
                "one of the following is required: {}",
                group.join(", ")
            )));
        }
    }
    for group in spec.groups(|s| s.required_together) {
        let count = group.iter().filter(|n| set(n)).count();
        if count != 0 && count != group.len() {
            return Err(err(format!(
                "parameters are required together: {}",
                group.join(", ")
            )));
        }
    }
    let rules = spec
        .required_if
        .iter()
        .chain(spec.includes.iter().flat_map(|s| s.required_if.iter()));
    for rule in rules {
        let matches = values
            .get(rule.param)
            .is_some_and(|v| value_as_choice(v).as_deref() == Some(rule.value));
        if !matches {
            continue;
        }
        let missing: Vec<&str> = rule.requires.iter().copied().filter(|n| !set(n)).collect();
        let failed = if rule.any {
            missing.len() == rule.requires.len()
        } else {
            !missing.is_empty()
        };
        if failed {
            return Err(err(format!(
                "{} is {} but {} of the following are missing: {}",
                rule.param,
                rule.value,
                if rule.any { "any" } else { "all" },
                missing.join(", ")
            )));
        }
    }
    Ok(values)
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if !s.is_empty() => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

fn value_as_choice(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn check_choice(p: &Param, v: &Value) -> Result<(), ArgError> {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    for item in items {
        let s = value_as_choice(item).unwrap_or_default();
        if !p.choices.contains(&s.as_str()) {
            return Err(ArgError(format!(
                "value of {} must be one of: {}, got: {}",
                p.name,
                p.choices.join(", "),
                s
            )));
        }
    }
    Ok(())
}

fn type_error(name: &str, ty: Type, v: &Value, no_log: bool, why: &str) -> ArgError {
    let shown = if no_log {
        NO_LOG_MASK.to_owned()
    } else {
        v.to_string()
    };
    ArgError(format!(
        "argument '{name}' is of type {} and we were unable to convert to {}: {why} (value {shown})",
        json_type_name(v),
        ty.name()
    ))
}

fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Ansible's `check_type_bool`.
/// Test support: a module's task from JSON arguments, validated as the
/// protocol validates them; the error is the message the user would see.
#[cfg(test)]
pub fn task_of<T>(
    spec: &Spec,
    args: Value,
    task: fn(&Params) -> Result<T, Failure>,
) -> Result<T, String> {
    let p = validate(spec, args.as_object().cloned().unwrap_or_default()).map_err(|e| e.0)?;
    task(&p).map_err(|f| f.msg)
}

pub fn coerce_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_f64() {
            Some(1.0) => Some(true),
            Some(0.0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "y" | "yes" | "on" | "1" | "true" | "t" => Some(true),
            "n" | "no" | "off" | "0" | "false" | "f" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn coerce(
    name: &str,
    ty: Type,
    elements: Option<Type>,
    v: Value,
    no_log: bool,
) -> Result<Value, ArgError> {
    let err = |why: &str| type_error(name, ty, &v, no_log, why);
    Ok(match ty {
        Type::Raw => v,
        Type::Str | Type::Path => {
            let s = match &v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
                _ => return Err(err("not a string")),
            };
            if ty == Type::Path {
                Value::String(expand_home(&s))
            } else {
                Value::String(s)
            }
        }
        Type::Bool => Value::Bool(coerce_bool(&v).ok_or_else(|| err("not a boolean"))?),
        Type::Int => match &v {
            Value::Number(n) if n.is_i64() || n.is_u64() => v.clone(),
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
                _ => return Err(err("not a whole number")),
            },
            Value::String(s) => Value::from(
                s.trim()
                    .parse::<i64>()
                    .map_err(|_| err("invalid literal for int"))?,
            ),
            _ => return Err(err("not an integer")),
        },
        Type::Float => match &v {
            Value::Number(_) => v.clone(),
            Value::String(s) => {
                let f: f64 = s
                    .trim()
                    .parse()
                    .map_err(|_| err("invalid literal for float"))?;
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| err("not a finite number"))?
            }
            _ => return Err(err("not a number")),
        },
        Type::List => {
            let items = match &v {
                Value::Array(a) => a.clone(),
                Value::String(s) if s.is_empty() => Vec::new(),
                Value::String(s) => s.split(',').map(|x| Value::from(x.trim())).collect(),
                Value::Number(n) => vec![Value::from(n.to_string())],
                _ => return Err(err("not a list")),
            };
            match elements {
                Some(et) => Value::Array(
                    items
                        .into_iter()
                        .map(|x| coerce(&format!("{name}[]"), et, None, x, no_log))
                        .collect::<Result<_, _>>()?,
                ),
                None => Value::Array(items),
            }
        }
        Type::Dict => match &v {
            Value::Object(_) => v.clone(),
            Value::String(s) if s.trim_start().starts_with('{') => {
                match serde_json::from_str::<Value>(s) {
                    Ok(d @ Value::Object(_)) => d,
                    _ => return Err(err("invalid JSON object")),
                }
            }
            Value::String(s) => parse_kv(s).ok_or_else(|| err("expected key=value pairs"))?,
            _ => return Err(err("not a dictionary")),
        },
        Type::Json => match &v {
            Value::String(_) => v.clone(),
            Value::Object(_) | Value::Array(_) => Value::String(v.to_string()),
            _ => return Err(err("not JSON")),
        },
    })
}

/// `k1=v1, k2=v2` or `k1=v1 k2=v2`, the short form Ansible accepts for dicts.
fn parse_kv(s: &str) -> Option<Value> {
    let mut out = Map::new();
    for part in s.split([',', ' ']).map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=')?;
        out.insert(k.trim().to_owned(), Value::from(v.trim()));
    }
    Some(Value::Object(out))
}

fn expand_home(s: &str) -> String {
    match (s.strip_prefix('~'), std::env::var("HOME")) {
        (Some(rest), Ok(home)) if rest.is_empty() || rest.starts_with('/') => {
            format!("{home}{rest}")
        }
        _ => s.to_owned(),
    }
}

/// Replaces every occurrence of a secret in every string of `v`.
pub fn mask(v: Value, secrets: &[String]) -> Value {
    if secrets.is_empty() {
        return v;
    }
    match v {
        Value::String(s) => {
            let mut out = s;
            for secret in secrets {
                if out.contains(secret.as_str()) {
                    out = out.replace(secret.as_str(), NO_LOG_MASK);
                }
            }
            Value::String(out)
        }
        Value::Number(n) if secrets.contains(&n.to_string()) => Value::from(NO_LOG_MASK),
        Value::Array(a) => Value::Array(a.into_iter().map(|x| mask(x, secrets)).collect()),
        Value::Object(o) => {
            Value::Object(o.into_iter().map(|(k, x)| (k, mask(x, secrets))).collect())
        }
        other => other,
    }
}

/// What a module run hands to its `run` function.
#[derive(Debug)]
pub struct Ctx {
    pub module: &'static str,
    pub params: Params,
    pub check_mode: bool,
    pub diff: bool,
}

/// A successful module result.
#[derive(Debug, Default)]
pub struct Response {
    pub changed: bool,
    /// Keys returned to Ansible next to `changed` (the resource, `action`, …).
    pub data: Map<String, Value>,
    /// `(before, after)`; emitted only when Ansible asked for a diff.
    pub diff: Option<(Value, Value)>,
    pub warnings: Vec<String>,
}

impl Response {
    /// What an info module (or a run that found nothing to do) returns:
    /// no change, these keys.
    pub fn unchanged(data: Map<String, Value>) -> Response {
        Response {
            data,
            ..Response::default()
        }
    }
}

/// A module failure: `msg` plus any structured detail (for AWS errors, the
/// operation, error code and request id).
#[derive(Debug, PartialEq)]
pub struct Failure {
    pub msg: String,
    pub data: Map<String, Value>,
}

impl Failure {
    pub fn msg(msg: impl Into<String>) -> Failure {
        Failure {
            msg: msg.into(),
            data: Map::new(),
        }
    }
    pub fn with(mut self, key: &str, v: Value) -> Failure {
        self.data.insert(key.to_owned(), v);
        self
    }
}

impl From<ArgError> for Failure {
    fn from(e: ArgError) -> Failure {
        Failure::msg(e.0)
    }
}

impl From<craftlb_core::Error> for Failure {
    fn from(e: craftlb_core::Error) -> Failure {
        let mut f = Failure::msg(e.to_string());
        if let Some(aws) = e.aws() {
            f.data.insert(
                "error".into(),
                json!({"code": aws.code, "message": aws.message}),
            );
            f.data.insert(
                "response_metadata".into(),
                json!({"request_id": aws.request_id, "http_status_code": aws.http_status}),
            );
            f.data
                .insert("operation".into(), Value::from(aws.operation));
        }
        f.data
            .insert("error_kind".into(), Value::from(e.kind().as_str()));
        f
    }
}

/// The outcome of one invocation: the JSON to print and the exit code.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub json: Value,
    pub failed: bool,
}

/// Runs a module from the raw args-file text; pure apart from what `run`
/// does, so tests drive it directly.
pub fn execute<F, Fut>(module: &'static str, spec: &Spec, raw: &str, run: F) -> Outcome
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = Result<Response, Failure>>,
{
    let raw_args: Map<String, Value> = match serde_json::from_str(raw) {
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            return failure_outcome(
                Failure::msg("module arguments are not a JSON object"),
                &[],
                None,
            );
        }
        Err(e) => {
            return failure_outcome(
                Failure::msg(format!("module arguments are not valid JSON: {e}")),
                &[],
                None,
            );
        }
    };
    let (args, flags) = split_internal(raw_args);
    let params = match validate(spec, args) {
        Ok(p) => p,
        Err(e) => return failure_outcome(e.into(), &[], None),
    };
    let secrets = params.secrets().to_vec();
    let invocation = (!flags.no_log).then(|| json!({ "module_args": params.masked() }));
    if flags.check_mode && !spec.supports_check_mode {
        let json = json!({
            "changed": false,
            "skipped": true,
            "msg": format!("remote module ({module}) does not support check mode"),
        });
        return Outcome {
            json,
            failed: false,
        };
    }
    let ctx = Ctx {
        module,
        params,
        check_mode: flags.check_mode,
        diff: flags.diff,
    };
    let panic_requested = std::env::var(PANIC_SWITCH_ENV).is_ok_and(|m| m == module);
    let result = catch_unwind(AssertUnwindSafe(|| {
        if panic_requested {
            panic!("panic requested through {PANIC_SWITCH_ENV}");
        }
        block_on(run(ctx))
    }));
    match result {
        Ok(Ok(Ok(resp))) => {
            let mut out = resp.data;
            out.insert("changed".into(), Value::Bool(resp.changed));
            if let (true, Some((before, after))) = (flags.diff, resp.diff) {
                out.insert("diff".into(), json!({"before": before, "after": after}));
            }
            if !resp.warnings.is_empty() {
                out.insert("warnings".into(), Value::from(resp.warnings));
            }
            if let Some(inv) = invocation {
                out.insert("invocation".into(), inv);
            }
            Outcome {
                json: mask(Value::Object(out), &secrets),
                failed: false,
            }
        }
        Ok(Ok(Err(f))) => failure_outcome(f, &secrets, invocation),
        Ok(Err(e)) => failure_outcome(
            Failure::msg(format!("failed to start the async runtime: {e}")),
            &secrets,
            invocation,
        ),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".to_owned());
            failure_outcome(
                Failure::msg(format!("module {module} panicked: {what}"))
                    .with("exception", Value::from(what)),
                &secrets,
                invocation,
            )
        }
    }
}

fn block_on<Fut: Future>(fut: Fut) -> std::io::Result<Fut::Output> {
    // One thread is plenty for a module and keeps start-up cheap.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(fut))
}

fn failure_outcome(f: Failure, secrets: &[String], invocation: Option<Value>) -> Outcome {
    let mut out = f.data;
    out.insert("failed".into(), Value::Bool(true));
    out.insert("changed".into(), Value::Bool(false));
    out.insert("msg".into(), Value::String(f.msg));
    if let Some(inv) = invocation {
        out.insert("invocation".into(), inv);
    }
    Outcome {
        json: mask(Value::Object(out), secrets),
        failed: true,
    }
}

/// A module's run function, boxed so modules fit one table.
pub type RunFuture = std::pin::Pin<Box<dyn Future<Output = Result<Response, Failure>>>>;

/// Everything about one module: its name, spec, documentation (the
/// sidecar doc; options are generated from the spec) and run function.
pub struct Module {
    pub name: &'static str,
    pub spec: &'static Spec,
    pub doc: &'static str,
    pub run: fn(Ctx) -> RunFuture,
}

impl Module {
    /// The complete `ansible-doc` YAML.
    pub fn documentation(&self) -> Result<String, String> {
        crate::doc::render(self.doc, self.spec)
    }
}

/// `craftlb-modules --ansible-doc <module>`: the module's documentation
/// (what `make build` writes beside it as `<module>.yml`).
pub const DOC_SWITCH: &str = "--ansible-doc";

/// `craftlb-modules --list-modules`: the modules this binary holds, one name
/// per line (what `make build` links into library/, what the tests run).
pub const LIST_SWITCH: &str = "--list-modules";

/// The module a run is for. One binary holds every module (busybox-style):
/// Ansible names the copy it runs `AnsiballZ_<file name>`, and the systemd
/// timer runs the installed file by its module name; `_ansible_module_name`
/// in the arguments (short name or FQCN) decides when the file name does
/// not.
pub fn module_for<'a>(
    modules: &[&'a Module],
    argv0: &str,
    args: Option<&Map<String, Value>>,
) -> Option<&'a Module> {
    let file = std::path::Path::new(argv0)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file = file.strip_prefix("AnsiballZ_").unwrap_or(&file);
    let by_arg = args
        .and_then(|a| a.get("_ansible_module_name"))
        .and_then(Value::as_str)
        .map(|n| n.rsplit('.').next().unwrap_or(n));
    [Some(file), by_arg]
        .into_iter()
        .flatten()
        .find_map(|name| modules.iter().copied().find(|m| m.name == name))
}

/// The multi-call binary's entry point: picks the module, runs it, prints
/// one JSON object, and maps failure to exit code 1.
pub fn main(modules: &[&Module]) -> ExitCode {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let argv0 = argv.first().cloned().unwrap_or_default();
    let names = || {
        modules
            .iter()
            .map(|m| m.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if argv.get(1).map(String::as_str) == Some(LIST_SWITCH) {
        for m in modules {
            println!("{}", m.name);
        }
        return ExitCode::SUCCESS;
    }
    if argv.get(1).map(String::as_str) == Some(DOC_SWITCH) {
        let wanted = argv.get(2).cloned().unwrap_or_default();
        return match modules.iter().find(|m| m.name == wanted) {
            Some(m) => match m.documentation() {
                Ok(doc) => {
                    print!("{doc}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{wanted}: {e}");
                    ExitCode::FAILURE
                }
            },
            None => {
                eprintln!("usage: {argv0} {DOC_SWITCH} <module> (one of: {})", names());
                ExitCode::FAILURE
            }
        };
    }
    let outcome = match argv.get(1) {
        None => failure_outcome(
            Failure::msg(format!(
                "usage: <module> <args-file> (Ansible passes the path of a JSON arguments file); \
                 this binary holds: {}",
                names()
            )),
            &[],
            None,
        ),
        Some(path) => match std::fs::read_to_string(path) {
            Ok(raw) => {
                let parsed: Option<Map<String, Value>> = serde_json::from_str(&raw).ok();
                match module_for(modules, &argv0, parsed.as_ref()) {
                    Some(m) => execute(m.name, m.spec, &raw, m.run),
                    None => failure_outcome(
                        Failure::msg(format!(
                            "no module named by '{argv0}' or _ansible_module_name; this binary holds: {}",
                            names()
                        )),
                        &[],
                        None,
                    ),
                }
            }
            Err(e) => failure_outcome(
                Failure::msg(format!("cannot read module arguments file '{path}': {e}")),
                &[],
                None,
            ),
        },
    };
    println!("{}", outcome.json);
    if outcome.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    static SPEC: Spec = Spec {
        params: &[
            Param::str("state")
                .choices(&["present", "absent"])
                .default(Default::Str("present")),
            Param::str("name").aliases(&["health_check_name"]),
            Param::int("port"),
            Param::bool("flag"),
            Param::list("items", Type::Str),
            Param::list("numbers", Type::Int),
            Param::dict("tags"),
            Param::str("secret").no_log(),
            Param::int("interval").choices(&["10", "30"]),
            Param::str("a"),
            Param::str("b"),
            Param::str("type"),
            Param::str("needed").required(),
            Param::new("json", Type::Json),
            Param::new("ratio", Type::Float),
        ],
        includes: &[],
        mutually_exclusive: &[&["a", "b"]],
        required_together: &[&["port", "flag"]],
        required_one_of: &[],
        required_if: &[RequiredIf {
            param: "type",
            value: "TCP",
            requires: &["port"],
            any: false,
        }],
        supports_check_mode: true,
    };

    fn args(v: Value) -> Map<String, Value> {
        let mut m = v.as_object().cloned().unwrap_or_default();
        m.entry("needed").or_insert(Value::from("x"));
        m
    }

    fn ok(v: Value) -> Params {
        match validate(&SPEC, args(v)) {
            Ok(p) => p,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    fn err(v: Value) -> String {
        match validate(&SPEC, args(v)) {
            Ok(p) => panic!("expected an error, got {p:?}"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn bool_coercions_follow_ansible() {
        for (input, want) in [
            (json!("yes"), true),
            (json!("True"), true),
            (json!("on"), true),
            (json!("1"), true),
            (json!(1), true),
            (json!("no"), false),
            (json!("off"), false),
            (json!(0), false),
            (json!("F"), false),
        ] {
            let p = ok(json!({"flag": input, "port": 1}));
            assert_eq!(p.bool("flag"), Some(want), "input {input}");
        }
        assert!(err(json!({"flag": "maybe", "port": 1})).contains("'flag'"));
    }

    #[test]
    fn int_coercion_from_string_and_float() {
        assert_eq!(ok(json!({"port": "3", "flag": true})).int("port"), Some(3));
        assert_eq!(ok(json!({"port": 8.0, "flag": true})).int("port"), Some(8));
        let e = err(json!({"port": "eighty", "flag": true}));
        assert!(e.contains("argument 'port'") && e.contains("int"), "{e}");
        assert!(err(json!({"port": 1.5, "flag": true})).contains("'port'"));
    }

    #[test]
    fn list_from_comma_string_and_element_types() {
        let p = ok(json!({"items": "a, b,c"}));
        assert_eq!(
            p.str_list("items"),
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
        let p = ok(json!({"numbers": "1,2"}));
        assert_eq!(p.value("numbers"), Some(&json!([1, 2])));
        assert!(err(json!({"numbers": ["x"]})).contains("numbers[]"));
    }

    #[test]
    fn dict_from_json_and_key_value_strings() {
        let p = ok(json!({"tags": "{\"a\": \"1\"}"}));
        assert_eq!(p.value("tags"), Some(&json!({"a": "1"})));
        let p = ok(json!({"tags": "a=1, b=2"}));
        assert_eq!(p.value("tags"), Some(&json!({"a": "1", "b": "2"})));
        assert!(err(json!({"tags": ["x"]})).contains("'tags'"));
    }

    #[test]
    fn str_converts_scalars_and_rejects_containers() {
        assert_eq!(ok(json!({"a": 5})).str("a"), Some("5"));
        assert!(err(json!({"a": {"x": 1}})).contains("'a'"));
    }

    #[test]
    fn json_and_float_types() {
        let p = ok(json!({"json": {"k": [1]}, "ratio": "0.5"}));
        assert_eq!(p.str("json"), Some("{\"k\":[1]}"));
        assert_eq!(p.value("ratio"), Some(&json!(0.5)));
    }

    #[test]
    fn unknown_parameter_lists_valid_ones() {
        let e = err(json!({"bogus": 1}));
        assert!(e.starts_with("Unsupported parameters: bogus."), "{e}");
        assert!(
            e.contains("name (health_check_name)") && e.contains("state"),
            "{e}"
        );
    }

    #[test]
    fn missing_required_is_named() {
        let mut m = Map::new();
        m.insert("a".into(), json!("x"));
        let e = validate(&SPEC, m).err().map(|e| e.0).unwrap_or_default();
        assert_eq!(e, "missing required arguments: needed");
        let mut m = Map::new();
        m.insert("needed".into(), Value::Null);
        assert!(validate(&SPEC, m).is_err());
    }

    #[test]
    fn choices_and_defaults() {
        assert_eq!(ok(json!({})).str("state"), Some("present"));
        let e = err(json!({"state": "gone"}));
        assert_eq!(
            e,
            "value of state must be one of: present, absent, got: gone"
        );
        assert_eq!(ok(json!({"interval": "30"})).int("interval"), Some(30));
        assert!(err(json!({"interval": 20})).contains("must be one of: 10, 30"));
    }

    #[test]
    fn aliases_map_to_canonical_name_and_conflict() {
        assert_eq!(ok(json!({"health_check_name": "x"})).str("name"), Some("x"));
        assert!(err(json!({"health_check_name": "x", "name": "y"})).contains("mutually exclusive"));
    }

    #[test]
    fn cross_parameter_rules() {
        assert_eq!(
            err(json!({"a": "1", "b": "2"})),
            "parameters are mutually exclusive: a|b"
        );
        assert_eq!(
            err(json!({"port": 1})),
            "parameters are required together: port, flag"
        );
        assert_eq!(
            err(json!({"type": "TCP"})),
            "type is TCP but all of the following are missing: port"
        );
        ok(json!({"type": "HTTP"}));
    }

    #[test]
    fn required_one_of_rule() {
        static ONE_OF: Spec = Spec {
            params: &[Param::str("ip"), Param::str("fqdn")],
            required_one_of: &[&["ip", "fqdn"]],
            ..Spec::EMPTY
        };
        let e = validate(&ONE_OF, Map::new()).err().map(|e| e.0);
        assert_eq!(
            e.as_deref(),
            Some("one of the following is required: ip, fqdn")
        );
    }

    #[test]
    fn required_if_any_needs_one_of_the_list() {
        static ANY: Spec = Spec {
            params: &[Param::str("state"), Param::str("ip"), Param::str("fqdn")],
            required_if: &[RequiredIf {
                param: "state",
                value: "present",
                requires: &["ip", "fqdn"],
                any: true,
            }],
            ..Spec::EMPTY
        };
        let m = |v: Value| v.as_object().cloned().unwrap_or_default();
        let e = validate(&ANY, m(json!({"state": "present"})))
            .err()
            .map(|e| e.0);
        assert_eq!(
            e.as_deref(),
            Some("state is present but any of the following are missing: ip, fqdn")
        );
        assert!(validate(&ANY, m(json!({"state": "present", "fqdn": "x"}))).is_ok());
        assert!(validate(&ANY, m(json!({"state": "absent"}))).is_ok());
    }

    #[test]
    fn path_expands_home_only_at_the_start() {
        let home = std::env::var("HOME").unwrap_or_default();
        assert_eq!(expand_home("~/x"), format!("{home}/x"));
        assert_eq!(expand_home("/a/~/x"), "/a/~/x");
        assert_eq!(expand_home("~user/x"), "~user/x");
    }

    #[test]
    fn internal_keys_are_split_off() {
        let raw = json!({"_ansible_check_mode": true, "_ansible_diff": "yes",
                         "_ansible_no_log": false, "_ansible_whatever": 1, "a": "x"});
        let (args, flags) = split_internal(raw.as_object().cloned().unwrap_or_default());
        assert!(flags.check_mode && flags.diff && !flags.no_log);
        assert_eq!(keys(&Value::Object(args)), BTreeSet::from(["a".to_owned()]));
    }

    #[test]
    fn no_log_values_are_masked_everywhere() {
        let p = ok(json!({"secret": "hunter2"}));
        assert_eq!(p.masked()["secret"], json!(NO_LOG_MASK));
        let out = mask(
            json!({"msg": "bad key hunter2!", "n": ["hunter2"]}),
            p.secrets(),
        );
        assert_eq!(
            out,
            json!({"msg": format!("bad key {NO_LOG_MASK}!"), "n": [NO_LOG_MASK]})
        );
        // A type error must not echo the secret either.
        static S: Spec = Spec {
            params: &[Param::int("pin").no_log()],
            ..Spec::EMPTY
        };
        let mut m = Map::new();
        m.insert("pin".into(), json!("s3cret"));
        let e = validate(&S, m).err().map(|e| e.0).unwrap_or_default();
        assert!(!e.contains("s3cret") && e.contains(NO_LOG_MASK), "{e}");
    }

    async fn run_ok(ctx: Ctx) -> Result<Response, Failure> {
        let mut data = Map::new();
        data.insert("echo".into(), json!(ctx.params.str("secret")));
        data.insert("check".into(), json!(ctx.check_mode));
        Ok(Response {
            changed: true,
            data,
            diff: Some((json!({"a": 1}), json!({"a": 2}))),
            warnings: vec![],
        })
    }

    #[test]
    fn execute_success_masks_and_reports_diff_only_when_asked() {
        let raw = r#"{"needed": "x", "secret": "pw", "_ansible_check_mode": true}"#;
        let out = execute("m", &SPEC, raw, run_ok);
        assert!(!out.failed);
        assert_eq!(out.json["echo"], json!(NO_LOG_MASK));
        assert_eq!(out.json["check"], json!(true));
        assert_eq!(out.json["changed"], json!(true));
        assert!(out.json.get("diff").is_none());
        assert_eq!(
            out.json["invocation"]["module_args"]["secret"],
            json!(NO_LOG_MASK)
        );
        let raw = r#"{"needed": "x", "_ansible_diff": true}"#;
        let out = execute("m", &SPEC, raw, run_ok);
        assert_eq!(
            out.json["diff"],
            json!({"before": {"a": 1}, "after": {"a": 2}})
        );
    }

    #[test]
    fn execute_reports_argument_errors_without_running() {
        let out = execute("m", &SPEC, r#"{"bogus": 1}"#, |_ctx| async {
            panic!("run must not be called");
            #[allow(unreachable_code)]
            Ok(Response::default())
        });
        assert!(out.failed);
        assert_eq!(out.json["failed"], json!(true));
        assert!(
            out.json["msg"]
                .as_str()
                .unwrap_or_default()
                .contains("bogus")
        );
    }

    #[test]
    fn execute_handles_bad_json_and_panics() {
        let out = execute("m", &SPEC, "not json", run_ok);
        assert!(
            out.failed
                && out.json["msg"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("not valid JSON")
        );
        let out = execute("m", &SPEC, r#"{"needed": "x"}"#, |_ctx| async {
            if true {
                panic!("boom");
            }
            Ok(Response::default())
        });
        assert!(out.failed);
        assert_eq!(out.json["msg"], json!("module m panicked: boom"));
    }

    #[test]
    fn execute_failure_keeps_detail_and_masks() {
        let raw = r#"{"needed": "x", "secret": "pw"}"#;
        let out = execute("m", &SPEC, raw, |_ctx| async {
            Err(Failure::msg("could not use pw").with("detail", json!("pw here")))
        });
        assert!(out.failed);
        assert_eq!(
            out.json["msg"],
            json!(format!("could not use {NO_LOG_MASK}"))
        );
        assert_eq!(out.json["detail"], json!(format!("{NO_LOG_MASK} here")));
    }

    #[test]
    fn the_module_comes_from_the_file_name_or_the_arguments() {
        fn run(_ctx: Ctx) -> RunFuture {
            Box::pin(async { Ok(Response::default()) })
        }
        static A: Module = Module {
            name: "alpha",
            spec: &Spec::EMPTY,
            doc: "",
            run,
        };
        static B: Module = Module {
            name: "beta",
            spec: &Spec::EMPTY,
            doc: "",
            run,
        };
        let all = [&A, &B];
        let name =
            |argv0: &str, args: Value| module_for(&all, argv0, args.as_object()).map(|m| m.name);
        assert_eq!(name("/opt/craftlb/bin/beta", json!({})), Some("beta"));
        assert_eq!(name("/tmp/x/AnsiballZ_alpha", json!({})), Some("alpha"));
        assert_eq!(
            name(
                "/tmp/x/AnsiballZ_craftlb-modules",
                json!({"_ansible_module_name": "craftlb.aws.beta"})
            ),
            Some("beta")
        );
        assert_eq!(
            name("craftlb-modules", json!({"_ansible_module_name": "beta"})),
            Some("beta")
        );
        assert_eq!(
            name("craftlb-modules", json!({"_ansible_module_name": "gamma"})),
            None
        );
    }

    #[test]
    fn no_check_mode_support_skips() {
        static S: Spec = Spec {
            supports_check_mode: false,
            ..Spec::EMPTY
        };
        let out = execute("m", &S, r#"{"_ansible_check_mode": true}"#, |_ctx| async {
            Err(Failure::msg("must not run"))
        });
        assert!(!out.failed);
        assert_eq!(out.json["skipped"], json!(true));
    }
}
