/*!
The Auto Scaling calls both the Lambda and a node make: read a group,
complete a lifecycle action (where "no active action" is an answer, not an
error: a duplicate or late completion).
*/

use aws_sdk_autoscaling::Client;
use aws_sdk_autoscaling::types::{AutoScalingGroup, LifecycleHook};

use crate::error::{Error, Result, sdk_error};

/// The group as DescribeAutoScalingGroups describes it (`None`: no such group).
pub async fn describe_group(client: &Client, group: &str) -> Result<Option<AutoScalingGroup>> {
    let out = client
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(group)
        .send()
        .await
        .map_err(sdk_error(
            "Auto Scaling",
            "DescribeAutoScalingGroups",
            format!("describe group '{group}'"),
        ))?;
    Ok(out.auto_scaling_groups().first().cloned())
}

/// The group's lifecycle hooks.
pub async fn lifecycle_hooks(client: &Client, group: &str) -> Result<Vec<LifecycleHook>> {
    let out = client
        .describe_lifecycle_hooks()
        .auto_scaling_group_name(group)
        .send()
        .await
        .map_err(sdk_error(
            "Auto Scaling",
            "DescribeLifecycleHooks",
            format!("list the lifecycle hooks of group '{group}'"),
        ))?;
    Ok(out.lifecycle_hooks().to_vec())
}

/// Which lifecycle action to complete. The token is optional: AWS also
/// accepts the instance id alone (what a node knows about itself).
#[derive(Debug, Clone, Copy)]
pub struct ActionRef<'a> {
    pub group: &'a str,
    pub hook: &'a str,
    pub instance_id: &'a str,
    pub token: Option<&'a str>,
}

/// CompleteLifecycleAction with `result` (CONTINUE / ABANDON). `Ok(false)`:
/// there was no active action (already completed, or timed out).
pub async fn complete_lifecycle_action(
    client: &Client,
    action: ActionRef<'_>,
    result: &str,
) -> Result<bool> {
    let res = client
        .complete_lifecycle_action()
        .auto_scaling_group_name(action.group)
        .lifecycle_hook_name(action.hook)
        .instance_id(action.instance_id)
        .set_lifecycle_action_token(action.token.map(str::to_owned))
        .lifecycle_action_result(result)
        .send()
        .await;
    match res {
        Ok(_) => Ok(true),
        Err(e) => no_active_action(Error::from_sdk(
            "Auto Scaling",
            "CompleteLifecycleAction",
            format!(
                "complete the lifecycle action of '{}' (hook '{}')",
                action.instance_id, action.hook
            ),
            e,
        )),
    }
}

/// RecordLifecycleActionHeartbeat: restarts the hook's heartbeat timeout.
/// `Ok(false)`: there was no active action.
pub async fn record_heartbeat(client: &Client, action: ActionRef<'_>) -> Result<bool> {
    let res = client
        .record_lifecycle_action_heartbeat()
        .auto_scaling_group_name(action.group)
        .lifecycle_hook_name(action.hook)
        .instance_id(action.instance_id)
        .set_lifecycle_action_token(action.token.map(str::to_owned))
        .send()
        .await;
    match res {
        Ok(_) => Ok(true),
        Err(e) => no_active_action(Error::from_sdk(
            "Auto Scaling",
            "RecordLifecycleActionHeartbeat",
            format!(
                "record a heartbeat for '{}' (hook '{}')",
                action.instance_id, action.hook
            ),
            e,
        )),
    }
}

/// "No active Lifecycle Action" is an answer (completed before, or timed
/// out), not a failure.
fn no_active_action(err: Error) -> Result<bool> {
    if err.to_string().contains("No active Lifecycle Action") {
        Ok(false)
    } else {
        Err(err)
    }
}
