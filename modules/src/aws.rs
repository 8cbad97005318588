/*!
The connection parameters every AWS module takes (amazon.aws names and
aliases), documented once: a module's spec includes [`AWS`] and its typed
parameters flatten [`Connection`].
*/

use craftlb_core::aws::AwsParams;
use serde::Deserialize;

use crate::protocol::{Default, Param, Spec};

/// The AWS connection options, with their rules; `includes: &[&AWS]`.
pub static AWS: Spec = Spec {
    params: &[
        Param::str("region").aliases(&["aws_region", "ec2_region"]).doc(&[
            "The AWS region to use.",
            "Defaults to C(AWS_REGION), then C(AWS_DEFAULT_REGION), then the profile's region, then the \
             instance's region from IMDS when run on EC2. Global services (Route 53, IAM) use us-east-1 when \
             none is found.",
        ]),
        Param::str("profile")
            .aliases(&["aws_profile"])
            .doc(&["A named profile from the shared AWS config and credentials files."]),
        Param::str("access_key")
            .aliases(&["aws_access_key_id", "aws_access_key", "ec2_access_key"])
            .no_log()
            .doc(&[
                "AWS access key id. Without it the standard credential chain is used (environment, profile, \
                 SSO, container or instance role).",
            ]),
        Param::str("secret_key")
            .aliases(&["aws_secret_access_key", "aws_secret_key", "ec2_secret_key"])
            .no_log()
            .doc(&["AWS secret access key; required together with I(access_key)."]),
        Param::str("session_token")
            .aliases(&["aws_session_token", "security_token", "aws_security_token"])
            .no_log()
            .doc(&["Session token for temporary credentials."]),
        Param::str("endpoint_url")
            .aliases(&["aws_endpoint_url", "ec2_url"])
            .doc(&["An alternative endpoint (an emulator, a VPC endpoint); else C(AWS_ENDPOINT_URL)."]),
        Param::int("retries")
            .default(Default::Int(craftlb_core::aws::DEFAULT_RETRIES as i64))
            .doc(&[
                "Retries after the first attempt on throttling, 5xx and network errors (exponential backoff \
                 with full jitter, at most 20 s per wait).",
            ]),
    ],
    required_together: &[&["access_key", "secret_key"]],
    ..Spec::EMPTY
};

/// `tags` and `purge_tags`, as every module with tags takes them.
pub const TAGS: Param = Param::dict("tags")
    .aliases(&["resource_tags"])
    .doc(&["Tags (a dict). Not given, the resource's tags are left as they are."]);
pub const PURGE_TAGS: Param = Param::bool("purge_tags")
    .default(Default::Bool(true))
    .doc(&[
        "Remove tags not given in I(tags) (keys starting with C(aws:) are never removed). Ignored when \
         I(tags) is not given.",
    ]);

/// Tag values as AWS takes them: strings (Ansible may pass numbers, bools).
pub fn tag_map(
    tags: &serde_json::Map<String, serde_json::Value>,
) -> std::collections::BTreeMap<String, String> {
    tags.iter()
        .map(|(k, v)| {
            let v = v
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string());
            (k.clone(), v)
        })
        .collect()
}

/// The typed connection parameters (`#[serde(flatten)]` into a module's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Connection {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub session_token: Option<String>,
    pub endpoint_url: Option<String>,
    pub retries: Option<i64>,
}

impl Connection {
    pub fn aws_params(&self) -> AwsParams {
        AwsParams {
            region: self.region.clone(),
            profile: self.profile.clone(),
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
            session_token: self.session_token.clone(),
            endpoint_url: self.endpoint_url.clone(),
            retries: self.retries.and_then(|r| u32::try_from(r).ok()),
            max_backoff: None,
        }
    }
}
