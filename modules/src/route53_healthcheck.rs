/*!
`route53_healthcheck`: one Route 53 health check, amazon.aws
`route53_health_check` compatible (same parameters, aliases and return keys).

Differences a user will notice: the check is found with a constant number of
calls (see [`craftlb_core::healthcheck`]), immutable settings that differ
(type, request_interval, measure_latency) are reported instead of silently
ignored, and every parameter is compared on update, not only four.
*/

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use craftlb_core::healthcheck::{
    self as hc, Config, Current, HealthChecks, Identity, Plan, TagPlan, describe_config, plan,
    plan_tags,
};
use serde_json::{Map, Value, json};

use crate::aws::{AWS_REQUIRED_TOGETHER, aws_params};
use crate::aws_module_params;
use crate::protocol::{Ctx, Default, Failure, Param, Params, RequiredIf, Response, Spec, Type};

pub const NAME: &str = "route53_healthcheck";

pub static SPEC: Spec = Spec {
    params: aws_module_params![
        Param::str("state")
            .choices(&["present", "absent"])
            .default(Default::Str("present")),
        Param::bool("disabled"),
        Param::str("ip_address"),
        Param::int("port"),
        Param::str("type").choices(hc::TYPES),
        Param::str("resource_path"),
        Param::str("fqdn"),
        Param::str("string_match"),
        // No default here: 30 applies on create only (Config::with_create_defaults),
        // so a task that does not restate it never "changes" an existing 10.
        Param::int("request_interval").choices(&["10", "30"]),
        Param::int("failure_threshold")
            .choices(&["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"]),
        Param::list("child_health_checks", Type::Str),
        Param::int("health_threshold"),
        Param::bool("measure_latency"),
        Param::bool("inverted"),
        Param::bool("enable_sni"),
        Param::str("health_check_id").aliases(&["id"]),
        Param::str("health_check_name").aliases(&["name"]),
        Param::bool("use_unique_names"),
        Param::dict("tags").aliases(&["resource_tags"]),
        Param::bool("purge_tags").default(Default::Bool(true)),
    ],
    mutually_exclusive: &[&["health_check_id", "health_check_name"]],
    required_together: &[
        &["use_unique_names", "health_check_name"],
        AWS_REQUIRED_TOGETHER,
    ],
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
    let present = p.str("state") != Some("absent");
    let kind = p.str("type").map(str::to_owned);
    let id = p.str("health_check_id").map(str::to_owned);
    let name = p.str("health_check_name").unwrap_or_default().to_owned();
    let unique = p.bool("use_unique_names").unwrap_or(false);

    if kind.is_none() && id.is_none() && (present || !unique) {
        return Err(Failure::msg(
            "parameter 'type' is required unless the health check is given by health_check_id",
        ));
    }
    let kind = kind.unwrap_or_default();
    if kind == "CALCULATED" {
        let bad: Vec<&str> = [
            "ip_address",
            "port",
            "fqdn",
            "resource_path",
            "string_match",
        ]
        .into_iter()
        .filter(|k| p.is_set(k))
        .collect();
        if !bad.is_empty() {
            return Err(Failure::msg(format!(
                "type CALCULATED does not take: {}",
                bad.join(", ")
            )));
        }
    }
    if let Some(s) = p.str("string_match") {
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
    if let Some(path) = p.str("resource_path") {
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
    let int = |k: &str| -> Result<Option<i32>, Failure> {
        p.int(k)
            .map(|v| {
                i32::try_from(v)
                    .map_err(|_| Failure::msg(format!("parameter '{k}' is out of range: {v}")))
            })
            .transpose()
    };
    let port = int("port")?;
    if let Some(port) = port.filter(|p| !(1..=65535).contains(p)) {
        return Err(Failure::msg(format!(
            "parameter 'port' must be 1-65535, got {port}"
        )));
    }
    let calculated = kind == "CALCULATED";
    let desired = Config {
        kind: kind.clone(),
        ip_address: p.str("ip_address").map(str::to_owned),
        fqdn: p.str("fqdn").map(str::to_owned),
        port: port.or_else(|| hc::default_port(&kind)),
        resource_path: p.str("resource_path").map(str::to_owned),
        search_string: p.str("string_match").map(str::to_owned),
        // Route 53 ignores interval and threshold for calculated checks.
        request_interval: if calculated {
            None
        } else {
            int("request_interval")?
        },
        failure_threshold: if calculated {
            None
        } else {
            int("failure_threshold")?
        },
        measure_latency: p.bool("measure_latency"),
        inverted: p.bool("inverted"),
        disabled: p.bool("disabled"),
        enable_sni: p.bool("enable_sni"),
        health_threshold: if calculated {
            int("health_threshold")?.or(Some(1))
        } else {
            int("health_threshold")?
        },
        child_health_checks: p.str_list("child_health_checks"),
    };
    let identity = match (&id, unique) {
        (Some(id), _) => Identity::Id(id.clone()),
        (None, true) => Identity::Name(name.clone()),
        (None, false) => Identity::Settings(desired.clone().with_create_defaults()),
    };
    let tags = p.dict("tags").map(|d| {
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
        purge_tags: p.bool("purge_tags").unwrap_or(true),
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

fn describe(c: &Current, tags: &BTreeMap<String, String>) -> Value {
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

pub async fn run(ctx: Ctx) -> Result<Response, Failure> {
    let t = task(&ctx.params)?;
    let config = craftlb_core::aws::sdk_config(&aws_params(&ctx.params), Some("us-east-1")).await?;
    let api = HealthChecks::new(aws_sdk_route53::Client::new(&config));

    let found = api.find(&t.identity).await?;
    if !t.present {
        return absent(&ctx, &api, found.map(|(c, _)| c)).await;
    }
    if let (Identity::Id(id), None) = (&t.identity, &found) {
        return Err(Failure::msg(format!("health check '{id}' does not exist")));
    }
    let current = match found {
        Some((c, Some(tags))) => Some((c, tags)),
        Some((c, None)) => {
            let tags = api.tags(&c.id).await?;
            Some((c, tags))
        }
        None => None,
    };

    let mut desired = t.desired.clone();
    if let Identity::Id(_) = t.identity {
        // By id, the type need not be repeated; never "change" it to empty.
        if let (true, Some((c, _))) = (desired.kind.is_empty(), &current) {
            desired.kind = c.config.kind.clone();
        }
    }
    let step = plan(&desired, current.as_ref().map(|(c, _)| c));
    let (want_tags, purge) = desired_tags(&t);
    let before = current
        .as_ref()
        .map(|(c, tags)| describe(c, tags))
        .unwrap_or_else(|| json!({}));

    let (result, tags, action, tag_plan) = match (step, current) {
        (Plan::Immutable(fields), Some((c, _))) => {
            return Err(Failure::msg(format!(
                "health check '{}' cannot be changed in place: Route 53 does not allow updating {}; \
                 delete it (state: absent) and create it again",
                c.id,
                fields.join(", ")
            ))
            .with("health_check", before));
        }
        (Plan::Noop, Some((c, tags))) => {
            let tp = plan_tags(&tags, &want_tags, purge);
            let action = if tp.is_empty() { None } else { Some("update") };
            (c, tags, action, tp)
        }
        (Plan::Update(changes), Some((c, tags))) => {
            let tp = plan_tags(&tags, &want_tags, purge);
            let after = if ctx.check_mode {
                Current {
                    config: hc::merged(c.config.clone(), &changes),
                    ..c
                }
            } else {
                api.update(&c, &changes).await?
            };
            (after, tags, Some("update"), tp)
        }
        (Plan::Create(config), _) => {
            let tp = plan_tags(&BTreeMap::new(), &want_tags, false);
            let created = if ctx.check_mode {
                Current {
                    id: String::new(),
                    caller_reference: hc::caller_reference(&t.name, &config, None),
                    version: 1,
                    config,
                }
            } else {
                api.create(&t.name, &config, unix_now()).await?
            };
            (created, BTreeMap::new(), Some("create"), tp)
        }
        (Plan::Noop | Plan::Update(_) | Plan::Immutable(_), None) => {
            return Err(Failure::msg(
                "internal error: a plan for an absent health check",
            ));
        }
    };
    apply_tags(&ctx, &api, &result.id, &tag_plan).await?;
    let tags = tag_plan.apply(&tags);
    let after = describe(&result, &tags);
    let mut described = after.clone();
    let changed = action.is_some();
    if let (Some(a), Some(obj)) = (action, described.as_object_mut()) {
        obj.insert("action".into(), Value::from(a));
    }
    let mut data = Map::new();
    data.insert("health_check".into(), described);
    Ok(Response {
        changed,
        data,
        diff: Some((before, after)),
        warnings: Vec::new(),
    })
}

async fn apply_tags(ctx: &Ctx, api: &HealthChecks, id: &str, tp: &TagPlan) -> Result<(), Failure> {
    if !ctx.check_mode && !tp.is_empty() {
        api.change_tags(id, tp).await?;
    }
    Ok(())
}

async fn absent(
    ctx: &Ctx,
    api: &HealthChecks,
    found: Option<Current>,
) -> Result<Response, Failure> {
    let Some(c) = found else {
        return Ok(Response {
            changed: false,
            data: [("health_check".to_owned(), json!({}))]
                .into_iter()
                .collect(),
            diff: Some((json!({}), json!({}))),
            warnings: Vec::new(),
        });
    };
    let before = describe(&c, &BTreeMap::new());
    let changed = if ctx.check_mode {
        true
    } else {
        api.delete(&c.id).await?
    };
    let mut data = Map::new();
    data.insert(
        "health_check".into(),
        if changed {
            json!({"id": c.id, "action": "delete"})
        } else {
            json!({})
        },
    );
    Ok(Response {
        changed,
        data,
        diff: Some((before, json!({}))),
        warnings: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::validate;

    fn task_of(v: Value) -> Result<Task, String> {
        let params =
            validate(&SPEC, v.as_object().cloned().unwrap_or_default()).map_err(|e| e.0)?;
        task(&params).map_err(|f| f.msg)
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
