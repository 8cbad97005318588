/*!
craftlb-lambda: the Route 53 lifecycle handler.

[`event`] turns whatever arrived into items; [`handler`] decides and acts
through the [`handler::Aws`] trait; [`aws`] implements that trait over the
SDK. [`handle`] is what `bootstrap` calls per invocation.
*/

pub mod aws;
pub mod event;
pub mod handler;
pub mod reconcile;

use serde_json::{Value, json};

use event::Item;

fn report_line(report: handler::Report) -> Value {
    let level = if report.error.is_some() {
        "error"
    } else {
        "info"
    };
    let mut v = serde_json::to_value(&report).unwrap_or_else(|e| json!({"error": e.to_string()}));
    v["level"] = Value::from(level);
    v
}

/// Handles one invocation payload; returns one JSON log line per item.
/// Never fails: malformed input is reported with the raw text, so the
/// runtime neither crashes nor makes Lambda retry a message that can
/// never succeed.
pub async fn handle<A: handler::Aws>(aws: &A, payload: &Value) -> Vec<Value> {
    let mut lines = Vec::new();
    for item in event::parse(payload) {
        lines.push(match item {
            Item::Lifecycle(msg) => report_line(handler::handle_lifecycle(aws, &msg).await),
            Item::Launched { group, instance } => {
                report_line(handler::handle_launched(aws, &group, &instance).await)
            }
            Item::Terminated { group, instance } => {
                report_line(handler::handle_terminated(aws, &group, &instance).await)
            }
            Item::Notice { event, group, instance } => json!({"level": "info", "action": "nothing to do",
                "event": event, "group": group, "instance_id": instance}),
            Item::Test { group } => json!({"level": "info", "action": "test notification acknowledged", "group": group}),
            Item::Reconcile { group } => {
                let report = reconcile::reconcile(aws, &group).await;
                let level = if report.errors.is_empty() { "info" } else { "error" };
                let mut v = serde_json::to_value(&report).unwrap_or_else(|e| json!({"error": e.to_string()}));
                v["level"] = Value::from(level);
                v
            }
            Item::Malformed { reason, raw } => json!({"level": "error", "action": "ignored malformed event", "error": reason, "raw": raw}),
        });
    }
    lines
}
