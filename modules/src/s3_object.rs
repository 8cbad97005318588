/*!
`s3_object`: one object, put only when its content differs — compared by
SHA-256, never by ETag (an ETag is no content hash for multipart or
SSE-KMS objects, which makes amazon.aws's `overwrite: different` re-upload
them on every run).

The object is put with its SHA-256 as `x-amz-checksum-sha256`: S3 verifies
it on receipt and returns it on HeadObject (ChecksumMode ENABLED), so a
no-change run is one HeadObject and no download. The module returns the hex
SHA-256 too, the value a node checks its download against (`sha256sum -c`).
*/

use std::marker::PhantomData;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use craftlb_core::error::{Error, ErrorKind, sdk_error};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::aws::{AWS, Connection};
use crate::driver::{Resource, drive};
use crate::protocol::{
    Ctx, Default, Failure, Module, Param, Params, RequiredIf, Response, RunFuture, Spec,
};

pub const NAME: &str = "s3_object";

pub static MODULE: Module = Module {
    name: NAME,
    spec: &SPEC,
    doc: include_str!("../docs/s3_object.yml"),
    run: |ctx| -> RunFuture { Box::pin(run(ctx)) },
};

pub static SPEC: Spec = Spec {
    params: &[
        Param::str("bucket").required().doc(&["The bucket (it must exist)."]),
        Param::str("object")
            .required()
            .aliases(&["key"])
            .doc(&["The object's key."]),
        Param::str("state")
            .choices(&["present", "absent"])
            .default(Default::Str("present"))
            .doc(&[
                "C(present) puts the object when it is missing or its SHA-256 differs (amazon.aws's \
                 C(mode=put)); C(absent) deletes it (C(mode=delobj)).",
            ]),
        Param::path("src").doc(&["A file on the target to upload."]),
        Param::str("content").doc(&["The object's content, as text."]),
        Param::str("content_type")
            .default(Default::Str("application/octet-stream"))
            .doc(&["The object's Content-Type (set when it is put)."]),
    ],
    includes: &[&AWS],
    mutually_exclusive: &[&["src", "content"]],
    required_if: &[RequiredIf {
        param: "state",
        value: "present",
        requires: &["src", "content"],
        any: true,
    }],
    ..Spec::EMPTY
};

#[derive(Debug, Deserialize)]
struct Args {
    bucket: String,
    object: String,
    state: String,
    src: Option<String>,
    content: Option<String>,
    content_type: String,
    #[serde(flatten)]
    connection: Connection,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub present: bool,
    pub bucket: String,
    pub key: String,
    /// What to put (empty with `state: absent`).
    pub body: Vec<u8>,
    /// The body's SHA-256, base64 as S3 carries it.
    pub sha256: String,
    pub content_type: String,
}

fn task(p: &Params) -> Result<Task, Failure> {
    let a: Args = p.typed()?;
    if a.object.is_empty() || a.object.starts_with('/') {
        return Err(Failure::msg(format!(
            "object '{}' must be a key without a leading '/'",
            a.object
        )));
    }
    let body = match (&a.src, a.content) {
        (Some(src), _) => std::fs::read(src)
            .map_err(|e| Failure::msg(format!("src '{src}': cannot read it: {e}")))?,
        (None, Some(c)) => c.into_bytes(),
        (None, None) => Vec::new(),
    };
    Ok(Task {
        present: a.state != "absent",
        sha256: B64.encode(Sha256::digest(&body)),
        bucket: a.bucket,
        key: a.object,
        body,
        content_type: a.content_type,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub bucket: String,
    pub key: String,
    pub size: i64,
    pub etag: String,
    /// Base64, as S3 returns it; `None` for objects put without one.
    pub sha256: Option<String>,
    pub version_id: Option<String>,
}

/// Whether to put the object.
pub type Changes = Vec<&'static str>;

pub fn plan(t: &Task, current: Option<&Object>) -> Changes {
    match current {
        Some(o) if o.sha256.as_deref() == Some(t.sha256.as_str()) => vec![],
        _ => vec!["put"],
    }
}

/// The S3 calls this module makes.
#[allow(async_fn_in_trait)]
pub trait Api {
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<Object>, Error>;
    async fn put(&self, t: &Task) -> Result<Object, Error>;
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), Error>;
}

impl Api for Client {
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<Object>, Error> {
        match self
            .head_object()
            .bucket(bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(o) => Ok(Some(Object {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                size: o.content_length().unwrap_or_default(),
                etag: o.e_tag().unwrap_or_default().to_owned(),
                sha256: o.checksum_sha256().map(str::to_owned),
                version_id: o.version_id().map(str::to_owned),
            })),
            Err(e) => {
                let e = Error::from_sdk(
                    "S3",
                    "HeadObject",
                    format!("read object '{key}' in bucket '{bucket}'"),
                    e,
                );
                // HeadObject has no body: a 404 is a missing object (or bucket;
                // the put then says which).
                if e.kind() == ErrorKind::NotFound
                    || e.aws().and_then(|a| a.http_status) == Some(404)
                {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }
    async fn put(&self, t: &Task) -> Result<Object, Error> {
        let out = self
            .put_object()
            .bucket(&t.bucket)
            .key(&t.key)
            .content_type(&t.content_type)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(&t.sha256)
            .body(ByteStream::from(t.body.clone()))
            .send()
            .await
            .map_err(sdk_error(
                "S3",
                "PutObject",
                format!("put object '{}' in bucket '{}'", t.key, t.bucket),
            ))?;
        Ok(Object {
            bucket: t.bucket.clone(),
            key: t.key.clone(),
            size: i64::try_from(t.body.len()).unwrap_or(i64::MAX),
            etag: out.e_tag().unwrap_or_default().to_owned(),
            sha256: Some(out.checksum_sha256().unwrap_or(&t.sha256).to_owned()),
            version_id: out.version_id().map(str::to_owned),
        })
    }
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), Error> {
        self.delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(sdk_error(
                "S3",
                "DeleteObject",
                format!("delete object '{key}' in bucket '{bucket}'"),
            ))?;
        Ok(())
    }
}

/// Base64 SHA-256 (S3's form) as hex (sha256sum's).
pub fn hex_of(b64: &str) -> Option<String> {
    let raw = B64.decode(b64).ok()?;
    Some(raw.iter().map(|b| format!("{b:02x}")).collect())
}

fn describe(o: &Object) -> Value {
    let mut v = json!({
        "bucket": o.bucket, "key": o.key, "size": o.size, "e_tag": o.etag,
        "checksum_sha256": o.sha256, "sha256": o.sha256.as_deref().and_then(hex_of),
        "url": format!("s3://{}/{}", o.bucket, o.key),
    });
    if let (Some(id), Some(m)) = (&o.version_id, v.as_object_mut()) {
        m.insert("version_id".into(), Value::from(id.clone()));
    }
    v
}

pub struct ObjectResource<A>(PhantomData<A>);

impl<A: Api> Resource for ObjectResource<A> {
    type Task = Task;
    type Api = A;
    type Current = Object;
    type Changes = Changes;
    const KEY: &'static str = "object";

    fn present(t: &Task) -> bool {
        t.present
    }

    async fn read(api: &A, t: &Task) -> Result<Option<Object>, Failure> {
        Ok(api.head(&t.bucket, &t.key).await?)
    }

    fn plan(t: &Task, current: Option<&Object>) -> Result<Changes, Failure> {
        Ok(plan(t, current))
    }

    async fn apply(
        api: &A,
        t: &Task,
        _current: Option<&Object>,
        _ch: &Changes,
    ) -> Result<Object, Failure> {
        Ok(api.put(t).await?)
    }

    async fn delete(api: &A, t: &Task, _o: &Object) -> Result<bool, Failure> {
        api.delete(&t.bucket, &t.key).await?;
        Ok(true)
    }

    fn describe(o: &Object) -> Value {
        describe(o)
    }

    fn preview(t: &Task, _current: Option<&Object>, _ch: &Changes) -> Value {
        describe(&Object {
            bucket: t.bucket.clone(),
            key: t.key.clone(),
            size: i64::try_from(t.body.len()).unwrap_or(i64::MAX),
            etag: String::new(),
            sha256: Some(t.sha256.clone()),
            version_id: None,
        })
    }
}

pub async fn run(ctx: Ctx) -> Result<Response, Failure> {
    let t = task(&ctx.params)?;
    let a: Args = ctx.params.typed()?;
    let (client, _) = crate::s3_bucket::client(&a.connection).await?;
    drive::<ObjectResource<Client>>(&client, &t, ctx.check_mode).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_of(v: Value) -> Result<Task, String> {
        crate::protocol::task_of(&SPEC, v, task)
    }

    #[test]
    fn puts_only_when_the_sha256_differs() {
        let t = task_of(json!({"bucket": "b", "object": "k", "content": "hello"}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            hex_of(&t.sha256).as_deref(),
            Some("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
        );
        let same = Object {
            bucket: "b".into(),
            key: "k".into(),
            size: 5,
            etag: "\"x\"".into(),
            sha256: Some(t.sha256.clone()),
            version_id: None,
        };
        assert!(plan(&t, Some(&same)).is_empty());
        assert_eq!(plan(&t, None), ["put"]);
        let other = Object {
            sha256: Some(B64.encode(Sha256::digest(b"other"))),
            ..same.clone()
        };
        assert_eq!(plan(&t, Some(&other)), ["put"]);
        // Put by another tool without a checksum: put once, with one.
        let unknown = Object {
            sha256: None,
            ..same
        };
        assert_eq!(plan(&t, Some(&unknown)), ["put"]);
    }

    #[test]
    fn arguments() {
        assert!(
            task_of(json!({"bucket": "b", "object": "k"}))
                .is_err_and(|e| e.contains("src, content"))
        );
        assert!(task_of(json!({"bucket": "b", "object": "k", "state": "absent"})).is_ok());
        assert!(
            task_of(json!({"bucket": "b", "object": "/k", "content": ""}))
                .is_err_and(|e| e.contains("leading '/'"))
        );
        assert!(
            task_of(json!({"bucket": "b", "object": "k", "src": "/nonexistent/f"}))
                .is_err_and(|e| e.contains("src '/nonexistent/f'"))
        );
    }
}
