/*!
AWS's eventual consistency: answers that mean "not yet", retried until a
deadline.

Right after a write, AWS may answer a follow-up call as if the write had not
happened: EC2 Describe* and calls naming a new resource answer
`InvalidInstanceID.NotFound` / `InvalidGroup.NotFound` ("eventual
consistency", <https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html>),
a new IAM role cannot yet be assumed by Lambda nor used by Auto Scaling to
publish a lifecycle hook's test message
(<https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency>),
and a security group deleted right after what referenced it went answers
`DependencyViolation`. These are not failures of the request but of its
timing; the SDK's retry does not know them (they are 4xx). One waiter for
all of them, each case named once below.
*/

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::Error;

/// One way AWS says "not yet": an error code, and a fragment of the
/// message where the code alone also covers real refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotYet {
    pub code: &'static str,
    pub message: Option<&'static str>,
}

impl NotYet {
    pub const fn code(code: &'static str) -> NotYet {
        NotYet {
            code,
            message: None,
        }
    }

    pub const fn message(code: &'static str, fragment: &'static str) -> NotYet {
        NotYet {
            code,
            message: Some(fragment),
        }
    }

    pub fn matches(&self, e: &Error) -> bool {
        e.code() == Some(self.code)
            && self.message.is_none_or(|m| {
                e.aws()
                    .and_then(|a| a.message.as_deref())
                    .unwrap_or_default()
                    .contains(m)
            })
    }
}

/// CreateFunction / UpdateFunctionConfiguration with a role IAM has not
/// propagated to Lambda yet.
pub const ROLE_NOT_ASSUMABLE_BY_LAMBDA: NotYet = NotYet::message(
    "InvalidParameterValueException",
    "cannot be assumed by Lambda",
);

/// PutLifecycleHook / CreateAutoScalingGroup with hooks whose role Auto
/// Scaling cannot use yet to publish the test message.
pub const HOOK_TEST_MESSAGE_NOT_PUBLISHED: NotYet = NotYet::message(
    "ValidationError",
    "Unable to publish test message to notification target",
);

/// A security group made a moment ago, not yet visible to the next call.
pub const GROUP_NOT_FOUND_YET: NotYet = NotYet::code("InvalidGroup.NotFound");

/// An instance launched a moment ago, not yet visible to DescribeInstances.
pub const INSTANCE_NOT_FOUND_YET: NotYet = NotYet::code("InvalidInstanceID.NotFound");

/// AssociateAddress on an instance still `pending`: "The pending instance
/// 'i-...' is not in a valid state for this operation".
pub const INSTANCE_PENDING: NotYet = NotYet::message("InvalidInstanceID", "pending instance");

/// A security group still referenced by what is going away (an instance
/// shutting down, another group's rule being revoked).
pub const STILL_REFERENCED: NotYet = NotYet::code("DependencyViolation");

/// How long IAM may take to propagate a new role to other services
/// (Terraform's AWS provider waits two minutes for the same cases).
pub const IAM_PROPAGATION: Duration = Duration::from_secs(120);

/// How long EC2 may take to show a new resource to every call.
pub const EC2_PROPAGATION: Duration = Duration::from_secs(60);

/// Calls `call` until it answers anything but one of `not_yet`, or until
/// `limit` has passed (then the last "not yet" is the answer). Pauses grow
/// from 0.5 s to 5 s, and never past the deadline.
pub async fn until_consistent<T, F, Fut>(
    not_yet: &[NotYet],
    limit: Duration,
    call: F,
) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    until_consistent_by(|e| not_yet.iter().any(|n| n.matches(e)), limit, call).await
}

/// [`until_consistent`] with the "not yet" answers told apart by `not_yet`
/// (when the code alone does not say it: "the group *we just made* does not
/// exist" is timing, another group that does not exist is a mistake).
pub async fn until_consistent_by<T, F, Fut>(
    not_yet: impl Fn(&Error) -> bool,
    limit: Duration,
    mut call: F,
) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(500);
    loop {
        match call().await {
            Err(e) if not_yet(&e) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(e);
                }
                tokio::time::sleep(pause.min(left)).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::cell::Cell;

    fn aws(code: &str, message: &str) -> Error {
        Error::new(ErrorKind::Rejected, "call", message)
            .with_code(code)
            .with_message(message)
    }

    #[test]
    fn matches_code_and_message_fragment() {
        let e = aws(
            "ValidationError",
            "Unable to publish test message to notification target arn:aws:sns:x using IAM role y",
        );
        assert!(HOOK_TEST_MESSAGE_NOT_PUBLISHED.matches(&e));
        assert!(!HOOK_TEST_MESSAGE_NOT_PUBLISHED.matches(&aws("ValidationError", "bad heartbeat")));
        assert!(GROUP_NOT_FOUND_YET.matches(&aws("InvalidGroup.NotFound", "")));
        assert!(!GROUP_NOT_FOUND_YET.matches(&aws("InvalidGroupId.Malformed", "")));
    }

    #[tokio::test]
    async fn retries_not_yet_until_it_passes() {
        let calls = Cell::new(0);
        let out = until_consistent(&[GROUP_NOT_FOUND_YET], Duration::from_secs(10), || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 3 {
                    Err(aws(
                        "InvalidGroup.NotFound",
                        "The security group 'sg-1' does not exist",
                    ))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(out.ok(), Some(3));
    }

    #[tokio::test]
    async fn other_errors_and_the_deadline_end_it() {
        let calls = Cell::new(0);
        let out: Result<(), Error> =
            until_consistent(&[GROUP_NOT_FOUND_YET], Duration::from_secs(10), || {
                calls.set(calls.get() + 1);
                async { Err(aws("UnauthorizedOperation", "no")) }
            })
            .await;
        assert_eq!(
            out.err()
                .and_then(|e| e.code().map(str::to_owned))
                .as_deref(),
            Some("UnauthorizedOperation")
        );
        assert_eq!(calls.get(), 1);

        let started = Instant::now();
        let out: Result<(), Error> = until_consistent(
            &[GROUP_NOT_FOUND_YET],
            Duration::from_millis(700),
            || async { Err(aws("InvalidGroup.NotFound", "still not")) },
        )
        .await;
        assert!(out.is_err());
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
}
