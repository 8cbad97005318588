/*!
[`Aws`] over the AWS SDK. Each method is one or two direct calls; nothing
here lists a whole account (the zone lookup asks per name suffix, the record
lookup starts at name/type/set identifier with MaxItems 1).
*/

use std::collections::BTreeMap;

use aws_sdk_autoscaling::types::AutoScalingGroup;
use aws_sdk_ec2::types::Filter;
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use craftlb_core::aws::CallCounter;
use craftlb_core::consistency;
use craftlb_core::error::{Error, ErrorKind, sdk_error};
use craftlb_core::healthcheck::{Config, HealthChecks, plan_tags};
use craftlb_core::lifecycle::{self, Addresses, LifecycleResult};

use crate::event::LifecycleMessage;
use crate::handler::{Aws, CheckInfo, Completion, Group, Record};

/// Bound on record pages in reconcile (300 records each).
const MAX_RECORD_PAGES: usize = 10_000;

/// The tag that puts an Elastic IP into a pool.
pub const POOL_TAG: &str = "craftlb:pool";

/// How long the Lambda asks again when EC2 does not know a new instance
/// yet or still calls it pending: a bounded part of the function's time.
const LOOKUP_CONSISTENCY: std::time::Duration = std::time::Duration::from_secs(10);

pub struct SdkAws {
    route53: aws_sdk_route53::Client,
    health_checks: HealthChecks,
    autoscaling: aws_sdk_autoscaling::Client,
    ec2: aws_sdk_ec2::Client,
    /// Every request the clients send, counted by an SDK interceptor.
    calls: CallCounter,
}

impl SdkAws {
    pub fn new(config: &aws_types::SdkConfig) -> SdkAws {
        let calls = CallCounter::default();
        let route53 = aws_sdk_route53::Client::from_conf(
            aws_sdk_route53::config::Builder::from(config)
                .interceptor(calls.clone())
                .build(),
        );
        SdkAws {
            health_checks: HealthChecks::new(route53.clone()),
            route53,
            autoscaling: aws_sdk_autoscaling::Client::from_conf(
                aws_sdk_autoscaling::config::Builder::from(config)
                    .interceptor(calls.clone())
                    .build(),
            ),
            ec2: aws_sdk_ec2::Client::from_conf(
                aws_sdk_ec2::config::Builder::from(config)
                    .interceptor(calls.clone())
                    .build(),
            ),
            calls,
        }
    }

    /// The pool's addresses: (allocation id, public ip, association id, instance id).
    async fn pool(
        &self,
        pool: &str,
    ) -> Result<Vec<(String, String, Option<String>, Option<String>)>, Error> {
        let out = self
            .ec2
            .describe_addresses()
            .filters(
                Filter::builder()
                    .name(format!("tag:{POOL_TAG}"))
                    .values(pool)
                    .build(),
            )
            .send()
            .await
            .map_err(sdk_error(
                "EC2",
                "DescribeAddresses",
                format!("list Elastic IP pool '{pool}'"),
            ))?;
        Ok(out
            .addresses()
            .iter()
            .filter_map(|a| {
                Some((
                    a.allocation_id()?.to_owned(),
                    a.public_ip()?.to_owned(),
                    a.association_id().map(str::to_owned),
                    a.instance_id().map(str::to_owned),
                ))
            })
            .collect())
    }
}

impl Aws for SdkAws {
    async fn group_tags(&self, group: &str) -> Result<Option<BTreeMap<String, String>>, Error> {
        Ok(self
            .describe_group(group)
            .await?
            .as_ref()
            .map(group_tag_map))
    }

    async fn instance_lifecycle(
        &self,
        instance_id: &str,
    ) -> Result<Option<(String, String)>, Error> {
        let out = self
            .autoscaling
            .describe_auto_scaling_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(sdk_error(
                "Auto Scaling",
                "DescribeAutoScalingInstances",
                format!("read the lifecycle state of '{instance_id}'"),
            ))?;
        Ok(out
            .auto_scaling_instances()
            .iter()
            .find(|i| i.instance_id() == Some(instance_id))
            .map(|i| {
                (
                    i.auto_scaling_group_name().unwrap_or_default().to_owned(),
                    i.lifecycle_state().unwrap_or_default().to_owned(),
                )
            }))
    }

    async fn hook_metadata(&self, group: &str, transition: &str) -> Result<Option<String>, Error> {
        let hooks = craftlb_core::autoscaling::lifecycle_hooks(&self.autoscaling, group).await?;
        Ok(hooks
            .iter()
            .find(|h| h.lifecycle_transition() == Some(transition))
            .and_then(|h| h.notification_metadata().map(str::to_owned)))
    }

    async fn instance_addresses(&self, instance_id: &str) -> Result<Option<Addresses>, Error> {
        // A moment after the launch EC2 may not know the id yet
        // (eventual consistency): asked again for a few seconds.
        let res = consistency::until_consistent(
            &[consistency::INSTANCE_NOT_FOUND_YET],
            LOOKUP_CONSISTENCY,
            || async {
                self.ec2
                    .describe_instances()
                    .instance_ids(instance_id)
                    .send()
                    .await
                    .map_err(sdk_error(
                        "EC2",
                        "DescribeInstances",
                        format!("describe instance '{instance_id}'"),
                    ))
            },
        )
        .await;
        let out = match res {
            Ok(out) => out,
            // Still unknown: no such instance (the caller decides what that means).
            Err(e) if e.code().is_some_and(|c| c.starts_with("InvalidInstanceID")) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(instance_id))
            .map(|i| Addresses {
                public_ip: i.public_ip_address().map(str::to_owned),
                private_ip: i.private_ip_address().map(str::to_owned),
                state: i
                    .state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_owned()),
            }))
    }

    async fn find_zone(&self, record: &str) -> Result<Option<String>, Error> {
        for candidate in lifecycle::zone_candidates(record) {
            let public = self.public_zones_named(&candidate, record).await?;
            match public.as_slice() {
                [] => continue,
                [one] => return Ok(Some(one.clone())),
                several => {
                    return Err(Error::new(
                        ErrorKind::Rejected,
                        format!("find the hosted zone of '{record}'"),
                        format!(
                            "{} public hosted zones are named {candidate} ({}); set hosted_zone_id in the hook metadata",
                            several.len(),
                            several.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(None)
    }

    async fn associate_eip(&self, pool: &str, instance_id: &str) -> Result<String, Error> {
        let addresses = self.pool(pool).await?;
        if let Some((_, ip, _, _)) = addresses
            .iter()
            .find(|a| a.3.as_deref() == Some(instance_id))
        {
            return Ok(ip.clone());
        }
        for (alloc, ip, _, _) in addresses.iter().filter(|a| a.2.is_none()) {
            // AllowReassociation=false makes the association the lock: two
            // launches racing for one address cannot both win it.
            // A pending instance is refused ("not in a valid state"): it
            // is asked again until it runs, within the lookup window.
            let res = consistency::until_consistent(
                &[
                    consistency::INSTANCE_PENDING,
                    consistency::INSTANCE_NOT_FOUND_YET,
                ],
                LOOKUP_CONSISTENCY,
                || async {
                    self.ec2
                        .associate_address()
                        .allocation_id(alloc)
                        .instance_id(instance_id)
                        .allow_reassociation(false)
                        .send()
                        .await
                        .map_err(sdk_error(
                            "EC2",
                            "AssociateAddress",
                            format!("associate {ip} with '{instance_id}'"),
                        ))
                },
            )
            .await;
            match res {
                Ok(_) => return Ok(ip.clone()),
                Err(err) if err.code() == Some("Resource.AlreadyAssociated") => {}
                Err(err) if consistency::INSTANCE_PENDING.matches(&err) => {
                    return Err(err.transient());
                }
                Err(err) => return Err(err),
            }
        }
        // Transient: during a launch-before-terminate refresh the leaving
        // instances free their addresses as they terminate.
        Err(Error::new(
            ErrorKind::Transient,
            format!("take an Elastic IP from pool '{pool}' for '{instance_id}'"),
            format!(
                "no free address in the pool ({} tagged {POOL_TAG}={pool}, all associated)",
                addresses.len()
            ),
        ))
    }

    async fn create_health_check(&self, reference: &str, config: &Config) -> Result<String, Error> {
        let action = format!("create health check '{reference}'");
        Ok(self
            .health_checks
            .create_with_reference(reference, config, &action)
            .await?
            .id)
    }

    async fn tag_health_check(
        &self,
        id: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), Error> {
        self.health_checks
            .change_tags(id, &plan_tags(&BTreeMap::new(), tags, false))
            .await
    }

    async fn delete_health_check(&self, id: &str) -> Result<bool, Error> {
        self.health_checks.delete(id).await
    }

    async fn find_record(
        &self,
        zone_id: &str,
        name: &str,
        set_identifier: &str,
    ) -> Result<Option<Record>, Error> {
        let out = self
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(zone_id)
            .start_record_name(name)
            .start_record_type(RrType::A)
            .start_record_identifier(set_identifier)
            .max_items(1)
            .send()
            .await
            .map_err(sdk_error(
                "Route 53",
                "ListResourceRecordSets",
                format!("find record {name} ({set_identifier})"),
            ))?;
        Ok(out
            .resource_record_sets()
            .iter()
            .find(|r| {
                r.name().eq_ignore_ascii_case(name)
                    && *r.r#type() == RrType::A
                    && r.set_identifier() == Some(set_identifier)
            })
            .map(|r| record_from(zone_id, r)))
    }

    async fn upsert_record(&self, record: &Record) -> Result<(), Error> {
        self.change(ChangeAction::Upsert, record, "ChangeResourceRecordSets")
            .await
    }

    async fn delete_record(&self, record: &Record) -> Result<(), Error> {
        match self
            .change(ChangeAction::Delete, record, "ChangeResourceRecordSets")
            .await
        {
            // Already gone (a duplicate delivery got there first).
            Err(e)
                if e.code() == Some("InvalidChangeBatch")
                    && e.to_string().contains("not found") =>
            {
                Ok(())
            }
            other => other,
        }
    }

    async fn complete(
        &self,
        msg: &LifecycleMessage,
        token: &str,
        result: LifecycleResult,
    ) -> Result<Completion, Error> {
        let action = craftlb_core::autoscaling::ActionRef {
            group: &msg.auto_scaling_group_name,
            hook: &msg.lifecycle_hook_name,
            instance_id: &msg.ec2_instance_id,
            token: Some(token),
        };
        let done = craftlb_core::autoscaling::complete_lifecycle_action(
            &self.autoscaling,
            action,
            result.as_str(),
        )
        .await?;
        Ok(if done {
            Completion::Done
        } else {
            Completion::NoActiveAction
        })
    }

    async fn group(&self, group: &str) -> Result<Option<Group>, Error> {
        let Some(g) = self.describe_group(group).await? else {
            return Ok(None);
        };
        let hooks = craftlb_core::autoscaling::lifecycle_hooks(&self.autoscaling, group).await?;
        Ok(Some(Group {
            tags: group_tag_map(&g),
            instances: g
                .instances()
                .iter()
                .filter_map(|i| {
                    Some((
                        i.instance_id()?.to_owned(),
                        i.lifecycle_state()
                            .map(|s| s.as_str().to_owned())
                            .unwrap_or_default(),
                    ))
                })
                .collect(),
            launch_metadata: hooks
                .iter()
                .find(|h| h.lifecycle_transition() == Some(lifecycle::LAUNCHING))
                .and_then(|h| h.notification_metadata().map(str::to_owned)),
        }))
    }

    async fn list_records(&self, zone_id: &str, name: &str) -> Result<Vec<Record>, Error> {
        let what = format!("list records {name}");
        let mut out = Vec::new();
        let mut start: (String, RrType, Option<String>) = (name.to_owned(), RrType::A, None);
        for _ in 0..MAX_RECORD_PAGES {
            let page = self
                .route53
                .list_resource_record_sets()
                .hosted_zone_id(zone_id)
                .start_record_name(&start.0)
                .start_record_type(start.1.clone())
                .set_start_record_identifier(start.2.clone())
                .max_items(300)
                .send()
                .await
                .map_err(sdk_error(
                    "Route 53",
                    "ListResourceRecordSets",
                    what.clone(),
                ))?;
            let mut past_name = false;
            for r in page.resource_record_sets() {
                if !r.name().eq_ignore_ascii_case(name) || *r.r#type() != RrType::A {
                    past_name = true;
                    break;
                }
                out.push(record_from(zone_id, r));
            }
            match (
                past_name,
                page.is_truncated(),
                page.next_record_name(),
                page.next_record_type(),
            ) {
                (false, true, Some(n), Some(t)) => {
                    let next = (
                        n.to_owned(),
                        t.clone(),
                        page.next_record_identifier().map(str::to_owned),
                    );
                    if next == start {
                        return Err(Error::new(
                            ErrorKind::Transient,
                            what,
                            "pagination did not advance",
                        ));
                    }
                    start = next;
                }
                _ => return Ok(out),
            }
        }
        Err(Error::new(
            ErrorKind::Transient,
            what,
            format!("more than {MAX_RECORD_PAGES} pages"),
        ))
    }

    async fn record_health_checks(&self, record: &str) -> Result<Vec<CheckInfo>, Error> {
        let prefix = lifecycle::record_reference_prefix(record);
        let ours: Vec<(String, String)> = self
            .health_checks
            .list_all()
            .await?
            .into_iter()
            .filter(|c| c.caller_reference.starts_with(&prefix))
            .map(|c| (c.id, c.caller_reference))
            .collect();
        let ids: Vec<String> = ours.iter().map(|(id, _)| id.clone()).collect();
        let mut tags = self.health_checks.tags_of(&ids).await?;
        Ok(ours
            .into_iter()
            .map(|(id, caller_reference)| CheckInfo {
                tags: tags.remove(&id).unwrap_or_default(),
                id,
                caller_reference,
            })
            .collect())
    }

    fn calls(&self) -> u64 {
        self.calls.get()
    }
}

/// Zones per ListHostedZonesByName page: same-name zones (split horizon:
/// a private and a public one) come one after another, so one page almost
/// always holds every zone of a name.
const ZONE_PAGE: i32 = 10;

impl SdkAws {
    /// Ids of the public zones named exactly `name`, reading every zone of
    /// that name (never just the first: a private zone of the same name may
    /// sort before the public one).
    async fn public_zones_named(&self, name: &str, record: &str) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        let mut start: (String, Option<String>) = (name.to_owned(), None);
        for _ in 0..100 {
            let page = self
                .route53
                .list_hosted_zones_by_name()
                .dns_name(&start.0)
                .set_hosted_zone_id(start.1.clone())
                .max_items(ZONE_PAGE)
                .send()
                .await
                .map_err(sdk_error(
                    "Route 53",
                    "ListHostedZonesByName",
                    format!("find the hosted zone of '{record}'"),
                ))?;
            let mut past = false;
            for z in page.hosted_zones() {
                if !lifecycle::fqdn(z.name()).eq_ignore_ascii_case(name) {
                    past = true;
                    break;
                }
                if !z.config().is_some_and(|c| c.private_zone()) {
                    out.push(z.id().trim_start_matches("/hostedzone/").to_owned());
                }
            }
            match (past, page.is_truncated(), page.next_dns_name()) {
                (false, true, Some(next)) => {
                    let next = (
                        next.to_owned(),
                        page.next_hosted_zone_id().map(str::to_owned),
                    );
                    if next == start {
                        break;
                    }
                    start = next;
                }
                _ => return Ok(out),
            }
        }
        Err(Error::new(
            ErrorKind::Transient,
            format!("find the hosted zone of '{record}'"),
            "ListHostedZonesByName pagination did not end",
        ))
    }

    async fn describe_group(&self, group: &str) -> Result<Option<AutoScalingGroup>, Error> {
        craftlb_core::autoscaling::describe_group(&self.autoscaling, group).await
    }

    async fn change(
        &self,
        action: ChangeAction,
        r: &Record,
        op: &'static str,
    ) -> Result<(), Error> {
        let what = format!(
            "{} record {} ({}) -> {}",
            action.as_str().to_lowercase(),
            r.name,
            r.set_identifier,
            r.ip
        );
        let set = ResourceRecordSet::builder()
            .name(&r.name)
            .r#type(RrType::A)
            .set_identifier(&r.set_identifier)
            .weight(r.weight)
            .ttl(r.ttl)
            .resource_records(
                ResourceRecord::builder()
                    .value(&r.ip)
                    .build()
                    .map_err(|e| Error::new(ErrorKind::Rejected, what.clone(), e.to_string()))?,
            )
            .set_health_check_id(r.health_check_id.clone())
            .build()
            .map_err(|e| Error::new(ErrorKind::Rejected, what.clone(), e.to_string()))?;
        let batch = ChangeBatch::builder()
            .comment(format!("craftlb lifecycle: {}", r.set_identifier))
            .changes(
                Change::builder()
                    .action(action)
                    .resource_record_set(set)
                    .build()
                    .map_err(|e| Error::new(ErrorKind::Rejected, what.clone(), e.to_string()))?,
            )
            .build()
            .map_err(|e| Error::new(ErrorKind::Rejected, what.clone(), e.to_string()))?;
        self.route53
            .change_resource_record_sets()
            .hosted_zone_id(&r.zone_id)
            .change_batch(batch)
            .send()
            .await
            .map_err(sdk_error("Route 53", op, what))?;
        Ok(())
    }
}

fn group_tag_map(g: &AutoScalingGroup) -> BTreeMap<String, String> {
    g.tags()
        .iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_owned(),
                t.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

/// craftlb's view of a weighted A record as Route 53 lists it.
fn record_from(zone_id: &str, r: &ResourceRecordSet) -> Record {
    Record {
        zone_id: zone_id.to_owned(),
        name: r.name().to_owned(),
        set_identifier: r.set_identifier().unwrap_or_default().to_owned(),
        ip: r
            .resource_records()
            .first()
            .map(|v| v.value().to_owned())
            .unwrap_or_default(),
        ttl: r.ttl().unwrap_or_default(),
        weight: r.weight().unwrap_or_default(),
        health_check_id: r.health_check_id().map(str::to_owned),
    }
}
