/*!
Route 53 health checks: the desired/current model, the pure plan, and the
AWS calls.

Identity. Route 53 cannot filter health checks by tag, so tools that find a
check by its `Name` tag read the tags of every check in the account (amazon.aws
makes ~44 calls per task with 20 checks). Ours encode the name in the
CallerReference (`craftlb-<hash(name)>-<hash(config)>`), which
ListHealthChecks returns with every check: one list page (up to 1,000 checks)
finds the check, one tag read confirms it. Checks created by other tools are
still adopted by their `Name` tag, at the old cost, until they are recreated.

The caller reference is deterministic, so a create whose response was lost
and is sent again (by the SDK's retry or by re-running the task) returns the
same check instead of leaking a duplicate.
*/

use std::collections::BTreeMap;

use aws_sdk_route53::Client;
use aws_sdk_route53::types::{
    HealthCheck, HealthCheckConfig, HealthCheckType, Tag, TagResourceType,
};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind, Result};
use crate::paginate::{Page, collect_all};

const SERVICE: &str = "Route 53";
/// Route 53 accepts at most 1,000 health checks per ListHealthChecks page.
const PAGE_SIZE: i32 = 1000;
/// ChangeTagsForResource and ListTagsForResources take at most 10 ids/keys.
const TAG_BATCH: usize = 10;
pub const REF_PREFIX: &str = "craftlb-";

pub const TYPES: &[&str] = &[
    "HTTP",
    "HTTPS",
    "HTTP_STR_MATCH",
    "HTTPS_STR_MATCH",
    "TCP",
    "CALCULATED",
];

/// A health check's configuration, as far as craftlb manages it. `None`
/// means "not set" (current) or "leave as it is" (desired).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub kind: String,
    pub ip_address: Option<String>,
    pub fqdn: Option<String>,
    pub port: Option<i32>,
    pub resource_path: Option<String>,
    pub search_string: Option<String>,
    pub request_interval: Option<i32>,
    pub failure_threshold: Option<i32>,
    pub measure_latency: Option<bool>,
    pub inverted: Option<bool>,
    pub disabled: Option<bool>,
    pub enable_sni: Option<bool>,
    pub health_threshold: Option<i32>,
    pub child_health_checks: Option<Vec<String>>,
}

/// A health check as it exists in Route 53.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub id: String,
    pub caller_reference: String,
    pub version: i64,
    pub config: Config,
}

impl Config {
    /// Fills in what Route 53 would default, so a freshly created check
    /// compares equal to the request that made it.
    pub fn with_create_defaults(mut self) -> Config {
        if self.kind != "CALCULATED" {
            self.request_interval.get_or_insert(30);
            self.failure_threshold.get_or_insert(3);
            if self.port.is_none() {
                self.port = default_port(&self.kind);
            }
        }
        self
    }

    /// A short digest of every setting: equal configs, equal digests.
    pub fn digest(&self) -> String {
        short_hash(&self.canonical())
    }

    fn canonical(&self) -> String {
        format!(
            "{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            self.kind,
            self.ip_address,
            self.fqdn,
            self.port,
            self.resource_path,
            self.search_string,
            self.request_interval,
            self.failure_threshold,
            self.measure_latency,
            self.inverted,
            self.disabled,
            self.enable_sni,
            self.health_threshold,
            self.child_health_checks,
        )
    }

    fn from_sdk(c: &HealthCheckConfig) -> Config {
        Config {
            kind: c.r#type().as_str().to_owned(),
            ip_address: c.ip_address().map(str::to_owned),
            fqdn: c.fully_qualified_domain_name().map(str::to_owned),
            port: c.port(),
            resource_path: c.resource_path().map(str::to_owned),
            search_string: c.search_string().map(str::to_owned),
            request_interval: c.request_interval(),
            failure_threshold: c.failure_threshold(),
            measure_latency: c.measure_latency(),
            inverted: c.inverted(),
            disabled: c.disabled(),
            enable_sni: c.enable_sni(),
            health_threshold: c.health_threshold(),
            child_health_checks: if c.child_health_checks().is_empty() {
                None
            } else {
                Some(c.child_health_checks().to_vec())
            },
        }
    }

    fn to_sdk(&self) -> Result<HealthCheckConfig> {
        HealthCheckConfig::builder()
            .r#type(HealthCheckType::from(self.kind.as_str()))
            .set_ip_address(self.ip_address.clone())
            .set_fully_qualified_domain_name(self.fqdn.clone())
            .set_port(self.port)
            .set_resource_path(self.resource_path.clone())
            .set_search_string(self.search_string.clone())
            .set_request_interval(self.request_interval)
            .set_failure_threshold(self.failure_threshold)
            .set_measure_latency(self.measure_latency)
            .set_inverted(self.inverted)
            .set_disabled(self.disabled)
            .set_enable_sni(self.enable_sni)
            .set_health_threshold(self.health_threshold)
            .set_child_health_checks(self.child_health_checks.clone())
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Rejected,
                    "build health check config",
                    e.to_string(),
                )
            })
    }
}

pub fn default_port(kind: &str) -> Option<i32> {
    match kind {
        "HTTP" | "HTTP_STR_MATCH" => Some(80),
        "HTTPS" | "HTTPS_STR_MATCH" => Some(443),
        _ => None,
    }
}

impl Current {
    fn from_sdk(h: &HealthCheck) -> Current {
        Current {
            id: h.id().to_owned(),
            caller_reference: h.caller_reference().to_owned(),
            version: h.health_check_version(),
            config: h
                .health_check_config()
                .map(Config::from_sdk)
                .unwrap_or_default(),
        }
    }
}

fn short_hash(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The caller-reference prefix that identifies checks named `name`.
pub fn name_prefix(name: &str) -> String {
    format!("{REF_PREFIX}{}-", short_hash(name))
}

/// The deterministic caller reference for creating `config` under `name`.
/// `salt` distinguishes a re-creation after a deletion (Route 53 refuses to
/// reuse the reference of a deleted check). At most 64 characters.
pub fn caller_reference(name: &str, config: &Config, salt: Option<u64>) -> String {
    let base = format!("{}{}", name_prefix(name), short_hash(&config.canonical()));
    match salt {
        Some(s) => format!("{base}-{s}"),
        None => base,
    }
}

/// How to find the one health check a task is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Id(String),
    /// The `Name` tag (amazon.aws `use_unique_names`).
    Name(String),
    /// The immutable-ish settings amazon.aws matches on when no name or id
    /// is given: ip, fqdn, type, request interval, port.
    Settings(Config),
}

/// What a task must do to a health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Noop,
    Create(Config),
    /// The desired config with only the fields that must change set.
    Update(Config),
    /// The desired state needs fields changed that Route 53 cannot update.
    Immutable(Vec<&'static str>),
}

fn differs<T: PartialEq + Clone>(want: &Option<T>, have: &Option<T>) -> Option<T> {
    match want {
        Some(w) if Some(w) != have.as_ref() => Some(w.clone()),
        _ => None,
    }
}

/// The pure decision: what to do to get from `current` to `desired`.
/// `desired` fields left `None` are not managed.
pub fn plan(desired: &Config, current: Option<&Current>) -> Plan {
    let Some(cur) = current else {
        return Plan::Create(desired.clone().with_create_defaults());
    };
    let have = &cur.config;
    let mut immutable = Vec::new();
    if !desired.kind.is_empty() && desired.kind != have.kind {
        immutable.push("type");
    }
    if differs(&desired.request_interval, &have.request_interval).is_some() {
        immutable.push("request_interval");
    }
    if differs(
        &desired.measure_latency,
        &have.measure_latency.or(Some(false)),
    )
    .is_some()
    {
        immutable.push("measure_latency");
    }
    if !immutable.is_empty() {
        return Plan::Immutable(immutable);
    }
    // Route 53 reports defaults (e.g. Inverted=false) that were never set;
    // compare a desired `false` against an absent value as equal.
    let flag = |v: Option<bool>| v.or(Some(false));
    let changes = Config {
        kind: String::new(),
        ip_address: differs(&desired.ip_address, &have.ip_address),
        fqdn: differs(&desired.fqdn, &have.fqdn),
        port: differs(&desired.port, &have.port),
        resource_path: differs(&desired.resource_path, &have.resource_path),
        search_string: differs(&desired.search_string, &have.search_string),
        request_interval: None,
        failure_threshold: differs(&desired.failure_threshold, &have.failure_threshold),
        measure_latency: None,
        inverted: desired
            .inverted
            .and(differs(&desired.inverted, &flag(have.inverted))),
        disabled: desired
            .disabled
            .and(differs(&desired.disabled, &flag(have.disabled))),
        enable_sni: differs(&desired.enable_sni, &have.enable_sni),
        health_threshold: differs(&desired.health_threshold, &have.health_threshold),
        child_health_checks: differs(&desired.child_health_checks, &have.child_health_checks),
    };
    if changes == Config::default() {
        Plan::Noop
    } else {
        Plan::Update(changes)
    }
}

/// Applies an update's changes to a config: what Route 53 will hold after.
pub fn merged(mut base: Config, changes: &Config) -> Config {
    macro_rules! take {
        ($($f:ident),*) => { $( if changes.$f.is_some() { base.$f = changes.$f.clone(); } )* };
    }
    take!(
        ip_address,
        fqdn,
        port,
        resource_path,
        search_string,
        failure_threshold,
        inverted,
        disabled,
        enable_sni,
        health_threshold,
        child_health_checks
    );
    base
}

/// Whether a listed check matches an [`Identity::Settings`] identity.
pub fn matches_settings(want: &Config, have: &Config) -> bool {
    have.kind == want.kind
        && have.ip_address == want.ip_address
        && have.fqdn == want.fqdn
        && have.request_interval == want.request_interval
        && have.port == want.port
}

pub use crate::tags::{TagPlan, plan_tags};

/// The Route 53 health-check API, as craftlb uses it.
#[derive(Debug, Clone)]
pub struct HealthChecks {
    client: Client,
    page_size: i32,
}

impl HealthChecks {
    pub fn new(client: Client) -> HealthChecks {
        HealthChecks {
            client,
            page_size: PAGE_SIZE,
        }
    }

    /// Smaller pages, so tests can exercise pagination with a few checks.
    pub fn with_page_size(mut self, page_size: i32) -> HealthChecks {
        self.page_size = page_size.clamp(1, PAGE_SIZE);
        self
    }

    pub async fn list_all(&self) -> Result<Vec<Current>> {
        collect_all("health checks", |marker| async move {
            let out = self
                .client
                .list_health_checks()
                .set_marker(marker)
                .max_items(self.page_size)
                .send()
                .await
                .map_err(crate::error::sdk_error(
                    SERVICE,
                    "ListHealthChecks",
                    "list health checks",
                ))?;
            Ok(Page {
                items: out.health_checks().iter().map(Current::from_sdk).collect(),
                next: out
                    .is_truncated()
                    .then(|| out.next_marker().map(str::to_owned))
                    .flatten(),
            })
        })
        .await
    }

    pub async fn get(&self, id: &str) -> Result<Option<Current>> {
        match self
            .client
            .get_health_check()
            .health_check_id(id)
            .send()
            .await
        {
            Ok(out) => Ok(out.health_check().map(Current::from_sdk)),
            Err(e) => {
                let err = crate::error::sdk_error(
                    SERVICE,
                    "GetHealthCheck",
                    format!("get health check '{id}'"),
                )(e);
                if err.kind() == ErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    pub async fn tags(&self, id: &str) -> Result<BTreeMap<String, String>> {
        let out = self
            .client
            .list_tags_for_resource()
            .resource_type(TagResourceType::Healthcheck)
            .resource_id(id)
            .send()
            .await
            .map_err(crate::error::sdk_error(
                SERVICE,
                "ListTagsForResource",
                format!("read tags of health check '{id}'"),
            ))?;
        Ok(tag_map(
            out.resource_tag_set().map(|s| s.tags()).unwrap_or_default(),
        ))
    }

    /// Tags of many checks, 10 per call (Route 53's limit).
    pub async fn tags_of(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        let mut out = BTreeMap::new();
        for chunk in ids.chunks(TAG_BATCH) {
            let resp = self
                .client
                .list_tags_for_resources()
                .resource_type(TagResourceType::Healthcheck)
                .set_resource_ids(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(crate::error::sdk_error(
                    SERVICE,
                    "ListTagsForResources",
                    "read tags of health checks",
                ))?;
            for set in resp.resource_tag_sets() {
                if let Some(id) = set.resource_id() {
                    out.insert(id.to_owned(), tag_map(set.tags()));
                }
            }
        }
        Ok(out)
    }

    /// Finds the one check `identity` names. With a name, also returns the
    /// tags read to confirm it (saving the caller a call).
    pub async fn find(
        &self,
        identity: &Identity,
    ) -> Result<Option<(Current, Option<BTreeMap<String, String>>)>> {
        match identity {
            Identity::Id(id) => Ok(self.get(id).await?.map(|c| (c, None))),
            Identity::Settings(want) => {
                let all = self.list_all().await?;
                Ok(all
                    .into_iter()
                    .find(|c| matches_settings(want, &c.config))
                    .map(|c| (c, None)))
            }
            Identity::Name(name) => {
                let all = self.list_all().await?;
                let prefix = name_prefix(name);
                let ours: Vec<&Current> = all
                    .iter()
                    .filter(|c| c.caller_reference.starts_with(&prefix))
                    .collect();
                let mut named = Vec::new();
                for c in ours {
                    let tags = self.tags(&c.id).await?;
                    // No Name tag: a create whose tagging call never happened;
                    // the caller reference already says whose it is.
                    if tags.get("Name").is_none_or(|n| n == name) {
                        named.push((c.clone(), Some(tags)));
                    }
                }
                if named.is_empty() {
                    // Adopt checks made by other tools: only those can carry
                    // the name without our caller-reference prefix.
                    let foreign: Vec<String> = all
                        .iter()
                        .filter(|c| !c.caller_reference.starts_with(REF_PREFIX))
                        .map(|c| c.id.clone())
                        .collect();
                    let tags = self.tags_of(&foreign).await?;
                    for c in &all {
                        if let Some(t) = tags.get(&c.id).filter(|t| t.get("Name") == Some(name)) {
                            named.push((c.clone(), Some(t.clone())));
                        }
                    }
                }
                match named.len() {
                    0 | 1 => Ok(named.pop()),
                    _ => Err(Error::new(
                        ErrorKind::Conflict,
                        format!("find health check named '{name}'"),
                        format!(
                            "{} health checks carry that Name tag ({}); give health_check_id to pick one",
                            named.len(),
                            named
                                .iter()
                                .map(|(c, _)| c.id.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )),
                }
            }
        }
    }

    /// Creates a check with a deterministic caller reference; when Route 53
    /// remembers that reference from a deleted check, retries once with a
    /// salted one.
    pub async fn create(&self, name: &str, config: &Config, salt_now: u64) -> Result<Current> {
        let action = format!("create health check '{}'", display_name(name, config));
        match self
            .create_with_reference(&caller_reference(name, config, None), config, &action)
            .await
        {
            Err(e) if e.code() == Some("HealthCheckAlreadyExists") => {
                let salted = caller_reference(name, config, Some(salt_now));
                self.create_with_reference(&salted, config, &action).await
            }
            other => other,
        }
    }

    /// CreateHealthCheck with the caller's reference: Route 53 returns the
    /// existing check when the reference and settings match, which makes
    /// this an idempotent "ensure".
    pub async fn create_with_reference(
        &self,
        reference: &str,
        config: &Config,
        action: &str,
    ) -> Result<Current> {
        let out = self
            .client
            .create_health_check()
            .caller_reference(reference)
            .health_check_config(config.to_sdk()?)
            .send()
            .await
            .map_err(crate::error::sdk_error(
                SERVICE,
                "CreateHealthCheck",
                action,
            ))?;
        out.health_check().map(Current::from_sdk).ok_or_else(|| {
            Error::new(
                ErrorKind::Transient,
                action,
                "CreateHealthCheck returned no health check",
            )
        })
    }

    pub async fn update(&self, current: &Current, changes: &Config) -> Result<Current> {
        let out = self
            .client
            .update_health_check()
            .health_check_id(&current.id)
            .health_check_version(current.version)
            .set_ip_address(changes.ip_address.clone())
            .set_fully_qualified_domain_name(changes.fqdn.clone())
            .set_port(changes.port)
            .set_resource_path(changes.resource_path.clone())
            .set_search_string(changes.search_string.clone())
            .set_failure_threshold(changes.failure_threshold)
            .set_inverted(changes.inverted)
            .set_disabled(changes.disabled)
            .set_enable_sni(changes.enable_sni)
            .set_health_threshold(changes.health_threshold)
            .set_child_health_checks(changes.child_health_checks.clone())
            .send()
            .await
            .map_err(crate::error::sdk_error(
                SERVICE,
                "UpdateHealthCheck",
                format!("update health check '{}'", current.id),
            ))?;
        out.health_check().map(Current::from_sdk).ok_or_else(|| {
            Error::new(
                ErrorKind::Transient,
                format!("update health check '{}'", current.id),
                "no health check returned",
            )
        })
    }

    /// Deletes a check; `Ok(false)` when it was already gone.
    pub async fn delete(&self, id: &str) -> Result<bool> {
        match self
            .client
            .delete_health_check()
            .health_check_id(id)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => {
                let err = crate::error::sdk_error(
                    SERVICE,
                    "DeleteHealthCheck",
                    format!("delete health check '{id}'"),
                )(e);
                if err.kind() == ErrorKind::NotFound {
                    Ok(false)
                } else {
                    Err(err)
                }
            }
        }
    }

    pub async fn change_tags(&self, id: &str, plan: &TagPlan) -> Result<()> {
        let adds: Vec<Tag> = plan
            .set
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let mut adds = adds.chunks(TAG_BATCH);
        let mut removes = plan.unset.chunks(TAG_BATCH);
        loop {
            let (a, r) = (adds.next(), removes.next());
            if a.is_none() && r.is_none() {
                return Ok(());
            }
            self.client
                .change_tags_for_resource()
                .resource_type(TagResourceType::Healthcheck)
                .resource_id(id)
                .set_add_tags(a.map(<[Tag]>::to_vec))
                .set_remove_tag_keys(r.map(<[String]>::to_vec))
                .send()
                .await
                .map_err(crate::error::sdk_error(
                    SERVICE,
                    "ChangeTagsForResource",
                    format!("tag health check '{id}'"),
                ))?;
        }
    }
}

fn display_name(name: &str, config: &Config) -> String {
    if !name.is_empty() {
        return name.to_owned();
    }
    let target = config
        .ip_address
        .as_deref()
        .or(config.fqdn.as_deref())
        .unwrap_or("calculated");
    match config.port {
        Some(p) => format!("{} {target}:{p}", config.kind),
        None => format!("{} {target}", config.kind),
    }
}

fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_owned(),
                t.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

/// The health check config as amazon.aws returns it
/// (`camel_dict_to_snake_dict` of AWS's HealthCheckConfig).
pub fn describe_config(c: &Config) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), Value::from(c.kind.clone()));
    let fields: [(&str, Option<Value>); 13] = [
        ("ip_address", c.ip_address.clone().map(Value::from)),
        (
            "fully_qualified_domain_name",
            c.fqdn.clone().map(Value::from),
        ),
        ("port", c.port.map(Value::from)),
        ("resource_path", c.resource_path.clone().map(Value::from)),
        ("search_string", c.search_string.clone().map(Value::from)),
        ("request_interval", c.request_interval.map(Value::from)),
        ("failure_threshold", c.failure_threshold.map(Value::from)),
        ("measure_latency", c.measure_latency.map(Value::from)),
        ("inverted", c.inverted.map(Value::from)),
        ("disabled", c.disabled.map(Value::from)),
        ("enable_sni", c.enable_sni.map(Value::from)),
        ("health_threshold", c.health_threshold.map(Value::from)),
        (
            "child_health_checks",
            c.child_health_checks.clone().map(Value::from),
        ),
    ];
    for (k, v) in fields {
        if let Some(v) = v {
            out.insert(k.into(), v);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(ip: &str) -> Config {
        Config {
            kind: "TCP".into(),
            ip_address: Some(ip.into()),
            port: Some(443),
            ..Config::default()
        }
    }

    fn current(config: Config) -> Current {
        Current {
            id: "hc-1".into(),
            caller_reference: "ref".into(),
            version: 1,
            config,
        }
    }

    #[test]
    fn absent_plans_create_with_route53_defaults() {
        match plan(&tcp("192.0.2.1"), None) {
            Plan::Create(c) => {
                assert_eq!(c.request_interval, Some(30));
                assert_eq!(c.failure_threshold, Some(3));
                assert_eq!(c.port, Some(443));
            }
            other => panic!("{other:?}"),
        }
        let http = Config {
            kind: "HTTPS_STR_MATCH".into(),
            ..Config::default()
        };
        assert!(matches!(plan(&http, None), Plan::Create(c) if c.port == Some(443)));
    }

    #[test]
    fn same_config_is_noop_and_unmanaged_fields_are_ignored() {
        let have = tcp("192.0.2.1").with_create_defaults();
        let mut have_more = have.clone();
        have_more.inverted = Some(false);
        have_more.enable_sni = Some(true);
        assert_eq!(
            plan(&tcp("192.0.2.1"), Some(&current(have_more))),
            Plan::Noop
        );
        let mut want = tcp("192.0.2.1");
        want.disabled = Some(false);
        want.measure_latency = Some(false);
        assert_eq!(plan(&want, Some(&current(have))), Plan::Noop);
    }

    #[test]
    fn mutable_differences_become_an_update_of_only_those_fields() {
        let have = current(tcp("192.0.2.1").with_create_defaults());
        let mut want = tcp("192.0.2.9");
        want.failure_threshold = Some(2);
        want.disabled = Some(true);
        let Plan::Update(changes) = plan(&want, Some(&have)) else {
            panic!("expected update");
        };
        assert_eq!(
            changes,
            Config {
                ip_address: Some("192.0.2.9".into()),
                failure_threshold: Some(2),
                disabled: Some(true),
                ..Config::default()
            }
        );
        let after = merged(have.config.clone(), &changes);
        assert_eq!(after.ip_address.as_deref(), Some("192.0.2.9"));
        assert_eq!(after.port, Some(443));
        assert_eq!(plan(&want, Some(&current(after))), Plan::Noop);
    }

    #[test]
    fn immutable_differences_are_reported_not_applied() {
        let have = current(tcp("192.0.2.1").with_create_defaults());
        let mut want = tcp("192.0.2.1");
        want.kind = "HTTP".into();
        want.request_interval = Some(10);
        want.measure_latency = Some(true);
        assert_eq!(
            plan(&want, Some(&have)),
            Plan::Immutable(vec!["type", "request_interval", "measure_latency"])
        );
    }

    #[test]
    fn caller_reference_is_deterministic_bounded_and_name_prefixed() {
        let c = tcp("192.0.2.1");
        let a = caller_reference("web", &c, None);
        assert_eq!(a, caller_reference("web", &c, None));
        assert!(a.starts_with(&name_prefix("web")));
        assert_ne!(a, caller_reference("web", &tcp("192.0.2.2"), None));
        assert_ne!(name_prefix("web"), name_prefix("web2"));
        let salted = caller_reference("web", &c, Some(u64::MAX));
        assert!(salted.len() <= 64, "{} chars", salted.len());
        assert_ne!(salted, a);
    }

    #[test]
    fn settings_identity_matches_amazon_aws_fields() {
        let want = tcp("192.0.2.1").with_create_defaults();
        let mut have = want.clone();
        have.failure_threshold = Some(7);
        assert!(matches_settings(&want, &have));
        have.port = Some(80);
        assert!(!matches_settings(&want, &have));
    }

    #[test]
    fn describe_uses_amazon_aws_keys() {
        let d = describe_config(&tcp("192.0.2.1").with_create_defaults());
        assert_eq!(
            d,
            serde_json::json!({"type": "TCP", "ip_address": "192.0.2.1", "port": 443,
                               "request_interval": 30, "failure_threshold": 3})
        );
    }
}
