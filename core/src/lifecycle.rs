/*!
Auto Scaling lifecycle hooks → Route 53: the decisions, without a network.

The Lambda (and later the node's drain) feed this module what AWS said — the
lifecycle message, the hook metadata, the group's tags, the instance's
addresses — and get back what to publish and which lifecycle result to send.
Everything here is pure and table-tested; the AWS calls live behind a trait
in the Lambda crate.
*/

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::ErrorKind;
use crate::healthcheck::Config;

pub const LAUNCHING: &str = "autoscaling:EC2_INSTANCE_LAUNCHING";
pub const TERMINATING: &str = "autoscaling:EC2_INSTANCE_TERMINATING";
pub const TEST_NOTIFICATION: &str = "autoscaling:TEST_NOTIFICATION";
/// Caller-reference prefix of the health checks the Lambda creates.
pub const REF_PREFIX_LIFECYCLE: &str = "craftlb-lc-";
/// The group tag the original system read the record name from.
pub const DOMAIN_TAG: &str = "domain";
/// The node's health endpoint (role loadbalancer's `loadbalancer_health_uri`).
pub const HEALTH_PATH: &str = "/craftlb-health";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Launching,
    Terminating,
}

impl Transition {
    pub fn parse(s: &str) -> Option<Transition> {
        match s {
            LAUNCHING => Some(Transition::Launching),
            TERMINATING => Some(Transition::Terminating),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Launching => LAUNCHING,
            Transition::Terminating => TERMINATING,
        }
    }
}

/// CompleteLifecycleAction's LifecycleActionResult.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LifecycleResult {
    Continue,
    Abandon,
}

impl LifecycleResult {
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleResult::Continue => "CONTINUE",
            LifecycleResult::Abandon => "ABANDON",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpType {
    #[default]
    Public,
    Private,
    Eip,
}

/// Health check settings from hook metadata. The default checks what the
/// node serves: its health endpoint (HTTP on port 80, `/craftlb-health`,
/// 503 while it drains or when every backend is down), every 30 s, 2
/// failures. (The original checked TCP 443, which fails on a load balancer
/// without TLS mappings, and Route 53 then fails open to every record.)
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheckMeta {
    pub enabled: bool,
    #[serde(rename = "type")]
    pub kind: String,
    pub port: i32,
    pub path: Option<String>,
    pub interval: i32,
    pub threshold: i32,
}

impl Default for HealthCheckMeta {
    fn default() -> HealthCheckMeta {
        HealthCheckMeta {
            enabled: true,
            kind: "HTTP".into(),
            port: 80,
            path: Some(HEALTH_PATH.into()),
            interval: 30,
            threshold: 2,
        }
    }
}

/// The hook's NotificationMetadata, as craftlb's launch playbook writes it
/// (a JSON object). Unknown keys are rejected so a typo is loud, except
/// `region`, which the original system put there.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HookMetadata {
    pub record_name: Option<String>,
    pub hosted_zone_id: Option<String>,
    pub ip_type: IpType,
    pub eip_pool: Option<String>,
    pub ttl: i64,
    pub weight: i64,
    pub health_check: HealthCheckMeta,
    /// Accepted for metadata written before nodes completed their own
    /// launches; a launch is no longer completed by the Lambda.
    pub on_failure: Option<LifecycleResult>,
    /// When set, the node drains and completes its own terminating action.
    pub drain_seconds: Option<u32>,
    pub region: Option<String>,
}

impl Default for HookMetadata {
    fn default() -> HookMetadata {
        HookMetadata {
            record_name: None,
            hosted_zone_id: None,
            ip_type: IpType::Public,
            eip_pool: None,
            ttl: 60,
            weight: 1,
            health_check: HealthCheckMeta::default(),
            on_failure: None,
            drain_seconds: None,
            region: None,
        }
    }
}

/// A configuration problem: retrying or abandoning cannot fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permanent(pub String);

impl fmt::Display for Permanent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl HookMetadata {
    /// Parses NotificationMetadata; absent or empty means all defaults.
    pub fn parse(raw: Option<&str>) -> Result<HookMetadata, Permanent> {
        let raw = raw.map(str::trim).unwrap_or_default();
        if raw.is_empty() {
            return Ok(HookMetadata::default());
        }
        let meta: HookMetadata = serde_json::from_str(raw).map_err(|e| {
            Permanent(format!(
                "hook metadata is not valid craftlb metadata: {e}: {raw}"
            ))
        })?;
        if !(0..=2_147_483_647).contains(&meta.ttl) {
            return Err(Permanent(format!(
                "hook metadata ttl out of range: {}",
                meta.ttl
            )));
        }
        if !(0..=255).contains(&meta.weight) {
            return Err(Permanent(format!(
                "hook metadata weight must be 0-255: {}",
                meta.weight
            )));
        }
        if meta.ip_type == IpType::Eip && meta.eip_pool.is_none() {
            return Err(Permanent("hook metadata ip_type eip needs eip_pool".into()));
        }
        Ok(meta)
    }
}

/// `www.Example.com` → `www.example.com.` (Route 53's form).
pub fn fqdn(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    if lower.ends_with('.') {
        lower
    } else {
        format!("{lower}.")
    }
}

/// The record name: metadata first, else the group's `domain` tag (the
/// original's convention).
pub fn record_name(
    meta: &HookMetadata,
    group_tags: &BTreeMap<String, String>,
) -> Result<String, Permanent> {
    meta.record_name
        .as_deref()
        .or_else(|| group_tags.get(DOMAIN_TAG).map(String::as_str))
        .filter(|n| !n.trim().is_empty())
        .map(fqdn)
        .ok_or_else(|| {
            Permanent(format!(
                "no record name: set record_name in the hook metadata or tag the group with '{DOMAIN_TAG}'"
            ))
        })
}

/// Zones that could hold `name`, longest first: `a.b.example.com.` →
/// `a.b.example.com.`, `b.example.com.`, `example.com.` (never the TLD).
pub fn zone_candidates(name: &str) -> Vec<String> {
    let name = fqdn(name);
    let labels: Vec<&str> = name.trim_end_matches('.').split('.').collect();
    (0..labels.len().saturating_sub(1))
        .map(|i| format!("{}.", labels[i..].join(".")))
        .collect()
}

/// The instance's addresses and state as EC2 reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addresses {
    pub public_ip: Option<String>,
    pub private_ip: Option<String>,
    /// EC2 state name (pending, running, shutting-down, terminated, …).
    pub state: Option<String>,
}

/// A launch notification that arrives after the instance started to go
/// (duplicate or out-of-order delivery) must not publish it again.
pub fn check_alive(instance_id: &str, addrs: &Addresses) -> Result<(), Permanent> {
    match addrs.state.as_deref() {
        Some(s @ ("shutting-down" | "terminated" | "stopping" | "stopped")) => Err(Permanent(
            format!("instance '{instance_id}' is {s}: not publishing it"),
        )),
        _ => Ok(()),
    }
}

/// The address to publish for `ip_type` (an EIP is associated first and
/// then shows as the public address).
pub fn select_ip(ip_type: IpType, addrs: &Addresses) -> Result<String, Permanent> {
    match ip_type {
        IpType::Public | IpType::Eip => addrs.public_ip.clone().ok_or_else(|| {
            Permanent("instance has no public IP (subnet does not assign one; use ip_type private or eip)".into())
        }),
        IpType::Private => addrs
            .private_ip
            .clone()
            .ok_or_else(|| Permanent("instance has no private IP".into())),
    }
}

/// The health check for one instance.
pub fn health_check_config(ip: &str, meta: &HealthCheckMeta) -> Config {
    let http = meta.kind.starts_with("HTTP");
    Config {
        kind: meta.kind.clone(),
        ip_address: Some(ip.to_owned()),
        port: Some(meta.port),
        resource_path: if http {
            meta.path.clone().or_else(|| Some("/".into()))
        } else {
            None
        },
        request_interval: Some(meta.interval),
        failure_threshold: Some(meta.threshold),
        ..Config::default()
    }
}

/// How many caller references an instance's health check may go through.
/// Each one is spent by a deletion (a failed record upsert, a check deleted
/// by hand); Route 53 never accepts a deleted check's reference again.
pub const MAX_REFERENCE_GENERATIONS: u32 = 16;

fn hash8(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// The prefix shared by the caller references of every check published
/// under `record`: reconcile finds its candidates by it without tag reads.
pub fn record_reference_prefix(record: &str) -> String {
    format!("{REF_PREFIX_LIFECYCLE}{}-", hash8(&fqdn(record)))
}

/// Deterministic caller reference for an instance's health check:
/// `craftlb-lc-<h(record)>-<instance>-<h(instance, record, settings)>[-<generation>]`.
///
/// Deterministic, so duplicate deliveries converge on one check: Route 53
/// returns the existing check for a reference it knows with the same
/// settings. The generation exists because Route 53 refuses, forever, the
/// reference of a deleted check (HealthCheckAlreadyExists): a registration
/// after a deletion moves to the next generation, and every concurrent
/// delivery walks the same sequence to the same first free reference.
/// At most 64 characters.
pub fn health_check_reference(
    instance_id: &str,
    record: &str,
    config: &Config,
    generation: u32,
) -> String {
    let id: String = instance_id.chars().take(24).collect();
    let hash = hash8(&format!(
        "{instance_id}|{}|{}",
        fqdn(record),
        config.digest()
    ));
    let base = format!("{}{id}-{hash}", record_reference_prefix(record));
    if generation == 0 {
        base
    } else {
        format!("{base}-{generation}")
    }
}

/// The instance id inside a lifecycle check's caller reference, when the
/// reference is one of ours for `record`.
pub fn reference_instance<'a>(reference: &'a str, record: &str) -> Option<&'a str> {
    let rest = reference.strip_prefix(&record_reference_prefix(record))?;
    // <instance>-<hash>[-<generation>]; instance ids contain one '-' ("i-…").
    let mut parts = rest.splitn(3, '-');
    let (a, b) = (parts.next()?, parts.next()?);
    let id = &rest[..a.len() + 1 + b.len()];
    (a == "i" && !b.is_empty()).then_some(id)
}

/// Which lifecycle result the Lambda sends for a hook's notification.
/// `None`: not the Lambda's to complete. A launch is completed by the node
/// itself, CONTINUE once it serves or ABANDON when it cannot (the Lambda
/// publishes it when the group says it entered service); a drained
/// termination by the node after its drain (the hook's heartbeat timeout
/// and default result are the fallback). A leaving instance without a
/// drain goes whatever happened to its record.
pub fn lifecycle_result(transition: Transition, meta: &HookMetadata) -> Option<LifecycleResult> {
    match transition {
        Transition::Launching => None,
        Transition::Terminating if meta.drain_seconds.is_some() => None,
        Transition::Terminating => Some(LifecycleResult::Continue),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    Transient,
    Permanent,
}

impl From<ErrorKind> for FailureClass {
    fn from(k: ErrorKind) -> FailureClass {
        if k.is_transient() {
            FailureClass::Transient
        } else {
            FailureClass::Permanent
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_defaults_match_the_original() {
        let m = HookMetadata::parse(None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((m.ttl, m.weight, m.ip_type), (60, 1, IpType::Public));
        assert_eq!(m.health_check, HealthCheckMeta::default());
        assert_eq!(
            (
                m.health_check.kind.as_str(),
                m.health_check.port,
                m.health_check.path.as_deref()
            ),
            ("HTTP", 80, Some("/craftlb-health"))
        );
        // The original's metadata was {"region": ...}.
        let m = HookMetadata::parse(Some(r#"{"region": "eu-west-1"}"#))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.region.as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn metadata_parses_every_key_and_rejects_typos() {
        let raw = r#"{"record_name": "lb.example.com", "hosted_zone_id": "Z1", "ip_type": "private",
                      "ttl": 30, "weight": 10, "on_failure": "CONTINUE", "drain_seconds": 60,
                      "health_check": {"type": "HTTP", "port": 80, "path": "/health", "interval": 10, "threshold": 3}}"#;
        let m = HookMetadata::parse(Some(raw)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.ip_type, IpType::Private);
        assert_eq!(m.on_failure, Some(LifecycleResult::Continue));
        assert_eq!(m.health_check.path.as_deref(), Some("/health"));
        let e = HookMetadata::parse(Some(r#"{"recordname": "x"}"#))
            .err()
            .map(|e| e.0);
        assert!(e.is_some_and(|e| e.contains("recordname")));
        assert!(HookMetadata::parse(Some("not json")).is_err());
        assert!(HookMetadata::parse(Some(r#"{"weight": 300}"#)).is_err());
        assert!(HookMetadata::parse(Some(r#"{"ip_type": "eip"}"#)).is_err());
    }

    #[test]
    fn record_name_from_metadata_or_domain_tag() {
        let tags: BTreeMap<String, String> =
            [("domain".to_owned(), "LB.Example.com".to_owned())].into();
        let m = HookMetadata::default();
        assert_eq!(
            record_name(&m, &tags).ok().as_deref(),
            Some("lb.example.com.")
        );
        let m = HookMetadata {
            record_name: Some("x.example.org.".into()),
            ..HookMetadata::default()
        };
        assert_eq!(
            record_name(&m, &tags).ok().as_deref(),
            Some("x.example.org.")
        );
        assert!(record_name(&HookMetadata::default(), &BTreeMap::new()).is_err());
    }

    #[test]
    fn zone_candidates_longest_first_without_tld() {
        assert_eq!(
            zone_candidates("a.b.example.com"),
            vec!["a.b.example.com.", "b.example.com.", "example.com."]
        );
        assert!(zone_candidates("com").is_empty());
    }

    #[test]
    fn ip_selection() {
        let both = Addresses {
            public_ip: Some("203.0.113.5".into()),
            private_ip: Some("10.0.0.5".into()),
            state: Some("running".into()),
        };
        assert_eq!(
            select_ip(IpType::Public, &both).ok().as_deref(),
            Some("203.0.113.5")
        );
        assert_eq!(
            select_ip(IpType::Private, &both).ok().as_deref(),
            Some("10.0.0.5")
        );
        let private_only = Addresses {
            public_ip: None,
            private_ip: Some("10.0.0.5".into()),
            state: None,
        };
        assert!(select_ip(IpType::Public, &private_only).is_err());
        let gone = Addresses {
            state: Some("terminated".into()),
            ..both.clone()
        };
        assert!(check_alive("i-1", &gone).is_err());
        assert!(check_alive("i-1", &both).is_ok());
    }

    #[test]
    fn health_check_from_metadata() {
        let c = health_check_config("203.0.113.5", &HealthCheckMeta::default());
        assert_eq!(
            (
                c.kind.as_str(),
                c.port,
                c.resource_path.as_deref(),
                c.request_interval,
                c.failure_threshold
            ),
            ("HTTP", Some(80), Some("/craftlb-health"), Some(30), Some(2))
        );
        // An HTTP check without a path checks "/".
        let http = HealthCheckMeta {
            kind: "HTTP".into(),
            port: 80,
            path: None,
            ..HealthCheckMeta::default()
        };
        assert_eq!(
            health_check_config("203.0.113.5", &http)
                .resource_path
                .as_deref(),
            Some("/")
        );
    }

    #[test]
    fn health_check_reference_is_deterministic_short_and_generational() {
        let c = health_check_config("203.0.113.5", &HealthCheckMeta::default());
        let a = health_check_reference("i-0123456789abcdef0", "lb.example.com", &c, 0);
        assert_eq!(
            a,
            health_check_reference("i-0123456789abcdef0", "LB.example.com.", &c, 0)
        );
        assert_ne!(
            a,
            health_check_reference("i-0123456789abcdef1", "lb.example.com", &c, 0)
        );
        let other = health_check_config("203.0.113.6", &HealthCheckMeta::default());
        assert_ne!(
            a,
            health_check_reference("i-0123456789abcdef0", "lb.example.com", &other, 0)
        );
        let g = health_check_reference(
            "i-0123456789abcdef0",
            "lb.example.com",
            &c,
            MAX_REFERENCE_GENERATIONS,
        );
        assert!(g.len() <= 64 && a.len() <= 64, "{g}");
        assert!(g.starts_with(&a) && g != a);
        assert!(a.starts_with(&record_reference_prefix("lb.example.com")));
        for r in [&a, &g] {
            assert_eq!(
                reference_instance(r, "lb.example.com"),
                Some("i-0123456789abcdef0")
            );
            assert_eq!(reference_instance(r, "other.example.com"), None);
        }
        assert_eq!(reference_instance("craftlb-abc", "lb.example.com"), None);
    }

    #[test]
    fn completion_policy() {
        let m = HookMetadata::default();
        use FailureClass::*;
        use LifecycleResult::*;
        use Transition::*;
        // Launches are the node's to complete, whatever the metadata says.
        assert_eq!(lifecycle_result(Launching, &m), None);
        let legacy = HookMetadata {
            on_failure: Some(Continue),
            ..HookMetadata::default()
        };
        assert_eq!(lifecycle_result(Launching, &legacy), None);
        assert_eq!(lifecycle_result(Terminating, &m), Some(Continue));
        let drain = HookMetadata {
            drain_seconds: Some(30),
            ..HookMetadata::default()
        };
        assert_eq!(lifecycle_result(Terminating, &drain), None);
        assert_eq!(FailureClass::from(ErrorKind::Throttled), Transient);
        assert_eq!(FailureClass::from(ErrorKind::Rejected), Permanent);
    }
}
