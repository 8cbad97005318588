/*!
`update_peers`: the haproxy `peers` section of a load balancer node, from
its Auto Scaling group; and the node's drain on scale-in.

One run: who am I (IMDSv2, or `local_peer`) → which instances of my group
are InService, with their private IPs → the section text. When the text
differs from the file, the new text is validated together with the rest of
the configuration (`haproxy -c`), renamed over the old file and haproxy is
reloaded hitlessly. Any failure before the rename leaves the last good file
in place; an empty group or one without this node is treated as a failure.

With `drain`, a run first asks IMDS for the instance's target lifecycle
state; when it is `Terminated` the node stops accepting connections, waits
for open ones, and completes its terminating lifecycle action itself. With
`drain_only` that is all a run does (a frequent timer: IMDS reads only).

The same binary is the systemd timer's command: `update_peers args.json`,
with the arguments file Ansible would pass.
*/

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use craftlb_core::peers::{self, GroupApi, Peer};
use serde_json::{Map, Value, json};

use crate::aws::{AWS_REQUIRED_TOGETHER, aws_params};
use crate::aws_module_params;
use crate::haproxy::{self, Reload};
use crate::protocol::{Ctx, Default, Failure, Param, Params, Response, Spec, Type};

pub const NAME: &str = "update_peers";

pub static SPEC: Spec = Spec {
    params: aws_module_params![
        Param::new("peers_file", Type::Path).required(),
        Param::str("peers_section").default(Default::Str("lb_replication")),
        Param::int("peer_port").default(Default::Int(7777)),
        Param::str("group_name"),
        Param::str("local_peer").aliases(&["instance_id"]),
        Param::list("peers", Type::Dict),
        Param::str("haproxy_bin").default(Default::Str("haproxy")),
        Param::list("validate_with", Type::Path),
        Param::bool("reload").default(Default::Bool(true)),
        Param::new("master_pidfile", Type::Path),
        Param::list("reload_command", Type::Str),
        Param::bool("drain").default(Default::Bool(false)),
        Param::bool("drain_only").default(Default::Bool(false)),
        Param::int("drain_seconds").default(Default::Int(120)),
        Param::new("stats_socket", Type::Path),
        Param::list("keep_frontends", Type::Str),
    ],
    mutually_exclusive: &[
        &["master_pidfile", "reload_command"],
        &["peers", "group_name"],
    ],
    required_together: &[AWS_REQUIRED_TOGETHER],
    required_one_of: &[],
    required_if: &[crate::protocol::RequiredIf {
        param: "drain",
        value: "true",
        requires: &["stats_socket"],
        any: false,
    }],
    supports_check_mode: true,
};

/// Where the peers come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Given in the task; no AWS or IMDS call.
    Static { local: String, peers: Vec<Peer> },
    /// The Auto Scaling group (of this instance, unless named).
    Group {
        local: Option<String>,
        group: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub peers_file: PathBuf,
    pub section: String,
    pub port: u16,
    pub source: Source,
    pub haproxy_bin: String,
    pub validate_with: Vec<PathBuf>,
    pub reload: Option<Reload>,
    pub drain: Option<Drain>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Drain {
    /// Only watch for termination; leave the peers file alone (the fast
    /// drain timer: IMDS only, no AWS call until the node is terminating).
    pub only: bool,
    pub seconds: u64,
    pub stats_socket: PathBuf,
    pub keep_frontends: Vec<String>,
}

fn static_peer(v: &Value) -> Result<Peer, String> {
    let o = v.as_object().ok_or("each entry of peers must be a dict")?;
    let name = o
        .get("name")
        .and_then(Value::as_str)
        .ok_or("each entry of peers needs a 'name'")?;
    let address = o
        .get("address")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("peer '{name}' needs an 'address'"))?;
    Ok(Peer {
        name: name.to_owned(),
        address: address
            .parse()
            .map_err(|e| format!("peer '{name}': address '{address}' is not an IP address: {e}"))?,
    })
}

/// Turns parameters into a [`Task`]; every rule here fails before any call.
pub fn task(p: &Params) -> Result<Task, Failure> {
    let port = p
        .int("peer_port")
        .and_then(|v| u16::try_from(v).ok())
        .filter(|v| *v > 0)
        .ok_or_else(|| Failure::msg("peer_port must be 1-65535"))?;
    let local = p.str("local_peer").map(str::to_owned);
    let source = match p.value("peers") {
        Some(Value::Array(list)) => {
            let local = local.ok_or_else(|| {
                Failure::msg("local_peer is required with peers (there is no instance to ask)")
            })?;
            let peers = list
                .iter()
                .map(static_peer)
                .collect::<Result<Vec<_>, _>>()
                .map_err(Failure::msg)?;
            if !peers.iter().any(|p| p.name == local) {
                return Err(Failure::msg(format!(
                    "local_peer '{local}' is not one of peers ({})",
                    peers
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            Source::Static { local, peers }
        }
        _ => Source::Group {
            local,
            group: p.str("group_name").map(str::to_owned),
        },
    };
    if let Some(bad) = [
        p.str("local_peer"),
        Some(p.str("peers_section").unwrap_or_default()),
    ]
    .into_iter()
    .flatten()
    .find(|n| !peers::valid_peer_name(n))
    {
        return Err(Failure::msg(format!(
            "'{bad}' is not a valid haproxy peer/section name ([A-Za-z0-9_.-], at most 64)"
        )));
    }
    let reload = match (
        p.bool("reload").unwrap_or(true),
        p.str("master_pidfile"),
        p.str_list("reload_command"),
    ) {
        (false, _, _) => None,
        (true, Some(pidfile), _) => Some(Reload::MasterPidfile(pidfile.into())),
        (true, None, Some(cmd)) if !cmd.is_empty() => Some(Reload::Command(cmd)),
        (true, None, _) => {
            return Err(Failure::msg(
                "reload is true but neither master_pidfile nor reload_command says how",
            ));
        }
    };
    let drain = match p.bool("drain").unwrap_or(false) {
        false if p.bool("drain_only").unwrap_or(false) => {
            return Err(Failure::msg("drain_only needs drain: true"));
        }
        false => None,
        true if matches!(source, Source::Static { .. }) => {
            return Err(Failure::msg(
                "drain needs the Auto Scaling group: it cannot be used with static peers",
            ));
        }
        true => Some(Drain {
            only: p.bool("drain_only").unwrap_or(false),
            seconds: p
                .int("drain_seconds")
                .and_then(|s| u64::try_from(s).ok())
                .ok_or_else(|| Failure::msg("drain_seconds must be >= 0"))?,
            stats_socket: p.str("stats_socket").unwrap_or_default().into(),
            keep_frontends: p
                .str_list("keep_frontends")
                .unwrap_or_else(|| vec!["stats".into()]),
        }),
    };
    Ok(Task {
        peers_file: p.str("peers_file").unwrap_or_default().into(),
        section: p
            .str("peers_section")
            .unwrap_or("lb_replication")
            .to_owned(),
        port,
        source,
        haproxy_bin: p.str("haproxy_bin").unwrap_or("haproxy").to_owned(),
        validate_with: p
            .str_list("validate_with")
            .unwrap_or_default()
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        reload,
        drain,
    })
}

const IMDS_INSTANCE_ID: &str = "/latest/meta-data/instance-id";
const IMDS_TARGET_STATE: &str = "/latest/meta-data/autoscaling/target-lifecycle-state";

async fn imds_get(imds: &aws_config::imds::Client, path: &str) -> Result<Option<String>, Failure> {
    match imds.get(path).await {
        Ok(v) => Ok(Some(v.as_ref().trim().to_owned())),
        Err(aws_config::imds::client::error::ImdsError::ErrorResponse(r))
            if r.response().status().as_u16() == 404 =>
        {
            Ok(None)
        }
        Err(e) => Err(Failure::msg(format!(
            "instance metadata (IMDSv2) {path}: {}",
            aws_smithy_types::error::display::DisplayErrorContext(&e)
        ))),
    }
}

pub async fn run(ctx: Ctx) -> Result<Response, Failure> {
    let t = task(&ctx.params)?;
    let (local, peers, group) = match &t.source {
        Source::Static { local, peers } => (local.clone(), peers.clone(), None),
        Source::Group { local, group } => {
            let imds = craftlb_core::aws::imds_client();
            let local = match local {
                Some(l) => l.clone(),
                None => imds_get(&imds, IMDS_INSTANCE_ID)
                    .await?
                    .ok_or_else(|| Failure::msg("IMDS has no instance-id"))?,
            };
            // The lifecycle state first: IMDS is local, so a drain watch
            // makes no AWS call until the node is on its way out.
            let state = match &t.drain {
                Some(_) => imds_get(&imds, IMDS_TARGET_STATE).await?,
                None => None,
            };
            let terminating = state.as_deref() == Some("Terminated");
            if let (Some(d), false) = (&t.drain, terminating)
                && d.only
            {
                let mut data = Map::new();
                data.insert("local_peer".into(), Value::from(local));
                data.insert(
                    "target_lifecycle_state".into(),
                    state.map_or(Value::Null, Value::from),
                );
                return Ok(Response {
                    changed: false,
                    data,
                    diff: None,
                    warnings: vec![],
                });
            }
            let config = craftlb_core::aws::sdk_config(&aws_params(&ctx.params), None).await?;
            let api = GroupApi::new(&config);
            let group = match group {
                Some(g) => g.clone(),
                None => api.group_of(&local).await?.ok_or_else(|| {
                    Failure::msg(format!(
                        "instance '{local}' is in no Auto Scaling group; give group_name or peers"
                    ))
                })?,
            };
            if let (Some(d), true) = (&t.drain, terminating) {
                return drain(&ctx, &api, d, &group, &local).await;
            }
            let members = api.members(&group).await?.ok_or_else(|| {
                Failure::msg(format!(
                    "Auto Scaling group '{group}' does not exist; keeping the current peers"
                ))
            })?;
            let peers = peers::select(&local, &group, &members)?;
            (local, peers, Some(group))
        }
    };
    let text = peers::render(&t.section, t.port, &peers)?;
    let before = match std::fs::read_to_string(&t.peers_file) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(Failure::msg(format!(
                "cannot read peers file '{}': {e}",
                t.peers_file.display()
            )));
        }
    };
    let mut data = Map::new();
    data.insert("local_peer".into(), Value::from(local.clone()));
    data.insert("group_name".into(), group.map_or(Value::Null, Value::from));
    data.insert(
        "peers_file".into(),
        Value::from(t.peers_file.display().to_string()),
    );
    data.insert(
        "peers".into(),
        json!(
            peers
                .iter()
                .map(|p| json!({"name": p.name, "address": p.address.to_string()}))
                .collect::<Vec<_>>()
        ),
    );
    let changed = before != text;
    // Ansible shows text diffs line by line.
    let diff = changed.then(|| (Value::from(before.clone()), Value::from(text.clone())));
    let mut reloaded = false;
    if changed && !ctx.check_mode {
        write_validated(&t, &local, &text)?;
        if let Some(how) = &t.reload {
            haproxy::reload(how).map_err(|e| {
                Failure::msg(format!(
                    "peers file '{}' was updated but haproxy was not reloaded: {e}",
                    t.peers_file.display()
                ))
            })?;
            reloaded = true;
        }
    }
    data.insert("reloaded".into(), Value::Bool(reloaded));
    Ok(Response {
        changed,
        data,
        diff,
        warnings: vec![],
    })
}

/// Temp file beside the target, validated with the rest of the config,
/// then renamed over it: haproxy never reads a half-written or invalid file.
fn write_validated(t: &Task, local: &str, text: &str) -> Result<(), Failure> {
    let file = &t.peers_file;
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = file
        .file_name()
        .ok_or_else(|| Failure::msg(format!("peers_file '{}' has no file name", file.display())))?;
    let tmp = dir.join(format!(
        ".{}.craftlb-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let io = |what: &str, e: std::io::Error| {
        Failure::msg(format!("cannot {what} '{}': {e}", tmp.display()))
    };
    std::fs::write(&tmp, text).map_err(|e| io("write", e))?;
    let result = (|| {
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io("sync", e))?;
        let mut files = t.validate_with.clone();
        files.push(tmp.clone());
        haproxy::validate(&t.haproxy_bin, local, &files).map_err(|e| {
            Failure::msg(format!(
                "the new peers section failed validation; '{}' was left as it was: {e}",
                file.display()
            ))
        })?;
        std::fs::rename(&tmp, file).map_err(|e| {
            Failure::msg(format!(
                "cannot rename '{}' to '{}': {e}",
                tmp.display(),
                file.display()
            ))
        })?;
        // The rename is durable once the directory entry is.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Scale-in: stop listening, let open connections finish (bounded), then
/// complete the terminating action of every hook that leaves it to the node.
async fn drain(
    ctx: &Ctx,
    api: &GroupApi,
    d: &Drain,
    group: &str,
    local: &str,
) -> Result<Response, Failure> {
    let hooks = api.terminating_hooks(group).await?;
    let node_hooks: Vec<_> = hooks.iter().filter(|h| h.drain_seconds.is_some()).collect();
    let bound = node_hooks
        .iter()
        .filter_map(|h| h.drain_seconds)
        .max()
        .map_or(d.seconds, u64::from);
    let stat = || -> Result<Vec<haproxy::FrontendStat>, Failure> {
        let csv = haproxy::runtime(&d.stats_socket, "show stat").map_err(Failure::msg)?;
        let rows = haproxy::frontends(&csv).map_err(Failure::msg)?;
        Ok(rows
            .into_iter()
            .filter(|f| !d.keep_frontends.contains(&f.name))
            .collect())
    };
    let fronts = stat()?;
    let to_pause: Vec<String> = fronts
        .iter()
        .filter(|f| f.status != "PAUSED" && f.status != "STOP")
        .map(|f| f.name.clone())
        .collect();
    let mut data = Map::new();
    data.insert("local_peer".into(), Value::from(local));
    data.insert("group_name".into(), Value::from(group));
    data.insert("target_lifecycle_state".into(), Value::from("Terminated"));
    if ctx.check_mode {
        data.insert(
            "drain".into(),
            json!({"frontends": to_pause, "drain_seconds": bound,
                   "hooks": node_hooks.iter().map(|h| h.name.clone()).collect::<Vec<_>>()}),
        );
        let changed = !to_pause.is_empty() || !node_hooks.is_empty();
        return Ok(Response {
            changed,
            data,
            diff: None,
            warnings: vec![],
        });
    }
    for f in &to_pause {
        let answer = haproxy::runtime(&d.stats_socket, &format!("disable frontend {f}"))
            .map_err(Failure::msg)?;
        if !answer.trim().is_empty() {
            return Err(Failure::msg(format!(
                "haproxy refused 'disable frontend {f}': {}",
                answer.trim()
            )));
        }
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(bound);
    let mut open = stat()?.iter().map(|f| f.sessions).sum::<u64>();
    while open > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        open = stat()?.iter().map(|f| f.sessions).sum::<u64>();
    }
    let mut completed = Vec::new();
    for h in &node_hooks {
        if api.complete_termination(group, &h.name, local).await? {
            completed.push(h.name.clone());
        }
    }
    let mut warnings = Vec::new();
    if node_hooks.is_empty() {
        warnings.push(format!(
            "no terminating hook of group '{group}' has drain_seconds in its metadata: \
             the Lambda completes the action and may cut the drain short"
        ));
    }
    if open > 0 {
        warnings.push(format!(
            "{open} connection(s) still open after {bound} s; completing anyway"
        ));
    }
    data.insert(
        "drain".into(),
        json!({"frontends": to_pause, "drain_seconds": bound,
               "waited_ms": started.elapsed().as_millis() as u64,
               "open_connections_left": open, "completed_hooks": completed}),
    );
    Ok(Response {
        changed: !to_pause.is_empty() || !completed.is_empty(),
        data,
        diff: None,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::validate;

    fn params(v: Value) -> Params {
        let Value::Object(m) = v else { unreachable!() };
        validate(&SPEC, m).unwrap()
    }

    #[test]
    fn static_peers_need_the_local_peer_among_them() {
        let p = params(
            json!({"peers_file": "/tmp/p.cfg", "reload": false, "local_peer": "a",
                              "peers": [{"name": "a", "address": "127.0.0.2"}, {"name": "b", "address": "127.0.0.3"}]}),
        );
        let t = task(&p).unwrap();
        assert!(
            matches!(t.source, Source::Static { ref local, ref peers } if local == "a" && peers.len() == 2)
        );
        let p = params(
            json!({"peers_file": "/tmp/p.cfg", "reload": false, "local_peer": "c",
                              "peers": [{"name": "a", "address": "127.0.0.2"}]}),
        );
        assert!(task(&p).unwrap_err().msg.contains("not one of peers"));
        let p = params(
            json!({"peers_file": "/tmp/p.cfg", "reload": false, "local_peer": "a",
                              "peers": [{"name": "a", "address": "not-an-ip"}]}),
        );
        assert!(task(&p).unwrap_err().msg.contains("not an IP address"));
    }

    #[test]
    fn reload_and_drain_need_their_settings() {
        let p = params(json!({"peers_file": "/tmp/p.cfg"}));
        assert!(
            task(&p)
                .unwrap_err()
                .msg
                .contains("neither master_pidfile nor reload_command")
        );
        let p = params(
            json!({"peers_file": "/tmp/p.cfg", "reload_command": ["systemctl", "reload", "x"]}),
        );
        assert_eq!(
            task(&p).unwrap().reload,
            Some(Reload::Command(vec![
                "systemctl".into(),
                "reload".into(),
                "x".into()
            ]))
        );
        let p =
            params(json!({"peers_file": "/tmp/p.cfg", "reload": false, "local_peer": "bad name"}));
        assert!(task(&p).unwrap_err().msg.contains("'bad name'"));
        let Value::Object(m) = json!({"peers_file": "/tmp/p.cfg", "reload": false, "drain": true})
        else {
            unreachable!()
        };
        assert!(validate(&SPEC, m).unwrap_err().0.contains("stats_socket"));
        let p = params(json!({"peers_file": "/tmp/p.cfg", "reload": false, "drain_only": true}));
        assert!(task(&p).unwrap_err().msg.contains("drain_only needs drain"));
    }
}
