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

use serde::Deserialize;

use crate::aws::{AWS, Connection};
use crate::haproxy::{self, Reload};
use crate::protocol::{
    Ctx, Default, Failure, Module, Param, Params, RequiredIf, Response, RunFuture, Spec, Type,
};

pub const NAME: &str = "update_peers";

pub static MODULE: Module = Module {
    name: NAME,
    spec: &SPEC,
    doc: include_str!("../docs/update_peers.yml"),
    run: |ctx| -> RunFuture { Box::pin(run(ctx)) },
};

static PEER: Spec = Spec {
    params: &[
        Param::str("name")
            .required()
            .doc(&["Peer name ([A-Za-z0-9_.-], at most 64)."]),
        Param::str("address")
            .required()
            .doc(&["The peer's IP address."]),
    ],
    ..Spec::EMPTY
};

pub static SPEC: Spec = Spec {
    params: &[
        Param::path("peers_file")
            .required()
            .doc(&["The file holding the peers section, passed to haproxy as its own C(-f)."]),
        Param::str("peers_section")
            .default(Default::Str("lb_replication"))
            .doc(&["Name of the peers section (stick tables refer to it)."]),
        Param::int("peer_port")
            .default(Default::Int(7777))
            .doc(&["TCP port every node's peer listener uses."]),
        Param::str("group_name").doc(&[
            "Auto Scaling group to take peers from; default the group of this instance (one \
             DescribeAutoScalingInstances call).",
        ]),
        Param::str("local_peer").aliases(&["instance_id"]).doc(&[
            "This node's peer name; default its instance id from IMDS.",
            "Required with I(peers).",
        ]),
        Param::list_of("peers", &PEER).doc(&[
            "Fixed peers; no AWS or IMDS call is made. For hosts outside an Auto Scaling group.",
            "Mutually exclusive with I(group_name).",
        ]),
        Param::str("haproxy_bin")
            .default(Default::Str("haproxy"))
            .doc(&["haproxy binary used for validation."]),
        Param::list("validate_with", Type::Path).doc(&[
            "The other configuration files, in haproxy's C(-f) order, validated together with the new \
             peers section. Empty validates the section alone.",
        ]),
        Param::bool("reload").default(Default::Bool(true)).doc(&[
            "Reload haproxy after the file changed.",
            "Needs I(master_pidfile) or I(reload_command), except with I(drain_only) (which never writes \
             the file).",
        ]),
        Param::path("master_pidfile").doc(&[
            "Pidfile of the haproxy master-worker master (C(-W -p)); the reload is SIGUSR2 to that pid.",
        ]),
        Param::list("reload_command", Type::Str).doc(&[
            "Command (argv list) that reloads haproxy, e.g. C([systemctl, reload, craftlb-haproxy.service]).",
        ]),
        Param::bool("drain").default(Default::Bool(false)).doc(&[
            "Drain and complete the terminating lifecycle action when IMDS says the instance is to be \
             terminated.",
        ]),
        Param::bool("drain_only").default(Default::Bool(false)).doc(&[
            "Only watch for termination (and drain then); never touch the peers file. Until the instance \
             is terminating a run reads IMDS and makes no AWS call, so a timer can run it every few seconds.",
            "Requires I(drain).",
        ]),
        Param::path("master_socket").doc(&[
            "The haproxy master CLI socket (C(haproxy -W -S <socket>)); required with I(drain).",
            "Through it the drain reaches the current worker and every old one.",
        ]),
        Param::path("drain_health_acl").doc(&[
            "ACL pattern file behind the configuration's C(monitor fail) rule (C(acl ... src -f <file>)); \
             required with I(drain).",
            "Empty while the node serves; the drain fills it with C(0.0.0.0/0) and C(::/0).",
        ]),
        Param::path("drain_closed_acl").doc(&[
            "ACL pattern file behind the client frontends' C(tcp-request connection reject) and \
             C(connection close) rules; required with I(drain).",
        ]),
        Param::int("drain_dns_margin").default(Default::Int(60)).doc(&[
            "Seconds the node keeps accepting after the record's TTL. Route 53 takes up to 60 s to \
             propagate the record's removal to all its name servers.",
        ]),
        Param::list("keep_frontends", Type::Str)
            .default(Default::List(&["stats"]))
            .doc(&["Frontends a drain leaves open."]),
    ],
    includes: &[&AWS],
    mutually_exclusive: &[
        &["master_pidfile", "reload_command"],
        &["peers", "group_name"],
    ],
    required_if: &[RequiredIf {
        param: "drain",
        value: "true",
        requires: &["master_socket", "drain_health_acl", "drain_closed_acl"],
        any: false,
    }],
    ..Spec::EMPTY
};

/// The parameters, typed (after validation).
#[derive(Debug, Deserialize)]
struct Args {
    peers_file: String,
    peers_section: String,
    peer_port: i64,
    group_name: Option<String>,
    local_peer: Option<String>,
    peers: Option<Vec<PeerArg>>,
    haproxy_bin: String,
    validate_with: Option<Vec<String>>,
    reload: bool,
    master_pidfile: Option<String>,
    reload_command: Option<Vec<String>>,
    drain: bool,
    drain_only: bool,
    master_socket: Option<String>,
    drain_health_acl: Option<String>,
    drain_closed_acl: Option<String>,
    drain_dns_margin: i64,
    keep_frontends: Vec<String>,
    #[serde(flatten)]
    connection: Connection,
}

#[derive(Debug, Deserialize)]
struct PeerArg {
    name: String,
    address: String,
}

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
    pub connection: Connection,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Drain {
    /// Only watch for termination; leave the peers file alone (the fast
    /// drain timer: IMDS only, no AWS call until the node is terminating).
    pub only: bool,
    /// The master CLI: reaches the current worker and the old ones.
    pub master_socket: PathBuf,
    /// ACL pattern files the configuration reads at every (re)start: the
    /// drain's state, so no reload re-opens a draining node.
    pub health_acl: PathBuf,
    pub closed_acl: PathBuf,
    /// Added to the record's TTL before the node stops accepting: Route 53
    /// takes up to a minute to propagate a deletion to all its servers.
    pub dns_margin: u64,
    pub keep_frontends: Vec<String>,
}

fn static_peer(p: &PeerArg) -> Result<Peer, String> {
    Ok(Peer {
        name: p.name.clone(),
        address: p.address.parse().map_err(|e| {
            format!(
                "peer '{}': address '{}' is not an IP address: {e}",
                p.name, p.address
            )
        })?,
    })
}

/// Turns parameters into a [`Task`]; every rule here fails before any call.
pub fn task(p: &Params) -> Result<Task, Failure> {
    let a: Args = p.typed()?;
    let port = u16::try_from(a.peer_port)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| Failure::msg("peer_port must be 1-65535"))?;
    let local = a.local_peer.clone();
    let source = match &a.peers {
        Some(list) => {
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
        None => Source::Group {
            local,
            group: a.group_name.clone(),
        },
    };
    if let Some(bad) = [a.local_peer.as_deref(), Some(a.peers_section.as_str())]
        .into_iter()
        .flatten()
        .find(|n| !peers::valid_peer_name(n))
    {
        return Err(Failure::msg(format!(
            "'{bad}' is not a valid haproxy peer/section name ([A-Za-z0-9_.-], at most 64)"
        )));
    }
    // A drain watch never writes the peers file, so it never reloads.
    let reload = match (
        a.reload && !a.drain_only,
        &a.master_pidfile,
        &a.reload_command,
    ) {
        (false, _, _) => None,
        (true, Some(pidfile), _) => Some(Reload::MasterPidfile(pidfile.into())),
        (true, None, Some(cmd)) if !cmd.is_empty() => Some(Reload::Command(cmd.clone())),
        (true, None, _) => {
            return Err(Failure::msg(
                "reload is true but neither master_pidfile nor reload_command says how",
            ));
        }
    };
    let drain = match a.drain {
        false if a.drain_only => {
            return Err(Failure::msg("drain_only needs drain: true"));
        }
        false => None,
        true if matches!(source, Source::Static { .. }) => {
            return Err(Failure::msg(
                "drain needs the Auto Scaling group: it cannot be used with static peers",
            ));
        }
        true => Some(Drain {
            only: a.drain_only,
            master_socket: a.master_socket.clone().unwrap_or_default().into(),
            health_acl: a.drain_health_acl.clone().unwrap_or_default().into(),
            closed_acl: a.drain_closed_acl.clone().unwrap_or_default().into(),
            dns_margin: u64::try_from(a.drain_dns_margin)
                .map_err(|_| Failure::msg("drain_dns_margin must be >= 0"))?,
            keep_frontends: a.keep_frontends.clone(),
        }),
    };
    Ok(Task {
        peers_file: a.peers_file.clone().into(),
        section: a.peers_section.clone(),
        port,
        source,
        haproxy_bin: a.haproxy_bin.clone(),
        validate_with: a
            .validate_with
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        reload,
        drain,
        connection: a.connection,
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
                    "group_name".into(),
                    group.clone().map_or(Value::Null, Value::from),
                );
                data.insert(
                    "target_lifecycle_state".into(),
                    state.map_or(Value::Null, Value::from),
                );
                return Ok(Response::unchanged(data));
            }
            let config = craftlb_core::aws::sdk_config(&t.connection.aws_params(), None).await?;
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

/// What the drain's ACL files say: when the node began to fail its health
/// check, when it closed, whether it completed its lifecycle action. Kept
/// as comments in the files themselves, so a drain interrupted by a restart
/// resumes where it was (and a reload keeps the node as closed as it was).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainState {
    pub failing_since: Option<u64>,
    pub closed_since: Option<u64>,
    pub completed: bool,
}

const MARK_FAILING: &str = "# craftlb: failing health check since ";
const MARK_CLOSED: &str = "# craftlb: closed to new connections since ";
const MARK_COMPLETED: &str = "# craftlb: lifecycle action completed";
/// Every client address: the patterns of an ACL that matches everyone.
const EVERYONE: [&str; 2] = ["0.0.0.0/0", "::/0"];

fn marked(text: &str, mark: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(mark))
        .and_then(|t| t.trim().parse().ok())
}

impl DrainState {
    pub fn parse(health: &str, closed: &str) -> DrainState {
        DrainState {
            failing_since: marked(health, MARK_FAILING),
            closed_since: marked(closed, MARK_CLOSED),
            completed: closed.lines().any(|l| l == MARK_COMPLETED),
        }
    }
}

fn acl_text(mark: &str, since: u64, completed: bool) -> String {
    let mut text = format!("{mark}{since}\n{}\n{}\n", EVERYONE[0], EVERYONE[1]);
    if completed {
        text.push_str(MARK_COMPLETED);
        text.push('\n');
    }
    text
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn read_acl(path: &Path) -> Result<String, Failure> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(Failure::msg(format!(
            "cannot read drain file '{}': {e}",
            path.display()
        ))),
    }
}

/// Writes an ACL file atomically (a reload never reads half of it).
fn write_acl(path: &Path, text: &str) -> Result<(), Failure> {
    let tmp = path.with_extension(format!("craftlb-{}", std::process::id()));
    let io = |e: std::io::Error| {
        Failure::msg(format!("cannot write drain file '{}': {e}", path.display()))
    };
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Makes every running worker — old ones from earlier reloads too — match
/// every client on `acl` at once (the file does the same for every worker
/// started later).
fn match_everyone(master: &Path, acl: &Path) -> Result<(), Failure> {
    let pids = worker_pids(master)?;
    for (i, pid) in pids.iter().enumerate() {
        for pattern in EVERYONE {
            let cmd = format!("@!{pid} add acl {} {pattern}", acl.display());
            match haproxy::master(master, &cmd) {
                Ok(answer) if answer.trim().is_empty() => {}
                // An old worker may have exited since `show proc`.
                _ if i > 0 => break,
                Ok(answer) => {
                    return Err(Failure::msg(format!(
                        "haproxy refused '{cmd}': {}",
                        answer.trim()
                    )));
                }
                Err(e) => return Err(Failure::msg(e)),
            }
        }
    }
    Ok(())
}

/// Every worker's pid, the current one first.
fn worker_pids(master: &Path) -> Result<Vec<u32>, Failure> {
    let procs = haproxy::master(master, "show proc").map_err(Failure::msg)?;
    let pids = haproxy::workers(&procs);
    if pids.is_empty() {
        return Err(Failure::msg(format!(
            "the master CLI '{}' lists no worker: {}",
            master.display(),
            procs.trim()
        )));
    }
    Ok(pids)
}

/// Open client sessions across every worker, old ones included, and the
/// udp mappings' flows.
fn open_sessions(d: &Drain) -> Result<(u64, usize), Failure> {
    let pids = worker_pids(&d.master_socket)?;
    let mut open = 0;
    for pid in &pids {
        let csv = match haproxy::master(&d.master_socket, &format!("@!{pid} show stat")) {
            Ok(csv) => csv,
            // An old worker may exit between `show proc` and here.
            Err(_) => continue,
        };
        let Ok(rows) = haproxy::frontends(&csv) else {
            continue;
        };
        open += rows
            .iter()
            .filter(|f| !d.keep_frontends.contains(&f.name))
            .map(|f| f.sessions)
            .sum::<u64>();
    }
    // The udp mappings' flows (the kernel's, not haproxy's).
    open += crate::udp_balancer::open_flows("conntrack");
    Ok((open, pids.len()))
}

/// Lifecycle heartbeats for every node hook while the node drains, so no
/// hook times out however long the drain is.
struct Heartbeats<'a> {
    api: &'a GroupApi,
    group: &'a str,
    local: &'a str,
    hooks: &'a [(String, Option<i32>)],
    every: Option<Duration>,
    last: Instant,
    sent: u32,
}

impl Heartbeats<'_> {
    /// Sleeps until `until`, recording a heartbeat whenever one is due.
    async fn sleep_until(&mut self, until: Instant) -> Result<(), Failure> {
        loop {
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            if let Some(every) = self.every
                && now.duration_since(self.last) >= every
            {
                for (hook, _) in self.hooks {
                    self.api.heartbeat(self.group, hook, self.local).await?;
                }
                self.sent += 1;
                self.last = now;
            }
            let next_beat = self.every.map_or(until, |e| self.last + e);
            let wake = until.min(next_beat).min(now + Duration::from_millis(250));
            tokio::time::sleep(wake.saturating_duration_since(now)).await;
        }
    }
}

/// Scale-in, in the order clients that cache DNS need:
/// 1. fail the health check (monitor-uri) at once, keep accepting, for the
///    record's TTL plus `dns_margin` — clients may still hold the address;
/// 2. stop accepting new connections (refused by the running worker,
///    rejected by every worker a reload starts later) and close keep-alive
///    connections after their current response, in every worker;
/// 3. wait for open connections in every haproxy process, old workers from
///    earlier reloads included, at most the hooks' `drain_seconds`;
/// 4. complete the terminating action of every hook that leaves it to the
///    node, recording heartbeats all along.
///
/// The state lives in the ACL files, so a re-run resumes the same drain.
async fn drain(
    ctx: &Ctx,
    api: &GroupApi,
    d: &Drain,
    group: &str,
    local: &str,
) -> Result<Response, Failure> {
    let settings = peers::drain_settings(&api.hooks(group).await?);
    let health_text = read_acl(&d.health_acl)?;
    let closed_text = read_acl(&d.closed_acl)?;
    let state = DrainState::parse(&health_text, &closed_text);
    let mut data = Map::new();
    data.insert("local_peer".into(), Value::from(local));
    data.insert("group_name".into(), Value::from(group));
    data.insert("target_lifecycle_state".into(), Value::from("Terminated"));
    let hook_names: Vec<String> = settings.node_hooks.iter().map(|(h, _)| h.clone()).collect();
    let mut summary = json!({
        "ttl": settings.ttl, "dns_margin": d.dns_margin, "drain_seconds": settings.drain_seconds,
        "hooks": hook_names,
    });
    let mut warnings = Vec::new();
    if settings.node_hooks.is_empty() {
        warnings.push(format!(
            "no terminating hook of group '{group}' has drain_seconds in its metadata: \
             the Lambda completes the action and may cut the drain short"
        ));
    }
    if state.completed {
        summary["phase"] = Value::from("completed");
        data.insert("drain".into(), summary);
        return Ok(Response {
            changed: false,
            data,
            diff: None,
            warnings,
        });
    }
    if ctx.check_mode {
        summary["phase"] = Value::from(match (state.failing_since, state.closed_since) {
            (None, _) => "in service",
            (Some(_), None) => "failing health check",
            (Some(_), Some(_)) => "closed",
        });
        data.insert("drain".into(), summary);
        return Ok(Response {
            changed: true,
            data,
            diff: None,
            warnings,
        });
    }

    let started = Instant::now();
    let mut beats = Heartbeats {
        api,
        group,
        local,
        hooks: &settings.node_hooks,
        every: settings.heartbeat_every(),
        last: Instant::now(),
        sent: 0,
    };
    // 1. Health check fails; connections are still accepted.
    let failing_since = match state.failing_since {
        Some(t) => t,
        None => {
            let now = unix_now();
            write_acl(&d.health_acl, &acl_text(MARK_FAILING, now, false))?;
            match_everyone(&d.master_socket, &d.health_acl)?;
            now
        }
    };
    if state.closed_since.is_none() {
        // Whole seconds, kept in the ACL file across restarts: the check
        // began to fail up to a second after `failing_since`, so the extra
        // second is what guarantees clients at least TTL + margin.
        let close_at = failing_since + settings.ttl + d.dns_margin + 1;
        let left = Duration::from_secs(close_at.saturating_sub(unix_now()));
        beats.sleep_until(Instant::now() + left).await?;
    }
    let accepting_ms = started.elapsed().as_millis() as u64;
    // 2. No new connections: refused now, rejected after any reload.
    let closed_since = match state.closed_since {
        Some(t) => t,
        None => {
            let now = unix_now();
            write_acl(&d.closed_acl, &acl_text(MARK_CLOSED, now, false))?;
            match_everyone(&d.master_socket, &d.closed_acl)?;
            now
        }
    };
    let csv = haproxy::master(&d.master_socket, "@1 show stat").map_err(Failure::msg)?;
    let to_pause: Vec<String> = haproxy::frontends(&csv)
        .map_err(Failure::msg)?
        .into_iter()
        .filter(|f| !d.keep_frontends.contains(&f.name))
        .filter(|f| f.status != "PAUSED" && f.status != "STOP")
        .map(|f| f.name)
        .collect();
    for f in &to_pause {
        let answer = haproxy::master(&d.master_socket, &format!("@1 disable frontend {f}"))
            .map_err(Failure::msg)?;
        if !answer.trim().is_empty() {
            return Err(Failure::msg(format!(
                "haproxy refused 'disable frontend {f}': {}",
                answer.trim()
            )));
        }
    }
    // 3. Open connections finish, in every process.
    let wait_started = Instant::now();
    let deadline = Instant::now()
        + Duration::from_secs((closed_since + settings.drain_seconds).saturating_sub(unix_now()));
    let (mut open, mut processes) = open_sessions(d)?;
    while open > 0 && Instant::now() < deadline {
        let tick = (Instant::now() + Duration::from_millis(250)).min(deadline);
        beats.sleep_until(tick).await?;
        (open, processes) = open_sessions(d)?;
    }
    // 4. The instance may go.
    let mut completed = Vec::new();
    for (hook, _) in &settings.node_hooks {
        if api.complete_termination(group, hook, local).await? {
            completed.push(hook.clone());
        }
    }
    write_acl(&d.closed_acl, &acl_text(MARK_CLOSED, closed_since, true))?;
    if open > 0 {
        warnings.push(format!(
            "{open} connection(s) still open after {} s; completing anyway",
            settings.drain_seconds
        ));
    }
    summary["phase"] = Value::from("completed");
    summary["frontends"] = json!(to_pause);
    summary["accepting_ms"] = Value::from(accepting_ms);
    summary["waited_ms"] = Value::from(wait_started.elapsed().as_millis() as u64);
    summary["open_connections_left"] = Value::from(open);
    summary["processes_at_end"] = Value::from(processes);
    summary["heartbeats"] = Value::from(beats.sent);
    summary["completed_hooks"] = json!(completed);
    data.insert("drain".into(), summary);
    Ok(Response {
        changed: true,
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
    fn drain_state_survives_in_the_acl_files() {
        assert_eq!(DrainState::parse("", ""), DrainState::default());
        let health = acl_text(MARK_FAILING, 100, false);
        assert!(health.contains("0.0.0.0/0\n::/0\n"), "{health}");
        let closed = acl_text(MARK_CLOSED, 160, false);
        assert_eq!(
            DrainState::parse(&health, &closed),
            DrainState {
                failing_since: Some(100),
                closed_since: Some(160),
                completed: false
            }
        );
        let done = acl_text(MARK_CLOSED, 160, true);
        assert!(DrainState::parse(&health, &done).completed);
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
        assert!(validate(&SPEC, m).unwrap_err().0.contains("master_socket"));
        let p = params(json!({"peers_file": "/tmp/p.cfg", "reload": false, "drain_only": true}));
        assert!(task(&p).unwrap_err().msg.contains("drain_only needs drain"));
    }
}
