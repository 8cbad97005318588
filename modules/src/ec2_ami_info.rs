/*!
`ec2_ami_info`: images by id, owner and filters, as `amazon.aws.ec2_ami_info`
returns them (oldest first: the newest is `images | last`). What a launch
uses to pin the nodes' AMI in the launch template: an explicit image id is
what lets an instance refresh roll back (AWS refuses rollback for a template
that resolves its image from SSM at launch), and a fleet on one AMI runs one
haproxy version.
*/

use std::collections::BTreeMap;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, Image};
use craftlb_core::error::sdk_error;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::aws::{AWS, Connection};
use crate::protocol::{Ctx, Failure, Module, Param, Response, RunFuture, Spec, Type};

pub const NAME: &str = "ec2_ami_info";

pub static MODULE: Module = Module {
    name: NAME,
    spec: &SPEC,
    doc: include_str!("../docs/ec2_ami_info.yml"),
    run: |ctx| -> RunFuture { Box::pin(run(ctx)) },
};

pub static SPEC: Spec = Spec {
    params: &[
        Param::list("image_ids", Type::Str)
            .aliases(&["image_id"])
            .doc(&["Only these images."]),
        Param::list("owners", Type::Str)
            .aliases(&["owner"])
            .doc(&["Only images of these owners: account ids, or C(amazon), C(self), C(aws-marketplace)."]),
        Param::dict("filters").doc(&[
            "DescribeImages filters, name to value or list of values (C(name: al2023-ami-2023.*-x86_64), \
             C(architecture: arm64), C(state: available)).",
        ]),
    ],
    includes: &[&AWS],
    ..Spec::EMPTY
};

#[derive(Debug, Deserialize)]
struct Args {
    image_ids: Option<Vec<String>>,
    owners: Option<Vec<String>>,
    filters: Option<BTreeMap<String, Value>>,
    #[serde(flatten)]
    connection: Connection,
}

/// The filters as EC2 takes them; a value is a string or a list of them.
fn filters(given: &BTreeMap<String, Value>) -> Result<Vec<Filter>, Failure> {
    given
        .iter()
        .map(|(name, v)| {
            let values: Vec<String> = match v {
                Value::String(s) => vec![s.clone()],
                Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                    .collect(),
                Value::Bool(_) | Value::Number(_) => vec![v.to_string()],
                other => {
                    return Err(Failure::msg(format!(
                        "filters.{name} must be a string or a list of strings, got {other}"
                    )));
                }
            };
            Ok(Filter::builder()
                .name(name)
                .set_values(Some(values))
                .build())
        })
        .collect()
}

fn describe(i: &Image) -> Value {
    json!({
        "image_id": i.image_id(), "name": i.name(), "description": i.description(),
        "creation_date": i.creation_date(), "architecture": i.architecture().map(|a| a.as_str()),
        "owner_id": i.owner_id(), "image_owner_alias": i.image_owner_alias(),
        "state": i.state().map(|s| s.as_str()), "public": i.public(),
        "root_device_name": i.root_device_name(),
        "root_device_type": i.root_device_type().map(|r| r.as_str()),
        "virtualization_type": i.virtualization_type().map(|v| v.as_str()),
        "platform_details": i.platform_details(), "deprecation_time": i.deprecation_time(),
        "tags": crate::ec2::tag_dict(i.tags()),
    })
}

pub async fn run(ctx: Ctx) -> Result<Response, Failure> {
    let a: Args = ctx.params.typed()?;
    let filters = filters(&a.filters.unwrap_or_default())?;
    let config = craftlb_core::aws::sdk_config(&a.connection.aws_params(), None).await?;
    let client = Client::new(&config);
    let mut images: Vec<Image> = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .describe_images()
            .set_image_ids(a.image_ids.clone())
            .set_owners(a.owners.clone())
            .set_filters((!filters.is_empty()).then(|| filters.clone()))
            .set_next_token(token.take())
            .send()
            .await
            .map_err(sdk_error("EC2", "DescribeImages", "describe images"))?;
        images.extend(page.images().iter().cloned());
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => break,
        }
    }
    // Oldest first, as amazon.aws sorts them; ties by id for a stable order.
    images
        .sort_by(|x, y| (x.creation_date(), x.image_id()).cmp(&(y.creation_date(), y.image_id())));
    let mut data = Map::new();
    data.insert(
        "images".into(),
        Value::from(images.iter().map(describe).collect::<Vec<_>>()),
    );
    Ok(Response::unchanged(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_take_strings_and_lists() {
        let given = BTreeMap::from([
            ("name".to_owned(), json!("al2023-ami-2023.*-x86_64")),
            ("state".to_owned(), json!(["available", "pending"])),
        ]);
        let f = filters(&given).unwrap_or_default();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].name(), Some("name"));
        assert_eq!(f[1].values(), ["available", "pending"]);
        let bad = BTreeMap::from([("name".to_owned(), json!({"a": 1}))]);
        assert!(filters(&bad).is_err_and(|e| e.msg.contains("filters.name")));
    }
}
