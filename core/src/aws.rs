/*!
AWS client configuration from module parameters and the environment.

The precedence is amazon.aws's: an explicit parameter beats the environment,
which beats the shared config/credentials files. Retry and timeout policy is
decided here and nowhere else.
*/

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::Credentials;
use aws_types::SdkConfig;
use aws_types::region::Region;

use crate::error::{Error, Result};

/// Longest single backoff sleep by default.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(20);

/// Default number of retries after the first attempt.
pub const DEFAULT_RETRIES: u32 = 10;

/// Connection parameters common to every module (amazon.aws names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsParams {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub session_token: Option<String>,
    pub endpoint_url: Option<String>,
    /// Retries after the first attempt; `None` means [`DEFAULT_RETRIES`].
    pub retries: Option<u32>,
    /// Cap on one backoff sleep; `None` means [`DEFAULT_MAX_BACKOFF`].
    pub max_backoff: Option<Duration>,
}

/// Timeouts: a dead endpoint fails fast, a slow one gets a bounded time.
pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(Duration::from_secs(30))
        .operation_attempt_timeout(Duration::from_secs(30))
        .operation_timeout(Duration::from_secs(180))
        .build()
}

/// Exponential backoff with full jitter on throttling, 5xx and transient
/// network errors (the SDK's "standard" mode).
///
/// Not "adaptive": its client-side rate limiter starts a fresh process with
/// no measured send rate, and after a couple of throttles it paces a module
/// down to well under one request per second (measured: one create under
/// 30 % throttling took 64 s adaptive vs 1.1 s standard). Modules and
/// Lambda invocations are short-lived, so the limiter never learns.
pub fn retry_config(retries: Option<u32>, max_backoff: Option<Duration>) -> RetryConfig {
    let attempts = retries.unwrap_or(DEFAULT_RETRIES).saturating_add(1);
    RetryConfig::standard()
        .with_max_attempts(attempts)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(max_backoff.unwrap_or(DEFAULT_MAX_BACKOFF))
}

/// The region to use: the parameter, else AWS_REGION, else
/// AWS_DEFAULT_REGION (which the Rust SDK ignores but the CLI and boto honour),
/// else whatever the profile says (resolved by aws-config).
fn region_from(params: &AwsParams, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    params
        .region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .filter(|r| !r.is_empty())
}

/// The one HTTPS client: rustls with ring, the platform's root certificates.
/// Shared by every SDK client of a process and by the IMDS client.
pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// An IMDSv2 client on [`http_client`] (there is no default client to fall
/// back on); `AWS_EC2_METADATA_SERVICE_ENDPOINT` moves it, as in every SDK.
pub fn imds_client() -> aws_config::imds::Client {
    aws_config::imds::Client::builder()
        .configure(
            &aws_config::provider_config::ProviderConfig::without_region()
                .with_http_client(http_client()),
        )
        .build()
}

/// Counts the requests an SDK client sends (every attempt, retries
/// included: what AWS sees and bills). Shared by cloning; add it to a
/// client with its config builder's `.interceptor(counter.clone())`.
#[derive(Debug, Clone, Default)]
pub struct CallCounter(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl CallCounter {
    pub fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// The caller's partition (`aws`, `aws-cn`, `aws-us-gov`) and account id,
/// from STS GetCallerIdentity: what ARNs of resources not made yet need.
pub async fn caller_account(config: &SdkConfig) -> Result<(String, String)> {
    let who = aws_sdk_sts::Client::new(config)
        .get_caller_identity()
        .send()
        .await
        .map_err(crate::error::sdk_error(
            "STS",
            "GetCallerIdentity",
            "find the account id",
        ))?;
    let partition = who.arn().and_then(|a| a.split(':').nth(1)).unwrap_or("aws");
    Ok((
        partition.to_owned(),
        who.account().unwrap_or_default().to_owned(),
    ))
}

/// Loads the shared SDK configuration. `fallback_region` is used when
/// nothing else names one (Route 53 and IAM are global and live in
/// us-east-1).
pub async fn sdk_config(params: &AwsParams, fallback_region: Option<&str>) -> Result<SdkConfig> {
    let env = |k: &str| std::env::var(k).ok();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .retry_config(retry_config(params.retries, params.max_backoff))
        .timeout_config(timeouts());
    if let Some(profile) = &params.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = region_from(params, &env) {
        loader = loader.region(Region::new(region));
    }
    if let Some(url) = params.endpoint_url.as_deref().filter(|u| !u.is_empty()) {
        loader = loader.endpoint_url(url);
    }
    match (&params.access_key, &params.secret_key) {
        (Some(ak), Some(sk)) => {
            loader = loader.credentials_provider(Credentials::new(
                ak,
                sk,
                params.session_token.clone(),
                None,
                "craftlb-module-params",
            ));
        }
        (None, None) => {}
        _ => {
            return Err(Error::config(
                "access_key and secret_key must be given together",
            ));
        }
    }
    let mut config = loader.load().await;
    if config.region().is_none() {
        match fallback_region {
            Some(r) => {
                config = config
                    .into_builder()
                    .region(Region::new(r.to_owned()))
                    .build();
            }
            None => {
                return Err(Error::config(
                    "no AWS region: set the 'region' parameter, AWS_REGION, or a region in the profile",
                ));
            }
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_precedence() {
        let env = |k: &str| match k {
            "AWS_REGION" => Some("eu-west-1".to_owned()),
            "AWS_DEFAULT_REGION" => Some("us-west-2".to_owned()),
            _ => None,
        };
        let mut p = AwsParams::default();
        assert_eq!(region_from(&p, &env).as_deref(), Some("eu-west-1"));
        p.region = Some("ap-south-1".into());
        assert_eq!(region_from(&p, &env).as_deref(), Some("ap-south-1"));
        let only_default = |k: &str| (k == "AWS_DEFAULT_REGION").then(|| "us-west-2".to_owned());
        assert_eq!(
            region_from(&AwsParams::default(), &only_default).as_deref(),
            Some("us-west-2")
        );
        assert_eq!(region_from(&AwsParams::default(), &|_| None), None);
    }

    #[test]
    fn retries_count_after_the_first_attempt() {
        assert_eq!(retry_config(Some(0), None).max_attempts(), 1);
        assert_eq!(retry_config(None, None).max_attempts(), DEFAULT_RETRIES + 1);
    }

    #[tokio::test]
    async fn half_given_static_credentials_are_rejected() {
        let p = AwsParams {
            access_key: Some("AKIA".into()),
            region: Some("us-east-1".into()),
            ..AwsParams::default()
        };
        let e = sdk_config(&p, None).await.err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "failed to configure the AWS client: access_key and secret_key must be given together"
            )
        );
    }

    #[tokio::test]
    async fn explicit_params_win() {
        let p = AwsParams {
            region: Some("eu-central-1".into()),
            access_key: Some("AKIDEXAMPLE".into()),
            secret_key: Some("secret".into()),
            endpoint_url: Some("http://127.0.0.1:9".into()),
            ..AwsParams::default()
        };
        let c = sdk_config(&p, None).await;
        let c = match c {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.region().map(|r| r.as_ref()), Some("eu-central-1"));
        assert_eq!(c.endpoint_url(), Some("http://127.0.0.1:9"));
    }
}
