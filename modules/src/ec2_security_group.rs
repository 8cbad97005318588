/*!
`ec2_security_group`: one VPC security group and its rules, with the
parameters and return keys of `amazon.aws.ec2_security_group`.

Rules are compared as a normalised set, one entry per (protocol, port
range, target): protocol names and numbers are one (`6` is `tcp`), CIDRs
lose their host bits (`10.0.0.1/24` is `10.0.0.0/24`, with a warning, as
AWS stores it), a bare address is a `/32` (`/128`), IPv6 is compared in its
canonical form, and the group's own name or id is "this group" whether or
not it exists yet. A description is updated in place, never by revoking
and authorising again; a rule without `rule_desc` leaves the description
alone. Egress is explicit: without `rules_egress` the group's egress rules
(AWS's allow-all on a new group) are left alone. Nothing is purged unless
asked: `purge_rules` and `purge_rules_egress` default to false here, a
deliberate difference from amazon.aws (ansible#52609). A rule naming
another group by name needs that group to exist: the module fails instead
of creating it. Revokes run before authorisations, so replacing rules in a
group at its rule limit works.
*/

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, Ipv6Range, ResourceType, SecurityGroup, TagSpecification,
    UserIdGroupPair,
};
use craftlb_core::consistency;
use craftlb_core::error::{Error, sdk_error};
use craftlb_core::tags::{TagPlan, plan_task_tags};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::aws::{AWS, Connection, PURGE_TAGS, TAGS, tag_map};
use crate::driver::{Resource, drive};
use crate::protocol::{
    Ctx, Default, Failure, Module, Param, Params, Response, RunFuture, Spec, Type,
};

pub const NAME: &str = "ec2_security_group";

pub static MODULE: Module = Module {
    name: NAME,
    spec: &SPEC,
    doc: include_str!("../docs/ec2_security_group.yml"),
    run: |ctx| -> RunFuture { Box::pin(run(ctx)) },
};

static RULE: Spec = Spec {
    params: &[
        Param::str("proto")
            .aliases(&["ip_protocol"])
            .default(Default::Str("tcp"))
            .doc(&[
                "C(tcp), C(udp), C(icmp), C(icmpv6), C(all) (or C(-1)), or an IP protocol number.",
            ]),
        Param::list("ports", Type::Raw).doc(&[
            "Ports and ranges: C(80), C(\"8000-8100\"). Each is one rule. Or use I(from_port)/I(to_port).",
        ]),
        Param::int("from_port").doc(&["First port of the range (ICMP: the type)."]),
        Param::int("to_port").doc(&["Last port of the range (ICMP: the code)."]),
        Param::int("icmp_type").doc(&["ICMP type (C(-1): all); with I(proto=icmp) or C(icmpv6)."]),
        Param::int("icmp_code").doc(&["ICMP code (C(-1): all)."]),
        Param::new("cidr_ip", Type::Raw).doc(&[
            "CIDRs (one or a list). Host bits are cleared (with a warning), a bare address is a /32; an IPv6 \
             CIDR here is taken as I(cidr_ipv6).",
        ]),
        Param::new("cidr_ipv6", Type::Raw).doc(&["IPv6 CIDRs (one or a list)."]),
        Param::str("group_id").doc(&["A security group (id) the rule allows; this group's own id is allowed."]),
        Param::str("group_name").doc(&[
            "A security group in the same VPC, by name; this group's own name is allowed. Another group must \
             exist: the module fails rather than create it.",
        ]),
        Param::str("rule_desc").doc(&[
            "The rule's description, updated in place. Not given, the description is left as it is.",
        ]),
    ],
    ..Spec::EMPTY
};

pub static SPEC: Spec = Spec {
    params: &[
        Param::str("name").doc(&["The group's name. Required unless I(group_id) is given."]),
        Param::str("group_id").doc(&["The group's id; finds the group instead of I(name)."]),
        Param::str("description").doc(&[
            "The group's description; required to create it. AWS cannot change it: a different description \
             on an existing group is a warning.",
        ]),
        Param::str("vpc_id").doc(&[
            "The VPC of the group. Not given: the account's default VPC to create, any VPC to find (two \
             groups of the name in different VPCs are an error).",
        ]),
        Param::str("state")
            .choices(&["present", "absent"])
            .default(Default::Str("present"))
            .doc(&["Whether the group should exist."]),
        Param::list_of("rules", &RULE).doc(&[
            "Inbound rules. Not given, inbound rules are left as they are.",
        ]),
        Param::list_of("rules_egress", &RULE)
            .aliases(&["egress_rules"])
            .doc(&[
                "Outbound rules. Not given, outbound rules are left as they are (a new group keeps AWS's \
                 allow-all egress rule).",
            ]),
        Param::bool("purge_rules")
            .default(Default::Bool(false))
            .doc(&[
                "Revoke inbound rules not in I(rules). Ignored when I(rules) is not given. Defaults to false \
                 (amazon.aws: true): nothing is removed that the task does not ask to remove.",
            ]),
        Param::bool("purge_rules_egress")
            .aliases(&["purge_egress_rules"])
            .default(Default::Bool(false))
            .doc(&[
                "Revoke outbound rules not in I(rules_egress), AWS's default allow-all included. Ignored when \
                 I(rules_egress) is not given.",
            ]),
        TAGS,
        PURGE_TAGS,
    ],
    includes: &[&AWS],
    required_one_of: &[&["name", "group_id"]],
    ..Spec::EMPTY
};

#[derive(Debug, Deserialize)]
struct RuleArg {
    proto: String,
    ports: Option<Vec<Value>>,
    from_port: Option<i64>,
    to_port: Option<i64>,
    icmp_type: Option<i64>,
    icmp_code: Option<i64>,
    cidr_ip: Option<Value>,
    cidr_ipv6: Option<Value>,
    group_id: Option<String>,
    group_name: Option<String>,
    rule_desc: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Args {
    name: Option<String>,
    group_id: Option<String>,
    description: Option<String>,
    vpc_id: Option<String>,
    state: String,
    rules: Option<Vec<RuleArg>>,
    rules_egress: Option<Vec<RuleArg>>,
    purge_rules: bool,
    purge_rules_egress: bool,
    tags: Option<Map<String, Value>>,
    purge_tags: bool,
    #[serde(flatten)]
    connection: Connection,
}

/// What a rule allows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    V4(String),
    V6(String),
    /// Another group, by id.
    Group(String),
    /// This group (by its own name or id in the task; its id in AWS).
    This,
    /// Another group by name, until `run` resolves it to an id.
    Named(String),
}

/// One rule, as AWS identifies it: protocol, ports (ICMP: type and code;
/// `-1` when the protocol has none) and target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rule {
    pub proto: String,
    pub from: i32,
    pub to: i32,
    pub target: Target,
}

/// Rules with their descriptions (`None`: none, or in a task: leave alone).
pub type Rules = BTreeMap<Rule, Option<String>>;

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub present: bool,
    pub name: Option<String>,
    pub group_id: Option<String>,
    pub description: Option<String>,
    pub vpc_id: Option<String>,
    pub ingress: Option<Rules>,
    pub egress: Option<Rules>,
    pub purge_ingress: bool,
    pub purge_egress: bool,
    pub tags: Option<BTreeMap<String, String>>,
    pub purge_tags: bool,
    /// What normalisation changed in the task, said back to the user.
    pub notes: Vec<String>,
}

/// Protocol names as AWS returns them.
fn protocol(p: &str) -> Result<String, String> {
    let p = p.trim().to_ascii_lowercase();
    Ok(match p.as_str() {
        "tcp" | "6" => "tcp".into(),
        "udp" | "17" => "udp".into(),
        "icmp" | "1" => "icmp".into(),
        "icmpv6" | "58" => "icmpv6".into(),
        "all" | "-1" => "-1".into(),
        n => match n.parse::<u8>() {
            Ok(n) => n.to_string(),
            Err(_) => return Err(format!("unknown protocol '{p}'")),
        },
    })
}

fn port(v: i64, what: &str) -> Result<i32, String> {
    i32::try_from(v)
        .ok()
        .filter(|p| (-1..=65535).contains(p))
        .ok_or_else(|| format!("{what} {v} is not a port (0-65535, or -1)"))
}

/// The port ranges of a rule: `ports` entries, or from/to.
fn ranges(r: &RuleArg, proto: &str) -> Result<Vec<(i32, i32)>, String> {
    if proto == "-1" {
        return Ok(vec![(-1, -1)]);
    }
    if proto == "icmp" || proto == "icmpv6" {
        let t = r.icmp_type.or(r.from_port).unwrap_or(-1);
        let c = r.icmp_code.or(r.to_port).unwrap_or(-1);
        let t = i32::try_from(t).ok().filter(|t| (-1..=255).contains(t));
        let c = i32::try_from(c).ok().filter(|c| (-1..=255).contains(c));
        return match (t, c) {
            (Some(t), Some(c)) => Ok(vec![(t, c)]),
            _ => Err("ICMP type and code must be -1..255".into()),
        };
    }
    let mut out = Vec::new();
    for p in r.ports.iter().flatten() {
        let text = match p {
            Value::String(s) => s.trim().to_owned(),
            Value::Number(n) => n.to_string(),
            other => return Err(format!("port {other} is neither a number nor a range")),
        };
        let (a, b) = text.split_once('-').unwrap_or((&text, &text));
        let parse = |s: &str| {
            s.trim()
                .parse::<i64>()
                .map_err(|_| format!("port '{text}' is not a port or a range like 8000-8100"))
        };
        let (a, b) = (port(parse(a)?, "port")?, port(parse(b)?, "port")?);
        if a > b {
            return Err(format!("port range '{text}' ends before it starts"));
        }
        out.push((a, b));
    }
    match (r.from_port, r.to_port) {
        (None, None) => {}
        (Some(f), t) => {
            let f = port(f, "from_port")?;
            let t = port(t.unwrap_or(i64::from(f)), "to_port")?;
            if f > t {
                return Err(format!("from_port {f} is above to_port {t}"));
            }
            out.push((f, t));
        }
        (None, Some(_)) => return Err("to_port needs from_port".into()),
    }
    if out.is_empty() {
        return Err(format!("proto {proto} needs ports (or from_port/to_port)"));
    }
    Ok(out)
}

fn strings(v: &Option<Value>, what: &str) -> Result<Vec<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{what} entry {i} is not a string"))
            })
            .collect(),
        Some(other) => Err(format!("{what} must be a string or a list, got {other}")),
    }
}

/// A CIDR as AWS stores it; the second value is set when host bits were
/// cleared. A bare address is a host route (/32, /128).
pub fn cidr(s: &str, v6: bool) -> Result<(String, bool), String> {
    let (family, bits) = if v6 { ("IPv6", 128) } else { ("IPv4", 32) };
    let (addr, len) = match s.trim().split_once('/') {
        Some((a, l)) => (a, l.parse::<u32>().ok()),
        None => (s.trim(), Some(bits)),
    };
    let len = len
        .filter(|l| *l <= bits)
        .ok_or_else(|| format!("'{s}' has a bad prefix length"))?;
    let ip: IpAddr = addr
        .parse()
        .ok()
        .filter(|ip: &IpAddr| ip.is_ipv6() == v6)
        .ok_or_else(|| format!("'{s}' is not an {family} CIDR"))?;
    let raw = match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    let mask = u128::MAX.checked_shl(bits - len).unwrap_or(0) & (u128::MAX >> (128 - bits));
    let net = raw & mask;
    let shown = if v6 {
        IpAddr::V6(Ipv6Addr::from(net))
    } else {
        IpAddr::V4(Ipv4Addr::from(u32::try_from(net).unwrap_or(0)))
    };
    Ok((format!("{shown}/{len}"), net != raw))
}

pub fn cidr_v4(s: &str) -> Result<(String, bool), String> {
    cidr(s, false)
}

pub fn cidr_v6(s: &str) -> Result<(String, bool), String> {
    cidr(s, true)
}

fn rules_of(
    list: &[RuleArg],
    which: &str,
    own: (Option<&str>, Option<&str>),
    notes: &mut Vec<String>,
) -> Result<Rules, Failure> {
    let mut out = Rules::new();
    for (i, r) in list.iter().enumerate() {
        let at = |e: String| Failure::msg(format!("{which}[{i}]: {e}"));
        let proto = protocol(&r.proto).map_err(at)?;
        let mut targets = Vec::new();
        // An IPv6 CIDR in cidr_ip is taken for what it is.
        let v4 = strings(&r.cidr_ip, "cidr_ip").map_err(at)?;
        let v6 = strings(&r.cidr_ipv6, "cidr_ipv6").map_err(at)?;
        for c in v4.iter().chain(&v6) {
            let (n, fixed, target): (_, _, fn(String) -> Target) = if c.contains(':') {
                let (n, f) = cidr_v6(c).map_err(at)?;
                (n, f, Target::V6)
            } else {
                let (n, f) = cidr_v4(c).map_err(at)?;
                (n, f, Target::V4)
            };
            if fixed {
                notes.push(format!(
                    "{which}[{i}]: {c} has host bits set; AWS stores it as {n}"
                ));
            }
            targets.push(target(n));
        }
        if let Some(g) = &r.group_id {
            targets.push(if Some(g.as_str()) == own.1 {
                Target::This
            } else {
                Target::Group(g.clone())
            });
        }
        if let Some(g) = &r.group_name {
            targets.push(if Some(g.as_str()) == own.0 {
                Target::This
            } else {
                Target::Named(g.clone())
            });
        }
        if targets.is_empty() {
            return Err(at(
                "no target: give cidr_ip, cidr_ipv6, group_id or group_name".into(),
            ));
        }
        for (from, to) in ranges(r, &proto).map_err(at)? {
            for target in &targets {
                let rule = Rule {
                    proto: proto.clone(),
                    from,
                    to,
                    target: target.clone(),
                };
                match out.get(&rule) {
                    Some(d) if d != &r.rule_desc && d.is_some() && r.rule_desc.is_some() => {
                        return Err(at(format!(
                            "{} is listed twice with different descriptions",
                            rule_text(&rule)
                        )));
                    }
                    Some(Some(_)) => {}
                    _ => {
                        out.insert(rule, r.rule_desc.clone());
                    }
                }
            }
        }
    }
    Ok(out)
}

fn rule_text(r: &Rule) -> String {
    let target = match &r.target {
        Target::V4(c) | Target::V6(c) => c.clone(),
        Target::Group(g) | Target::Named(g) => g.clone(),
        Target::This => "this group".into(),
    };
    let proto = if r.proto == "-1" { "all" } else { &r.proto };
    format!("{proto} {}-{} from {target}", r.from, r.to)
}

pub fn task(p: &Params) -> Result<Task, Failure> {
    let a: Args = p.typed()?;
    let own = (a.name.as_deref(), a.group_id.as_deref());
    let mut notes = Vec::new();
    let ingress = a
        .rules
        .as_deref()
        .map(|r| rules_of(r, "rules", own, &mut notes))
        .transpose()?;
    let egress = a
        .rules_egress
        .as_deref()
        .map(|r| rules_of(r, "rules_egress", own, &mut notes))
        .transpose()?;
    Ok(Task {
        present: a.state != "absent",
        name: a.name,
        group_id: a.group_id,
        description: a.description,
        vpc_id: a.vpc_id,
        ingress,
        egress,
        purge_ingress: a.purge_rules,
        purge_egress: a.purge_rules_egress,
        tags: a.tags.as_ref().map(tag_map),
        purge_tags: a.purge_tags,
        notes,
    })
}

/// The group as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub description: String,
    pub vpc_id: Option<String>,
    pub owner_id: Option<String>,
    pub arn: Option<String>,
    pub ingress: Rules,
    pub egress: Rules,
    pub tags: BTreeMap<String, String>,
}

/// Rule changes of one direction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleChanges {
    /// With the description AWS has: revoked as read, as amazon.aws does.
    pub revoke: Vec<(Rule, Option<String>)>,
    pub authorize: Vec<(Rule, Option<String>)>,
    pub describe: Vec<(Rule, String)>,
}

impl RuleChanges {
    fn is_empty(&self) -> bool {
        self.revoke.is_empty() && self.authorize.is_empty() && self.describe.is_empty()
    }
    fn apply(&self, rules: &Rules) -> Rules {
        let mut out = rules.clone();
        for (r, _) in &self.revoke {
            out.remove(r);
        }
        for (r, d) in &self.authorize {
            out.insert(r.clone(), d.clone());
        }
        for (r, d) in &self.describe {
            out.insert(r.clone(), Some(d.clone()));
        }
        out
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    pub create: bool,
    pub ingress: RuleChanges,
    pub egress: RuleChanges,
    pub tags: TagPlan,
}

impl crate::driver::Changes for Changes {
    fn is_empty(&self) -> bool {
        !self.create && self.ingress.is_empty() && self.egress.is_empty() && self.tags.is_empty()
    }
}

/// AWS's egress rule on a new VPC group.
pub fn default_egress() -> Rules {
    Rules::from([(
        Rule {
            proto: "-1".into(),
            from: -1,
            to: -1,
            target: Target::V4("0.0.0.0/0".into()),
        },
        None,
    )])
}

pub fn plan_rules(desired: Option<&Rules>, current: &Rules, purge: bool) -> RuleChanges {
    let Some(want) = desired else {
        return RuleChanges::default();
    };
    let mut out = RuleChanges::default();
    for (r, d) in want {
        match current.get(r) {
            None => out.authorize.push((r.clone(), d.clone())),
            Some(have) => {
                if let Some(d) = d
                    .as_ref()
                    .filter(|d| have.as_deref().unwrap_or("") != d.as_str())
                {
                    out.describe.push((r.clone(), d.clone()));
                }
            }
        }
    }
    if purge {
        out.revoke = current
            .iter()
            .filter(|(r, _)| !want.contains_key(*r))
            .map(|(r, d)| (r.clone(), d.clone()))
            .collect();
    }
    out
}

/// The pure plan. A group still to be created is planned against what AWS
/// makes: no inbound rules and the allow-all egress rule.
pub fn plan(t: &Task, current: Option<&Group>) -> Result<Changes, Failure> {
    if let Some(rule) = [&t.ingress, &t.egress]
        .into_iter()
        .flatten()
        .flat_map(|r| r.keys())
        .find(|r| matches!(r.target, Target::Named(_)))
    {
        return Err(Failure::msg(format!(
            "rule {} names a group that was not resolved",
            rule_text(rule)
        )));
    }
    let (ingress, egress, tags, create) = match current {
        Some(g) => {
            if let Some(n) = t.name.as_ref().filter(|n| **n != g.name) {
                return Err(Failure::msg(format!(
                    "security group {} is named '{}'; a group cannot be renamed to '{n}'",
                    g.id, g.name
                )));
            }
            (g.ingress.clone(), g.egress.clone(), g.tags.clone(), false)
        }
        None => {
            if t.description.is_none() {
                return Err(Failure::msg(format!(
                    "security group '{}' does not exist; description is required to create it",
                    t.name.as_deref().unwrap_or_default()
                )));
            }
            if t.group_id.is_some() {
                return Err(Failure::msg(format!(
                    "security group {} does not exist (a group_id cannot be created; give name)",
                    t.group_id.as_deref().unwrap_or_default()
                )));
            }
            (Rules::new(), default_egress(), BTreeMap::new(), true)
        }
    };
    // The group's own id, written in a task that found it by name.
    let own = |rules: &Option<Rules>| -> Option<Rules> {
        let id = current.map(|g| g.id.as_str());
        rules.as_ref().map(|r| {
            r.iter()
                .map(|(rule, d)| match &rule.target {
                    Target::Group(g) if Some(g.as_str()) == id => (
                        Rule {
                            target: Target::This,
                            ..rule.clone()
                        },
                        d.clone(),
                    ),
                    _ => (rule.clone(), d.clone()),
                })
                .collect()
        })
    };
    Ok(Changes {
        create,
        ingress: plan_rules(own(&t.ingress).as_ref(), &ingress, t.purge_ingress),
        egress: plan_rules(own(&t.egress).as_ref(), &egress, t.purge_egress),
        tags: plan_task_tags(&tags, t.tags.as_ref(), t.purge_tags),
    })
}

/// How the group is found.
#[derive(Debug, Clone)]
pub enum Lookup<'a> {
    Id(&'a str),
    Name(&'a str, Option<&'a str>),
}

/// The EC2 calls this module makes.
#[allow(async_fn_in_trait)]
pub trait Api {
    async fn find(&self, lookup: Lookup<'_>) -> Result<Vec<SecurityGroup>, Error>;
    async fn create(
        &self,
        name: &str,
        description: &str,
        vpc_id: Option<&str>,
        tags: &BTreeMap<String, String>,
    ) -> Result<String, Error>;
    /// Revokes, authorises or re-describes rules of one direction.
    async fn rules(
        &self,
        id: &str,
        op: RuleOp,
        egress: bool,
        rules: Vec<IpPermission>,
    ) -> Result<(), Error>;
    async fn tag(&self, id: &str, plan: &TagPlan) -> Result<(), Error>;
    async fn delete(&self, id: &str) -> Result<(), Error>;
}

/// What is done to a set of rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleOp {
    Revoke,
    Authorize,
    Describe,
}

/// The six rule calls (three operations, two directions) take the same
/// arguments and differ only in the SDK builder.
macro_rules! rule_call {
    ($client:expr, $op:ident, $name:literal, $what:literal, $id:expr, $rules:expr) => {
        $client
            .$op()
            .group_id($id)
            .set_ip_permissions(Some($rules))
            .send()
            .await
            .map(|_| ())
            .map_err(sdk_error("EC2", $name, format!("{} of {}", $what, $id)))
    };
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

impl Api for Client {
    async fn find(&self, lookup: Lookup<'_>) -> Result<Vec<SecurityGroup>, Error> {
        let (req, what) = match lookup {
            Lookup::Id(id) => (
                self.describe_security_groups()
                    .filters(filter("group-id", id)),
                format!("read security group {id}"),
            ),
            Lookup::Name(name, vpc) => {
                let mut req = self
                    .describe_security_groups()
                    .filters(filter("group-name", name));
                if let Some(v) = vpc {
                    req = req.filters(filter("vpc-id", v));
                }
                (req, format!("read security group '{name}'"))
            }
        };
        let out = req
            .send()
            .await
            .map_err(sdk_error("EC2", "DescribeSecurityGroups", what))?;
        Ok(out.security_groups().to_vec())
    }
    async fn create(
        &self,
        name: &str,
        description: &str,
        vpc_id: Option<&str>,
        tags: &BTreeMap<String, String>,
    ) -> Result<String, Error> {
        let mut req = self
            .create_security_group()
            .group_name(name)
            .description(description)
            .set_vpc_id(vpc_id.map(str::to_owned));
        if !tags.is_empty() {
            req = req.tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::SecurityGroup)
                    .set_tags(Some(crate::ec2::tags(tags)))
                    .build(),
            );
        }
        let out = req.send().await.map_err(sdk_error(
            "EC2",
            "CreateSecurityGroup",
            format!("create security group '{name}'"),
        ))?;
        out.group_id().map(str::to_owned).ok_or_else(|| {
            Error::config(format!("CreateSecurityGroup '{name}' returned no GroupId"))
        })
    }
    async fn rules(
        &self,
        id: &str,
        op: RuleOp,
        egress: bool,
        rules: Vec<IpPermission>,
    ) -> Result<(), Error> {
        use RuleOp::*;
        match (op, egress) {
            (Revoke, true) => rule_call!(
                self,
                revoke_security_group_egress,
                "RevokeSecurityGroupEgress",
                "revoke egress rules",
                id,
                rules
            ),
            (Revoke, false) => rule_call!(
                self,
                revoke_security_group_ingress,
                "RevokeSecurityGroupIngress",
                "revoke ingress rules",
                id,
                rules
            ),
            (Authorize, true) => {
                rule_call!(
                    self,
                    authorize_security_group_egress,
                    "AuthorizeSecurityGroupEgress",
                    "authorize egress rules",
                    id,
                    rules
                )
            }
            (Authorize, false) => {
                rule_call!(
                    self,
                    authorize_security_group_ingress,
                    "AuthorizeSecurityGroupIngress",
                    "authorize ingress rules",
                    id,
                    rules
                )
            }
            (Describe, true) => rule_call!(
                self,
                update_security_group_rule_descriptions_egress,
                "UpdateSecurityGroupRuleDescriptionsEgress",
                "update egress rule descriptions",
                id,
                rules
            ),
            (Describe, false) => rule_call!(
                self,
                update_security_group_rule_descriptions_ingress,
                "UpdateSecurityGroupRuleDescriptionsIngress",
                "update ingress rule descriptions",
                id,
                rules
            ),
        }
    }
    async fn tag(&self, id: &str, plan: &TagPlan) -> Result<(), Error> {
        crate::ec2::tag(self, id, plan).await
    }
    async fn delete(&self, id: &str) -> Result<(), Error> {
        self.delete_security_group()
            .group_id(id)
            .send()
            .await
            .map_err(sdk_error(
                "EC2",
                "DeleteSecurityGroup",
                format!("delete security group {id}"),
            ))?;
        Ok(())
    }
}

/// One IpPermission per rule (AWS takes many in one call).
fn permission(own_id: &str, rule: &Rule, desc: Option<&str>) -> IpPermission {
    let mut p = IpPermission::builder().ip_protocol(&rule.proto);
    if rule.proto != "-1" {
        p = p.from_port(rule.from).to_port(rule.to);
    }
    let desc = desc.map(str::to_owned);
    match &rule.target {
        Target::V4(c) => p.ip_ranges(IpRange::builder().cidr_ip(c).set_description(desc).build()),
        Target::V6(c) => p.ipv6_ranges(
            Ipv6Range::builder()
                .cidr_ipv6(c)
                .set_description(desc)
                .build(),
        ),
        Target::Group(g) | Target::Named(g) => p.user_id_group_pairs(
            UserIdGroupPair::builder()
                .group_id(g)
                .set_description(desc)
                .build(),
        ),
        Target::This => p.user_id_group_pairs(
            UserIdGroupPair::builder()
                .group_id(own_id)
                .set_description(desc)
                .build(),
        ),
    }
    .build()
}

fn nonempty(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_owned)
}

/// AWS's permissions, flattened to one entry per target.
pub fn rules_from(own_id: &str, perms: &[IpPermission]) -> Rules {
    let mut out = Rules::new();
    for p in perms {
        let proto = protocol(p.ip_protocol().unwrap_or("-1")).unwrap_or_else(|_| "-1".into());
        let (from, to) = if proto == "-1" {
            (-1, -1)
        } else {
            (p.from_port().unwrap_or(-1), p.to_port().unwrap_or(-1))
        };
        let mut add = |target, desc| {
            out.insert(
                Rule {
                    proto: proto.clone(),
                    from,
                    to,
                    target,
                },
                desc,
            );
        };
        for r in p.ip_ranges() {
            if let Some(c) = r.cidr_ip() {
                add(Target::V4(c.to_owned()), nonempty(r.description()));
            }
        }
        for r in p.ipv6_ranges() {
            if let Some(c) = r.cidr_ipv6() {
                let c = cidr_v6(c).map(|(c, _)| c).unwrap_or_else(|_| c.to_owned());
                add(Target::V6(c), nonempty(r.description()));
            }
        }
        for g in p.user_id_group_pairs() {
            if let Some(id) = g.group_id() {
                let target = if id == own_id {
                    Target::This
                } else {
                    Target::Group(id.to_owned())
                };
                add(target, nonempty(g.description()));
            }
        }
    }
    out
}

fn group_from(g: &SecurityGroup) -> Group {
    let id = g.group_id().unwrap_or_default().to_owned();
    Group {
        ingress: rules_from(&id, g.ip_permissions()),
        egress: rules_from(&id, g.ip_permissions_egress()),
        name: g.group_name().unwrap_or_default().to_owned(),
        description: g.description().unwrap_or_default().to_owned(),
        vpc_id: g.vpc_id().map(str::to_owned),
        owner_id: g.owner_id().map(str::to_owned),
        arn: g.security_group_arn().map(str::to_owned),
        tags: crate::ec2::tag_dict(g.tags()),
        id,
    }
}

/// Rules as amazon.aws returns them: one permission per protocol and port
/// range, targets grouped under it.
fn permissions_json(id: &str, owner: Option<&str>, rules: &Rules) -> Value {
    let mut grouped: BTreeMap<(String, i32, i32), Map<String, Value>> = BTreeMap::new();
    for (r, d) in rules {
        let entry = grouped
            .entry((r.proto.clone(), r.from, r.to))
            .or_insert_with(|| {
                let mut m = Map::new();
                m.insert("ip_protocol".into(), Value::from(r.proto.clone()));
                if r.proto != "-1" {
                    m.insert("from_port".into(), Value::from(r.from));
                    m.insert("to_port".into(), Value::from(r.to));
                }
                for k in [
                    "ip_ranges",
                    "ipv6_ranges",
                    "user_id_group_pairs",
                    "prefix_list_ids",
                ] {
                    m.insert(k.into(), Value::Array(Vec::new()));
                }
                m
            });
        let (key, mut item) = match &r.target {
            Target::V4(c) => ("ip_ranges", json!({"cidr_ip": c})),
            Target::V6(c) => ("ipv6_ranges", json!({"cidr_ipv6": c})),
            Target::Group(g) | Target::Named(g) => ("user_id_group_pairs", json!({"group_id": g})),
            Target::This => ("user_id_group_pairs", json!({"group_id": id})),
        };
        if let Some(o) = item.as_object_mut() {
            if let Some(d) = d {
                o.insert("description".into(), Value::from(d.clone()));
            }
            if let Some(owner) = owner.filter(|_| key == "user_id_group_pairs") {
                o.insert("user_id".into(), Value::from(owner));
            }
        }
        if let Some(Value::Array(a)) = entry.get_mut(key) {
            a.push(item);
        }
    }
    Value::Array(grouped.into_values().map(Value::Object).collect())
}

pub fn describe(g: &Group) -> Value {
    let owner = g.owner_id.as_deref();
    let mut v = json!({
        "group_id": g.id,
        "group_name": g.name,
        "description": g.description,
        "vpc_id": g.vpc_id,
        "owner_id": g.owner_id,
        "ip_permissions": permissions_json(&g.id, owner, &g.ingress),
        "ip_permissions_egress": permissions_json(&g.id, owner, &g.egress),
        "tags": g.tags,
    });
    if let (Some(arn), Some(o)) = (&g.arn, v.as_object_mut()) {
        o.insert("security_group_arn".into(), Value::from(arn.clone()));
    }
    v
}

pub struct SecurityGroupResource<A>(PhantomData<A>);

async fn read_one<A: Api>(api: &A, t: &Task) -> Result<Option<Group>, Failure> {
    let lookup = match (&t.group_id, &t.name) {
        (Some(id), _) => Lookup::Id(id),
        (None, Some(name)) => Lookup::Name(name, t.vpc_id.as_deref()),
        (None, None) => return Err(Failure::msg("one of name, group_id is required")),
    };
    let found = api.find(lookup).await?;
    match found.as_slice() {
        [] => Ok(None),
        [g] => Ok(Some(group_from(g))),
        many => Err(Failure::msg(format!(
            "security group '{}' exists in {} VPCs ({}); give vpc_id",
            t.name.as_deref().unwrap_or_default(),
            many.len(),
            many.iter()
                .filter_map(|g| g.vpc_id())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

impl<A: Api> Resource for SecurityGroupResource<A> {
    type Task = Task;
    type Api = A;
    type Current = Group;
    type Changes = Changes;
    const KEY: &'static str = "";

    fn present(t: &Task) -> bool {
        t.present
    }

    async fn read(api: &A, t: &Task) -> Result<Option<Group>, Failure> {
        read_one(api, t).await
    }

    fn plan(t: &Task, current: Option<&Group>) -> Result<Changes, Failure> {
        plan(t, current)
    }

    async fn apply(
        api: &A,
        t: &Task,
        current: Option<&Group>,
        ch: &Changes,
    ) -> Result<Group, Failure> {
        let id = match current {
            Some(g) => g.id.clone(),
            None => {
                api.create(
                    t.name.as_deref().unwrap_or_default(),
                    t.description.as_deref().unwrap_or_default(),
                    t.vpc_id.as_deref(),
                    &ch.tags.set,
                )
                .await?
            }
        };
        // Revokes first (both directions), then authorisations and
        // descriptions: replacing rules works at the group's rule limit.
        let perms = |rules: &mut dyn Iterator<Item = (&Rule, Option<&str>)>| -> Vec<IpPermission> {
            rules.map(|(r, d)| permission(&id, r, d)).collect()
        };
        let directions = [(true, &ch.egress), (false, &ch.ingress)];
        let mut calls = Vec::new();
        for (egress, rc) in directions {
            let p = perms(&mut rc.revoke.iter().map(|(r, d)| (r, d.as_deref())));
            calls.push((RuleOp::Revoke, egress, p));
        }
        for (egress, rc) in directions {
            let p = perms(&mut rc.authorize.iter().map(|(r, d)| (r, d.as_deref())));
            calls.push((RuleOp::Authorize, egress, p));
            let p = perms(&mut rc.describe.iter().map(|(r, d)| (r, Some(d.as_str()))));
            calls.push((RuleOp::Describe, egress, p));
        }
        // A group made a moment ago may be unknown to the next calls (EC2's
        // eventual consistency): those are asked again for a bounded time -
        // only for our own new group, as a rule naming another group that
        // does not exist is a mistake to report at once.
        let just_made = current.is_none();
        let ours_not_yet = |e: &Error| {
            just_made
                && consistency::GROUP_NOT_FOUND_YET.matches(e)
                && e.aws()
                    .and_then(|a| a.message.as_deref())
                    .is_none_or(|m| m.contains(&id))
        };
        for (op, egress, p) in calls {
            if !p.is_empty() {
                consistency::until_consistent_by(
                    ours_not_yet,
                    consistency::EC2_PROPAGATION,
                    || api.rules(&id, op, egress, p.clone()),
                )
                .await?;
            }
        }
        if current.is_some() && !ch.tags.is_empty() {
            api.tag(&id, &ch.tags).await?;
        }
        let found =
            consistency::until_consistent_by(ours_not_yet, consistency::EC2_PROPAGATION, || {
                api.find(Lookup::Id(&id))
            })
            .await?;
        found.first().map(group_from).ok_or_else(|| {
            Failure::msg(format!(
                "security group {id} was written but cannot be read back"
            ))
        })
    }

    async fn delete(api: &A, _t: &Task, g: &Group) -> Result<bool, Failure> {
        // Still referenced by what is going away (an instance shutting
        // down, its network interface): AWS says DependencyViolation until
        // it is gone.
        consistency::until_consistent(
            &[consistency::STILL_REFERENCED],
            consistency::EC2_PROPAGATION,
            || api.delete(&g.id),
        )
        .await?;
        Ok(true)
    }

    fn describe(g: &Group) -> Value {
        describe(g)
    }

    fn preview(t: &Task, current: Option<&Group>, ch: &Changes) -> Value {
        let base = current.cloned().unwrap_or_else(|| Group {
            id: String::new(),
            name: t.name.clone().unwrap_or_default(),
            description: t.description.clone().unwrap_or_default(),
            vpc_id: t.vpc_id.clone(),
            owner_id: None,
            arn: None,
            ingress: Rules::new(),
            egress: default_egress(),
            tags: BTreeMap::new(),
        });
        describe(&Group {
            ingress: ch.ingress.apply(&base.ingress),
            egress: ch.egress.apply(&base.egress),
            tags: ch.tags.apply(&base.tags),
            ..base
        })
    }

    fn warnings(t: &Task, current: Option<&Group>) -> Vec<String> {
        let mut w = t.notes.clone();
        if let (Some(d), Some(g)) = (&t.description, current)
            && *d != g.description
        {
            w.push(format!(
                "security group {} keeps its description '{}': AWS cannot change a group's description",
                g.id, g.description
            ));
        }
        w
    }
}

fn named_groups(t: &Task) -> BTreeSet<String> {
    [&t.ingress, &t.egress]
        .into_iter()
        .flatten()
        .flat_map(|r| r.keys())
        .filter_map(|r| match &r.target {
            Target::Named(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

/// Rules naming another group: resolved to ids in the group's VPC, or an
/// error (never a group made up on the way). No call when no rule names one.
async fn resolve<A: Api>(api: &A, t: &mut Task) -> Result<(), Failure> {
    let names = named_groups(t);
    if names.is_empty() {
        return Ok(());
    }
    // The VPC other groups are looked up in: the task's, or the group's.
    let vpc = match &t.vpc_id {
        Some(v) => Some(v.clone()),
        None => read_one(api, t).await?.and_then(|g| g.vpc_id),
    };
    let vpc = vpc.as_deref();
    for name in names {
        let found = api.find(Lookup::Name(&name, vpc)).await?;
        let id = match found.as_slice() {
            [g] => g.group_id().unwrap_or_default().to_owned(),
            [] => {
                return Err(Failure::msg(format!(
                    "a rule names security group '{name}', which does not exist{}; create it first",
                    vpc.map(|v| format!(" in {v}")).unwrap_or_default()
                )));
            }
            _ => {
                return Err(Failure::msg(format!(
                    "a rule names security group '{name}', which exists in several VPCs; give vpc_id"
                )));
            }
        };
        for rules in [&mut t.ingress, &mut t.egress].into_iter().flatten() {
            let renamed: Rules = std::mem::take(rules)
                .into_iter()
                .map(|(mut r, d)| {
                    if r.target == Target::Named(name.clone()) {
                        r.target = Target::Group(id.clone());
                    }
                    (r, d)
                })
                .collect();
            *rules = renamed;
        }
    }
    Ok(())
}

pub async fn run(ctx: Ctx) -> Result<Response, Failure> {
    let mut t = task(&ctx.params)?;
    let a: Args = ctx.params.typed()?;
    let config = craftlb_core::aws::sdk_config(&a.connection.aws_params(), None).await?;
    let client = Client::new(&config);
    if t.present {
        resolve(&client, &mut t).await?;
    }
    drive::<SecurityGroupResource<Client>>(&client, &t, ctx.check_mode).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_of(v: Value) -> Result<Task, String> {
        crate::protocol::task_of(&SPEC, v, task)
    }

    fn ok(v: Value) -> Task {
        task_of(v).unwrap_or_else(|e| panic!("{e}"))
    }

    fn rule(proto: &str, from: i32, to: i32, target: Target) -> Rule {
        Rule {
            proto: proto.into(),
            from,
            to,
            target,
        }
    }

    fn group(ingress: Rules, egress: Rules) -> Group {
        Group {
            id: "sg-1".into(),
            name: "lb".into(),
            description: "d".into(),
            vpc_id: Some("vpc-1".into()),
            owner_id: Some("123456789012".into()),
            arn: None,
            ingress,
            egress,
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn cidrs_are_normalised_as_aws_stores_them() {
        assert_eq!(cidr_v4("10.0.0.1/24"), Ok(("10.0.0.0/24".into(), true)));
        assert_eq!(cidr_v4("10.0.0.1"), Ok(("10.0.0.1/32".into(), false)));
        assert_eq!(cidr_v4("0.0.0.0/0"), Ok(("0.0.0.0/0".into(), false)));
        assert!(cidr_v4("10.0.0.300/8").is_err() && cidr_v4("10.0.0.0/33").is_err());
        assert_eq!(
            cidr_v6("2001:DB8:0:0::1/64"),
            Ok(("2001:db8::/64".into(), true))
        );
        assert_eq!(cidr_v6("::/0"), Ok(("::/0".into(), false)));
    }

    #[test]
    fn the_originals_rules_expand_to_one_entry_per_port_and_target() {
        let t = ok(json!({"name": "lb", "description": "d", "rules": [
            {"proto": "tcp", "from_port": 80, "to_port": 80, "cidr_ip": "0.0.0.0/0"},
            {"proto": "6", "ports": [443, "8000-8100"], "cidr_ip": ["10.0.0.5/8", "192.168.1.1"],
             "rule_desc": "web"},
            {"proto": "icmp", "icmp_type": 8, "cidr_ip": "0.0.0.0/0"},
            {"proto": "all", "group_name": "lb"},
        ]}));
        let rules = t.ingress.unwrap_or_default();
        let keys: Vec<String> = rules.keys().map(rule_text).collect();
        assert_eq!(
            keys,
            [
                "all -1--1 from this group",
                "icmp 8--1 from 0.0.0.0/0",
                "tcp 80-80 from 0.0.0.0/0",
                "tcp 443-443 from 10.0.0.0/8",
                "tcp 443-443 from 192.168.1.1/32",
                "tcp 8000-8100 from 10.0.0.0/8",
                "tcp 8000-8100 from 192.168.1.1/32",
            ]
        );
        assert_eq!(t.notes.len(), 1, "{:?}", t.notes);
        assert!(t.notes[0].contains("10.0.0.0/8"));
    }

    #[test]
    fn same_rules_however_written_plan_nothing() {
        let t = ok(json!({"name": "lb", "rules": [
            {"proto": "tcp", "ports": ["80"], "cidr_ip": "10.1.2.3/16", "rule_desc": "x"},
            {"proto": "-1", "group_id": "sg-1"},
        ], "rules_egress": [{"proto": "all", "cidr_ip": "0.0.0.0/0"}], "purge_rules": true,
           "purge_rules_egress": true}));
        let current = group(
            Rules::from([
                (
                    rule("tcp", 80, 80, Target::V4("10.1.0.0/16".into())),
                    Some("x".into()),
                ),
                (rule("-1", -1, -1, Target::This), None),
            ]),
            default_egress(),
        );
        let ch = plan(&t, Some(&current)).unwrap_or_else(|f| panic!("{}", f.msg));
        assert_eq!(ch, Changes::default());
    }

    #[test]
    fn descriptions_change_in_place_and_nothing_is_purged_unasked() {
        let other = rule("tcp", 22, 22, Target::V4("10.9.0.0/16".into()));
        let web = rule("tcp", 443, 443, Target::V4("0.0.0.0/0".into()));
        let current = group(
            Rules::from([(other.clone(), None), (web.clone(), Some("old".into()))]),
            default_egress(),
        );
        let t = ok(json!({"name": "lb", "rules": [
            {"proto": "tcp", "ports": [443], "cidr_ip": "0.0.0.0/0", "rule_desc": "new"}]}));
        let ch = plan(&t, Some(&current)).unwrap_or_else(|f| panic!("{}", f.msg));
        assert_eq!(ch.ingress.describe, [(web.clone(), "new".to_owned())]);
        assert!(ch.ingress.revoke.is_empty() && ch.ingress.authorize.is_empty());
        assert!(ch.egress.is_empty(), "egress not given: left alone");
        // Without rule_desc the description is left alone.
        let t = ok(json!({"name": "lb", "rules": [
            {"proto": "tcp", "ports": [443], "cidr_ip": "0.0.0.0/0"}], "purge_rules": true}));
        let ch = plan(&t, Some(&current)).unwrap_or_else(|f| panic!("{}", f.msg));
        assert_eq!(ch.ingress.revoke, [(other, None)]);
        assert!(ch.ingress.describe.is_empty());
    }

    #[test]
    fn a_new_group_is_planned_against_awss_default_egress() {
        let t = ok(json!({"name": "lb", "description": "d",
            "rules_egress": [{"proto": "tcp", "ports": [443], "cidr_ip": "0.0.0.0/0"}],
            "purge_rules_egress": true, "tags": {"a": "b"}}));
        let ch = plan(&t, None).unwrap_or_else(|f| panic!("{}", f.msg));
        assert!(ch.create);
        assert_eq!(ch.egress.revoke.len(), 1, "allow-all revoked when purged");
        assert_eq!(ch.egress.authorize.len(), 1);
        assert_eq!(ch.tags.set.len(), 1);
        let t = ok(json!({"name": "lb"}));
        assert!(
            plan(&t, None)
                .err()
                .is_some_and(|f| f.msg.contains("description is required"))
        );
    }

    #[test]
    fn bad_rules_fail_naming_the_rule() {
        let e = |v| task_of(v).err().unwrap_or_default();
        assert!(
            e(json!({"name": "lb", "rules": [{"proto": "tcp", "cidr_ip": "0.0.0.0/0"}]}))
                .starts_with("rules[0]: proto tcp needs ports")
        );
        assert!(
            e(json!({"name": "lb", "rules": [{"proto": "tcp", "ports": [80]}]}))
                .contains("no target")
        );
        assert!(
            e(json!({"name": "lb", "rules_egress": [{"ports": ["90-80"], "cidr_ip": "1.2.3.4"}]}))
                .starts_with("rules_egress[0]: port range '90-80'")
        );
        assert!(
            e(json!({"name": "lb", "rules": [{"ports": [70000], "cidr_ip": "1.2.3.4"}]}))
                .contains("70000")
        );
        assert!(
            e(json!({"name": "lb", "rules": [{"proto": "gre!", "cidr_ip": "1.2.3.4"}]}))
                .contains("unknown protocol")
        );
        assert!(
            e(json!({"name": "lb", "rules": [{"ports": [80], "cidr_ip": "10.0.0.0/40"}]}))
                .contains("prefix")
        );
        assert!(
            e(json!({"name": "lb", "rules": [
                {"ports": [80], "cidr_ip": "1.2.3.4", "rule_desc": "a"},
                {"ports": [80], "cidr_ip": "1.2.3.4/32", "rule_desc": "b"}]}))
            .contains("twice")
        );
        assert!(e(json!({"description": "x"})).contains("name"));
    }

    #[test]
    fn aws_permissions_read_back_as_the_same_rules() {
        let perms = vec![
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(80)
                .to_port(80)
                .ip_ranges(
                    IpRange::builder()
                        .cidr_ip("0.0.0.0/0")
                        .description("")
                        .build(),
                )
                .user_id_group_pairs(UserIdGroupPair::builder().group_id("sg-1").build())
                .build(),
            IpPermission::builder()
                .ip_protocol("-1")
                .ipv6_ranges(Ipv6Range::builder().cidr_ipv6("2001:DB8::/32").build())
                .build(),
        ];
        let rules = rules_from("sg-1", &perms);
        assert_eq!(
            rules.keys().map(rule_text).collect::<Vec<_>>(),
            [
                "all -1--1 from 2001:db8::/32",
                "tcp 80-80 from 0.0.0.0/0",
                "tcp 80-80 from this group"
            ]
        );
        assert!(
            rules.values().all(Option::is_none),
            "empty description is none"
        );
        let described = permissions_json("sg-1", Some("123"), &rules);
        assert_eq!(described.as_array().map(Vec::len), Some(2));
        assert_eq!(
            described[1]["user_id_group_pairs"][0],
            json!({"group_id": "sg-1", "user_id": "123"})
        );
    }
}
