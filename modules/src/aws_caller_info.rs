/*!
`aws_caller_info`: the account the credentials belong to (STS
GetCallerIdentity), as `amazon.aws.aws_caller_info` returns it.
*/

use craftlb_core::error::sdk_error;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::aws::{AWS, Connection};
use crate::protocol::{Ctx, Failure, Module, Response, RunFuture, Spec};

pub const NAME: &str = "aws_caller_info";

pub static MODULE: Module = Module {
    name: NAME,
    spec: &SPEC,
    doc: include_str!("../docs/aws_caller_info.yml"),
    run: |ctx| -> RunFuture { Box::pin(run(ctx)) },
};

pub static SPEC: Spec = Spec {
    params: &[],
    includes: &[&AWS],
    ..Spec::EMPTY
};

#[derive(Debug, Deserialize)]
struct Args {
    #[serde(flatten)]
    connection: Connection,
}

pub async fn run(ctx: Ctx) -> Result<Response, Failure> {
    let a: Args = ctx.params.typed()?;
    // STS is regional; any region answers for the account.
    let config =
        craftlb_core::aws::sdk_config(&a.connection.aws_params(), Some("us-east-1")).await?;
    let who = aws_sdk_sts::Client::new(&config)
        .get_caller_identity()
        .send()
        .await
        .map_err(sdk_error(
            "STS",
            "GetCallerIdentity",
            "find the caller's account",
        ))?;
    let arn = who.arn().unwrap_or_default();
    let mut data = Map::new();
    data.insert(
        "account".into(),
        Value::from(who.account().unwrap_or_default()),
    );
    data.insert(
        "partition".into(),
        Value::from(arn.split(':').nth(1).unwrap_or("aws")),
    );
    data.insert("arn".into(), Value::from(arn));
    data.insert(
        "user_id".into(),
        Value::from(who.user_id().unwrap_or_default()),
    );
    Ok(Response::unchanged(data))
}
