/*!
What can arrive: SNS-wrapped Auto Scaling lifecycle notifications (the
terminating hook's), the group's own notifications (an instance entered
service: `autoscaling:EC2_INSTANCE_LAUNCH`, or was terminated), the same as
EventBridge events, the test notification Auto Scaling sends when a hook's
target is set, and our own `{"reconcile": "<group>"}`. Anything else is
`Malformed`, carrying the raw text so it can be logged — never a panic,
never a runtime crash.
*/

use aws_lambda_events::event::autoscaling::AutoScalingEvent;
use aws_lambda_events::event::sns::SnsEvent;
use craftlb_core::lifecycle::TEST_NOTIFICATION;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The lifecycle notification's body (SNS message / EventBridge detail),
/// as AWS documents it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LifecycleMessage {
    pub auto_scaling_group_name: String,
    pub lifecycle_hook_name: String,
    #[serde(rename = "EC2InstanceId")]
    pub ec2_instance_id: String,
    pub lifecycle_transition: String,
    #[serde(default)]
    pub lifecycle_action_token: Option<String>,
    #[serde(default)]
    pub notification_metadata: Option<String>,
    #[serde(default)]
    pub account_id: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(default)]
    pub destination: Option<String>,
}

/// A group notification: "an instance of the group did this".
pub const INSTANCE_LAUNCH: &str = "autoscaling:EC2_INSTANCE_LAUNCH";
pub const INSTANCE_LAUNCH_ERROR: &str = "autoscaling:EC2_INSTANCE_LAUNCH_ERROR";
pub const INSTANCE_TERMINATE: &str = "autoscaling:EC2_INSTANCE_TERMINATE";
pub const INSTANCE_TERMINATE_ERROR: &str = "autoscaling:EC2_INSTANCE_TERMINATE_ERROR";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Lifecycle(Box<LifecycleMessage>),
    /// The instance entered service: its node completed its launching
    /// action (CONTINUE) because it serves.
    Launched {
        group: String,
        instance: String,
    },
    /// The instance is gone.
    Terminated {
        group: String,
        instance: String,
    },
    /// A group notification that needs nothing (a failed launch or
    /// termination): logged.
    Notice {
        event: String,
        group: String,
        instance: Option<String>,
    },
    Test {
        group: Option<String>,
    },
    Reconcile {
        group: String,
    },
    Malformed {
        reason: String,
        raw: String,
    },
}

/// A group notification's event name (SNS) or detail-type (EventBridge),
/// as the item it is.
fn instance_event(event: &str, body: &Value) -> Option<Item> {
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let (group, instance) = (text("AutoScalingGroupName")?, text("EC2InstanceId"));
    Some(match (event, instance) {
        (INSTANCE_LAUNCH | "EC2 Instance Launch Successful", Some(instance)) => {
            Item::Launched { group, instance }
        }
        (INSTANCE_TERMINATE | "EC2 Instance Terminate Successful", Some(instance)) => {
            Item::Terminated { group, instance }
        }
        (
            INSTANCE_LAUNCH_ERROR
            | INSTANCE_TERMINATE_ERROR
            | "EC2 Instance Launch Unsuccessful"
            | "EC2 Instance Terminate Unsuccessful",
            instance,
        ) => Item::Notice {
            event: event.to_owned(),
            group,
            instance,
        },
        _ => return None,
    })
}

fn malformed(reason: impl Into<String>, raw: &Value) -> Item {
    Item::Malformed {
        reason: reason.into(),
        raw: raw.to_string(),
    }
}

/// Parses one notification body (the SNS message text, or EventBridge's
/// detail as JSON).
fn from_body(body: &Value) -> Item {
    if body.get("Event").and_then(Value::as_str) == Some(TEST_NOTIFICATION) {
        let group = body
            .get("AutoScalingGroupName")
            .and_then(Value::as_str)
            .map(str::to_owned);
        return Item::Test { group };
    }
    if let Some(item) = body
        .get("Event")
        .and_then(Value::as_str)
        .and_then(|event| instance_event(event, body))
    {
        return item;
    }
    match serde_json::from_value::<LifecycleMessage>(body.clone()) {
        Ok(m) => Item::Lifecycle(Box::new(m)),
        Err(e) => malformed(format!("not a lifecycle notification: {e}"), body),
    }
}

/// Splits an invocation payload into the items it carries.
pub fn parse(payload: &Value) -> Vec<Item> {
    if let Some(group) = payload.get("reconcile") {
        return vec![match group.as_str() {
            Some(g) if !g.is_empty() => Item::Reconcile {
                group: g.to_owned(),
            },
            _ => malformed("reconcile needs a group name", payload),
        }];
    }
    if payload.get("Records").is_some() {
        return match serde_json::from_value::<SnsEvent>(payload.clone()) {
            Ok(ev) if ev.records.is_empty() => {
                vec![malformed("SNS event without records", payload)]
            }
            Ok(ev) => ev
                .records
                .iter()
                .map(|r| match serde_json::from_str::<Value>(&r.sns.message) {
                    Ok(body) => from_body(&body),
                    Err(e) => Item::Malformed {
                        reason: format!("SNS message is not JSON: {e}"),
                        raw: r.sns.message.clone(),
                    },
                })
                .collect(),
            Err(e) => vec![malformed(format!("not an SNS event: {e}"), payload)],
        };
    }
    if payload.get("detail-type").is_some() {
        return match serde_json::from_value::<AutoScalingEvent>(payload.clone()) {
            Ok(ev) if ev.source.as_deref() == Some("aws.autoscaling") => {
                let detail = Value::Object(ev.detail.into_iter().collect());
                let kind = ev.detail_type.as_deref().unwrap_or_default();
                vec![instance_event(kind, &detail).unwrap_or_else(|| from_body(&detail))]
            }
            Ok(ev) => vec![malformed(
                format!("EventBridge event from unexpected source {:?}", ev.source),
                payload,
            )],
            Err(e) => vec![malformed(
                format!("not an Auto Scaling EventBridge event: {e}"),
                payload,
            )],
        };
    }
    vec![malformed("unrecognised event", payload)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        // At run time: a test binary reused from another checkout (shared
        // target dir) must read this checkout's fixtures.
        let dir = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
        let path = format!("{dir}/tests/fixtures/{name}");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn one(v: &Value) -> Item {
        let mut items = parse(v);
        assert_eq!(items.len(), 1, "{items:?}");
        items.remove(0)
    }

    #[test]
    fn sns_launching() {
        let Item::Lifecycle(m) = one(&fixture("sns-lifecycle-launching.json")) else {
            panic!("expected a lifecycle message");
        };
        assert_eq!(m.lifecycle_transition, "autoscaling:EC2_INSTANCE_LAUNCHING");
        assert_eq!(m.ec2_instance_id, "i-0598c7d356eba48d7");
        assert_eq!(m.auto_scaling_group_name, "mylb-asg");
        assert!(m.lifecycle_action_token.is_some());
        assert!(
            m.notification_metadata
                .as_deref()
                .is_some_and(|s| s.contains("record_name"))
        );
    }

    #[test]
    fn sns_terminating_and_round_trip() {
        let Item::Lifecycle(m) = one(&fixture("sns-lifecycle-terminating.json")) else {
            panic!("expected a lifecycle message");
        };
        assert_eq!(
            m.lifecycle_transition,
            "autoscaling:EC2_INSTANCE_TERMINATING"
        );
        let again: LifecycleMessage =
            serde_json::from_value(serde_json::to_value(&m).unwrap_or_default())
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again, *m);
    }

    #[test]
    fn eventbridge_launching() {
        let Item::Lifecycle(m) = one(&fixture("eventbridge-lifecycle-launching.json")) else {
            panic!("expected a lifecycle message");
        };
        assert_eq!(m.lifecycle_hook_name, "mylb-launching");
        assert_eq!(m.origin.as_deref(), Some("EC2"));
    }

    #[test]
    fn group_notifications_sns_and_eventbridge() {
        let launched = Item::Launched {
            group: "mylb-asg".into(),
            instance: "i-0598c7d356eba48d7".into(),
        };
        assert_eq!(one(&fixture("sns-instance-launch.json")), launched);
        assert_eq!(
            one(&fixture("eventbridge-instance-launch-successful.json")),
            launched
        );
        assert_eq!(
            one(&fixture("sns-instance-terminate.json")),
            Item::Terminated {
                group: "mylb-asg".into(),
                instance: "i-0598c7d356eba48d7".into(),
            }
        );
        let mut error = fixture("sns-instance-launch.json");
        let body = error["Records"][0]["Sns"]["Message"]
            .as_str()
            .unwrap_or_default()
            .replace(INSTANCE_LAUNCH, INSTANCE_LAUNCH_ERROR);
        error["Records"][0]["Sns"]["Message"] = Value::from(body);
        assert_eq!(
            one(&error),
            Item::Notice {
                event: INSTANCE_LAUNCH_ERROR.into(),
                group: "mylb-asg".into(),
                instance: Some("i-0598c7d356eba48d7".into()),
            }
        );
    }

    #[test]
    fn test_notification() {
        assert_eq!(
            one(&fixture("sns-test-notification.json")),
            Item::Test {
                group: Some("mylb-asg".into())
            }
        );
    }

    #[test]
    fn reconcile_and_malformed() {
        assert_eq!(
            one(&serde_json::json!({"reconcile": "mylb-asg"})),
            Item::Reconcile {
                group: "mylb-asg".into()
            }
        );
        for bad in [
            serde_json::json!({"reconcile": ""}),
            serde_json::json!({"hello": "world"}),
            serde_json::json!({"Records": []}),
            serde_json::json!({"Records": [{"nope": 1}]}),
            serde_json::json!([1, 2]),
            serde_json::json!({"detail-type": "x", "source": "aws.ec2", "time": "2026-01-01T00:00:00Z",
                               "resources": [], "detail": {}}),
        ] {
            assert!(matches!(one(&bad), Item::Malformed { .. }), "{bad}");
        }
        let mut v = fixture("sns-lifecycle-launching.json");
        v["Records"][0]["Sns"]["Message"] = Value::from("{not json");
        assert!(matches!(one(&v), Item::Malformed { raw, .. } if raw == "{not json"));
    }
}
