//! `bootstrap` for the provided.al2023 runtime: builds the AWS clients once,
//! then serves events. Every event ends as one JSON log line on stdout.

// The handler's future nests every SDK call's future (layout depth > 128).
#![recursion_limit = "256"]

use std::time::Duration;

use craftlb_core::aws::{AwsParams, sdk_config};
use craftlb_lambda::aws::SdkAws;
use craftlb_lambda::handle;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

/// Retries inside the Lambda, bounded so that a launch whose registration
/// keeps failing is ABANDONed within the function's 30 s timeout: at most
/// 0.2+0.4+0.8+1.6+3.2+4×5 s of (jittered) backoff.
const LAMBDA_RETRIES: u32 = 9;
const LAMBDA_MAX_BACKOFF: Duration = Duration::from_secs(5);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let params = AwsParams {
        retries: Some(LAMBDA_RETRIES),
        max_backoff: Some(LAMBDA_MAX_BACKOFF),
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
        // Work that may be left half done (a lifecycle action not
        // completed, a record not removed) fails the invocation, so Lambda
        // retries the event; every step is idempotent.
        if lines.iter().any(|l| l["retry"] == Value::Bool(true)) {
            return Err(Error::from(
                "transient failure left work undone; asking Lambda to retry the event",
            ));
        }
        Ok::<Value, Error>(Value::from(lines))
    }))
    .await
}
