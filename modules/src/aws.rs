/*!
The connection parameters every AWS module takes (amazon.aws names and
aliases), and their translation into [`craftlb_core::aws::AwsParams`].
*/

use craftlb_core::aws::AwsParams;

use crate::protocol::Params;

/// Builds a module's parameter list: its own parameters followed by the
/// common AWS ones.
#[macro_export]
macro_rules! aws_module_params {
    ($($p:expr),* $(,)?) => {
        &[
            $($p,)*
            $crate::protocol::Param::str("region").aliases(&["aws_region", "ec2_region"]),
            $crate::protocol::Param::str("profile").aliases(&["aws_profile"]),
            $crate::protocol::Param::str("access_key")
                .aliases(&["aws_access_key_id", "aws_access_key", "ec2_access_key"])
                .no_log(),
            $crate::protocol::Param::str("secret_key")
                .aliases(&["aws_secret_access_key", "aws_secret_key", "ec2_secret_key"])
                .no_log(),
            $crate::protocol::Param::str("session_token")
                .aliases(&["aws_session_token", "security_token", "aws_security_token"])
                .no_log(),
            $crate::protocol::Param::str("endpoint_url").aliases(&["aws_endpoint_url", "ec2_url"]),
            $crate::protocol::Param::int("retries").default($crate::protocol::Default::Int(
                craftlb_core::aws::DEFAULT_RETRIES as i64,
            )),
        ]
    };
}

/// Cross-parameter rules shared by every AWS module.
pub const AWS_REQUIRED_TOGETHER: &[&str] = &["access_key", "secret_key"];

pub fn aws_params(p: &Params) -> AwsParams {
    AwsParams {
        region: p.str("region").map(str::to_owned),
        profile: p.str("profile").map(str::to_owned),
        access_key: p.str("access_key").map(str::to_owned),
        secret_key: p.str("secret_key").map(str::to_owned),
        session_token: p.str("session_token").map(str::to_owned),
        endpoint_url: p.str("endpoint_url").map(str::to_owned),
        retries: p.int("retries").and_then(|r| u32::try_from(r).ok()),
        max_backoff: None,
    }
}
