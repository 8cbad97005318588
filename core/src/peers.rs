/*!
The peers of a load balancer node: which instances of its Auto Scaling group
replicate stick tables with it, rendered as haproxy's `peers` section.

Pure decisions ([`select`], [`render`]) and the few Auto Scaling / EC2 reads
and the lifecycle completion the node itself makes ([`GroupApi`]).
*/

use std::collections::BTreeMap;
use std::net::IpAddr;

use aws_sdk_autoscaling::Client as AsgClient;
use aws_sdk_ec2::Client as Ec2Client;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result, sdk_error};
use crate::lifecycle::HookMetadata;
use crate::paginate::{Page, collect_all};

/// One line of the peers section.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Peer {
    pub name: String,
    pub address: IpAddr,
}

/// An instance of the group as Auto Scaling and EC2 describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub instance_id: String,
    pub lifecycle_state: String,
    pub private_ip: Option<String>,
}

/// haproxy takes a peer name as one word; instance ids and host names fit.
pub fn valid_peer_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The peers: every InService member, plus the local node whatever its
/// state (it is Pending:Wait while it deploys, Terminating:Wait while it
/// drains, and haproxy needs its own name in the section either way).
///
/// Refuses an answer that cannot be right — no members at all, or the local
/// node missing — so the caller keeps the last good file.
pub fn select(local: &str, group: &str, members: &[Member]) -> Result<Vec<Peer>> {
    let action = format!("choose the peers of '{local}' in group '{group}'");
    if members.is_empty() {
        return Err(Error::new(
            ErrorKind::Rejected,
            action,
            "Auto Scaling lists no instance in the group; keeping the current peers",
        ));
    }
    if !members.iter().any(|m| m.instance_id == local) {
        return Err(Error::new(
            ErrorKind::Rejected,
            action,
            format!(
                "the local instance is not a member of the group (members: {}); keeping the current peers",
                members
                    .iter()
                    .map(|m| m.instance_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let mut by_name = BTreeMap::new();
    for m in members {
        if m.instance_id != local && m.lifecycle_state != "InService" {
            continue;
        }
        if !valid_peer_name(&m.instance_id) {
            return Err(Error::new(
                ErrorKind::Rejected,
                action,
                format!("instance id '{}' is not a valid peer name", m.instance_id),
            ));
        }
        let Some(ip) = m.private_ip.as_deref() else {
            if m.instance_id == local {
                return Err(Error::new(
                    ErrorKind::Rejected,
                    action,
                    "EC2 reports no private IP for the local instance",
                ));
            }
            // Described InService but already gone from EC2: not a peer.
            continue;
        };
        let address = ip.parse::<IpAddr>().map_err(|e| {
            Error::new(
                ErrorKind::Rejected,
                action.clone(),
                format!("private IP '{ip}' of '{}': {e}", m.instance_id),
            )
        })?;
        by_name.insert(m.instance_id.clone(), address);
    }
    Ok(by_name
        .into_iter()
        .map(|(name, address)| Peer { name, address })
        .collect())
}

const TEMPLATE: &str = "\
# Managed by craftlb update_peers: rewritten when the Auto Scaling group changes.
peers {{ section }}
{%- for p in peers %}
    peer {{ p.name }} {{ p.address }}:{{ port }}
{%- endfor %}
";

/// The peers file text. Names must pass [`valid_peer_name`] and the section
/// name likewise: nothing here is quoted.
pub fn render(section: &str, port: u16, peers: &[Peer]) -> Result<String> {
    let action = format!("render peers section '{section}'");
    if !valid_peer_name(section) {
        return Err(Error::new(
            ErrorKind::Config,
            action,
            format!("'{section}' is not a valid section name ([A-Za-z0-9_.-])"),
        ));
    }
    if let Some(bad) = peers.iter().find(|p| !valid_peer_name(&p.name)) {
        return Err(Error::new(
            ErrorKind::Config,
            action,
            format!("'{}' is not a valid peer name ([A-Za-z0-9_.-])", bad.name),
        ));
    }
    let env = minijinja::Environment::new();
    let text = env
        .render_str(
            TEMPLATE,
            minijinja::context! { section, port, peers => minijinja::value::Serde(peers) },
        )
        .map_err(|e| Error::new(ErrorKind::Config, action, e.to_string()))?;
    Ok(format!("{}\n", text.trim_end()))
}

/// A lifecycle hook of the group, as the drain needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookInfo {
    pub name: String,
    pub transition: String,
    pub heartbeat_timeout: Option<i32>,
    pub metadata: Option<String>,
}

/// How a node drains, all of it read from the group's hook metadata: the
/// one place the drain time is set (the launch side writes it; the Lambda
/// reads the same metadata to leave the completion to the node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainSettings {
    /// Terminating hooks whose metadata has `drain_seconds`: the node
    /// completes these, with the hook's heartbeat timeout.
    pub node_hooks: Vec<(String, Option<i32>)>,
    /// Longest wait for open connections once the node stops accepting.
    pub drain_seconds: u64,
    /// The record TTL the Lambda published with (launching hook metadata,
    /// else the terminating one's, else the default): clients may keep the
    /// node's address that long after the record is gone.
    pub ttl: u64,
}

impl DrainSettings {
    /// How often to record a heartbeat so no node hook times out while the
    /// node drains: a third of the shortest heartbeat timeout.
    pub fn heartbeat_every(&self) -> Option<std::time::Duration> {
        self.node_hooks
            .iter()
            .filter_map(|(_, t)| *t)
            .filter(|t| *t > 0)
            .min()
            .map(|t| std::time::Duration::from_millis(u64::from(t.unsigned_abs()) * 1000 / 3))
    }
}

pub fn drain_settings(hooks: &[HookInfo]) -> DrainSettings {
    let meta = |h: &HookInfo| {
        h.metadata
            .as_deref()
            .and_then(|m| HookMetadata::parse(Some(m)).ok())
    };
    let terminating: Vec<&HookInfo> = hooks
        .iter()
        .filter(|h| h.transition == crate::lifecycle::TERMINATING)
        .collect();
    let node: Vec<(&HookInfo, u32)> = terminating
        .iter()
        .filter_map(|h| meta(h).and_then(|m| m.drain_seconds).map(|d| (*h, d)))
        .collect();
    let ttl_of = |transition: &str| {
        hooks
            .iter()
            .filter(|h| h.transition == transition)
            .filter_map(meta)
            .map(|m| m.ttl)
            .max()
    };
    let ttl = ttl_of(crate::lifecycle::LAUNCHING)
        .or_else(|| ttl_of(crate::lifecycle::TERMINATING))
        .unwrap_or(HookMetadata::default().ttl);
    DrainSettings {
        node_hooks: node
            .iter()
            .map(|(h, _)| (h.name.clone(), h.heartbeat_timeout))
            .collect(),
        drain_seconds: node.iter().map(|(_, d)| u64::from(*d)).max().unwrap_or(0),
        ttl: u64::try_from(ttl).unwrap_or(0),
    }
}

/// The Auto Scaling / EC2 calls a node makes about its own group.
/// The asked ids an InvalidInstanceID.NotFound names ("The instance ID
/// 'i-1' does not exist", "The instance IDs 'i-1, i-2' do not exist").
pub fn unknown_ids(e: &crate::Error, asked: &[String]) -> Vec<String> {
    let text = e
        .aws()
        .and_then(|a| a.message.clone())
        .unwrap_or_else(|| e.to_string());
    asked
        .iter()
        .filter(|id| text.contains(id.as_str()))
        .cloned()
        .collect()
}

pub struct GroupApi {
    asg: AsgClient,
    ec2: Ec2Client,
}

impl GroupApi {
    pub fn new(config: &aws_types::SdkConfig) -> GroupApi {
        GroupApi {
            asg: AsgClient::new(config),
            ec2: Ec2Client::new(config),
        }
    }

    /// The group the instance belongs to (`None`: not in any group).
    pub async fn group_of(&self, instance_id: &str) -> Result<Option<String>> {
        let out = self
            .asg
            .describe_auto_scaling_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(sdk_error(
                "Auto Scaling",
                "DescribeAutoScalingInstances",
                format!("find the Auto Scaling group of '{instance_id}'"),
            ))?;
        Ok(out
            .auto_scaling_instances()
            .first()
            .and_then(|i| i.auto_scaling_group_name())
            .map(str::to_owned))
    }

    /// Every instance of the group with its lifecycle state and private IP
    /// (`None`: no such group).
    pub async fn members(&self, group: &str) -> Result<Option<Vec<Member>>> {
        let Some(g) = crate::autoscaling::describe_group(&self.asg, group).await? else {
            return Ok(None);
        };
        let mut members: Vec<Member> = g
            .instances()
            .iter()
            .filter_map(|i| {
                Some(Member {
                    instance_id: i.instance_id()?.to_owned(),
                    lifecycle_state: i.lifecycle_state()?.as_str().to_owned(),
                    private_ip: None,
                })
            })
            .collect();
        let ids: Vec<String> = members.iter().map(|m| m.instance_id.clone()).collect();
        let mut ips = BTreeMap::new();
        // DescribeInstances takes at most 1000 ids; a group holds far fewer.
        // (No chunk at all for an empty group: no ids would list the account.)
        for chunk in ids.chunks(500) {
            let mut chunk = chunk.to_vec();
            // An instance launched a moment ago may be unknown to EC2 yet
            // (eventual consistency), and EC2 then fails the whole call
            // naming it: it is left out of this round (no address, no
            // peer yet; the next run has it) instead of failing the run.
            let pairs = loop {
                match self.addresses(group, &chunk).await {
                    Err(e) if e.code() == Some("InvalidInstanceID.NotFound") => {
                        let unknown = unknown_ids(&e, &chunk);
                        if unknown.is_empty() {
                            return Err(e);
                        }
                        chunk.retain(|id| !unknown.contains(id));
                        if chunk.is_empty() {
                            break Vec::new();
                        }
                    }
                    other => break other?,
                }
            };
            ips.extend(pairs);
        }
        for m in &mut members {
            m.private_ip = ips.remove(&m.instance_id);
        }
        Ok(Some(members))
    }

    /// (instance id, private IP) of these instances, every page.
    async fn addresses(&self, group: &str, chunk: &[String]) -> Result<Vec<(String, String)>> {
        {
            let what = format!("the {} instances of group '{group}'", chunk.len());
            let pairs = collect_all(&what, |token| {
                let call = self
                    .ec2
                    .describe_instances()
                    .set_instance_ids(Some(chunk.to_vec()))
                    .set_next_token(token);
                let what = what.clone();
                async move {
                    let out = call.send().await.map_err(sdk_error(
                        "EC2",
                        "DescribeInstances",
                        format!("describe {what}"),
                    ))?;
                    let items = out
                        .reservations()
                        .iter()
                        .flat_map(|r| r.instances())
                        .filter_map(|i| {
                            Some((
                                i.instance_id()?.to_owned(),
                                i.private_ip_address()?.to_owned(),
                            ))
                        })
                        .collect();
                    Ok(Page {
                        items,
                        next: out.next_token().map(str::to_owned),
                    })
                }
            })
            .await?;
            Ok(pairs)
        }
    }

    pub async fn hooks(&self, group: &str) -> Result<Vec<HookInfo>> {
        let hooks = crate::autoscaling::lifecycle_hooks(&self.asg, group).await?;
        Ok(hooks
            .iter()
            .filter_map(|h| {
                Some(HookInfo {
                    name: h.lifecycle_hook_name()?.to_owned(),
                    transition: h.lifecycle_transition()?.to_owned(),
                    heartbeat_timeout: h.heartbeat_timeout(),
                    metadata: h.notification_metadata().map(str::to_owned),
                })
            })
            .collect())
    }

    /// Extends this instance's terminating action by the hook's heartbeat
    /// timeout. `false`: there was no action (completed or timed out).
    pub async fn heartbeat(&self, group: &str, hook: &str, instance_id: &str) -> Result<bool> {
        let action = crate::autoscaling::ActionRef {
            group,
            hook,
            instance_id,
            token: None,
        };
        crate::autoscaling::record_heartbeat(&self.asg, action).await
    }

    /// Completes this instance's terminating action with CONTINUE. `false`:
    /// there was no action to complete (already completed or timed out).
    pub async fn complete_termination(
        &self,
        group: &str,
        hook: &str,
        instance_id: &str,
    ) -> Result<bool> {
        let action = crate::autoscaling::ActionRef {
            group,
            hook,
            instance_id,
            token: None,
        };
        crate::autoscaling::complete_lifecycle_action(&self.asg, action, "CONTINUE").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_ids_are_the_ones_ec2_names() {
        let asked = ["i-1".to_owned(), "i-2".to_owned(), "i-3".to_owned()];
        let e = crate::Error::new(crate::ErrorKind::NotFound, "describe", "x")
            .with_code("InvalidInstanceID.NotFound")
            .with_message("The instance IDs 'i-1, i-3' do not exist");
        assert_eq!(unknown_ids(&e, &asked), ["i-1", "i-3"]);
        let vague = crate::Error::new(crate::ErrorKind::NotFound, "describe", "x")
            .with_code("InvalidInstanceID.NotFound")
            .with_message("not found");
        assert!(unknown_ids(&vague, &asked).is_empty());
    }

    fn m(id: &str, state: &str, ip: Option<&str>) -> Member {
        Member {
            instance_id: id.into(),
            lifecycle_state: state.into(),
            private_ip: ip.map(Into::into),
        }
    }

    #[test]
    fn in_service_members_and_the_local_node_whatever_its_state() {
        let members = [
            m("i-c", "InService", Some("10.0.0.3")),
            m("i-a", "Pending:Wait", Some("10.0.0.1")),
            m("i-b", "Terminating:Wait", Some("10.0.0.2")),
            m("i-d", "Pending", Some("10.0.0.4")),
            m("i-e", "InService", None),
        ];
        let peers = select("i-a", "g", &members).unwrap();
        let names: Vec<&str> = peers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["i-a", "i-c"],
            "sorted; not-InService others and IP-less members left out"
        );
    }

    #[test]
    fn refuses_empty_groups_and_groups_without_the_local_node() {
        let e = select("i-a", "g", &[]).unwrap_err();
        assert!(e.to_string().contains("no instance"), "{e}");
        let e = select("i-a", "g", &[m("i-b", "InService", Some("10.0.0.2"))]).unwrap_err();
        assert!(
            e.to_string().contains("not a member") && e.to_string().contains("i-b"),
            "{e}"
        );
        let e = select("i-a", "g", &[m("i-a", "InService", None)]).unwrap_err();
        assert!(e.to_string().contains("no private IP"), "{e}");
        let e = select("i-a", "g", &[m("i-a", "InService", Some("10.0.0.999"))]).unwrap_err();
        assert!(e.to_string().contains("10.0.0.999"), "{e}");
    }

    fn hook(name: &str, transition: &str, heartbeat: i32, meta: &str) -> HookInfo {
        HookInfo {
            name: name.into(),
            transition: transition.into(),
            heartbeat_timeout: Some(heartbeat),
            metadata: Some(meta.into()),
        }
    }

    #[test]
    fn drain_settings_come_from_the_hook_metadata() {
        use crate::lifecycle::{LAUNCHING, TERMINATING};
        let s = drain_settings(&[
            hook("launch", LAUNCHING, 300, r#"{"ttl": 30}"#),
            hook(
                "term",
                TERMINATING,
                90,
                r#"{"drain_seconds": 120, "ttl": 5}"#,
            ),
            hook("other", TERMINATING, 60, "{}"),
        ]);
        assert_eq!(s.node_hooks, vec![("term".to_owned(), Some(90))]);
        assert_eq!(
            (s.drain_seconds, s.ttl),
            (120, 30),
            "launch TTL is the record's"
        );
        assert_eq!(
            s.heartbeat_every(),
            Some(std::time::Duration::from_secs(30))
        );
        let s = drain_settings(&[hook(
            "term",
            TERMINATING,
            60,
            r#"{"drain_seconds": 10, "ttl": 5}"#,
        )]);
        assert_eq!((s.drain_seconds, s.ttl), (10, 5));
        let s = drain_settings(&[]);
        assert_eq!((s.node_hooks.len(), s.drain_seconds, s.ttl), (0, 0, 60));
        assert_eq!(s.heartbeat_every(), None);
    }

    #[test]
    fn renders_a_stable_section_and_rejects_unsafe_names() {
        let peers = select(
            "i-b",
            "g",
            &[
                m("i-b", "InService", Some("10.0.0.2")),
                m("i-a", "InService", Some("10.0.0.1")),
            ],
        )
        .unwrap();
        let text = render("lb_replication", 7777, &peers).unwrap();
        assert_eq!(
            text,
            "# Managed by craftlb update_peers: rewritten when the Auto Scaling group changes.\n\
             peers lb_replication\n    peer i-a 10.0.0.1:7777\n    peer i-b 10.0.0.2:7777\n"
        );
        let bad = [Peer {
            name: "i-a 1.2.3.4:1\n".into(),
            address: "10.0.0.1".parse().unwrap(),
        }];
        assert!(render("lb_replication", 7777, &bad).is_err());
        assert!(render("lb replication", 7777, &peers).is_err());
        assert!(valid_peer_name("ip-10-0-0-1.ec2.internal"));
        assert!(!valid_peer_name(""));
    }
}
