//! The emulator refuses what AWS refuses: every request is checked against
//! AWS's own service model of its operation (botocore's service-2.json)
//! before moto sees it, and answered in AWS's error shape.

use craftlb_testbed::{Emulator, aws_raw, control, control_put, request_log};

const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";

fn query(emu: &Emulator, service: &str, body: &str) -> (u16, String) {
    aws_raw(emu, service, "POST", "/", FORM, body)
}

#[test]
fn requests_that_break_the_service_model_are_refused_as_aws_refuses_them() {
    let emu = Emulator::start();

    // Auto Scaling (query, Coral message): an empty role is under RoleARN's
    // minimum length, as craftlb's hook module once sent it.
    let hook = "Action=PutLifecycleHook&Version=2011-01-01&AutoScalingGroupName=g\
                &LifecycleHookName=h&LifecycleTransition=autoscaling%3AEC2_INSTANCE_LAUNCHING&RoleARN=";
    let (status, body) = query(&emu, "autoscaling", hook);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("<Code>ValidationError</Code>"), "{body}");
    assert!(
        body.contains(
            "1 validation error detected: Value '' at 'roleARN' failed to satisfy constraint: \
             Member must have length greater than or equal to 1"
        ),
        "{body}"
    );

    // IAM: a role name over its maximum length.
    let long = "r".repeat(65);
    let (status, body) = query(
        &emu,
        "iam",
        &format!(
            "Action=CreateRole&Version=2010-05-08&RoleName={long}&AssumeRolePolicyDocument=%7B%7D"
        ),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("<Code>ValidationError</Code>")
            && body.contains("at 'roleName' failed to satisfy constraint: Member must have length less than or equal to 64"),
        "{body}"
    );

    // Lambda (rest-json): a timeout under its range.
    let (status, body) = aws_raw(
        &emu,
        "lambda",
        "POST",
        "/2015-03-31/functions",
        "application/json",
        r#"{"FunctionName": "f", "Role": "arn:aws:iam::123456789012:role/r", "Code": {"ZipFile": "eA=="}, "Timeout": 0}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("ValidationException")
            && body.contains("at 'timeout' failed to satisfy constraint: Member must have value greater than or equal to 1"),
        "{body}"
    );

    // Route 53 (rest-xml, URI label): a health check id over 64 characters.
    let (status, body) = aws_raw(
        &emu,
        "route53",
        "GET",
        &format!("/2013-04-01/healthcheck/{}", "h".repeat(65)),
        "application/xml",
        "",
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("<Code>InvalidInput</Code>") && body.contains("at 'healthCheckId'"),
        "{body}"
    );

    // EC2: a required member missing.
    let (status, body) = query(
        &emu,
        "ec2",
        "Action=CreateSecurityGroup&Version=2016-11-15&GroupName=web",
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("<Code>MissingParameter</Code>")
            && body.contains("The request must contain the parameter Description"),
        "{body}"
    );

    // SNS: its own code and message.
    let (status, body) = query(
        &emu,
        "sns",
        "Action=Publish&Version=2010-03-31&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A123456789012%3At",
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("<Code>InvalidParameter</Code>")
            && body.contains("Invalid parameter: Message"),
        "{body}"
    );

    // STS: a session name under its minimum length.
    let (status, body) = query(
        &emu,
        "sts",
        "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fr\
         &RoleSessionName=a",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("at 'roleSessionName'"), "{body}");

    // What passes the model reaches moto.
    let (status, body) = query(
        &emu,
        "iam",
        "Action=CreateRole&Version=2010-05-08&RoleName=fine&AssumeRolePolicyDocument=%7B%7D",
    );
    assert_eq!(status, 200, "{body}");

    // Each refusal is in the request log and the validator's own record.
    let log = request_log(&emu.url);
    let refused: Vec<&str> = log
        .iter()
        .filter(|r| r["fault"] == "validation")
        .filter_map(|r| r["operation"].as_str())
        .collect();
    assert_eq!(
        refused,
        [
            "PutLifecycleHook",
            "CreateRole",
            "CreateFunction",
            "GetHealthCheck",
            "CreateSecurityGroup",
            "Publish",
            "AssumeRole"
        ],
        "{log:?}"
    );
    let record = control(&emu, "/_craftlb/validation");
    assert_eq!(record.as_array().map(Vec::len), Some(7), "{record}");

    // Off, the same request goes to moto, which answers something else.
    let answer = control_put(
        &emu,
        "/_craftlb/settings",
        &serde_json::json!({"validate": "off"}),
    );
    assert_eq!(answer["validate"], "off", "{answer}");
    let (_, body) = query(&emu, "autoscaling", hook);
    assert!(!body.contains("validation error detected"), "{body}");
    let answer = control_put(
        &emu,
        "/_craftlb/settings",
        &serde_json::json!({"validate": "enforce"}),
    );
    assert_eq!(answer["validate"], "enforce", "{answer}");
}
