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

/// A terminating lifecycle hook of the group, with the drain time its
/// metadata asks for (`None`: the Lambda completes that hook itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminatingHook {
    pub name: String,
    pub drain_seconds: Option<u32>,
}

/// The Auto Scaling / EC2 calls a node makes about its own group.
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
            ips.extend(pairs);
        }
        for m in &mut members {
            m.private_ip = ips.remove(&m.instance_id);
        }
        Ok(Some(members))
    }

    pub async fn terminating_hooks(&self, group: &str) -> Result<Vec<TerminatingHook>> {
        let hooks = crate::autoscaling::lifecycle_hooks(&self.asg, group).await?;
        Ok(hooks
            .iter()
            .filter(|h| h.lifecycle_transition() == Some(crate::lifecycle::TERMINATING))
            .filter_map(|h| {
                let meta = h
                    .notification_metadata()
                    .and_then(|m| serde_json::from_str::<HookMetadata>(m).ok());
                Some(TerminatingHook {
                    name: h.lifecycle_hook_name()?.to_owned(),
                    drain_seconds: meta.and_then(|m| m.drain_seconds),
                })
            })
            .collect())
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
