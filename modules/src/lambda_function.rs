/*!
`lambda`: one Lambda function — code, configuration, resource-policy
permissions and tags — with the parameters and return keys of
`amazon.aws.lambda` (permissions: `amazon.aws.lambda_policy`'s job there).

What users of amazon.aws.lambda run into, and what this module does instead:
- code is compared by CodeSha256 whatever its source; `bootstrap_path`
  builds the zip in process, deterministically (fixed time, mode 0755, one
  entry), so an unchanged binary is never uploaded again;
- after create and after every update it waits until the function is
  Active (or Inactive) and its last update Successful, so the next call —
  and the next task — never meets ResourceConflictException; a Failed
  state is reported with AWS's reason;
- "the role cannot be assumed by Lambda" right after the role was made is
  retried for a bounded time (IAM propagation);
- `architecture` changes are changes (the code is uploaded with it);
- a field not given is left alone; an empty value clears it (`description:
  ''`, `layers: []`, `environment_variables: {}`);
- permissions are reconciled by statement id, principals normalised (an
  account id and its `:root` ARN are one principal), check mode reports the
  same `changed` as a real run; zip bytes are never returned.
*/

use std::collections::BTreeMap;
use std::io::Write;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use aws_sdk_lambda::Client;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{
    Architecture, DeadLetterConfig, Environment, FunctionCode, FunctionConfiguration, Runtime,
    TracingConfig, TracingMode, VpcConfig,
};
use base64::Engine;
use craftlb_core::consistency;
use craftlb_core::error::{Error, ErrorKind, sdk_error};
use craftlb_core::policy;
use craftlb_core::tags::{TagPlan, plan_task_tags};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::aws::{AWS, Connection, PURGE_TAGS, TAGS, tag_map};
use crate::driver::{Resource, drive};
use crate::protocol::{
    Ctx, Default, Failure, Module, Param, Params, Response, RunFuture, Spec, Type,
};

pub const NAME: &str = "lambda";

pub static MODULE: Module = Module {
    name: NAME,
    spec: &SPEC,
    doc: include_str!("../docs/lambda.yml"),
    run: |ctx| -> RunFuture { Box::pin(run(ctx)) },
};

static LAYER: Spec = Spec {
    params: &[
        Param::str("layer_version_arn").doc(&["The ARN of the layer version."]),
        Param::str("layer_name")
            .aliases(&["layer_arn"])
            .doc(&["The layer's ARN (without version); with I(version)."]),
        Param::int("version")
            .aliases(&["layer_version"])
            .doc(&["The layer's version; with I(layer_name)."]),
    ],
    mutually_exclusive: &[&["layer_version_arn", "layer_name"]],
    required_one_of: &[&["layer_version_arn", "layer_name"]],
    required_together: &[&["layer_name", "version"]],
    ..Spec::EMPTY
};

static PERMISSION: Spec = Spec {
    params: &[
        Param::str("statement_id")
            .required()
            .aliases(&["sid"])
            .doc(&["The statement's id in the function's policy: what identifies it."]),
        Param::str("principal").required().doc(&[
            "Who may call: a service (C(sns.amazonaws.com)), an account id or its C(:root) ARN, or C(*).",
        ]),
        Param::str("action")
            .default(Default::Str("lambda:InvokeFunction"))
            .doc(&["The action allowed."]),
        Param::str("source_arn").doc(&["Only calls on behalf of this resource (an SNS topic's ARN)."]),
        Param::str("source_account").doc(&["Only calls on behalf of this account."]),
        Param::str("principal_org_id").doc(&["Only principals of this AWS Organizations organization."]),
    ],
    ..Spec::EMPTY
};

pub static SPEC: Spec = Spec {
    params: &[
        Param::str("name")
            .required()
            .aliases(&["function_name"])
            .doc(&["The function's name."]),
        Param::str("state")
            .choices(&["present", "absent"])
            .default(Default::Str("present"))
            .doc(&["Whether the function should exist."]),
        Param::str("runtime").doc(&[
            "The runtime, e.g. C(provided.al2023) for a C(bootstrap) binary. Required to create.",
        ]),
        Param::str("role").doc(&[
            "The execution role: its ARN, or its name in this account. Required to create.",
            "Right after the role was made IAM may not yet let Lambda assume it; that error is retried \
             for up to 2 minutes.",
        ]),
        Param::str("handler").doc(&[
            "The handler (C(bootstrap) for custom runtimes). Required to create.",
        ]),
        Param::path("zip_file")
            .aliases(&["src"])
            .doc(&["A zip file with the function's code."]),
        Param::path("bootstrap_path").doc(&[
            "A custom-runtime executable: the zip is built in process, deterministically (one entry \
             C(bootstrap), mode 0755, fixed time), so the same binary always has the same CodeSha256.",
        ]),
        Param::str("architecture")
            .choices(&["x86_64", "arm64"])
            .aliases(&["architectures"])
            .doc(&[
                "The instruction set. C(x86_64) when not given at creation. A change uploads the code \
                 with the new architecture.",
            ]),
        Param::str("description").doc(&["The description; an empty string clears it."]),
        Param::int("timeout").doc(&[
            "Seconds a run may take (1-900). AWS uses 3 when not given at creation.",
        ]),
        Param::int("memory_size").doc(&[
            "Memory in MB (128-10240). AWS uses 128 when not given at creation.",
        ]),
        Param::dict("environment_variables").doc(&[
            "Environment variables, compared as strings. An empty dict removes them all.",
        ]),
        Param::list_of("layers", &LAYER).doc(&[
            "Layers, in order. An empty list removes them all.",
        ]),
        Param::list("vpc_subnet_ids", Type::Str).doc(&[
            "Subnets to run in (with I(vpc_security_group_ids)). An empty list takes the function out of \
             the VPC.",
        ]),
        Param::list("vpc_security_group_ids", Type::Str)
            .doc(&["Security groups in the VPC (with I(vpc_subnet_ids))."]),
        Param::str("tracing_mode")
            .choices(&["Active", "PassThrough"])
            .doc(&["X-Ray tracing."]),
        Param::str("dead_letter_arn").doc(&[
            "SQS queue or SNS topic for failed asynchronous runs; an empty string removes it.",
        ]),
        Param::str("kms_key_arn").doc(&[
            "KMS key for the environment variables; an empty string returns to AWS's key.",
        ]),
        Param::list_of("permissions", &PERMISSION).doc(&[
            "Statements of the function's resource policy (who may invoke it), reconciled by statement \
             id. Not given, the policy is left as it is.",
        ]),
        Param::bool("purge_permissions")
            .default(Default::Bool(false))
            .doc(&["Remove statements whose id is not in I(permissions)."]),
        Param::bool("wait").default(Default::Bool(true)).doc(&[
            "After create and after every update, wait until the function is Active (or Inactive) and \
             its last update Successful.",
        ]),
        Param::int("wait_timeout")
            .default(Default::Int(300))
            .doc(&["How long to wait, in seconds."]),
        TAGS,
        PURGE_TAGS,
    ],
    includes: &[&AWS],
    mutually_exclusive: &[&["zip_file", "bootstrap_path"]],
    required_together: &[&["vpc_subnet_ids", "vpc_security_group_ids"]],
    ..Spec::EMPTY
};

#[derive(Debug, Deserialize)]
struct LayerArg {
    layer_version_arn: Option<String>,
    layer_name: Option<String>,
    version: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct PermissionArg {
    statement_id: String,
    principal: String,
    action: String,
    source_arn: Option<String>,
    source_account: Option<String>,
    principal_org_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Args {
    name: String,
    state: String,
    runtime: Option<String>,
    role: Option<String>,
    handler: Option<String>,
    zip_file: Option<String>,
    bootstrap_path: Option<String>,
    architecture: Option<String>,
    description: Option<String>,
    timeout: Option<i64>,
    memory_size: Option<i64>,
    environment_variables: Option<Map<String, Value>>,
    layers: Option<Vec<LayerArg>>,
    vpc_subnet_ids: Option<Vec<String>>,
    vpc_security_group_ids: Option<Vec<String>>,
    tracing_mode: Option<String>,
    dead_letter_arn: Option<String>,
    kms_key_arn: Option<String>,
    permissions: Option<Vec<PermissionArg>>,
    purge_permissions: bool,
    wait: bool,
    wait_timeout: i64,
    tags: Option<Map<String, Value>>,
    purge_tags: bool,
    #[serde(flatten)]
    connection: Connection,
}

/// A function's configuration as craftlb manages it. In a task `None`
/// leaves a field alone; an empty string, list or map clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub runtime: Option<String>,
    pub role: Option<String>,
    pub handler: Option<String>,
    pub description: Option<String>,
    pub timeout: Option<i32>,
    pub memory_size: Option<i32>,
    pub environment: Option<BTreeMap<String, String>>,
    pub layers: Option<Vec<String>>,
    pub vpc: Option<(Vec<String>, Vec<String>)>,
    pub tracing_mode: Option<String>,
    pub dead_letter_arn: Option<String>,
    pub kms_key_arn: Option<String>,
}

/// A resource-policy statement, as craftlb compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    pub statement_id: String,
    /// A service name, an account id, or `*` (see [`principal_id`]).
    pub principal: String,
    pub action: String,
    pub source_arn: Option<String>,
    pub source_account: Option<String>,
    pub principal_org_id: Option<String>,
}

/// The code to deploy: the zip and its CodeSha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    pub zip: Vec<u8>,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub present: bool,
    pub name: String,
    pub config: Config,
    pub code: Option<Code>,
    pub architecture: Option<String>,
    pub permissions: Option<Vec<Permission>>,
    pub purge_permissions: bool,
    pub tags: Option<BTreeMap<String, String>>,
    pub purge_tags: bool,
    pub wait: Option<Duration>,
    /// The region of the function, for the ARN a function still to be made
    /// will have (check mode).
    pub region: String,
}

/// The zip a `bootstrap` binary is deployed in: the same bytes for the same
/// binary, always (one entry, fixed time, mode 0755, stored). Stored, not
/// deflated: every run builds the zip to compare its CodeSha256, and
/// deflating 6.5 MB cost 0.5 s (level 9) or ~70 ms (level 1) per no-change
/// task (make bench); the larger upload happens only when the code changed.
pub fn bootstrap_zip(binary: &[u8]) -> Result<Vec<u8>, String> {
    use zip::write::SimpleFileOptions;
    let mut out = std::io::Cursor::new(Vec::new());
    let mut w = zip::ZipWriter::new(&mut out);
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o755)
        .large_file(false);
    w.start_file("bootstrap", opts)
        .map_err(|e| format!("cannot build the zip: {e}"))?;
    w.write_all(binary)
        .map_err(|e| format!("cannot build the zip: {e}"))?;
    w.finish()
        .map_err(|e| format!("cannot build the zip: {e}"))?;
    Ok(out.into_inner())
}

/// CodeSha256 as Lambda computes it: base64 of the zip's SHA-256.
pub fn code_sha256(zip: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(zip))
}

/// `123456789012`, `arn:aws:iam::123456789012:root` → `123456789012`;
/// services and `*` as they are.
pub fn principal_id(p: &str) -> String {
    let parts: Vec<&str> = p.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "iam", "", account, "root"] => (*account).to_owned(),
        _ => p.to_owned(),
    }
}

fn positive(
    name: &str,
    v: Option<i64>,
    range: std::ops::RangeInclusive<i32>,
) -> Result<Option<i32>, Failure> {
    v.map(|v| {
        i32::try_from(v)
            .ok()
            .filter(|v| range.contains(v))
            .ok_or_else(|| {
                Failure::msg(format!(
                    "{name} must be {}-{}, got {v}",
                    range.start(),
                    range.end()
                ))
            })
    })
    .transpose()
}

pub fn task(p: &Params) -> Result<Task, Failure> {
    let a: Args = p.typed()?;
    let read = |path: &str| {
        std::fs::read(path).map_err(|e| Failure::msg(format!("cannot read '{path}': {e}")))
    };
    let code = match (&a.zip_file, &a.bootstrap_path) {
        (Some(z), _) => Some(read(z)?),
        (None, Some(b)) => Some(bootstrap_zip(&read(b)?).map_err(Failure::msg)?),
        (None, None) => None,
    }
    .map(|zip| Code {
        sha256: code_sha256(&zip),
        zip,
    });
    let layers = a
        .layers
        .map(|ls| {
            ls.into_iter()
                .map(|l| match (l.layer_version_arn, l.layer_name, l.version) {
                    (Some(arn), _, _) => Ok(arn),
                    (None, Some(name), Some(v)) if name.starts_with("arn:") => Ok(format!("{name}:{v}")),
                    (None, Some(name), _) => Err(Failure::msg(format!(
                        "layer '{name}': give the layer's ARN (layer_name with version) or layer_version_arn"
                    ))),
                    _ => Err(Failure::msg("a layer needs layer_version_arn, or layer_name and version")),
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let permissions = a.permissions.map(|ps| {
        ps.into_iter()
            .map(|p| Permission {
                statement_id: p.statement_id,
                principal: principal_id(&p.principal),
                action: p.action,
                source_arn: p.source_arn,
                source_account: p.source_account,
                principal_org_id: p.principal_org_id,
            })
            .collect::<Vec<_>>()
    });
    if let Some(ps) = &permissions {
        let mut ids: Vec<&str> = ps.iter().map(|p| p.statement_id.as_str()).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(Failure::msg(format!(
                "permission statement_id '{}' is listed twice",
                w[0]
            )));
        }
    }
    let wait = a
        .wait
        .then(|| u64::try_from(a.wait_timeout).map(Duration::from_secs))
        .transpose()
        .map_err(|_| Failure::msg("wait_timeout must be >= 0"))?;
    Ok(Task {
        present: a.state != "absent",
        name: a.name,
        config: Config {
            runtime: a.runtime,
            role: a.role,
            handler: a.handler,
            description: a.description,
            timeout: positive("timeout", a.timeout, 1..=900)?,
            memory_size: positive("memory_size", a.memory_size, 128..=10240)?,
            environment: a.environment_variables.as_ref().map(tag_map),
            layers,
            vpc: a.vpc_subnet_ids.zip(a.vpc_security_group_ids),
            tracing_mode: a.tracing_mode,
            dead_letter_arn: a.dead_letter_arn,
            kms_key_arn: a.kms_key_arn,
        },
        code,
        architecture: a.architecture,
        permissions,
        purge_permissions: a.purge_permissions,
        tags: a.tags.as_ref().map(tag_map),
        purge_tags: a.purge_tags,
        wait,
        region: String::new(),
    })
}

/// The function as read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Current {
    pub arn: String,
    pub config: Config,
    pub code_sha256: String,
    pub architecture: String,
    /// Everything else GetFunction said, for the returned description.
    pub described: Map<String, Value>,
    pub code: Map<String, Value>,
    pub tags: BTreeMap<String, String>,
    pub permissions: Option<Vec<Permission>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Create,
    /// The fields of one UpdateFunctionConfiguration.
    Configure(Config),
    UploadCode,
    RemovePermission(String),
    AddPermission(Permission),
    Tags(TagPlan),
}

fn text_differs(want: &Option<String>, have: &Option<String>) -> bool {
    match want {
        None => false,
        Some(w) => w.as_str() != have.as_deref().unwrap_or_default(),
    }
}

/// The configuration fields that differ (None: the same), `role` already
/// an ARN.
pub fn config_changes(want: &Config, have: &Config) -> Option<Config> {
    let mut ch = Config::default();
    let mut any = false;
    macro_rules! text {
        ($($f:ident),*) => { $( if text_differs(&want.$f, &have.$f) { ch.$f = want.$f.clone(); any = true; } )* };
    }
    text!(
        runtime,
        role,
        handler,
        description,
        tracing_mode,
        dead_letter_arn,
        kms_key_arn
    );
    if want.timeout.is_some() && want.timeout != have.timeout {
        ch.timeout = want.timeout;
        any = true;
    }
    if want.memory_size.is_some() && want.memory_size != have.memory_size {
        ch.memory_size = want.memory_size;
        any = true;
    }
    if let Some(env) = &want.environment
        && *env != have.environment.clone().unwrap_or_default()
    {
        ch.environment = Some(env.clone());
        any = true;
    }
    if let Some(layers) = &want.layers
        && *layers != have.layers.clone().unwrap_or_default()
    {
        ch.layers = Some(layers.clone());
        any = true;
    }
    if let Some((subnets, groups)) = &want.vpc {
        let (hs, hg) = have.vpc.clone().unwrap_or_default();
        let sorted = |v: &Vec<String>| {
            let mut v = v.clone();
            v.sort();
            v
        };
        if sorted(subnets) != sorted(&hs) || sorted(groups) != sorted(&hg) {
            ch.vpc = Some((subnets.clone(), groups.clone()));
            any = true;
        }
    }
    any.then_some(ch)
}

pub fn plan(t: &Task, current: Option<&Current>) -> Result<Vec<Step>, Failure> {
    let Some(c) = current else {
        let missing: Vec<&str> = [
            ("runtime", t.config.runtime.is_none()),
            ("role", t.config.role.is_none()),
            ("handler", t.config.handler.is_none()),
            ("zip_file or bootstrap_path", t.code.is_none()),
        ]
        .into_iter()
        .filter(|(_, m)| *m)
        .map(|(n, _)| n)
        .collect();
        if !missing.is_empty() {
            return Err(Failure::msg(format!(
                "function '{}' does not exist; to create it give {}",
                t.name,
                missing.join(", ")
            )));
        }
        let mut steps = vec![Step::Create];
        steps.extend(
            t.permissions
                .iter()
                .flatten()
                .cloned()
                .map(Step::AddPermission),
        );
        return Ok(steps);
    };
    let mut steps = Vec::new();
    if let Some(ch) = config_changes(&t.config, &c.config) {
        steps.push(Step::Configure(ch));
    }
    let arch_differs = t
        .architecture
        .as_ref()
        .is_some_and(|a| *a != c.architecture);
    if arch_differs && t.code.is_none() {
        return Err(Failure::msg(
            "architecture changes with the code: give zip_file or bootstrap_path too",
        ));
    }
    if arch_differs
        || t.code
            .as_ref()
            .is_some_and(|code| code.sha256 != c.code_sha256)
    {
        steps.push(Step::UploadCode);
    }
    if let (Some(want), Some(have)) = (&t.permissions, &c.permissions) {
        for w in want {
            match have.iter().find(|h| h.statement_id == w.statement_id) {
                Some(h) if h == w => {}
                // Lambda cannot change a statement: remove it, add it again.
                Some(_) => {
                    steps.push(Step::RemovePermission(w.statement_id.clone()));
                    steps.push(Step::AddPermission(w.clone()));
                }
                None => steps.push(Step::AddPermission(w.clone())),
            }
        }
        if t.purge_permissions {
            steps.extend(
                have.iter()
                    .filter(|h| !want.iter().any(|w| w.statement_id == h.statement_id))
                    .map(|h| Step::RemovePermission(h.statement_id.clone())),
            );
        }
    }
    let tags = plan_task_tags(&c.tags, t.tags.as_ref(), t.purge_tags);
    if !tags.is_empty() {
        steps.push(Step::Tags(tags));
    }
    Ok(steps)
}

/// Statements of a function policy (GetPolicy's JSON) as [`Permission`]s.
pub fn permissions_from_policy(doc: &Value) -> Vec<Permission> {
    let statements = match &doc["Statement"] {
        Value::Array(a) => a.clone(),
        Value::Null => vec![],
        other => vec![other.clone()],
    };
    let first = |v: &Value| match v {
        Value::Array(a) => a.first().and_then(Value::as_str).map(str::to_owned),
        other => other.as_str().map(str::to_owned),
    };
    let condition = |s: &Value, key: &str| {
        s["Condition"]
            .as_object()
            .and_then(|ops| ops.values().find_map(|keys| keys.get(key).and_then(first)))
    };
    statements
        .iter()
        .map(|s| {
            let principal = match &s["Principal"] {
                Value::String(p) => p.clone(),
                Value::Object(o) => o.values().find_map(first).unwrap_or_default(),
                _ => String::new(),
            };
            Permission {
                statement_id: s["Sid"].as_str().unwrap_or_default().to_owned(),
                principal: principal_id(&principal),
                action: first(&s["Action"]).unwrap_or_default(),
                source_arn: condition(s, "AWS:SourceArn"),
                source_account: condition(s, "AWS:SourceAccount"),
                principal_org_id: condition(s, "aws:PrincipalOrgID"),
            }
        })
        .collect()
}

/// The Lambda (and STS) calls this module makes.
#[allow(async_fn_in_trait)]
pub trait Api {
    async fn get(&self, name: &str) -> Result<Option<Current>, Error>;
    async fn permissions(&self, name: &str) -> Result<Vec<Permission>, Error>;
    async fn create(&self, t: &Task) -> Result<(), Error>;
    async fn configure(&self, name: &str, ch: &Config) -> Result<(), Error>;
    async fn upload(
        &self,
        name: &str,
        code: &Code,
        architecture: Option<&str>,
    ) -> Result<(), Error>;
    async fn add_permission(&self, name: &str, p: &Permission) -> Result<(), Error>;
    async fn remove_permission(&self, name: &str, sid: &str) -> Result<(), Error>;
    async fn tag(&self, arn: &str, plan: &TagPlan) -> Result<(), Error>;
    async fn delete(&self, name: &str) -> Result<(), Error>;
    /// The caller's partition and account id.
    async fn account(&self) -> Result<(String, String), Error>;
}

/// The SDK behind [`Api`]: Lambda, and the configuration STS needs.
pub struct SdkApi {
    lambda: Client,
    config: aws_types::SdkConfig,
}

fn config_from(f: &FunctionConfiguration) -> Config {
    Config {
        runtime: f.runtime().map(|r| r.as_str().to_owned()),
        role: f.role().map(str::to_owned),
        handler: f.handler().map(str::to_owned),
        description: f.description().map(str::to_owned),
        timeout: f.timeout(),
        memory_size: f.memory_size(),
        environment: f
            .environment()
            .and_then(|e| e.variables())
            .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        layers: Some(
            f.layers()
                .iter()
                .filter_map(|l| l.arn().map(str::to_owned))
                .collect(),
        ),
        vpc: f
            .vpc_config()
            .map(|v| (v.subnet_ids().to_vec(), v.security_group_ids().to_vec())),
        tracing_mode: f
            .tracing_config()
            .and_then(|t| t.mode())
            .map(|m| m.as_str().to_owned()),
        dead_letter_arn: f
            .dead_letter_config()
            .and_then(|d| d.target_arn())
            .map(str::to_owned),
        kms_key_arn: f.kms_key_arn().map(str::to_owned),
    }
}

fn describe_config(f: &FunctionConfiguration) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_owned(), v);
        }
    };
    put("function_name", f.function_name().map(Value::from));
    put("function_arn", f.function_arn().map(Value::from));
    put("runtime", f.runtime().map(|r| Value::from(r.as_str())));
    put("role", f.role().map(Value::from));
    put("handler", f.handler().map(Value::from));
    put("code_size", Some(Value::from(f.code_size())));
    put("description", f.description().map(Value::from));
    put("timeout", f.timeout().map(Value::from));
    put("memory_size", f.memory_size().map(Value::from));
    put("last_modified", f.last_modified().map(Value::from));
    put("code_sha256", f.code_sha256().map(Value::from));
    put("version", f.version().map(Value::from));
    put("revision_id", f.revision_id().map(Value::from));
    put(
        "package_type",
        f.package_type().map(|p| Value::from(p.as_str())),
    );
    put(
        "architectures",
        Some(Value::from(
            f.architectures()
                .iter()
                .map(|a| a.as_str().to_owned())
                .collect::<Vec<_>>(),
        )),
    );
    put("state", f.state().map(|s| Value::from(s.as_str())));
    put("state_reason", f.state_reason().map(Value::from));
    put(
        "state_reason_code",
        f.state_reason_code().map(|s| Value::from(s.as_str())),
    );
    put(
        "last_update_status",
        f.last_update_status().map(|s| Value::from(s.as_str())),
    );
    put(
        "last_update_status_reason",
        f.last_update_status_reason().map(Value::from),
    );
    put(
        "environment",
        f.environment()
            .and_then(|e| e.variables())
            .map(|v| json!({"variables": v})),
    );
    put(
        "layers",
        Some(Value::from(
            f.layers()
                .iter()
                .map(|l| json!({"arn": l.arn(), "code_size": l.code_size()}))
                .collect::<Vec<_>>(),
        )),
    );
    put(
        "vpc_config",
        f.vpc_config().map(|v| {
            json!({"subnet_ids": v.subnet_ids(), "security_group_ids": v.security_group_ids(),
                   "vpc_id": v.vpc_id()})
        }),
    );
    put(
        "tracing_config",
        f.tracing_config()
            .and_then(|t| t.mode())
            .map(|m| json!({"mode": m.as_str()})),
    );
    put(
        "dead_letter_config",
        f.dead_letter_config()
            .and_then(|d| d.target_arn())
            .map(|a| json!({"target_arn": a})),
    );
    put("kms_key_arn", f.kms_key_arn().map(Value::from));
    m
}

/// The settings create and update share, as the SDK takes them.
fn sdk_environment(c: &Config) -> Option<Environment> {
    c.environment.as_ref().map(|e| {
        Environment::builder()
            .set_variables(Some(e.clone().into_iter().collect()))
            .build()
    })
}

fn sdk_vpc(c: &Config) -> Option<VpcConfig> {
    c.vpc.as_ref().map(|(s, g)| {
        VpcConfig::builder()
            .set_subnet_ids(Some(s.clone()))
            .set_security_group_ids(Some(g.clone()))
            .build()
    })
}

fn sdk_tracing(c: &Config) -> Option<TracingConfig> {
    c.tracing_mode
        .as_deref()
        .map(|m| TracingConfig::builder().mode(TracingMode::from(m)).build())
}

/// Retries `call` while Lambda says the role cannot be assumed yet.
async fn with_role_retry<F, Fut>(call: F) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>>,
{
    consistency::until_consistent(
        &[consistency::ROLE_NOT_ASSUMABLE_BY_LAMBDA],
        consistency::IAM_PROPAGATION,
        call,
    )
    .await
}

impl Api for SdkApi {
    async fn account(&self) -> Result<(String, String), Error> {
        craftlb_core::aws::caller_account(&self.config).await
    }

    async fn get(&self, name: &str) -> Result<Option<Current>, Error> {
        let out = match self
            .lambda
            .get_function()
            .function_name(name)
            .send()
            .await
            .map_err(sdk_error(
                "Lambda",
                "GetFunction",
                format!("read function '{name}'"),
            )) {
            Ok(o) => o,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(f) = out.configuration() else {
            return Ok(None);
        };
        let mut code = Map::new();
        if let Some(c) = out.code() {
            if let Some(r) = c.repository_type() {
                code.insert("repository_type".into(), Value::from(r));
            }
            if let Some(l) = c.location() {
                code.insert("location".into(), Value::from(l));
            }
        }
        Ok(Some(Current {
            arn: f.function_arn().unwrap_or_default().to_owned(),
            config: config_from(f),
            code_sha256: f.code_sha256().unwrap_or_default().to_owned(),
            architecture: f
                .architectures()
                .first()
                .map(|a| a.as_str().to_owned())
                .unwrap_or_else(|| "x86_64".into()),
            described: describe_config(f),
            code,
            tags: out
                .tags()
                .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            permissions: None,
        }))
    }

    async fn permissions(&self, name: &str) -> Result<Vec<Permission>, Error> {
        let out = match self
            .lambda
            .get_policy()
            .function_name(name)
            .send()
            .await
            .map_err(sdk_error(
                "Lambda",
                "GetPolicy",
                format!("read the policy of function '{name}'"),
            )) {
            Ok(o) => o,
            // No statement at all: no policy.
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let doc = policy::parse(out.policy().unwrap_or("{}")).map_err(|e| {
            Error::new(
                ErrorKind::Rejected,
                format!("read the policy of function '{name}'"),
                e,
            )
        })?;
        Ok(permissions_from_policy(&doc))
    }

    async fn create(&self, t: &Task) -> Result<(), Error> {
        let c = &t.config;
        let code = t.code.as_ref().map(|c| c.zip.clone()).unwrap_or_default();
        with_role_retry(|| async {
            self.lambda
                .create_function()
                .function_name(&t.name)
                .set_runtime(c.runtime.as_deref().map(Runtime::from))
                .set_role(c.role.clone())
                .set_handler(c.handler.clone())
                .code(
                    FunctionCode::builder()
                        .zip_file(Blob::new(code.clone()))
                        .build(),
                )
                .set_description(c.description.clone())
                .set_timeout(c.timeout)
                .set_memory_size(c.memory_size)
                .set_environment(sdk_environment(c))
                .set_layers(c.layers.clone())
                .set_vpc_config(sdk_vpc(c))
                .set_tracing_config(sdk_tracing(c))
                .set_dead_letter_config(
                    c.dead_letter_arn
                        .as_ref()
                        .filter(|a| !a.is_empty())
                        .map(|a| DeadLetterConfig::builder().target_arn(a).build()),
                )
                .set_kms_key_arn(c.kms_key_arn.clone().filter(|k| !k.is_empty()))
                .set_architectures(
                    t.architecture
                        .as_deref()
                        .map(|a| vec![Architecture::from(a)]),
                )
                .set_tags(t.tags.as_ref().map(|t| t.clone().into_iter().collect()))
                .send()
                .await
                .map_err(sdk_error(
                    "Lambda",
                    "CreateFunction",
                    format!("create function '{}'", t.name),
                ))
                .map(|_| ())
        })
        .await
    }

    async fn configure(&self, name: &str, c: &Config) -> Result<(), Error> {
        with_role_retry(|| async {
            self.lambda
                .update_function_configuration()
                .function_name(name)
                .set_runtime(c.runtime.as_deref().map(Runtime::from))
                .set_role(c.role.clone())
                .set_handler(c.handler.clone())
                .set_description(c.description.clone())
                .set_timeout(c.timeout)
                .set_memory_size(c.memory_size)
                .set_environment(sdk_environment(c))
                .set_layers(c.layers.clone())
                .set_vpc_config(sdk_vpc(c))
                .set_tracing_config(sdk_tracing(c))
                // An empty target ARN is how Lambda removes the dead-letter queue.
                .set_dead_letter_config(
                    c.dead_letter_arn
                        .as_ref()
                        .map(|a| DeadLetterConfig::builder().target_arn(a).build()),
                )
                .set_kms_key_arn(c.kms_key_arn.clone())
                .send()
                .await
                .map_err(sdk_error(
                    "Lambda",
                    "UpdateFunctionConfiguration",
                    format!("update the configuration of function '{name}'"),
                ))
                .map(|_| ())
        })
        .await
    }

    async fn upload(
        &self,
        name: &str,
        code: &Code,
        architecture: Option<&str>,
    ) -> Result<(), Error> {
        self.lambda
            .update_function_code()
            .function_name(name)
            .zip_file(Blob::new(code.zip.clone()))
            .set_architectures(architecture.map(|a| vec![Architecture::from(a)]))
            .send()
            .await
            .map_err(sdk_error(
                "Lambda",
                "UpdateFunctionCode",
                format!("upload the code of function '{name}'"),
            ))?;
        Ok(())
    }

    async fn add_permission(&self, name: &str, p: &Permission) -> Result<(), Error> {
        self.lambda
            .add_permission()
            .function_name(name)
            .statement_id(&p.statement_id)
            .action(&p.action)
            .principal(&p.principal)
            .set_source_arn(p.source_arn.clone())
            .set_source_account(p.source_account.clone())
            .set_principal_org_id(p.principal_org_id.clone())
            .send()
            .await
            .map_err(sdk_error(
                "Lambda",
                "AddPermission",
                format!("add permission '{}' to function '{name}'", p.statement_id),
            ))?;
        Ok(())
    }

    async fn remove_permission(&self, name: &str, sid: &str) -> Result<(), Error> {
        self.lambda
            .remove_permission()
            .function_name(name)
            .statement_id(sid)
            .send()
            .await
            .map_err(sdk_error(
                "Lambda",
                "RemovePermission",
                format!("remove permission '{sid}' from function '{name}'"),
            ))?;
        Ok(())
    }

    async fn tag(&self, arn: &str, plan: &TagPlan) -> Result<(), Error> {
        if !plan.set.is_empty() {
            self.lambda
                .tag_resource()
                .resource(arn)
                .set_tags(Some(plan.set.clone().into_iter().collect()))
                .send()
                .await
                .map_err(sdk_error("Lambda", "TagResource", format!("tag '{arn}'")))?;
        }
        if !plan.unset.is_empty() {
            self.lambda
                .untag_resource()
                .resource(arn)
                .set_tag_keys(Some(plan.unset.clone()))
                .send()
                .await
                .map_err(sdk_error(
                    "Lambda",
                    "UntagResource",
                    format!("untag '{arn}'"),
                ))?;
        }
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<(), Error> {
        self.lambda
            .delete_function()
            .function_name(name)
            .send()
            .await
            .map_err(sdk_error(
                "Lambda",
                "DeleteFunction",
                format!("delete function '{name}'"),
            ))?;
        Ok(())
    }
}

/// Why a function is not ready, or `None` when it is: Active or Inactive,
/// and no update in progress. A Failed state or update is an error.
fn not_ready(d: &Map<String, Value>, name: &str) -> Result<Option<String>, Failure> {
    let text = |k: &str| {
        d.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (state, update) = (text("state"), text("last_update_status"));
    if state == "Failed" {
        return Err(Failure::msg(format!(
            "function '{name}' is in state Failed: {} ({})",
            text("state_reason"),
            text("state_reason_code")
        )));
    }
    if update == "Failed" {
        return Err(Failure::msg(format!(
            "the last update of function '{name}' failed: {}",
            text("last_update_status_reason")
        )));
    }
    Ok(match (state.as_str(), update.as_str()) {
        ("Pending", _) => Some(format!("state Pending: {}", text("state_reason"))),
        (_, "InProgress") => Some(format!(
            "update InProgress: {}",
            text("last_update_status_reason")
        )),
        _ => None,
    })
}

/// Waits until the function is ready (see [`not_ready`]); returns it.
async fn wait_ready<A: Api>(api: &A, t: &Task) -> Result<Option<Current>, Failure> {
    let Some(limit) = t.wait else {
        return Ok(api.get(&t.name).await?);
    };
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(250);
    loop {
        let Some(c) = api.get(&t.name).await? else {
            return Ok(None);
        };
        match not_ready(&c.described, &t.name)? {
            None => return Ok(Some(c)),
            Some(why) if Instant::now() >= deadline => {
                return Err(Failure::msg(format!(
                    "function '{}' not ready after {} s ({why})",
                    t.name,
                    limit.as_secs()
                )));
            }
            Some(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

fn describe(c: &Current) -> Value {
    let mut out = json!({
        "configuration": c.described,
        "code": c.code,
        "tags": c.tags,
    });
    if let Some(p) = &c.permissions {
        out["permissions"] = Value::from(
            p.iter()
                .map(|p| {
                    let mut v = json!({"statement_id": p.statement_id, "principal": p.principal,
                                       "action": p.action});
                    for (k, x) in [
                        ("source_arn", &p.source_arn),
                        ("source_account", &p.source_account),
                        ("principal_org_id", &p.principal_org_id),
                    ] {
                        if let Some(x) = x {
                            v[k] = Value::from(x.clone());
                        }
                    }
                    v
                })
                .collect::<Vec<_>>(),
        );
    }
    out
}

fn predict(
    t: &Task,
    current: Option<&Current>,
    steps: &[Step],
    account: Option<&(String, String)>,
) -> Current {
    let mut c = current.cloned().unwrap_or_else(|| Current {
        permissions: t.permissions.as_ref().map(|_| Vec::new()),
        ..Current::default()
    });
    fn set(m: &mut Map<String, Value>, k: &str, v: Option<Value>) {
        if let Some(v) = v {
            m.insert(k.to_owned(), v);
        }
    }
    for s in steps {
        match s {
            Step::Create | Step::Configure(_) => {
                let cfg = match s {
                    Step::Configure(ch) => ch.clone(),
                    _ => t.config.clone(),
                };
                set(
                    &mut c.described,
                    "function_name",
                    Some(Value::from(t.name.clone())),
                );
                set(
                    &mut c.described,
                    "runtime",
                    cfg.runtime.clone().map(Value::from),
                );
                set(&mut c.described, "role", cfg.role.clone().map(Value::from));
                set(
                    &mut c.described,
                    "handler",
                    cfg.handler.clone().map(Value::from),
                );
                set(
                    &mut c.described,
                    "description",
                    cfg.description.clone().map(Value::from),
                );
                set(&mut c.described, "timeout", cfg.timeout.map(Value::from));
                set(
                    &mut c.described,
                    "memory_size",
                    cfg.memory_size.map(Value::from),
                );
                set(
                    &mut c.described,
                    "environment",
                    cfg.environment.as_ref().map(|e| json!({"variables": e})),
                );
                set(
                    &mut c.described,
                    "layers",
                    cfg.layers.as_ref().map(|l| {
                        Value::from(l.iter().map(|a| json!({"arn": a})).collect::<Vec<_>>())
                    }),
                );
                set(
                    &mut c.described,
                    "tracing_config",
                    cfg.tracing_mode.as_ref().map(|m| json!({"mode": m})),
                );
            }
            Step::UploadCode => {}
            Step::RemovePermission(sid) => {
                if let Some(p) = c.permissions.as_mut() {
                    p.retain(|x| x.statement_id != *sid);
                }
            }
            Step::AddPermission(p) => c.permissions.get_or_insert_with(Vec::new).push(p.clone()),
            Step::Tags(p) => c.tags = p.apply(&c.tags),
        }
        if matches!(s, Step::Create | Step::UploadCode) {
            if let Some(code) = &t.code {
                c.described
                    .insert("code_sha256".into(), Value::from(code.sha256.clone()));
            }
            if let Some(a) = &t.architecture {
                c.described.insert("architectures".into(), json!([a]));
            }
        }
    }
    if current.is_none() {
        c.tags = t.tags.clone().unwrap_or_default();
        if let Some((partition, id)) = account {
            let arn = format!(
                "arn:{partition}:lambda:{}:{id}:function:{}",
                t.region, t.name
            );
            c.arn = arn.clone();
            c.described
                .insert("function_arn".into(), Value::from(arn.clone()));
        }
    }
    c
}

/// The task with the role resolved to an ARN (a name is looked up once).
pub struct Resolved(pub Task);

pub struct Function<A>(PhantomData<A>);

impl<A: Api> Resource for Function<A> {
    type Task = Resolved;
    type Api = A;
    type Current = Current;
    type Changes = Vec<Step>;
    const KEY: &'static str = "";

    fn present(r: &Resolved) -> bool {
        r.0.present
    }

    async fn read(api: &A, r: &Resolved) -> Result<Option<Current>, Failure> {
        let Some(mut c) = api.get(&r.0.name).await? else {
            return Ok(None);
        };
        if r.0.present && r.0.permissions.is_some() {
            c.permissions = Some(api.permissions(&r.0.name).await?);
        }
        Ok(Some(c))
    }

    fn plan(r: &Resolved, current: Option<&Current>) -> Result<Vec<Step>, Failure> {
        plan(&r.0, current)
    }

    async fn apply(
        api: &A,
        r: &Resolved,
        current: Option<&Current>,
        steps: &Vec<Step>,
    ) -> Result<Current, Failure> {
        let t = &r.0;
        // Another deployment may be mid-update: Lambda would refuse ours.
        if current.is_some()
            && steps
                .iter()
                .any(|s| matches!(s, Step::Configure(_) | Step::UploadCode))
        {
            wait_ready(api, t).await?;
        }
        let mut arn = current.map(|c| c.arn.clone()).unwrap_or_default();
        for s in steps {
            match s {
                Step::Create => {
                    api.create(t).await?;
                    let c = wait_ready(api, t).await?;
                    arn = c.map(|c| c.arn).unwrap_or_default();
                }
                Step::Configure(ch) => {
                    api.configure(&t.name, ch).await?;
                    wait_ready(api, t).await?;
                }
                Step::UploadCode => {
                    if let Some(code) = &t.code {
                        api.upload(&t.name, code, t.architecture.as_deref()).await?;
                        wait_ready(api, t).await?;
                    }
                }
                Step::RemovePermission(sid) => api.remove_permission(&t.name, sid).await?,
                Step::AddPermission(p) => api.add_permission(&t.name, p).await?,
                Step::Tags(plan) => api.tag(&arn, plan).await?,
            }
        }
        <Self as Resource>::read(api, r).await?.ok_or_else(|| {
            Failure::msg(format!(
                "function '{}' was written but cannot be read back",
                t.name
            ))
        })
    }

    async fn delete(api: &A, r: &Resolved, _: &Current) -> Result<bool, Failure> {
        api.delete(&r.0.name).await?;
        Ok(true)
    }

    fn describe(c: &Current) -> Value {
        describe(c)
    }

    fn preview(r: &Resolved, current: Option<&Current>, steps: &Vec<Step>) -> Value {
        describe(&predict(&r.0, current, steps, None))
    }

    async fn account(api: &A) -> Result<Option<(String, String)>, Failure> {
        Ok(Some(api.account().await?))
    }

    fn preview_create(
        r: &Resolved,
        steps: &Vec<Step>,
        account: Option<&(String, String)>,
    ) -> Value {
        describe(&predict(&r.0, None, steps, account))
    }
}

pub async fn run(ctx: Ctx) -> Result<Response, Failure> {
    let mut t = task(&ctx.params)?;
    let a: Args = ctx.params.typed()?;
    let config = craftlb_core::aws::sdk_config(&a.connection.aws_params(), None).await?;
    if let Some(role) = t.config.role.as_mut().filter(|r| !r.starts_with("arn:")) {
        // A role given by name needs the account: one GetCallerIdentity.
        let (partition, account) = craftlb_core::aws::caller_account(&config).await?;
        *role = format!("arn:{partition}:iam::{account}:role/{role}");
    }
    t.region = config
        .region()
        .map(|r| r.as_ref().to_owned())
        .unwrap_or_default();
    let api = SdkApi {
        lambda: Client::new(&config),
        config,
    };
    drive::<Function<SdkApi>>(&api, &Resolved(t), ctx.check_mode).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_of(v: Value) -> Result<Task, String> {
        crate::protocol::task_of(&SPEC, v, task)
    }

    #[test]
    fn the_bootstrap_zip_is_deterministic() {
        let a = bootstrap_zip(b"\x7fELF binary").unwrap_or_default();
        let b = bootstrap_zip(b"\x7fELF binary").unwrap_or_default();
        assert!(!a.is_empty());
        assert_eq!(code_sha256(&a), code_sha256(&b));
        assert_ne!(
            code_sha256(&a),
            code_sha256(&bootstrap_zip(b"\x7fELF other").unwrap_or_default())
        );
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(a)).unwrap_or_else(|e| panic!("{e}"));
        let f = z.by_index(0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            f.name().ok().map(|n| n.into_owned()).as_deref(),
            Some("bootstrap")
        );
        assert_eq!(f.unix_mode().map(|m| m & 0o777), Some(0o755));
    }

    fn current() -> Current {
        Current {
            arn: "arn:aws:lambda:us-east-1:123456789012:function:f".into(),
            config: Config {
                runtime: Some("provided.al2023".into()),
                role: Some("arn:aws:iam::123456789012:role/r".into()),
                handler: Some("bootstrap".into()),
                description: Some("d".into()),
                timeout: Some(30),
                memory_size: Some(128),
                environment: Some([("A".to_owned(), "1".to_owned())].into()),
                layers: Some(vec![]),
                ..Config::default()
            },
            code_sha256: code_sha256(&bootstrap_zip(b"bin").unwrap_or_default()),
            architecture: "x86_64".into(),
            permissions: Some(vec![Permission {
                statement_id: "sns".into(),
                principal: "sns.amazonaws.com".into(),
                action: "lambda:InvokeFunction".into(),
                source_arn: Some("arn:aws:sns:us-east-1:123456789012:t".into()),
                source_account: None,
                principal_org_id: None,
            }]),
            ..Current::default()
        }
    }

    #[test]
    fn nothing_changes_when_the_same_and_omitted_fields_are_left_alone() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let bin = dir.path().join("bootstrap");
        std::fs::write(&bin, b"bin").unwrap_or_else(|e| panic!("{e}"));
        let t = task_of(
            json!({"name": "f", "runtime": "provided.al2023", "handler": "bootstrap",
            "role": "arn:aws:iam::123456789012:role/r", "bootstrap_path": bin, "timeout": 30,
            "environment_variables": {"A": 1}, "architecture": "x86_64",
            "permissions": [{"sid": "sns", "principal": "sns.amazonaws.com",
                             "source_arn": "arn:aws:sns:us-east-1:123456789012:t"}]}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan(&t, Some(&current())), Ok(vec![]));
        let t = task_of(json!({"name": "f"})).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan(&t, Some(&current())), Ok(vec![]));
    }

    #[test]
    fn empty_values_clear_and_code_or_architecture_upload() {
        let t = task_of(
            json!({"name": "f", "description": "", "environment_variables": {},
                               "memory_size": 256}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let Ok(steps) = plan(&t, Some(&current())) else {
            panic!("no plan")
        };
        assert_eq!(
            steps,
            vec![Step::Configure(Config {
                description: Some(String::new()),
                memory_size: Some(256),
                environment: Some(BTreeMap::new()),
                ..Config::default()
            })]
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let bin = dir.path().join("bootstrap");
        std::fs::write(&bin, b"bin").unwrap_or_else(|e| panic!("{e}"));
        let t = task_of(json!({"name": "f", "bootstrap_path": bin, "architecture": "arm64"}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan(&t, Some(&current())), Ok(vec![Step::UploadCode]));
        let t = task_of(json!({"name": "f", "architecture": "arm64"}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            plan(&t, Some(&current())).is_err(),
            "an architecture change needs the code"
        );
    }

    #[test]
    fn permissions_reconcile_by_id_and_principals_are_normalised() {
        let policy = json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "sns", "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
             "Action": "lambda:InvokeFunction", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f",
             "Condition": {"ArnLike": {"AWS:SourceArn": "arn:aws:sns:us-east-1:123456789012:t"}}},
            {"Sid": "acct", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::210987654321:root"},
             "Action": "lambda:InvokeFunction", "Resource": "*",
             "Condition": {"StringEquals": {"AWS:SourceAccount": "210987654321"}}}]});
        let mut c = current();
        c.permissions = Some(permissions_from_policy(&policy));
        let t = task_of(json!({"name": "f", "permissions": [
            {"sid": "sns", "principal": "sns.amazonaws.com", "source_arn": "arn:aws:sns:us-east-1:123456789012:t"},
            {"sid": "acct", "principal": "210987654321", "source_account": "210987654321"}]}))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan(&t, Some(&c)), Ok(vec![]), "{:?}", c.permissions);
        let t = task_of(json!({"name": "f", "purge_permissions": true, "permissions": [
            {"sid": "sns", "principal": "sns.amazonaws.com", "source_arn": "arn:aws:sns:us-east-1:123456789012:other"}]}))
        .unwrap_or_else(|e| panic!("{e}"));
        let Ok(steps) = plan(&t, Some(&c)) else {
            panic!("no plan")
        };
        assert_eq!(steps.len(), 3, "{steps:?}");
        assert_eq!(steps[0], Step::RemovePermission("sns".into()));
        assert!(
            matches!(&steps[1], Step::AddPermission(p) if p.source_arn.as_deref() == Some("arn:aws:sns:us-east-1:123456789012:other"))
        );
        assert_eq!(steps[2], Step::RemovePermission("acct".into()));
    }

    #[test]
    fn create_needs_its_settings_and_readiness_is_read_from_the_state() {
        let t = task_of(json!({"name": "f", "runtime": "provided.al2023"}))
            .unwrap_or_else(|e| panic!("{e}"));
        let e = plan(&t, None).err().map(|f| f.msg).unwrap_or_default();
        assert!(
            e.contains("role, handler, zip_file or bootstrap_path"),
            "{e}"
        );
        let d = |state: &str, update: &str| {
            let mut m = Map::new();
            m.insert("state".into(), Value::from(state));
            m.insert("last_update_status".into(), Value::from(update));
            m
        };
        assert_eq!(not_ready(&d("Active", "Successful"), "f").ok(), Some(None));
        assert_eq!(
            not_ready(&d("Inactive", "Successful"), "f").ok(),
            Some(None)
        );
        assert!(matches!(not_ready(&d("Pending", ""), "f"), Ok(Some(_))));
        assert!(matches!(
            not_ready(&d("Active", "InProgress"), "f"),
            Ok(Some(_))
        ));
        assert!(not_ready(&d("Failed", ""), "f").is_err());
        assert!(not_ready(&d("Active", "Failed"), "f").is_err());
        assert_eq!(
            principal_id("arn:aws:iam::123456789012:root"),
            "123456789012"
        );
    }
}
