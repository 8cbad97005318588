/*!
`route53_healthcheck`: one Route 53 health check, amazon.aws
`route53_health_check` compatible (same parameters, aliases and return keys).

Differences a user will notice: the check is found with a constant number of
calls (see [`craftlb_core::healthcheck`]), immutable settings that differ
(type, request_interval, measure_latency) are reported instead of silently
ignored, and every parameter is compared on update, not only four.
*/

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::time::{SystemTime, UNIX_EPOCH};

use craftlb_core::error::Error;
use craftlb_core::healthcheck::{
    self as hc, Config, HealthChecks, Identity, Plan, TagPlan, describe_config, plan, plan_tags,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::aws::{AWS, Connection};
use crate::driver::{Action, Changes, Resource, drive};
use crate::protocol::{
    Ctx, Default, Failure, Module, Param, Params, RequiredIf, Response, RunFuture, Spec, Type,
};

pub const NAME: &str = "route53_healthcheck";

pub static MODULE: Module = Module {
    name: NAME,
    spec: &SPEC,
    doc: include_str!("../docs/route53_healthcheck.yml"),
    run: |ctx| -> RunFuture { Box::pin(run(ctx)) },
};

pub static SPEC: Spec = Spec {
    params: &[
        Param::str("state")
            .choices(&["present", "absent"])
            .default(Default::Str("present"))
            .doc(&["Whether the health check should exist."]),
        Param::bool("disabled").doc(&[
            "Stop performing the check (Route 53 then treats the endpoint as healthy).",
        ]),
        Param::str("ip_address").doc(&[
            "IPv4 or IPv6 address of the endpoint. One of I(ip_address) and I(fqdn) is needed for \
             endpoint checks.",
        ]),
        Param::int("port").doc(&[
            "Port of the endpoint. Required for C(TCP).",
            "Defaults to 80 for the HTTP types and 443 for the HTTPS types.",
        ]),
        Param::str("type").choices(hc::TYPES).doc(&[
            "How Route 53 checks the endpoint.",
            "Required unless the check is given by I(health_check_id), or deleted by unique name.",
            "Cannot be changed once the check exists.",
        ]),
        Param::str("resource_path").doc(&[
            "Path requested by HTTP(S) checks; must start with C(/), at most 255 characters.",
        ]),
        Param::str("fqdn").doc(&[
            "Domain name of the endpoint; with I(ip_address) it is sent as the C(Host) header / SNI name.",
        ]),
        Param::str("string_match").doc(&[
            "String that must appear in the first 5,120 bytes of the body (C(*_STR_MATCH) types only, \
             at most 255 characters).",
        ]),
        // No default: 30 applies on create only (Config::with_create_defaults),
        // so a task that does not restate it never "changes" an existing 10.
        Param::int("request_interval").choices(&["10", "30"]).doc(&[
            "Seconds between checks. Cannot be changed once the check exists.",
            "Route 53 uses 30 when it is not given at creation; when it is not given for an existing \
             check, the check keeps its interval (a default never turns into a change).",
            "A check identified by its settings (no name, no id) is matched with 30 when this is not \
             given, as C(amazon.aws.route53_health_check) does.",
        ]),
        Param::int("failure_threshold")
            .choices(&["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"])
            .doc(&[
                "Consecutive results needed to change status. Route 53 uses 3 when not given at creation.",
            ]),
        Param::list("child_health_checks", Type::Str)
            .doc(&["Ids of the child checks of a C(CALCULATED) check."]),
        Param::int("health_threshold").doc(&[
            "Number of healthy children a C(CALCULATED) check needs; 1 when not given at creation.",
        ]),
        Param::bool("measure_latency")
            .doc(&["Keep latency graphs. Cannot be changed once the check exists."]),
        Param::bool("inverted").doc(&["Invert the status the check reports."]),
        Param::bool("enable_sni").doc(&["Send the I(fqdn) as SNI in HTTPS checks."]),
        Param::str("health_check_id").aliases(&["id"]).doc(&[
            "The id of an existing check: identifies it directly. Mutually exclusive with \
             I(health_check_name).",
            "With I(state=present) the check must exist; settings not given are left as they are.",
        ]),
        Param::str("health_check_name").aliases(&["name"]).doc(&[
            "Name of the check, kept in its C(Name) tag.",
            "Must be given together with I(use_unique_names); with I(use_unique_names=true) the name \
             identifies the check.",
        ]),
        Param::bool("use_unique_names").doc(&[
            "Identify the check by I(health_check_name).",
            "Without it (and without I(health_check_id)) the check is identified by type, ip_address, \
             fqdn, port and request_interval, as amazon.aws does.",
        ]),
        Param::dict("tags").aliases(&["resource_tags"]).doc(&[
            "Tags for the check. Not given, tags are left alone (the C(Name) tag of a named check is \
             still kept).",
        ]),
        Param::bool("purge_tags").default(Default::Bool(true)).doc(&[
            "Remove tags not given in I(tags). Ignored when I(tags) is not given.",
        ]),
    ],
    includes: &[&AWS],
    mutually_exclusive: &[&["health_check_id", "health_check_name"]],
    required_together: &[&["use_unique_names", "health_check_name"]],
    required_one_of: &[&[
        "ip_address",
        "fqdn",
        "health_check_id",
        "child_health_checks",
        "health_check_name",
    ]],
    required_if: &[
        RequiredIf {
            param: "type",
            value: "TCP",
            requires: &["port"],
            any: false,
        },
        RequiredIf {
            param: "type",
            value: "CALCULATED",
            requires: &["child_health_checks"],
            any: false,
        },
        RequiredIf {
            param: "type",
            value: "HTTP_STR_MATCH",
            requires: &["string_match"],
            any: false,
        },
        RequiredIf {
            param: "type",
            value: "HTTPS_STR_MATCH",
            requires: &["string_match"],
            any: false,
        },
    ],
    supports_check_mode: true,
};

/// The parameters, typed (after validation).
#[derive(Debug, Deserialize)]
struct Args {
    state: String,
    disabled: Option<bool>,
    ip_address: Option<String>,
    port: Option<i64>,
    #[serde(rename = "type")]
    kind: Option<String>,
    resource_path: Option<String>,
    fqdn: Option<String>,
    string_match: Option<String>,
    request_interval: Option<i64>,
    failure_threshold: Option<i64>,
    child_health_checks: Option<Vec<String>>,
    health_threshold: Option<i64>,
    measure_latency: Option<bool>,
    inverted: Option<bool>,
    enable_sni: Option<bool>,
    health_check_id: Option<String>,
    health_check_name: Option<String>,
    use_unique_names: Option<bool>,
    tags: Option<Map<String, Value>>,
    purge_tags: bool,
    #[serde(flatten)]
    connection: Connection,
}

/// The task, validated beyond what the spec can say.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub present: bool,
    pub identity: Identity,
    /// The name given (tagged as `Name`), or "" when none.
    pub name: String,
    pub desired: Config,
    /// `None`: tags are not managed (beyond `Name`).
    pub tags: Option<BTreeMap<String, String>>,
    pub purge_tags: bool,
}

/// Turns parameters into a [`Task`]; every rule here fails before any AWS
/// call is made.
pub fn task(p: &Params) -> Result<Task, Failure> {
    let a: Args = p.typed()?;
    let present = a.state != "absent";
    let kind = a.kind.clone();
    let id = a.health_check_id.clone();
    let name = a.health_check_name.clone().unwrap_or_default();
    let unique = a.use_unique_names.unwrap_or(false);

    if kind.is_none() && id.is_none() && (present || !unique) {
        return Err(Failure::msg(
            "parameter 'type' is required unless the health check is given by health_check_id",
        ));
    }
    let kind = kind.unwrap_or_default();
    if kind == "CALCULATED" {
        let bad: Vec<&str> = [
            ("ip_address", a.ip_address.is_some()),
            ("port", a.port.is_some()),
            ("fqdn", a.fqdn.is_some()),
            ("resource_path", a.resource_path.is_some()),
            ("string_match", a.string_match.is_some()),
        ]
        .into_iter()
        .filter(|(_, given)| *given)
        .map(|(k, _)| k)
        .collect();
        if !bad.is_empty() {
            return Err(Failure::msg(format!(
                "type CALCULATED does not take: {}",
                bad.join(", ")
            )));
        }
    }
    if let Some(s) = &a.string_match {
        if !kind.ends_with("_STR_MATCH") {
            return Err(Failure::msg(
                "parameter 'string_match' is only for the HTTP_STR_MATCH and HTTPS_STR_MATCH types",
            ));
        }
        if s.len() > 255 {
            return Err(Failure::msg(
                "parameter 'string_match' is limited to 255 characters",
            ));
        }
    }
    if let Some(path) = &a.resource_path {
        if kind == "TCP" {
            return Err(Failure::msg(
                "parameter 'resource_path' does not apply to type TCP",
            ));
        }
        if !path.starts_with('/') || path.len() > 255 {
            return Err(Failure::msg(format!(
                "parameter 'resource_path' must begin with '/' and be at most 255 characters, got '{path}'"
            )));
        }
    }
    let int = |k: &str, v: Option<i64>| -> Result<Option<i32>, Failure> {
        v.map(|v| {
            i32::try_from(v)
                .map_err(|_| Failure::msg(format!("parameter '{k}' is out of range: {v}")))
        })
        .transpose()
    };
    let port = int("port", a.port)?;
    if let Some(port) = port.filter(|p| !(1..=65535).contains(p)) {
        return Err(Failure::msg(format!(
            "parameter 'port' must be 1-65535, got {port}"
        )));
    }
    let calculated = kind == "CALCULATED";
    let desired = Config {
        kind: kind.clone(),
        ip_address: a.ip_address.clone(),
        fqdn: a.fqdn.clone(),
        port: port.or_else(|| hc::default_port(&kind)),
        resource_path: a.resource_path.clone(),
        search_string: a.string_match.clone(),
        // Route 53 ignores interval and threshold for calculated checks.
        request_interval: if calculated {
            None
        } else {
            int("request_interval", a.request_interval)?
        },
        failure_threshold: if calculated {
            None
        } else {
            int("failure_threshold", a.failure_threshold)?
        },
        measure_latency: a.measure_latency,
        inverted: a.inverted,
        disabled: a.disabled,
        enable_sni: a.enable_sni,
        health_threshold: if calculated {
            int("health_threshold", a.health_threshold)?.or(Some(1))
        } else {
            int("health_threshold", a.health_threshold)?
        },
        child_health_checks: a.child_health_checks.clone(),
    };
    let identity = match (&id, unique) {
        (Some(id), _) => Identity::Id(id.clone()),
        (None, true) => Identity::Name(name.clone()),
        (None, false) => Identity::Settings(desired.clone().with_create_defaults()),
    };
    let tags = a.tags.as_ref().map(|d| {
        d.iter()
            .map(|(k, v)| {
                let v = v
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string());
                (k.clone(), v)
            })
            .collect::<BTreeMap<_, _>>()
    });
    Ok(Task {
        present,
        identity,
        name,
        desired,
        tags,
        purge_tags: a.purge_tags,
    })
}

/// The desired tag set and whether to purge, given what the task says.
fn desired_tags(t: &Task) -> (BTreeMap<String, String>, bool) {
    let (mut tags, purge) = match &t.tags {
        Some(tags) => (tags.clone(), t.purge_tags),
        // Unmanaged tags are left alone; only the name is asserted.
        None => (BTreeMap::new(), false),
    };
    if !t.name.is_empty() {
        tags.insert("Name".into(), t.name.clone());
    }
    (tags, purge)
}

/// The Route 53 calls this module makes ([`HealthChecks`] in production).
#[allow(async_fn_in_trait)]
pub trait Api {
    async fn find(
        &self,
        identity: &Identity,
    ) -> Result<Option<(hc::Current, Option<BTreeMap<String, String>>)>, Error>;
    async fn tags(&self, id: &str) -> Result<BTreeMap<String, String>, Error>;
    async fn create(&self, name: &str, config: &Config, salt: u64) -> Result<hc::Current, Error>;
    async fn update(&self, current: &hc::Current, changes: &Config) -> Result<hc::Current, Error>;
    async fn delete(&self, id: &str) -> Result<bool, Error>;
    async fn change_tags(&self, id: &str, plan: &TagPlan) -> Result<(), Error>;
}

impl Api for HealthChecks {
    async fn find(
        &self,
        identity: &Identity,
    ) -> Result<Option<(hc::Current, Option<BTreeMap<String, String>>)>, Error> {
        HealthChecks::find(self, identity).await
    }
    async fn tags(&self, id: &str) -> Result<BTreeMap<String, String>, Error> {
        HealthChecks::tags(self, id).await
    }
    async fn create(&self, name: &str, config: &Config, salt: u64) -> Result<hc::Current, Error> {
        HealthChecks::create(self, name, config, salt).await
    }
    async fn update(&self, current: &hc::Current, changes: &Config) -> Result<hc::Current, Error> {
        HealthChecks::update(self, current, changes).await
    }
    async fn delete(&self, id: &str) -> Result<bool, Error> {
        HealthChecks::delete(self, id).await
    }
    async fn change_tags(&self, id: &str, plan: &TagPlan) -> Result<(), Error> {
        HealthChecks::change_tags(self, id, plan).await
    }
}

/// A health check as read: Route 53's description and its tags.
#[derive(Debug, Clone, PartialEq)]
pub struct Current {
    pub check: hc::Current,
    pub tags: BTreeMap<String, String>,
}

/// What to change: the check itself (create or update) and its tags.
#[derive(Debug, Clone, PartialEq)]
pub struct HcChanges {
    pub config: Plan,
    pub tags: TagPlan,
}

impl Changes for HcChanges {
    fn is_empty(&self) -> bool {
        self.config == Plan::Noop && self.tags.is_empty()
    }
}

fn describe(c: &hc::Current, tags: &BTreeMap<String, String>) -> Value {
    json!({
        "id": c.id,
        "caller_reference": c.caller_reference,
        "health_check_version": c.version,
        "health_check_config": describe_config(&c.config),
        "tags": tags,
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The module on the driver, over any [`Api`].
pub struct HealthCheck<A>(PhantomData<A>);

impl<A: Api> Resource for HealthCheck<A> {
    type Task = Task;
    type Api = A;
    type Current = Current;
    type Changes = HcChanges;
    const KEY: &'static str = "health_check";

    fn present(t: &Task) -> bool {
        t.present
    }

    async fn read(api: &A, t: &Task) -> Result<Option<Current>, Failure> {
        Ok(match api.find(&t.identity).await? {
            Some((check, Some(tags))) => Some(Current { check, tags }),
            Some((check, None)) if t.present => {
                let tags = api.tags(&check.id).await?;
                Some(Current { check, tags })
            }
            // Deleting: the tags are not needed.
            Some((check, None)) => Some(Current {
                check,
                tags: BTreeMap::new(),
            }),
            None => None,
        })
    }

    fn plan(t: &Task, current: Option<&Current>) -> Result<HcChanges, Failure> {
        if let (Identity::Id(id), None) = (&t.identity, current) {
            return Err(Failure::msg(format!("health check '{id}' does not exist")));
        }
        let mut desired = t.desired.clone();
        // By id, the type need not be repeated; never "change" it to empty.
        if let (Identity::Id(_), true, Some(c)) = (&t.identity, desired.kind.is_empty(), current) {
            desired.kind = c.check.config.kind.clone();
        }
        let (want_tags, purge) = desired_tags(t);
        match (plan(&desired, current.map(|c| &c.check)), current) {
            (Plan::Immutable(fields), Some(c)) => Err(Failure::msg(format!(
                "health check '{}' cannot be changed in place: Route 53 does not allow updating {}; \
                 delete it (state: absent) and create it again",
                c.check.id,
                fields.join(", ")
            ))
            .with("health_check", describe(&c.check, &c.tags))),
            (config @ Plan::Create(_), None) => Ok(HcChanges {
                config,
                tags: plan_tags(&BTreeMap::new(), &want_tags, false),
            }),
            (config, Some(c)) => Ok(HcChanges {
                config,
                tags: plan_tags(&c.tags, &want_tags, purge),
            }),
            (_, None) => Err(Failure::msg(
                "internal error: a plan to change a health check that does not exist",
            )),
        }
    }

    async fn apply(
        api: &A,
        t: &Task,
        current: Option<&Current>,
        ch: &HcChanges,
    ) -> Result<Current, Failure> {
        let (check, tags) = match (&ch.config, current) {
            (Plan::Create(config), _) => (
                api.create(&t.name, config, unix_now()).await?,
                BTreeMap::new(),
            ),
            (Plan::Update(changes), Some(c)) => {
                (api.update(&c.check, changes).await?, c.tags.clone())
            }
            (_, Some(c)) => (c.check.clone(), c.tags.clone()),
            (_, None) => {
                return Err(Failure::msg(
                    "internal error: nothing to apply to a missing health check",
                ));
            }
        };
        if !ch.tags.is_empty() {
            api.change_tags(&check.id, &ch.tags).await?;
        }
        // Route 53 answers create and update with the check as it now is.
        Ok(Current {
            tags: ch.tags.apply(&tags),
            check,
        })
    }

    async fn delete(api: &A, _: &Task, c: &Current) -> Result<bool, Failure> {
        Ok(api.delete(&c.check.id).await?)
    }

    fn describe(c: &Current) -> Value {
        describe(&c.check, &c.tags)
    }

    fn preview(t: &Task, current: Option<&Current>, ch: &HcChanges) -> Value {
        let check = match (&ch.config, current) {
            (Plan::Create(config), _) => hc::Current {
                id: String::new(),
                caller_reference: hc::caller_reference(&t.name, config, None),
                version: 1,
                config: config.clone(),
            },
            (Plan::Update(changes), Some(c)) => hc::Current {
                config: hc::merged(c.check.config.clone(), changes),
                ..c.check.clone()
            },
            (_, Some(c)) => c.check.clone(),
            (_, None) => return json!({}),
        };
        let tags = current.map(|c| c.tags.clone()).unwrap_or_default();
        describe(&check, &ch.tags.apply(&tags))
    }

    fn result(described: Value, action: Option<Action>) -> Value {
        let mut v = described;
        if let (Some(a), Some(o)) = (action, v.as_object_mut()) {
            o.insert("action".into(), Value::from(a.as_str()));
        }
        v
    }
}

pub async fn run(ctx: Ctx) -> Result<Response, Failure> {
    let t = task(&ctx.params)?;
    let a: Args = ctx.params.typed()?;
    let config =
        craftlb_core::aws::sdk_config(&a.connection.aws_params(), Some("us-east-1")).await?;
    let api = HealthChecks::new(aws_sdk_route53::Client::new(&config));
    drive::<HealthCheck<HealthChecks>>(&api, &t, ctx.check_mode).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_of(v: Value) -> Result<Task, String> {
        crate::protocol::task_of(&SPEC, v, task)
    }

    #[test]
    fn spec_is_consistent() {
        let mut names: Vec<&str> = SPEC.params.iter().map(|p| p.name).collect();
        names.extend(SPEC.params.iter().flat_map(|p| p.aliases.iter().copied()));
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(n, names.len(), "duplicate parameter or alias");
    }

    #[test]
    fn tcp_task_by_settings() {
        let t = task_of(json!({"type": "TCP", "ip_address": "192.0.2.1", "port": "443"}));
        let t = t.unwrap_or_else(|e| panic!("{e}"));
        assert!(t.present);
        assert_eq!(t.desired.port, Some(443));
        assert_eq!(
            t.desired.request_interval, None,
            "defaults apply on create only"
        );
        assert!(matches!(t.identity, Identity::Settings(ref c)
            if c.failure_threshold == Some(3) && c.request_interval == Some(30)));
    }

    #[test]
    fn https_defaults_port_and_named_identity() {
        let t = task_of(
            json!({"type": "HTTPS", "fqdn": "example.com", "name": "web",
                               "use_unique_names": true, "resource_path": "/health"}),
        );
        let t = t.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.desired.port, Some(443));
        assert_eq!(t.identity, Identity::Name("web".into()));
        let (tags, purge) = desired_tags(&t);
        assert_eq!(tags.get("Name").map(String::as_str), Some("web"));
        assert!(!purge, "tags not given: never purge");
    }

    #[test]
    fn rules_beyond_the_spec() {
        let e = |v| task_of(v).err().unwrap_or_default();
        assert!(e(json!({"ip_address": "192.0.2.1"})).contains("'type' is required"));
        assert!(e(json!({"type": "TCP", "ip_address": "192.0.2.1"})).contains("port"));
        assert!(
            e(json!({"type": "HTTP", "ip_address": "192.0.2.1", "string_match": "x"}))
                .contains("string_match")
        );
        assert!(
            e(json!({"type": "HTTP", "ip_address": "192.0.2.1", "resource_path": "health"}))
                .contains("'/'")
        );
        assert!(
            e(json!({"type": "CALCULATED", "child_health_checks": ["a"], "port": 80}))
                .contains("port")
        );
        assert!(
            e(json!({"type": "TCP", "ip_address": "192.0.2.1", "port": 70000})).contains("1-65535")
        );
        assert!(
            e(json!({"type": "TCP", "ip_address": "192.0.2.1", "port": 1, "request_interval": 15}))
                .contains("request_interval must be one of: 10, 30")
        );
        assert!(
            e(json!({"health_check_id": "x", "health_check_name": "y"}))
                .contains("mutually exclusive")
        );
        assert!(e(json!({"type": "TCP", "port": 1})).contains("one of the following is required"));
    }

    #[test]
    fn by_id_needs_no_type_and_absent_by_name_needs_no_type() {
        let t = task_of(json!({"id": "abc", "state": "absent"})).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.identity, Identity::Id("abc".into()));
        let t = task_of(json!({"name": "web", "use_unique_names": true, "state": "absent"}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.identity, Identity::Name("web".into()));
    }

    #[test]
    fn calculated_defaults_health_threshold() {
        let t = task_of(json!({"type": "CALCULATED", "child_health_checks": "a,b"}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.desired.health_threshold, Some(1));
        assert_eq!(t.desired.request_interval, None);
        assert_eq!(
            t.desired.child_health_checks,
            Some(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn tags_are_managed_only_when_given() {
        let t = task_of(json!({"type": "TCP", "ip_address": "192.0.2.1", "port": 1,
                               "tags": {"env": "prod", "n": 3}, "purge_tags": false}))
        .unwrap_or_else(|e| panic!("{e}"));
        let (tags, purge) = desired_tags(&t);
        assert_eq!(tags.get("n").map(String::as_str), Some("3"));
        assert!(!purge);
    }
}
