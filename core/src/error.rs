/*!
The one error type of craftlb-core.

Every error says what was being done to which resource ("failed to create
health check 'web-1'"), and, when AWS answered, the operation, the AWS error
code, its message and the request id — the four things an operator needs to
search CloudTrail or open a support case. The [`ErrorKind`] lets callers
decide policy (a Lambda abandons on `Transient`, continues on `Config`)
without parsing strings.
*/

use std::fmt;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_types::request_id::RequestId;

/// Broad classes of failure, for policy decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The resource does not exist.
    NotFound,
    /// The resource (or its identity, e.g. a caller reference) already exists.
    Conflict,
    /// Throttled after the retries were spent.
    Throttled,
    /// 5xx, timeouts, connection failures: worth trying again later.
    Transient,
    /// The request was rejected as invalid or not allowed; retrying won't help.
    Rejected,
    /// Local configuration is wrong (no region, bad credentials setup, …).
    Config,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Transient => "transient",
            ErrorKind::Rejected => "rejected",
            ErrorKind::Config => "config",
        }
    }

    /// Whether trying the same thing again later might succeed.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Throttled | ErrorKind::Transient)
    }
}

/// What AWS said, when it said something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsErrorInfo {
    pub service: &'static str,
    pub operation: &'static str,
    pub code: Option<String>,
    pub message: Option<String>,
    pub request_id: Option<String>,
    pub http_status: Option<u16>,
}

#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    /// "create health check 'web-1'"
    action: String,
    aws: Option<Box<AwsErrorInfo>>,
    detail: String,
}

impl Error {
    pub fn new(kind: ErrorKind, action: impl Into<String>, detail: impl Into<String>) -> Error {
        Error {
            kind,
            action: action.into(),
            aws: None,
            detail: detail.into(),
        }
    }

    pub fn config(detail: impl Into<String>) -> Error {
        Error::new(ErrorKind::Config, "configure the AWS client", detail)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn aws(&self) -> Option<&AwsErrorInfo> {
        self.aws.as_deref()
    }

    /// The same error, as if AWS had answered with `code` (fakes in tests,
    /// and callers that learn the code another way).
    pub fn with_code(mut self, code: &str) -> Error {
        let info = self.aws.get_or_insert_with(|| {
            Box::new(AwsErrorInfo {
                service: "",
                operation: "",
                code: None,
                message: None,
                request_id: None,
                http_status: None,
            })
        });
        info.code = Some(code.to_owned());
        self
    }

    /// The same error, classed as worth trying again later (an answer
    /// whose code AWS also gives for a real refusal, known here to be one
    /// of timing).
    pub fn transient(mut self) -> Error {
        self.kind = ErrorKind::Transient;
        self
    }

    /// The same error with AWS's message (fakes in tests).
    pub fn with_message(mut self, message: &str) -> Error {
        if let Some(info) = self.aws.as_mut() {
            info.message = Some(message.to_owned());
        }
        self
    }

    /// The AWS error code, if AWS answered with one.
    pub fn code(&self) -> Option<&str> {
        self.aws.as_ref().and_then(|a| a.code.as_deref())
    }

    /// Builds an error from an SDK failure of `service`'s `operation`, done
    /// to achieve `action`.
    pub fn from_sdk<E>(
        service: &'static str,
        operation: &'static str,
        action: impl Into<String>,
        err: SdkError<E, HttpResponse>,
    ) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let code = err.code().map(str::to_owned);
        let message = err.message().map(str::to_owned);
        // Header first (JSON/REST protocols); XML protocols carry it in the
        // error body, which the SDK keeps in the error metadata.
        let request_id = err
            .request_id()
            .or_else(|| err.meta().request_id())
            .map(str::to_owned);
        let http_status = err.raw_response().map(|r| r.status().as_u16());
        let kind = classify(&err, code.as_deref(), http_status);
        let detail = match (&code, &message) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c.clone(),
            _ => DisplayErrorContext(&err).to_string(),
        };
        Error {
            kind,
            action: action.into(),
            aws: Some(Box::new(AwsErrorInfo {
                service,
                operation,
                code,
                message,
                request_id,
                http_status,
            })),
            detail,
        }
    }
}

/// `map_err` adapter: `.map_err(sdk_error("EC2", "DescribeInstances", "describe instance 'i-1'"))`.
pub fn sdk_error<E>(
    service: &'static str,
    operation: &'static str,
    action: impl Into<String>,
) -> impl FnOnce(SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let action = action.into();
    move |e| Error::from_sdk(service, operation, action, e)
}

fn classify<E, R>(err: &SdkError<E, R>, code: Option<&str>, status: Option<u16>) -> ErrorKind {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            return ErrorKind::Transient;
        }
        SdkError::ConstructionFailure(_) => return ErrorKind::Config,
        _ => {}
    }
    match code {
        Some(c) if is_throttling_code(c) => ErrorKind::Throttled,
        // NoSuchEntity (IAM), NotFound (SNS), ResourceNotFoundException
        // (Lambda), InvalidInstanceID.NotFound (EC2), …
        Some(c) if c.starts_with("NoSuch") || c.contains("NotFound") => ErrorKind::NotFound,
        Some(c)
            if c.ends_with("AlreadyExists")
                || c.ends_with("InUse")
                || c == "ConflictingDomainExists" =>
        {
            ErrorKind::Conflict
        }
        _ => match status {
            Some(s) if s >= 500 => ErrorKind::Transient,
            Some(429) => ErrorKind::Throttled,
            _ => ErrorKind::Rejected,
        },
    }
}

/// The codes AWS services use for throttling (as botocore's retry handler
/// lists them).
pub fn is_throttling_code(code: &str) -> bool {
    matches!(
        code,
        "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestThrottledException"
            | "TooManyRequestsException"
            | "ProvisionedThroughputExceededException"
            | "TransactionInProgressException"
            | "RequestLimitExceeded"
            | "BandwidthLimitExceeded"
            | "LimitExceededException"
            | "RequestThrottled"
            | "SlowDown"
            | "PriorRequestNotComplete"
            | "EC2ThrottledException"
    )
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failed to {}", self.action)?;
        if let Some(aws) = &self.aws {
            write!(f, " ({} {})", aws.service, aws.operation)?;
        }
        write!(f, ": {}", self.detail)?;
        if let Some(id) = self.aws.as_ref().and_then(|a| a.request_id.as_deref()) {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    #[derive(Debug)]
    struct Svc(ErrorMetadata);
    impl std::fmt::Display for Svc {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "service error")
        }
    }
    impl std::error::Error for Svc {}
    impl ProvideErrorMetadata for Svc {
        fn meta(&self) -> &ErrorMetadata {
            &self.0
        }
    }

    fn service_error(code: &str, status: u16) -> SdkError<Svc, HttpResponse> {
        let meta = ErrorMetadata::builder()
            .code(code)
            .message("it went wrong")
            .custom("aws_request_id", "req-123")
            .build();
        let status = StatusCode::try_from(status).unwrap_or_else(|e| panic!("bad status: {e}"));
        let raw = HttpResponse::new(status, SdkBody::empty());
        SdkError::service_error(Svc(meta), raw)
    }

    #[test]
    fn service_errors_are_classified_and_quoted() {
        let e = Error::from_sdk(
            "Route 53",
            "CreateHealthCheck",
            "create health check 'web-1'",
            service_error("Throttling", 400),
        );
        assert_eq!(e.kind(), ErrorKind::Throttled);
        assert_eq!(e.code(), Some("Throttling"));
        assert_eq!(
            e.to_string(),
            "failed to create health check 'web-1' (Route 53 CreateHealthCheck): \
             Throttling: it went wrong (request id req-123)"
        );
        let aws = e.aws().cloned();
        assert_eq!(aws.and_then(|a| a.http_status), Some(400));
    }

    #[test]
    fn kinds_by_code_and_status() {
        let kind =
            |code, status| Error::from_sdk("S", "Op", "x", service_error(code, status)).kind();
        assert_eq!(kind("NoSuchHealthCheck", 404), ErrorKind::NotFound);
        assert_eq!(kind("ResourceNotFoundException", 404), ErrorKind::NotFound);
        assert_eq!(kind("NoSuchEntity", 404), ErrorKind::NotFound);
        assert_eq!(kind("HealthCheckAlreadyExists", 409), ErrorKind::Conflict);
        assert_eq!(kind("InternalError", 500), ErrorKind::Transient);
        assert_eq!(kind("InvalidInput", 400), ErrorKind::Rejected);
        assert!(ErrorKind::Throttled.is_transient() && !ErrorKind::Rejected.is_transient());
    }
}
