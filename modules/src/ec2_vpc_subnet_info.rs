/*!
`ec2_vpc_subnet_info`: subnets by id, as `amazon.aws.ec2_vpc_subnet_info`
returns them — what a launch needs before its first write: the VPC the
security group goes in, and a clear failure naming the subnet ids that do
not exist (EC2 answers InvalidSubnetID.NotFound for the whole call).
*/

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::Subnet;
use craftlb_core::error::{Error, ErrorKind, sdk_error};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::aws::{AWS, Connection};
use crate::protocol::{Ctx, Failure, Module, Param, Response, RunFuture, Spec, Type};

pub const NAME: &str = "ec2_vpc_subnet_info";

pub static MODULE: Module = Module {
    name: NAME,
    spec: &SPEC,
    doc: include_str!("../docs/ec2_vpc_subnet_info.yml"),
    run: |ctx| -> RunFuture { Box::pin(run(ctx)) },
};

pub static SPEC: Spec = Spec {
    params: &[Param::list("subnet_ids", Type::Str)
        .required()
        .doc(&["The subnets to describe (a list, or ids comma-separated)."])],
    includes: &[&AWS],
    ..Spec::EMPTY
};

#[derive(Debug, Deserialize)]
struct Args {
    subnet_ids: Vec<String>,
    #[serde(flatten)]
    connection: Connection,
}

fn describe(s: &Subnet) -> Value {
    json!({
        "id": s.subnet_id(), "subnet_id": s.subnet_id(), "vpc_id": s.vpc_id(),
        "availability_zone": s.availability_zone(), "availability_zone_id": s.availability_zone_id(),
        "cidr_block": s.cidr_block(), "state": s.state().map(|s| s.as_str()),
        "map_public_ip_on_launch": s.map_public_ip_on_launch(),
        "available_ip_address_count": s.available_ip_address_count(),
        "default_for_az": s.default_for_az(),
        "tags": crate::ec2::tag_dict(s.tags()),
    })
}

/// The ids EC2 says do not exist, from its error message
/// ("The subnet ID 'subnet-1,subnet-2' does not exist"), else all asked.
fn missing(e: &Error, asked: &[String]) -> Vec<String> {
    let text = e.to_string();
    let named: Vec<String> = asked
        .iter()
        .filter(|id| text.contains(id.as_str()))
        .cloned()
        .collect();
    if named.is_empty() {
        asked.to_vec()
    } else {
        named
    }
}

pub async fn run(ctx: Ctx) -> Result<Response, Failure> {
    let a: Args = ctx.params.typed()?;
    let ids: Vec<String> = a
        .subnet_ids
        .iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if ids.is_empty() {
        return Err(Failure::msg("subnet_ids: give at least one subnet id"));
    }
    if let Some(bad) = ids.iter().find(|s| !s.starts_with("subnet-")) {
        return Err(Failure::msg(format!(
            "subnet_ids: '{bad}' is not a subnet id (subnet-…)"
        )));
    }
    let config = craftlb_core::aws::sdk_config(&a.connection.aws_params(), None).await?;
    let client = Client::new(&config);
    let region = config.region().map(|r| r.to_string()).unwrap_or_default();
    let out = client
        .describe_subnets()
        .set_subnet_ids(Some(ids.clone()))
        .send()
        .await
        .map_err(sdk_error("EC2", "DescribeSubnets", "describe subnets"));
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(Failure::from(Error::new(
                ErrorKind::NotFound,
                "describe subnets",
                format!(
                    "subnet(s) {} do not exist in {region}",
                    missing(&e, &ids).join(", ")
                ),
            ))
            .with("error", json!({"code": e.code()})));
        }
        Err(e) => return Err(e.into()),
    };
    // In the order asked for (the order of a group's subnets matters to nobody,
    // but a stable order keeps diffs quiet).
    let mut subnets: Vec<&Subnet> = out.subnets().iter().collect();
    subnets.sort_by_key(|s| {
        ids.iter()
            .position(|i| Some(i.as_str()) == s.subnet_id())
            .unwrap_or(usize::MAX)
    });
    let mut data = Map::new();
    data.insert(
        "subnets".into(),
        Value::from(subnets.into_iter().map(describe).collect::<Vec<_>>()),
    );
    Ok(Response::unchanged(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_missing_ids() {
        let e = Error::new(
            ErrorKind::NotFound,
            "describe subnets",
            "InvalidSubnetID.NotFound: The subnet ID 'subnet-2' does not exist",
        );
        let asked = ["subnet-1".to_owned(), "subnet-2".to_owned()];
        assert_eq!(missing(&e, &asked), ["subnet-2"]);
        let vague = Error::new(ErrorKind::NotFound, "describe subnets", "not found");
        assert_eq!(missing(&vague, &asked), asked);
    }
}
