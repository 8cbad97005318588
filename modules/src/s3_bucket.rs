/*!
`s3_bucket`: a private S3 bucket (the deploy bundles' home), with the
parameters of `amazon.aws.s3_bucket` it needs: name, tags, and `force` to
empty it on delete.

A bucket this module manages is never public: all four Block Public Access
settings are on and kept on (a bucket that holds node bundles has no reason
to be anything else). Encryption is AWS's default (SSE-S3 on every new
object since January 2023). A bucket of that name in another account or
another region fails the task, naming where it is, instead of writing to it.
*/

use std::collections::BTreeMap;
use std::marker::PhantomData;

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, Delete, ObjectIdentifier,
    PublicAccessBlockConfiguration, Tag, Tagging,
};
use craftlb_core::error::{Error, ErrorKind, sdk_error};
use craftlb_core::tags::{TagPlan, plan_task_tags};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::aws::{AWS, Connection, PURGE_TAGS, TAGS, tag_map};
use crate::driver::{Resource, drive};
use crate::protocol::{Ctx, Default, Failure, Module, Param, Params, Response, RunFuture, Spec};

pub const NAME: &str = "s3_bucket";

pub static MODULE: Module = Module {
    name: NAME,
    spec: &SPEC,
    doc: include_str!("../docs/s3_bucket.yml"),
    run: |ctx| -> RunFuture { Box::pin(run(ctx)) },
};

pub static SPEC: Spec = Spec {
    params: &[
        Param::str("name")
            .required()
            .aliases(&["bucket"])
            .doc(&["The bucket's name (3-63 characters: lower-case letters, digits, dots, hyphens)."]),
        Param::str("state")
            .choices(&["present", "absent"])
            .default(Default::Str("present"))
            .doc(&["Whether the bucket should exist."]),
        Param::bool("force")
            .default(Default::Bool(false))
            .doc(&[
                "With I(state=absent): delete every object (and every version and delete marker) first. \
                 Without it a bucket that holds objects is not deleted and the task fails, saying so.",
            ]),
        TAGS,
        PURGE_TAGS,
    ],
    includes: &[&AWS],
    ..Spec::EMPTY
};

#[derive(Debug, Deserialize)]
struct Args {
    name: String,
    state: String,
    force: bool,
    tags: Option<Map<String, Value>>,
    purge_tags: bool,
    #[serde(flatten)]
    connection: Connection,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub present: bool,
    pub name: String,
    pub force: bool,
    pub tags: Option<BTreeMap<String, String>>,
    pub purge_tags: bool,
    /// The region the client talks to: a bucket elsewhere is not ours.
    pub region: String,
}

/// S3's bucket naming rules (the ones that can be checked offline).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ip_like = name.split('.').count() == 4 && name.split('.').all(|p| p.parse::<u8>().is_ok());
    if !(3..=63).contains(&name.len())
        || !ok_chars
        || !edge_ok(name.chars().next())
        || !edge_ok(name.chars().last())
        || name.contains("..")
        || ip_like
    {
        return Err(format!(
            "name '{name}' is not a valid S3 bucket name: 3-63 characters of a-z, 0-9, '.' and '-', \
             starting and ending with a letter or digit, not an IP address"
        ));
    }
    Ok(())
}

fn task(p: &Params, region: String) -> Result<Task, Failure> {
    let a: Args = p.typed()?;
    check_name(&a.name).map_err(Failure::msg)?;
    Ok(Task {
        present: a.state != "absent",
        name: a.name,
        force: a.force,
        tags: a.tags.as_ref().map(tag_map),
        purge_tags: a.purge_tags,
        region,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub name: String,
    pub region: String,
    /// The four Block Public Access settings, all on or not.
    pub public_blocked: bool,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub create: bool,
    pub block_public: bool,
    pub tags: TagPlan,
}

impl crate::driver::Changes for Changes {
    fn is_empty(&self) -> bool {
        !self.create && !self.block_public && self.tags.is_empty()
    }
}

pub fn plan(t: &Task, current: Option<&Bucket>) -> Result<Changes, Failure> {
    match current {
        None => Ok(Changes {
            create: true,
            block_public: true,
            tags: plan_task_tags(&BTreeMap::new(), t.tags.as_ref(), t.purge_tags),
        }),
        Some(b) if b.region != t.region => Err(Failure::msg(format!(
            "bucket '{}' exists in region {}, not {}: give region={} or another name",
            b.name, b.region, t.region, b.region
        ))),
        Some(b) => Ok(Changes {
            create: false,
            block_public: !b.public_blocked,
            tags: plan_task_tags(&b.tags, t.tags.as_ref(), t.purge_tags),
        }),
    }
}

/// The S3 calls this module makes.
#[allow(async_fn_in_trait)]
pub trait Api {
    /// The bucket's region; `None` when no bucket has that name.
    async fn head(&self, name: &str) -> Result<Option<String>, Error>;
    async fn public_blocked(&self, name: &str) -> Result<bool, Error>;
    async fn tags(&self, name: &str) -> Result<BTreeMap<String, String>, Error>;
    async fn create(&self, name: &str, region: &str) -> Result<(), Error>;
    async fn block_public(&self, name: &str) -> Result<(), Error>;
    /// Replaces the bucket's tags (S3 has no per-key tag call).
    async fn put_tags(&self, name: &str, tags: &BTreeMap<String, String>) -> Result<(), Error>;
    /// Deletes every object version and delete marker; how many.
    async fn empty(&self, name: &str) -> Result<usize, Error>;
    async fn delete(&self, name: &str) -> Result<(), Error>;
}

impl Api for Client {
    async fn head(&self, name: &str) -> Result<Option<String>, Error> {
        match self.head_bucket().bucket(name).send().await {
            Ok(out) => Ok(Some(out.bucket_region().unwrap_or("us-east-1").to_owned())),
            Err(e) => {
                let e = Error::from_sdk("S3", "HeadBucket", format!("read bucket '{name}'"), e);
                match e.aws().and_then(|a| a.http_status) {
                    Some(404) => Ok(None),
                    // HeadBucket's 403 has no body: say what it means.
                    Some(403) => Err(Error::new(
                        ErrorKind::Rejected,
                        format!("read bucket '{name}'"),
                        "403 Forbidden: the bucket exists and belongs to another account (bucket names \
                         are global), or these credentials may not s3:ListBucket it",
                    )),
                    _ => Err(e),
                }
            }
        }
    }
    async fn public_blocked(&self, name: &str) -> Result<bool, Error> {
        match self.get_public_access_block().bucket(name).send().await {
            Ok(out) => Ok(out.public_access_block_configuration().is_some_and(|c| {
                c.block_public_acls() == Some(true)
                    && c.ignore_public_acls() == Some(true)
                    && c.block_public_policy() == Some(true)
                    && c.restrict_public_buckets() == Some(true)
            })),
            Err(e) => {
                let e = Error::from_sdk(
                    "S3",
                    "GetPublicAccessBlock",
                    format!("read bucket '{name}' public access block"),
                    e,
                );
                if e.kind() == ErrorKind::NotFound {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }
    async fn tags(&self, name: &str) -> Result<BTreeMap<String, String>, Error> {
        match self.get_bucket_tagging().bucket(name).send().await {
            Ok(out) => Ok(out
                .tag_set()
                .iter()
                .map(|t| (t.key().to_owned(), t.value().to_owned()))
                .collect()),
            Err(e) => {
                let e = Error::from_sdk(
                    "S3",
                    "GetBucketTagging",
                    format!("read bucket '{name}' tags"),
                    e,
                );
                // NoSuchTagSet: a bucket without tags.
                if e.kind() == ErrorKind::NotFound {
                    Ok(BTreeMap::new())
                } else {
                    Err(e)
                }
            }
        }
    }
    async fn create(&self, name: &str, region: &str) -> Result<(), Error> {
        // us-east-1 takes no location constraint; every other region needs one.
        let config = (region != "us-east-1").then(|| {
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build()
        });
        self.create_bucket()
            .bucket(name)
            .set_create_bucket_configuration(config)
            .send()
            .await
            .map_err(sdk_error(
                "S3",
                "CreateBucket",
                format!("create bucket '{name}' in {region}"),
            ))?;
        Ok(())
    }
    async fn block_public(&self, name: &str) -> Result<(), Error> {
        self.put_public_access_block()
            .bucket(name)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(true)
                    .restrict_public_buckets(true)
                    .build(),
            )
            .send()
            .await
            .map_err(sdk_error(
                "S3",
                "PutPublicAccessBlock",
                format!("block public access to bucket '{name}'"),
            ))?;
        Ok(())
    }
    async fn put_tags(&self, name: &str, tags: &BTreeMap<String, String>) -> Result<(), Error> {
        if tags.is_empty() {
            self.delete_bucket_tagging()
                .bucket(name)
                .send()
                .await
                .map_err(sdk_error(
                    "S3",
                    "DeleteBucketTagging",
                    format!("remove bucket '{name}' tags"),
                ))?;
            return Ok(());
        }
        let set: Vec<Tag> = tags
            .iter()
            .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
            .collect();
        let tagging = Tagging::builder()
            .set_tag_set(Some(set))
            .build()
            .map_err(|e| Error::config(format!("bucket '{name}' tags: {e}")))?;
        self.put_bucket_tagging()
            .bucket(name)
            .tagging(tagging)
            .send()
            .await
            .map_err(sdk_error(
                "S3",
                "PutBucketTagging",
                format!("tag bucket '{name}'"),
            ))?;
        Ok(())
    }
    async fn empty(&self, name: &str) -> Result<usize, Error> {
        let mut deleted = 0;
        loop {
            // Always the first page: what is deleted is gone from the next listing.
            let out = self
                .list_object_versions()
                .bucket(name)
                .send()
                .await
                .map_err(sdk_error(
                    "S3",
                    "ListObjectVersions",
                    format!("list the objects of bucket '{name}'"),
                ))?;
            let ids: Vec<ObjectIdentifier> = out
                .versions()
                .iter()
                .map(|v| (v.key(), v.version_id()))
                .chain(
                    out.delete_markers()
                        .iter()
                        .map(|m| (m.key(), m.version_id())),
                )
                .filter_map(|(k, v)| {
                    ObjectIdentifier::builder()
                        .set_key(k.map(str::to_owned))
                        .set_version_id(v.filter(|v| *v != "null").map(str::to_owned))
                        .build()
                        .ok()
                })
                .collect();
            if ids.is_empty() {
                return Ok(deleted);
            }
            let n = ids.len();
            let delete = Delete::builder()
                .set_objects(Some(ids))
                .quiet(true)
                .build()
                .map_err(|e| Error::config(format!("bucket '{name}': {e}")))?;
            let out = self
                .delete_objects()
                .bucket(name)
                .delete(delete)
                .send()
                .await
                .map_err(sdk_error(
                    "S3",
                    "DeleteObjects",
                    format!("empty bucket '{name}'"),
                ))?;
            if let Some(e) = out.errors().first() {
                return Err(Error::new(
                    ErrorKind::Rejected,
                    format!("empty bucket '{name}'"),
                    format!(
                        "DeleteObjects refused '{}': {} {}",
                        e.key().unwrap_or_default(),
                        e.code().unwrap_or_default(),
                        e.message().unwrap_or_default()
                    ),
                ));
            }
            deleted += n;
        }
    }
    async fn delete(&self, name: &str) -> Result<(), Error> {
        self.delete_bucket()
            .bucket(name)
            .send()
            .await
            .map_err(sdk_error(
                "S3",
                "DeleteBucket",
                format!("delete bucket '{name}'"),
            ))?;
        Ok(())
    }
}

pub struct BucketResource<A>(PhantomData<A>);

fn describe(b: &Bucket) -> Value {
    json!({
        "name": b.name,
        "region": b.region,
        "arn": format!("arn:aws:s3:::{}", b.name),
        "public_access_block": {
            "block_public_acls": b.public_blocked, "ignore_public_acls": b.public_blocked,
            "block_public_policy": b.public_blocked, "restrict_public_buckets": b.public_blocked,
        },
        "tags": b.tags,
    })
}

async fn read<A: Api>(api: &A, name: &str) -> Result<Option<Bucket>, Failure> {
    let Some(region) = api.head(name).await? else {
        return Ok(None);
    };
    Ok(Some(Bucket {
        name: name.to_owned(),
        region,
        public_blocked: api.public_blocked(name).await?,
        tags: api.tags(name).await?,
    }))
}

impl<A: Api> Resource for BucketResource<A> {
    type Task = Task;
    type Api = A;
    type Current = Bucket;
    type Changes = Changes;
    const KEY: &'static str = "bucket";

    fn present(t: &Task) -> bool {
        t.present
    }

    async fn read(api: &A, t: &Task) -> Result<Option<Bucket>, Failure> {
        read(api, &t.name).await
    }

    fn plan(t: &Task, current: Option<&Bucket>) -> Result<Changes, Failure> {
        plan(t, current)
    }

    async fn apply(
        api: &A,
        t: &Task,
        current: Option<&Bucket>,
        ch: &Changes,
    ) -> Result<Bucket, Failure> {
        if ch.create {
            api.create(&t.name, &t.region).await?;
        }
        if ch.block_public {
            api.block_public(&t.name).await?;
        }
        if !ch.tags.is_empty() {
            let now = current.map(|b| b.tags.clone()).unwrap_or_default();
            api.put_tags(&t.name, &ch.tags.apply(&now)).await?;
        }
        read(api, &t.name).await?.ok_or_else(|| {
            Failure::msg(format!("bucket '{}' is gone right after the write", t.name))
        })
    }

    async fn delete(api: &A, t: &Task, _b: &Bucket) -> Result<bool, Failure> {
        if t.force {
            api.empty(&t.name).await?;
        }
        api.delete(&t.name).await.map_err(|e| {
            if e.code() == Some("BucketNotEmpty") {
                Failure::msg(format!(
                    "bucket '{}' still holds objects: delete them first, or give force=true to delete \
                     them with the bucket",
                    t.name
                ))
            } else {
                e.into()
            }
        })?;
        Ok(true)
    }

    fn describe(b: &Bucket) -> Value {
        describe(b)
    }

    fn preview(t: &Task, current: Option<&Bucket>, ch: &Changes) -> Value {
        let now = current.map(|b| b.tags.clone()).unwrap_or_default();
        describe(&Bucket {
            name: t.name.clone(),
            region: t.region.clone(),
            public_blocked: true,
            tags: ch.tags.apply(&now),
        })
    }
}

/// The S3 client; path-style addressing when an endpoint is set (emulators,
/// and names with dots behind a VPC endpoint).
pub async fn client(connection: &Connection) -> Result<(Client, String), Failure> {
    let config = craftlb_core::aws::sdk_config(&connection.aws_params(), None).await?;
    let region = config
        .region()
        .map(|r| r.as_ref().to_owned())
        .unwrap_or_default();
    let s3 = aws_sdk_s3::config::Builder::from(&config)
        .force_path_style(config.endpoint_url().is_some())
        .build();
    Ok((Client::from_conf(s3), region))
}

pub async fn run(ctx: Ctx) -> Result<Response, Failure> {
    let a: Args = ctx.params.typed()?;
    let (client, region) = client(&a.connection).await?;
    let t = task(&ctx.params, region)?;
    drive::<BucketResource<Client>>(&client, &t, ctx.check_mode).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(tags: Option<&[(&str, &str)]>) -> Task {
        Task {
            present: true,
            name: "lb-bundles".into(),
            force: false,
            tags: tags.map(|t| t.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()),
            purge_tags: true,
            region: "eu-west-1".into(),
        }
    }

    fn bucket(region: &str, blocked: bool) -> Bucket {
        Bucket {
            name: "lb-bundles".into(),
            region: region.into(),
            public_blocked: blocked,
            tags: [("a".to_owned(), "1".to_owned())].into(),
        }
    }

    #[test]
    fn names_follow_s3_rules() {
        for ok in ["abc", "my.lb-bundles.2", "a1b"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "Upper",
            "-lead",
            "trail-",
            "a..b",
            "192.168.1.1",
            "under_score",
            &"a".repeat(64),
        ] {
            assert!(check_name(bad).is_err_and(|e| e.contains(bad)), "{bad}");
        }
    }

    #[test]
    fn plans_create_block_and_tags() {
        let c = plan(&t(Some(&[("a", "1")])), None).unwrap_or_else(|e| panic!("{}", e.msg));
        assert!(c.create && c.block_public && c.tags.set.len() == 1);
        let same = bucket("eu-west-1", true);
        assert!(crate::driver::Changes::is_empty(
            &plan(&t(Some(&[("a", "1")])), Some(&same)).unwrap_or_else(|e| panic!("{}", e.msg))
        ));
        // Tags not given: left alone.
        assert!(crate::driver::Changes::is_empty(
            &plan(&t(None), Some(&same)).unwrap_or_else(|e| panic!("{}", e.msg))
        ));
        let open = plan(&t(None), Some(&bucket("eu-west-1", false)))
            .unwrap_or_else(|e| panic!("{}", e.msg));
        assert!(open.block_public && !open.create);
        let purge = plan(&t(Some(&[])), Some(&same)).unwrap_or_else(|e| panic!("{}", e.msg));
        assert_eq!(purge.tags.unset, ["a"]);
        let elsewhere = plan(&t(None), Some(&bucket("us-east-1", true)));
        assert!(
            elsewhere.is_err_and(|e| e.msg.contains("exists in region us-east-1, not eu-west-1"))
        );
    }
}
