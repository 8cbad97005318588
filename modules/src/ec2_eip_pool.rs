/*!
`ec2_eip_pool`: a pool of Elastic IP addresses, the entry points of a
load balancer with `ip_type: eip`.

The pool is the set of VPC addresses tagged `craftlb:pool=<name>`; each is
tagged when it is allocated (TagSpecifications), so an address never
exists outside the pool, even when a run dies right after AllocateAddress.
The module allocates up to `count` and, when the count shrinks, releases
only addresses that are not associated (an associated one is reported, not
taken from its instance). `state: absent` releases the whole pool and
refuses while an address is still associated, naming it. Association is
not this module's job: the lifecycle Lambda associates a free address of
the pool with each new instance (and verifies it, so two instances never
"get" one address).
*/

use std::collections::BTreeMap;
use std::marker::PhantomData;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Address, DomainType, Filter, ResourceType, TagSpecification};
use craftlb_core::error::{Error, sdk_error};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::aws::{AWS, Connection, TAGS, tag_map};
use crate::driver::{Resource, drive};
use crate::protocol::{Ctx, Default, Failure, Module, Param, Params, Response, RunFuture, Spec};

pub const NAME: &str = "ec2_eip_pool";

/// The tag that makes an address a member of a pool.
pub const POOL_TAG: &str = "craftlb:pool";

pub static MODULE: Module = Module {
    name: NAME,
    spec: &SPEC,
    doc: include_str!("../docs/ec2_eip_pool.yml"),
    run: |ctx| -> RunFuture { Box::pin(run(ctx)) },
};

pub static SPEC: Spec = Spec {
    params: &[
        Param::str("name")
            .required()
            .aliases(&["pool"])
            .doc(&["The pool: its addresses carry the tag C(craftlb:pool=<name>)."]),
        Param::str("state")
            .choices(&["present", "absent"])
            .default(Default::Str("present"))
            .doc(&["C(absent) releases every address of the pool (none may be associated)."]),
        Param::int("count").doc(&[
            "How many addresses the pool holds. Required with I(state=present). Fewer: addresses are \
             allocated. More: unassociated ones are released (associated ones stay, with a warning).",
        ]),
        Param::str("network_border_group")
            .doc(&["Where the addresses are advertised (the region by default)."]),
        TAGS.doc(&[
            "More tags for addresses this module allocates (C(craftlb:pool) is always set). Existing \
             addresses keep theirs.",
        ]),
    ],
    includes: &[&AWS],
    required_if: &[crate::protocol::RequiredIf {
        param: "state",
        value: "present",
        requires: &["count"],
        any: false,
    }],
    ..Spec::EMPTY
};

#[derive(Debug, Deserialize)]
struct Args {
    name: String,
    state: String,
    count: Option<i64>,
    network_border_group: Option<String>,
    tags: Option<Map<String, Value>>,
    #[serde(flatten)]
    connection: Connection,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub present: bool,
    pub name: String,
    pub count: usize,
    pub border_group: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// AWS's default limit is 5 per region; a raised quota may allow more.
const COUNT_MAX: i64 = 100;

pub fn task(p: &Params) -> Result<Task, Failure> {
    let a: Args = p.typed()?;
    let count = match a.count {
        None => 0,
        Some(c) if (0..=COUNT_MAX).contains(&c) => usize::try_from(c).unwrap_or(0),
        Some(c) => {
            return Err(Failure::msg(format!(
                "count must be 0-{COUNT_MAX}, got {c}"
            )));
        }
    };
    if a.name.trim().is_empty() {
        return Err(Failure::msg("name must not be empty"));
    }
    let mut tags = a.tags.as_ref().map(tag_map).unwrap_or_default();
    if tags.get(POOL_TAG).is_some_and(|v| *v != a.name) {
        return Err(Failure::msg(format!(
            "tags: {POOL_TAG} is the pool's own tag; it cannot be '{}' in pool '{}'",
            tags.get(POOL_TAG).cloned().unwrap_or_default(),
            a.name
        )));
    }
    tags.insert(POOL_TAG.into(), a.name.clone());
    Ok(Task {
        present: a.state != "absent",
        name: a.name,
        count,
        border_group: a.network_border_group,
        tags,
    })
}

/// One address of the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eip {
    pub allocation_id: String,
    pub public_ip: String,
    pub association_id: Option<String>,
    pub instance_id: Option<String>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub allocate: usize,
    pub release: Vec<String>,
}

impl crate::driver::Changes for Changes {
    fn is_empty(&self) -> bool {
        self.allocate == 0 && self.release.is_empty()
    }
}

/// Free addresses go first, newest ids last: the release order is stable.
pub fn plan(t: &Task, pool: &[Eip]) -> Changes {
    if pool.len() < t.count {
        return Changes {
            allocate: t.count - pool.len(),
            release: Vec::new(),
        };
    }
    let mut free: Vec<&Eip> = pool.iter().filter(|e| e.association_id.is_none()).collect();
    free.sort_by(|a, b| b.allocation_id.cmp(&a.allocation_id));
    Changes {
        allocate: 0,
        release: free
            .into_iter()
            .take(pool.len() - t.count)
            .map(|e| e.allocation_id.clone())
            .collect(),
    }
}

/// The EC2 calls this module makes.
#[allow(async_fn_in_trait)]
pub trait Api {
    async fn pool(&self, name: &str) -> Result<Vec<Address>, Error>;
    async fn allocate(
        &self,
        border_group: Option<&str>,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), Error>;
    async fn release(&self, allocation_id: &str) -> Result<(), Error>;
}

impl Api for Client {
    async fn pool(&self, name: &str) -> Result<Vec<Address>, Error> {
        let out = self
            .describe_addresses()
            .filters(
                Filter::builder()
                    .name(format!("tag:{POOL_TAG}"))
                    .values(name)
                    .build(),
            )
            .filters(Filter::builder().name("domain").values("vpc").build())
            .send()
            .await
            .map_err(sdk_error(
                "EC2",
                "DescribeAddresses",
                format!("read Elastic IP pool '{name}'"),
            ))?;
        Ok(out.addresses().to_vec())
    }
    async fn allocate(
        &self,
        border_group: Option<&str>,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), Error> {
        let pool = tags.get(POOL_TAG).cloned().unwrap_or_default();
        self.allocate_address()
            .domain(DomainType::Vpc)
            .set_network_border_group(border_group.map(str::to_owned))
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::ElasticIp)
                    .set_tags(Some(crate::ec2::tags(tags)))
                    .build(),
            )
            .send()
            .await
            .map_err(sdk_error(
                "EC2",
                "AllocateAddress",
                format!("allocate an Elastic IP for pool '{pool}'"),
            ))?;
        Ok(())
    }
    async fn release(&self, allocation_id: &str) -> Result<(), Error> {
        self.release_address()
            .allocation_id(allocation_id)
            .send()
            .await
            .map_err(sdk_error(
                "EC2",
                "ReleaseAddress",
                format!("release Elastic IP {allocation_id}"),
            ))?;
        Ok(())
    }
}

fn eip_from(a: &Address) -> Eip {
    Eip {
        allocation_id: a.allocation_id().unwrap_or_default().to_owned(),
        public_ip: a.public_ip().unwrap_or_default().to_owned(),
        association_id: a.association_id().map(str::to_owned),
        instance_id: a.instance_id().map(str::to_owned),
        tags: crate::ec2::tag_dict(a.tags()),
    }
}

async fn read_pool<A: Api>(api: &A, name: &str) -> Result<Vec<Eip>, Failure> {
    let mut pool: Vec<Eip> = api.pool(name).await?.iter().map(eip_from).collect();
    pool.sort_by(|a, b| a.allocation_id.cmp(&b.allocation_id));
    Ok(pool)
}

fn describe(name: &str, pool: &[Eip]) -> Value {
    json!({
        "pool": name,
        "addresses": pool.iter().map(|e| {
            let mut v = json!({"allocation_id": e.allocation_id, "public_ip": e.public_ip,
                               "domain": "vpc", "tags": e.tags});
            if let Some(o) = v.as_object_mut() {
                if let Some(a) = &e.association_id {
                    o.insert("association_id".into(), Value::from(a.clone()));
                }
                if let Some(i) = &e.instance_id {
                    o.insert("instance_id".into(), Value::from(i.clone()));
                }
            }
            v
        }).collect::<Vec<_>>(),
        "public_ips": pool.iter().map(|e| e.public_ip.clone()).collect::<Vec<_>>(),
    })
}

pub struct PoolResource<A>(PhantomData<A>);

impl<A: Api> Resource for PoolResource<A> {
    type Task = Task;
    type Api = A;
    /// The pool; `None` when it holds no address.
    type Current = Vec<Eip>;
    type Changes = Changes;
    const KEY: &'static str = "";

    fn present(t: &Task) -> bool {
        t.present
    }

    async fn read(api: &A, t: &Task) -> Result<Option<Vec<Eip>>, Failure> {
        let pool = read_pool(api, &t.name).await?;
        Ok((!pool.is_empty()).then_some(pool))
    }

    fn plan(t: &Task, current: Option<&Vec<Eip>>) -> Result<Changes, Failure> {
        Ok(plan(t, current.map_or(&[][..], Vec::as_slice)))
    }

    async fn apply(
        api: &A,
        t: &Task,
        _current: Option<&Vec<Eip>>,
        ch: &Changes,
    ) -> Result<Vec<Eip>, Failure> {
        for _ in 0..ch.allocate {
            api.allocate(t.border_group.as_deref(), &t.tags).await?;
        }
        for id in &ch.release {
            api.release(id).await?;
        }
        read_pool(api, &t.name).await
    }

    async fn delete(api: &A, t: &Task, pool: &Vec<Eip>) -> Result<bool, Failure> {
        let held: Vec<String> = pool
            .iter()
            .filter_map(|e| {
                e.association_id.as_ref().map(|_| {
                    format!(
                        "{} ({}) on {}",
                        e.public_ip,
                        e.allocation_id,
                        e.instance_id.as_deref().unwrap_or("a network interface")
                    )
                })
            })
            .collect();
        if !held.is_empty() {
            return Err(Failure::msg(format!(
                "Elastic IP pool '{}' still has associated addresses: {}; terminate the instances (or \
                 disassociate) first",
                t.name,
                held.join(", ")
            )));
        }
        for e in pool {
            api.release(&e.allocation_id).await?;
        }
        Ok(true)
    }

    fn describe(pool: &Vec<Eip>) -> Value {
        let name = pool
            .first()
            .and_then(|e| e.tags.get(POOL_TAG))
            .cloned()
            .unwrap_or_default();
        describe(&name, pool)
    }

    fn preview(t: &Task, current: Option<&Vec<Eip>>, ch: &Changes) -> Value {
        let mut pool: Vec<Eip> = current
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| !ch.release.contains(&e.allocation_id))
            .collect();
        // Addresses to come have no id or IP yet.
        pool.extend((0..ch.allocate).map(|_| Eip {
            allocation_id: String::new(),
            public_ip: String::new(),
            association_id: None,
            instance_id: None,
            tags: t.tags.clone(),
        }));
        describe(&t.name, &pool)
    }

    fn warnings(t: &Task, current: Option<&Vec<Eip>>) -> Vec<String> {
        let pool = current.map_or(&[][..], Vec::as_slice);
        let free = pool.iter().filter(|e| e.association_id.is_none()).count();
        let excess = pool.len().saturating_sub(t.count);
        if excess > free {
            vec![format!(
                "pool '{}' holds {} addresses for a count of {}: {} are associated and stay until their \
                 instances leave",
                t.name,
                pool.len(),
                t.count,
                excess - free
            )]
        } else {
            Vec::new()
        }
    }
}

pub async fn run(ctx: Ctx) -> Result<Response, Failure> {
    let t = task(&ctx.params)?;
    let a: Args = ctx.params.typed()?;
    let config = craftlb_core::aws::sdk_config(&a.connection.aws_params(), None).await?;
    let client = Client::new(&config);
    let mut r = drive::<PoolResource<Client>>(&client, &t, ctx.check_mode).await?;
    // An empty pool still has its name.
    r.data
        .entry("pool")
        .or_insert_with(|| Value::from(t.name.clone()));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_of(v: Value) -> Result<Task, String> {
        crate::protocol::task_of(&SPEC, v, task)
    }

    fn eip(id: &str, associated: bool) -> Eip {
        Eip {
            allocation_id: id.into(),
            public_ip: format!("198.51.100.{}", id.len()),
            association_id: associated.then(|| format!("assoc-{id}")),
            instance_id: associated.then(|| "i-1".to_owned()),
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn grows_to_count_and_shrinks_by_free_addresses_only() {
        let t =
            |c: i64| task_of(json!({"name": "lb", "count": c})).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan(&t(2), &[]).allocate, 2);
        let pool = [
            eip("eipalloc-1", true),
            eip("eipalloc-2", false),
            eip("eipalloc-3", false),
        ];
        assert_eq!(plan(&t(3), &pool), Changes::default());
        assert_eq!(plan(&t(4), &pool).allocate, 1);
        assert_eq!(plan(&t(2), &pool).release, ["eipalloc-3"]);
        // Only two are free: the associated one stays.
        assert_eq!(plan(&t(0), &pool).release, ["eipalloc-3", "eipalloc-2"]);
        let w = PoolResource::<Client>::warnings(&t(0), Some(&pool.to_vec()));
        assert!(w[0].contains("1 are associated"), "{w:?}");
    }

    #[test]
    fn the_pool_tag_is_the_pools_own() {
        let t = task_of(json!({"name": "lb", "count": 1, "tags": {"env": "prod"}}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.tags.get(POOL_TAG).map(String::as_str), Some("lb"));
        assert!(
            task_of(json!({"name": "lb", "count": 1, "tags": {"craftlb:pool": "other"}}))
                .is_err_and(|e| e.contains("own tag"))
        );
        assert!(task_of(json!({"name": "lb"})).is_err_and(|e| e.contains("count")));
        assert!(task_of(json!({"name": "lb", "count": -1})).is_err_and(|e| e.contains("0-100")));
        assert!(task_of(json!({"name": "lb", "state": "absent"})).is_ok());
    }
}
