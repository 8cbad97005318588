//! `bootstrap` for the provided.al2023 runtime: builds the AWS clients once,
//! then serves events. Every event ends as one JSON log line on stdout.

use craftlb_core::aws::{AwsParams, sdk_config};
use craftlb_lambda::aws::SdkAws;
use craftlb_lambda::handle;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

/// Retries inside the Lambda: bounded so that a launch whose registration
/// keeps failing is ABANDONed well within the function's timeout.
const LAMBDA_RETRIES: u32 = 4;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let params = AwsParams {
        retries: Some(LAMBDA_RETRIES),
        ..AwsParams::default()
    };
    let config = sdk_config(&params, None).await?;
    let aws = SdkAws::new(&config);
    let aws_ref = &aws;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let lines = handle(aws_ref, &event.payload).await;
        for line in &lines {
            println!("{line}");
        }
        Ok::<Value, Error>(Value::from(lines))
    }))
    .await
}
