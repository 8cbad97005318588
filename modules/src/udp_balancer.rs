/*!
`udp_balancer`: UDP load balancing in the node's kernel. haproxy carries no
UDP, so the data path is nftables: per mapping, new flows to the node's
`frontend_port` are spread over the mapping's servers (round robin, random,
or a hash of the client address) by DNAT, masqueraded so the replies come
back through the node, and conntrack keeps every later packet of a flow on
the server its first packet went to.

The ruleset is one table, replaced as a whole in one `nft -f` transaction
(never flushed and rebuilt in two steps). Dispatch is one verdict-map lookup
on the destination port, whatever the number of mappings, as in
kube-proxy's nftables mode.

Health is haproxy's: the role gives every UDP mapping a backend
`<name>_udp` whose servers haproxy checks (TCP, or HTTP on a path), as AWS's
Network Load Balancer checks UDP targets over TCP or HTTP. A run reads the
servers' states from haproxy's runtime API and leaves out the ones that are
down; their flows are removed from conntrack, so a client that keeps its
source port moves too. With `watch` the run repeats every `interval_ms`
(the systemd service), so the kernel's backend set follows haproxy's checks.

When the drain has closed the node (its ACL file says so), the table keeps
its NAT chains but dispatches nothing: new flows find no listener, flows
already in conntrack go on to their server until they end.
*/

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::haproxy;
use crate::protocol::{Ctx, Default, Failure, Module, Param, Params, Response, RunFuture, Spec};
use crate::update_peers::DrainState;

pub const NAME: &str = "udp_balancer";

pub static MODULE: Module = Module {
    name: NAME,
    spec: &SPEC,
    doc: include_str!("../docs/udp_balancer.yml"),
    run: |ctx| -> RunFuture { Box::pin(run(ctx)) },
};

/// The balance algorithms the kernel does per flow.
pub const BALANCES: &[&str] = &["roundrobin", "random", "source"];

static MAPPING: Spec = Spec {
    params: &[
        Param::str("name")
            .required()
            .doc(&["Mapping name; its haproxy health backend is C(<name>_udp)."]),
        Param::int("frontend_port")
            .required()
            .doc(&["UDP port the node receives the mapping's traffic on."]),
        Param::list("servers", crate::protocol::Type::Str)
            .required()
            .doc(&["IPv4 addresses, or C(address:port) to override I(port)."]),
        Param::int("port").doc(&["The servers' UDP port; default I(frontend_port)."]),
        Param::str("balance")
            .default(Default::Str("roundrobin"))
            .choices(BALANCES)
            .doc(&[
                "How a new flow picks its server. C(roundrobin) and C(random) per flow; C(source) \
                 hashes the client address with a seed derived from the mapping name, so every node \
                 picks the same server for a client while they see the same servers up.",
            ]),
    ],
    ..Spec::EMPTY
};

pub static SPEC: Spec = Spec {
    params: &[
        Param::list_of("mappings", &MAPPING)
            .default(Default::List(&[]))
            .doc(&["The UDP mappings; none with I(state=present) leaves a table that dispatches nothing."]),
        Param::str("state")
            .default(Default::Str("present"))
            .choices(&["present", "absent"])
            .doc(&["C(absent) removes the table (and with it every rule this module made)."]),
        Param::str("table")
            .default(Default::Str("craftlb_udp"))
            .doc(&["The nftables table (family C(ip)) the module owns; nothing else in it is kept."]),
        Param::str("bind_address").doc(&[
            "Only traffic to this IPv4 address is balanced; default any of the node's own addresses \
             (C(fib daddr type local)).",
        ]),
        Param::path("stats_socket").doc(&[
            "haproxy's runtime API socket; servers whose check says they are down are left out.",
            "Without it, or while haproxy does not know the mapping's backend yet (the reload comes \
             after this task), every server is used.",
        ]),
        Param::path("drain_closed_acl").doc(&[
            "The drain's closed-to-new-connections file (C(update_peers) I(drain_closed_acl)); while \
             it says closed, no new flow is dispatched.",
        ]),
        Param::bool("watch").default(Default::Bool(false)).doc(&[
            "Run forever, applying the ruleset again every I(interval_ms) when health or the drain \
             changed it (what the C(craftlb-udp) service does). Failures are logged to stderr and \
             retried; only the first run's failure ends the process.",
        ]),
        Param::int("interval_ms")
            .default(Default::Int(1000))
            .doc(&["How often a watching run reads haproxy's server states."]),
        Param::str("nft_bin").default(Default::Str("nft")).doc(&["The nft binary."]),
        Param::str("conntrack_bin").default(Default::Str("conntrack")).doc(&[
            "The conntrack binary (conntrack-tools); flows of a server that left are deleted with it.",
        ]),
    ],
    ..Spec::EMPTY
};

#[derive(Debug, Deserialize)]
struct Args {
    mappings: Vec<MappingArg>,
    state: String,
    table: String,
    bind_address: Option<String>,
    stats_socket: Option<String>,
    drain_closed_acl: Option<String>,
    watch: bool,
    interval_ms: i64,
    nft_bin: String,
    conntrack_bin: String,
}

#[derive(Debug, Deserialize)]
struct MappingArg {
    name: String,
    frontend_port: i64,
    servers: Vec<String>,
    port: Option<i64>,
    balance: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    Random,
    Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Server {
    pub addr: Ipv4Addr,
    pub port: u16,
}

impl Server {
    /// The haproxy server name the role's template gives it (`<ip>_<port>`).
    pub fn haproxy_name(&self) -> String {
        format!("{}_{}", self.addr, self.port)
    }
}

impl std::fmt::Display for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.addr, self.port)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub name: String,
    pub frontend_port: u16,
    pub servers: Vec<Server>,
    pub balance: Balance,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub mappings: Vec<Mapping>,
    pub present: bool,
    pub table: String,
    pub bind_address: Option<Ipv4Addr>,
    pub stats_socket: Option<PathBuf>,
    pub drain_closed_acl: Option<PathBuf>,
    pub watch: bool,
    pub interval: Duration,
    pub nft_bin: String,
    pub conntrack_bin: String,
}

fn port(v: i64, what: &str) -> Result<u16, Failure> {
    u16::try_from(v)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| Failure::msg(format!("{what} {v} is not a port (1-65535)")))
}

fn valid_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn mapping(m: &MappingArg) -> Result<Mapping, Failure> {
    if !valid_identifier(&m.name) {
        return Err(Failure::msg(format!(
            "mapping name '{}' must be [A-Za-z0-9_-], at most 64 characters",
            m.name
        )));
    }
    let frontend_port = port(
        m.frontend_port,
        &format!("mapping '{}': frontend_port", m.name),
    )?;
    let default_port = match m.port {
        Some(p) => port(p, &format!("mapping '{}': port", m.name))?,
        None => frontend_port,
    };
    if m.servers.is_empty() {
        return Err(Failure::msg(format!("mapping '{}' has no servers", m.name)));
    }
    let mut servers = Vec::new();
    for s in &m.servers {
        let (host, p) = match s.split_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<i64>()
                    .map_err(|_| {
                        Failure::msg(format!(
                            "mapping '{}': server '{s}': '{p}' is not a port",
                            m.name
                        ))
                    })
                    .and_then(|p| port(p, &format!("mapping '{}': server '{s}':", m.name)))?,
            ),
            None => (s.as_str(), default_port),
        };
        let addr: Ipv4Addr = host.parse().map_err(|_| {
            Failure::msg(format!(
                "mapping '{}': server '{s}' is not an IPv4 address (the kernel balances to \
                 addresses; UDP servers are not resolved by name)",
                m.name
            ))
        })?;
        let server = Server { addr, port: p };
        if servers.contains(&server) {
            return Err(Failure::msg(format!(
                "mapping '{}': server {server} is listed twice",
                m.name
            )));
        }
        servers.push(server);
    }
    let balance = match m.balance.as_str() {
        "random" => Balance::Random,
        "source" => Balance::Source,
        _ => Balance::RoundRobin,
    };
    Ok(Mapping {
        name: m.name.clone(),
        frontend_port,
        servers,
        balance,
    })
}

/// Turns parameters into a [`Task`]; every rule here fails before any change.
pub fn task(p: &Params) -> Result<Task, Failure> {
    let a: Args = p.typed()?;
    let mappings = a
        .mappings
        .iter()
        .map(mapping)
        .collect::<Result<Vec<_>, _>>()?;
    let mut ports = BTreeMap::new();
    for m in &mappings {
        if let Some(other) = ports.insert(m.frontend_port, m.name.clone()) {
            return Err(Failure::msg(format!(
                "mappings '{other}' and '{}' both use UDP frontend_port {}",
                m.name, m.frontend_port
            )));
        }
    }
    if !valid_identifier(&a.table) || a.table.contains('-') {
        return Err(Failure::msg(format!(
            "table '{}' must be [A-Za-z0-9_], at most 64 characters",
            a.table
        )));
    }
    let bind_address = match a.bind_address.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            s.parse()
                .map_err(|_| Failure::msg(format!("bind_address '{s}' is not an IPv4 address")))?,
        ),
    };
    let interval = u64::try_from(a.interval_ms)
        .ok()
        .filter(|ms| *ms >= 100)
        .map(Duration::from_millis)
        .ok_or_else(|| Failure::msg(format!("interval_ms {} is under 100", a.interval_ms)))?;
    Ok(Task {
        mappings,
        present: a.state == "present",
        table: a.table,
        bind_address,
        stats_socket: a.stats_socket.map(PathBuf::from),
        drain_closed_acl: a.drain_closed_acl.map(PathBuf::from),
        watch: a.watch,
        interval,
        nft_bin: a.nft_bin,
        conntrack_bin: a.conntrack_bin,
    })
}

/// What the kernel should do now: per mapping, the servers new flows go to
/// (in the configured order, so every node hashes a client alike), and
/// whether the node takes new flows at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub live: Vec<(Mapping, Vec<Server>)>,
    pub closed: bool,
}

/// Servers haproxy says may take traffic: up (also `UP 1/2`, going down but
/// not yet), or not checked. Down, going up, maintenance and drain do not.
pub fn server_live(status: &str) -> bool {
    status.starts_with("UP") || status == "no check"
}

/// What is known of each server's health, by `<backend>/<server>`: kept
/// across a watching run's passes, because a haproxy process that has just
/// started (every reload) reports every server UP until its first check.
pub type Known = BTreeMap<String, bool>;

/// The live servers per mapping from haproxy's server rows. A server
/// haproxy does not list (its reload is still to come) or has not checked
/// yet in this process (`INI`) keeps what was last known of it, or counts
/// as live when nothing is; an administrative MAINT or DRAIN always wins.
pub fn live_servers(
    mappings: &[Mapping],
    rows: &[haproxy::StatRow],
    known: &mut Known,
) -> Vec<(Mapping, Vec<Server>)> {
    mappings
        .iter()
        .map(|m| {
            let backend = format!("{}_udp", m.name);
            let live = m
                .servers
                .iter()
                .filter(|s| {
                    let name = s.haproxy_name();
                    let key = format!("{backend}/{name}");
                    let row = rows.iter().find(|r| r.proxy == backend && r.server == name);
                    match row {
                        Some(r) if r.status.starts_with("MAINT") || r.status == "DRAIN" => {
                            known.insert(key, false);
                            false
                        }
                        Some(r) if r.check_status != "INI" => {
                            let live = server_live(&r.status);
                            known.insert(key, live);
                            live
                        }
                        _ => known.get(&key).copied().unwrap_or(true),
                    }
                })
                .copied()
                .collect();
            (m.clone(), live)
        })
        .collect()
}

/// A seed for `balance: source`, the same on every node for a mapping (a
/// seedless jhash gets a random one per rule), different between mappings.
pub fn source_seed(name: &str) -> u32 {
    let d = Sha256::digest(name.as_bytes());
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

const COMMENT_PREFIX: &str = "craftlb udp_balancer ";

/// The whole table, as one `nft -f` transaction: the `table`/`delete
/// table` pair makes the replace work whether or not the table exists, and
/// nothing of the old table survives the commit. The table's comment holds
/// a digest of the body, which is how a later run knows the kernel has it.
pub fn render(table: &str, bind: Option<Ipv4Addr>, want: &Desired) -> String {
    let mut body = String::new();
    let all: BTreeSet<Server> = want
        .live
        .iter()
        .flat_map(|(m, _)| m.servers.iter().copied())
        .collect();
    if !all.is_empty() {
        body.push_str("\tset backends {\n\t\ttype ipv4_addr . inet_service\n\t\telements = { ");
        body.push_str(
            &all.iter()
                .map(|s| format!("{} . {}", s.addr, s.port))
                .collect::<Vec<_>>()
                .join(", "),
        );
        body.push_str(" }\n\t}\n");
    }
    let daddr = match bind {
        Some(a) => format!("ip daddr {a}"),
        None => "fib daddr type local".to_owned(),
    };
    let dispatch: Vec<String> = if want.closed {
        vec![]
    } else {
        want.live
            .iter()
            .enumerate()
            .filter(|(_, (_, live))| !live.is_empty())
            .map(|(i, (m, _))| format!("{} : goto svc_{i}", m.frontend_port))
            .collect()
    };
    // Locally generated packets (the node's own queries) take the output
    // hook; never those to loopback (a local resolver's stub on
    // 127.0.0.53:53) unless the mappings are bound to a loopback address.
    let local_only = match bind {
        Some(_) => "",
        None => " ip daddr != 127.0.0.0/8",
    };
    for (chain, hook, priority, extra) in [
        ("prerouting", "prerouting", "dstnat", ""),
        ("output", "output", "-100", local_only),
    ] {
        body.push_str(&format!(
            "\tchain {chain} {{\n\t\ttype nat hook {hook} priority {priority}; policy accept;\n"
        ));
        if !dispatch.is_empty() {
            body.push_str(&format!(
                "\t\t{daddr}{extra} udp dport vmap {{ {} }}\n",
                dispatch.join(", ")
            ));
        }
        body.push_str("\t}\n");
    }
    // Every configured server, live or not: a flow keeps its source NAT
    // after its server left the dispatch.
    body.push_str(
        "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n",
    );
    if !all.is_empty() {
        body.push_str("\t\tct status dnat ip daddr . udp dport @backends masquerade\n");
    }
    body.push_str("\t}\n");
    if !want.closed {
        for (i, (m, live)) in want.live.iter().enumerate() {
            if live.is_empty() {
                continue;
            }
            let pick = match m.balance {
                Balance::RoundRobin => format!("numgen inc mod {}", live.len()),
                Balance::Random => format!("numgen random mod {}", live.len()),
                Balance::Source => format!(
                    "jhash ip saddr mod {} seed 0x{:08x}",
                    live.len(),
                    source_seed(&m.name)
                ),
            };
            let targets = (0..live.len())
                .map(|j| format!("{j} : goto ep_{i}_{j}"))
                .collect::<Vec<_>>()
                .join(", ");
            body.push_str(&format!(
                "\tchain svc_{i} {{\n\t\t{pick} vmap {{ {targets} }} comment \"mapping {}\"\n\t}}\n",
                m.name
            ));
            for (j, s) in live.iter().enumerate() {
                body.push_str(&format!(
                    "\tchain ep_{i}_{j} {{\n\t\tmeta l4proto udp dnat to {s}\n\t}}\n"
                ));
            }
        }
    }
    let digest = crate::deploy_bundle::hex(&Sha256::digest(body.as_bytes()));
    format!(
        "table ip {table}\ndelete table ip {table}\ntable ip {table} {{\n\tcomment \"{COMMENT_PREFIX}{}\"\n{body}}}\n",
        &digest[..16]
    )
}

/// The digest in a rendered or listed table's comment.
pub fn digest_of(text: &str) -> Option<&str> {
    let start = text.find(COMMENT_PREFIX)? + COMMENT_PREFIX.len();
    let rest = &text[start..];
    rest.find('"').map(|end| &rest[..end])
}

/// Where a table (as rendered, or as `nft list` shows it) sends new flows:
/// `(frontend port, server)` pairs, read from the prerouting verdict map
/// (port -> `svc_I`) and the `dnat to` rule of each `ep_I_J` chain.
pub fn dispatched(listing: &str) -> BTreeSet<(u16, Server)> {
    let mut chain = "";
    let mut prerouting = String::new();
    let mut endpoints = Vec::new();
    for line in listing.lines() {
        let l = line.trim();
        if let Some(name) = l.strip_prefix("chain ").and_then(|r| r.strip_suffix(" {")) {
            chain = name;
            continue;
        }
        if chain == "prerouting" {
            prerouting.push_str(l);
            prerouting.push(' ');
        }
        let svc = chain
            .strip_prefix("ep_")
            .and_then(|r| r.split_once('_'))
            .map(|(i, _)| format!("svc_{i}"));
        if let (Some(svc), Some(target)) = (svc, l.split("dnat to ").nth(1))
            && let Some((a, p)) = target.trim().split_once(':')
            && let (Ok(addr), Ok(port)) = (a.parse(), p.parse())
        {
            endpoints.push((svc, Server { addr, port }));
        }
    }
    let ports: BTreeMap<String, u16> = prerouting
        .split("vmap {")
        .nth(1)
        .and_then(|r| r.split('}').next())
        .unwrap_or_default()
        .split(',')
        .filter_map(|e| {
            let (port, target) = e.split_once(':')?;
            Some((
                target.trim().strip_prefix("goto ")?.to_owned(),
                port.trim().parse().ok()?,
            ))
        })
        .collect();
    endpoints
        .into_iter()
        .filter_map(|(svc, s)| Some((*ports.get(&svc)?, s)))
        .collect()
}

/// The ports a table dispatches.
fn ports(pairs: &BTreeSet<(u16, Server)>) -> BTreeSet<u16> {
    pairs.iter().map(|(p, _)| *p).collect()
}

/// Runs nft or conntrack: (exit status ok, stdout on success or stderr).
fn tool(bin: &str, args: &[&str], stdin: Option<&str>) -> Result<(bool, String), Failure> {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| Failure::msg(format!("cannot run '{bin}': {e}")))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| Failure::msg(format!("cannot write to '{bin}': {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Failure::msg(format!("'{bin}' failed: {e}")))?;
    let text = if out.status.success() {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        String::from_utf8_lossy(&out.stderr).trim().to_owned()
    };
    Ok((out.status.success(), text))
}

/// The table as the kernel has it; None when there is no such table.
fn current(t: &Task) -> Result<Option<String>, Failure> {
    let (ok, text) = tool(&t.nft_bin, &["list", "table", "ip", &t.table], None)?;
    match ok {
        true => Ok(Some(text)),
        false if text.contains("No such file or directory") => Ok(None),
        false => Err(Failure::msg(format!(
            "'{} list table ip {}' failed: {text}",
            t.nft_bin, t.table
        ))),
    }
}

fn closed(t: &Task) -> Result<bool, Failure> {
    let Some(path) = &t.drain_closed_acl else {
        return Ok(false);
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(DrainState::parse("", &text).closed_since.is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Failure::msg(format!(
            "cannot read drain file '{}': {e}",
            path.display()
        ))),
    }
}

/// haproxy's server rows, or None when its runtime API does not answer
/// (not started yet, or between a reload's processes).
fn health(t: &Task) -> Option<Vec<haproxy::StatRow>> {
    let socket = t.stats_socket.as_ref()?;
    let csv = haproxy::runtime(socket, "show stat").ok()?;
    haproxy::stat_rows(&csv).ok()
}

fn conntrack_delete(t: &Task, args: &[&str], what: &str, warnings: &mut Vec<String>) {
    let mut all = vec!["-D", "-p", "udp"];
    all.extend_from_slice(args);
    match tool(&t.conntrack_bin, &all, None) {
        // conntrack exits 1 when no flow matched.
        Ok((false, text)) if !text.contains("0 flow entries") => {
            warnings.push(format!("{what} not removed from conntrack: {text}"))
        }
        Err(e) => warnings.push(format!("{what} not removed from conntrack: {}", e.msg)),
        Ok(_) => {}
    }
}

/// Flows of a mapping on a server that left it: deleted, so their next
/// packet is a new flow and is dispatched again (a client keeping its
/// source port would otherwise stay on a dead server for as long as it
/// keeps sending). Only that mapping's flows: the port they came in on.
fn forget_flows(t: &Task, gone: &BTreeSet<(u16, Server)>, warnings: &mut Vec<String>) {
    for (frontend, s) in gone {
        let (fp, addr, port) = (frontend.to_string(), s.addr.to_string(), s.port.to_string());
        let args = [
            "--orig-port-dst",
            &fp,
            "--reply-src",
            &addr,
            "--reply-port-src",
            &port,
        ];
        conntrack_delete(
            t,
            &args,
            &format!("flows of port {frontend} to {s}"),
            warnings,
        );
    }
}

/// The flows conntrack lists (`conntrack -L` lines): original source,
/// original destination, reply source.
pub fn conntrack_flows(listing: &str) -> Vec<(String, String, String)> {
    listing
        .lines()
        .filter_map(|l| {
            let words = || l.split_whitespace();
            let mut srcs = words().filter_map(|w| w.strip_prefix("src="));
            let dst = words().find_map(|w| w.strip_prefix("dst="))?;
            Some((
                srcs.next()?.to_owned(),
                dst.to_owned(),
                srcs.next()?.to_owned(),
            ))
        })
        .collect()
}

/// A packet that met the NAT hooks while its port dispatched nothing (a
/// mapping with no server up, a closed node, a port not yet in the table)
/// left a flow conntrack never translates: every later packet of it skips
/// the NAT chains. When the port dispatches again those flows go, so a
/// client that keeps its source port is served again (kube-proxy does the
/// same). Untranslated: the reply comes from the address it was sent to.
fn forget_untranslated(t: &Task, port: u16, warnings: &mut Vec<String>) {
    let p = port.to_string();
    let list = ["-L", "-p", "udp", "--orig-port-dst", &p];
    let Ok((true, listing)) = tool(&t.conntrack_bin, &list, None) else {
        return;
    };
    let addrs: BTreeSet<String> = conntrack_flows(&listing)
        .into_iter()
        .filter(|(_, dst, reply_src)| dst == reply_src)
        .map(|(_, dst, _)| dst)
        .collect();
    for a in addrs {
        let args = ["--orig-port-dst", &p, "--orig-dst", &a, "--reply-src", &a];
        conntrack_delete(
            t,
            &args,
            &format!("untranslated flows to {a}:{port}"),
            warnings,
        );
    }
}

/// UDP flows the kernel balances that conntrack still holds (translated
/// by DNAT): what a drain waits for after the node closed, besides haproxy's
/// connections. A flow is held for 30 s after its last packet (120 s once
/// it has seen traffic both ways for a while): the drain's bound, its
/// `drain_seconds`, decides. 0 without conntrack (no udp mapping).
pub fn open_flows(conntrack_bin: &str) -> u64 {
    match tool(conntrack_bin, &["-L", "-p", "udp", "--dst-nat"], None) {
        Ok((true, text)) => text.lines().filter(|l| l.starts_with("udp")).count() as u64,
        _ => 0,
    }
}

/// One pass: what the kernel has, what it should have, the write if they
/// differ (unless in check mode).
struct Pass {
    changed: bool,
    before: String,
    after: String,
    desired: Desired,
    health_known: bool,
    warnings: Vec<String>,
}

fn pass(t: &Task, check_mode: bool, known: &mut Known) -> Result<Pass, Failure> {
    let before = current(t)?;
    let rows = health(t);
    let desired = Desired {
        live: live_servers(&t.mappings, rows.as_deref().unwrap_or_default(), known),
        closed: closed(t)?,
    };
    let after = if t.present {
        render(&t.table, t.bind_address, &desired)
    } else {
        String::new()
    };
    let changed = match (&before, t.present) {
        (None, present) => present,
        (Some(_), false) => true,
        (Some(have), true) => digest_of(have) != digest_of(&after),
    };
    let mut warnings = Vec::new();
    if changed && !check_mode {
        let text = if t.present {
            after.clone()
        } else {
            format!("delete table ip {}\n", t.table)
        };
        let (ok, err) = tool(&t.nft_bin, &["-f", "-"], Some(&text))?;
        if !ok {
            return Err(Failure::msg(format!(
                "nft refused the ruleset for table '{}' (nothing changed): {err}",
                t.table
            ))
            .with("ruleset", Value::from(text)));
        }
        let was = before.as_deref().map(dispatched).unwrap_or_default();
        let now = dispatched(&after);
        // Closed: flows on their way keep their server until they end.
        if !desired.closed {
            forget_flows(t, &was.difference(&now).copied().collect(), &mut warnings);
        }
        for port in ports(&now).difference(&ports(&was)) {
            forget_untranslated(t, *port, &mut warnings);
        }
    }
    Ok(Pass {
        changed,
        before: before.unwrap_or_default(),
        after,
        desired,
        health_known: rows.is_some(),
        warnings,
    })
}

fn summary(t: &Task, p: &Pass) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("table".into(), Value::from(t.table.clone()));
    data.insert(
        "state".into(),
        Value::from(if t.present { "present" } else { "absent" }),
    );
    data.insert("closed".into(), Value::Bool(p.desired.closed));
    data.insert("health_known".into(), Value::Bool(p.health_known));
    data.insert(
        "mappings".into(),
        json!(
            p.desired
                .live
                .iter()
                .map(|(m, live)| json!({
                    "name": m.name,
                    "frontend_port": m.frontend_port,
                    "servers": m.servers.iter().map(Server::to_string).collect::<Vec<_>>(),
                    "live": live.iter().map(Server::to_string).collect::<Vec<_>>(),
                }))
                .collect::<Vec<_>>()
        ),
    );
    data
}

fn log_line(t: &Task, p: &Pass) -> String {
    let mappings = p
        .desired
        .live
        .iter()
        .map(|(m, live)| {
            format!(
                "{}: {}",
                m.name,
                live.iter()
                    .map(Server::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    format!(
        "udp_balancer: table {} applied{}: {mappings}",
        t.table,
        if p.desired.closed {
            " (closed: no new flows)"
        } else {
            ""
        }
    )
}

pub async fn run(ctx: Ctx) -> Result<Response, Failure> {
    let t = task(&ctx.params)?;
    if which(&t.nft_bin).is_none() {
        let nothing = Pass {
            changed: false,
            before: String::new(),
            after: String::new(),
            desired: Desired {
                live: vec![],
                closed: false,
            },
            health_known: false,
            warnings: vec![],
        };
        // No nftables, so no table to remove.
        if !t.present {
            return Ok(Response::unchanged(summary(&t, &nothing)));
        }
        // A check run before the install that would bring it.
        if ctx.check_mode {
            let mut r = Response::unchanged(summary(&t, &nothing));
            r.changed = true;
            r.warnings.push(format!(
                "'{}' is not installed yet: the table would be created",
                t.nft_bin
            ));
            return Ok(r);
        }
        return Err(Failure::msg(format!(
            "'{}' is not installed (nftables): the udp mappings need it",
            t.nft_bin
        )));
    }
    let mut known = Known::new();
    let first = pass(&t, ctx.check_mode, &mut known)?;
    if t.watch && !ctx.check_mode {
        watch(&t, &first, known).await;
    }
    let diff = first.changed.then(|| {
        (
            Value::from(first.before.clone()),
            Value::from(first.after.clone()),
        )
    });
    Ok(Response {
        changed: first.changed,
        data: summary(&t, &first),
        diff,
        warnings: first.warnings,
    })
}

/// The service: never returns. Each change goes to stderr (the journal).
async fn watch(t: &Task, first: &Pass, mut known: Known) {
    let mut last_error = String::new();
    if first.changed {
        eprintln!("{}", log_line(t, first));
    }
    for w in &first.warnings {
        eprintln!("udp_balancer: warning: {w}");
    }
    loop {
        tokio::time::sleep(t.interval).await;
        // haproxy between processes: the last applied state stands.
        if t.stats_socket.is_some() && health(t).is_none() {
            continue;
        }
        match pass(t, false, &mut known) {
            Ok(p) => {
                last_error.clear();
                if p.changed {
                    eprintln!("{}", log_line(t, &p));
                }
                for w in &p.warnings {
                    eprintln!("udp_balancer: warning: {w}");
                }
            }
            Err(e) if e.msg != last_error => {
                eprintln!("udp_balancer: {}", e.msg);
                last_error = e.msg;
            }
            Err(_) => {}
        }
    }
}

fn which(bin: &str) -> Option<PathBuf> {
    if bin.contains('/') {
        return Path::new(bin).is_file().then(|| PathBuf::from(bin));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(bin))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::haproxy::StatRow;

    fn params(v: Value) -> Params {
        let Value::Object(m) = v else { unreachable!() };
        crate::protocol::validate(&SPEC, m).unwrap()
    }

    fn dns() -> Mapping {
        task(&params(json!({"mappings": [
            {"name": "dns", "frontend_port": 53, "servers": ["10.0.0.1", "10.0.0.2:5353"]}
        ]})))
        .unwrap()
        .mappings
        .remove(0)
    }

    fn row(proxy: &str, server: &str, status: &str) -> StatRow {
        StatRow {
            proxy: proxy.into(),
            server: server.into(),
            sessions: 0,
            status: status.into(),
            check_status: if status == "no check" { "" } else { "L4OK" }.into(),
        }
    }

    #[test]
    fn servers_take_the_mapping_port_unless_they_name_one() {
        let m = dns();
        assert_eq!(
            m.servers.iter().map(Server::to_string).collect::<Vec<_>>(),
            ["10.0.0.1:53", "10.0.0.2:5353"]
        );
        assert_eq!(m.servers[1].haproxy_name(), "10.0.0.2_5353");
        assert_eq!(m.balance, Balance::RoundRobin);
    }

    #[test]
    fn bad_mappings_are_refused_naming_the_input() {
        let refused = |m: Value| task(&params(json!({"mappings": [m]}))).unwrap_err().msg;
        let e = refused(json!({"name": "dns", "frontend_port": 53, "servers": ["dns.internal"]}));
        assert!(e.contains("'dns.internal' is not an IPv4 address"), "{e}");
        let e = refused(json!({"name": "dns", "frontend_port": 0, "servers": ["10.0.0.1"]}));
        assert!(e.contains("frontend_port 0 is not a port"), "{e}");
        let e = refused(json!({"name": "d n s", "frontend_port": 53, "servers": ["10.0.0.1"]}));
        assert!(e.contains("'d n s'"), "{e}");
        let e = refused(json!({"name": "dns", "frontend_port": 53, "servers": ["10.0.0.1:x"]}));
        assert!(e.contains("'x' is not a port"), "{e}");
        let e = refused(
            json!({"name": "dns", "frontend_port": 53, "servers": ["10.0.0.1", "10.0.0.1:53"]}),
        );
        assert!(e.contains("listed twice"), "{e}");
        let e = task(&params(json!({"mappings": [
            {"name": "a", "frontend_port": 53, "servers": ["10.0.0.1"]},
            {"name": "b", "frontend_port": 53, "servers": ["10.0.0.2"]},
        ]})))
        .unwrap_err()
        .msg;
        assert!(
            e.contains("'a' and 'b' both use UDP frontend_port 53"),
            "{e}"
        );
    }

    #[test]
    fn haproxy_decides_which_servers_take_new_flows() {
        let m = dns();
        let names = |rows: &[StatRow]| {
            live_servers(std::slice::from_ref(&m), rows, &mut Known::new())[0]
                .1
                .iter()
                .map(Server::to_string)
                .collect::<Vec<_>>()
        };
        // Not known to haproxy yet (reload pending): every server.
        assert_eq!(names(&[]), ["10.0.0.1:53", "10.0.0.2:5353"]);
        assert_eq!(
            names(&[
                row("dns_udp", "10.0.0.1_53", "DOWN"),
                row("dns_udp", "10.0.0.2_5353", "UP 1/2"),
                row("other_udp", "10.0.0.1_53", "UP"),
            ]),
            ["10.0.0.2:5353"]
        );
        assert_eq!(
            names(&[
                row("dns_udp", "10.0.0.1_53", "no check"),
                row("dns_udp", "10.0.0.2_5353", "DOWN 1/2"),
            ]),
            ["10.0.0.1:53"]
        );
        // Not listed yet (a server added; haproxy's reload comes later): used.
        assert_eq!(
            names(&[row("dns_udp", "10.0.0.1_53", "MAINT")]),
            ["10.0.0.2:5353"]
        );
    }

    #[test]
    fn a_new_haproxy_process_does_not_bring_a_dead_server_back() {
        let m = dns();
        let mut known = Known::new();
        let live = |rows: &[StatRow], known: &mut Known| {
            live_servers(std::slice::from_ref(&m), rows, known)[0]
                .1
                .len()
        };
        let down = [
            row("dns_udp", "10.0.0.1_53", "DOWN"),
            row("dns_udp", "10.0.0.2_5353", "UP"),
        ];
        assert_eq!(live(&down, &mut known), 1);
        // After a reload: UP before its first check (INI).
        let mut fresh = down.clone();
        fresh[0].status = "UP".into();
        fresh[0].check_status = "INI".into();
        assert_eq!(live(&fresh, &mut known), 1);
        // Nothing known (the one-shot run, a restarted service): used.
        assert_eq!(live(&fresh, &mut Known::new()), 2);
        // Its first check passed: back.
        fresh[0].check_status = "L4OK".into();
        assert_eq!(live(&fresh, &mut known), 2);
    }

    #[test]
    fn the_ruleset_is_one_table_replaced_whole_with_one_lookup_per_packet() {
        let m = dns();
        let mut src = m.clone();
        src.name = "syslog".into();
        src.frontend_port = 514;
        src.balance = Balance::Source;
        let want = Desired {
            live: vec![
                (m.clone(), m.servers.clone()),
                (src.clone(), vec![src.servers[1]]),
            ],
            closed: false,
        };
        let text = render("craftlb_udp", None, &want);
        assert!(
            text.starts_with("table ip craftlb_udp\ndelete table ip craftlb_udp\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "fib daddr type local udp dport vmap { 53 : goto svc_0, 514 : goto svc_1 }"
            ),
            "{text}"
        );
        assert!(text.contains("numgen inc mod 2 vmap { 0 : goto ep_0_0, 1 : goto ep_0_1 }"));
        assert!(text.contains(&format!(
            "jhash ip saddr mod 1 seed 0x{:08x} vmap {{ 0 : goto ep_1_0 }}",
            source_seed("syslog")
        )));
        assert!(text.contains("dnat to 10.0.0.2:5353"));
        // Masquerade covers every configured server, the one down too.
        assert!(
            text.contains("elements = { 10.0.0.1 . 53, 10.0.0.2 . 5353 }"),
            "{text}"
        );
        assert_eq!(
            dispatched(&text)
                .into_iter()
                .map(|(p, s)| format!("{p}>{s}"))
                .collect::<Vec<_>>(),
            ["53>10.0.0.1:53", "53>10.0.0.2:5353", "514>10.0.0.2:5353"]
        );
        // The node's own queries to loopback (a resolver stub) are left alone.
        assert!(text.contains("fib daddr type local ip daddr != 127.0.0.0/8 udp dport vmap"));
        let bound = render("craftlb_udp", Some(Ipv4Addr::new(10, 1, 1, 1)), &want);
        assert!(bound.contains("ip daddr 10.1.1.1 udp dport vmap"));
        assert!(!bound.contains("127.0.0.0/8"));
        // The digest follows the content: same input, same digest.
        assert_eq!(
            digest_of(&text),
            digest_of(&render("craftlb_udp", None, &want))
        );
        assert_ne!(digest_of(&text), digest_of(&bound));
        assert_eq!(digest_of(&text).map(str::len), Some(16));
    }

    #[test]
    fn a_closed_node_dispatches_nothing_but_keeps_its_nat_chains() {
        let m = dns();
        let text = render(
            "craftlb_udp",
            None,
            &Desired {
                live: vec![(m.clone(), m.servers.clone())],
                closed: true,
            },
        );
        assert!(!text.contains("vmap"), "{text}");
        assert!(dispatched(&text).is_empty());
        assert!(text.contains("type nat hook prerouting"));
        assert!(text.contains("@backends masquerade"));
    }

    #[test]
    fn what_nft_lists_is_read_back_as_what_was_rendered() {
        // `nft list table` output (nftables 1.0.6), wrapped as nft wraps it.
        let listing = "table ip craftlb_udp {\n\tcomment \"craftlb udp_balancer 0123456789abcdef\"\n\
            \tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\
            \t\tfib daddr type local udp dport vmap { 53 : goto svc_0,\n\t\t\t5353 : goto svc_1 }\n\t}\n\
            \tchain svc_0 {\n\t\tnumgen inc mod 1 vmap { 0 : goto ep_0_0 } comment \"mapping dns\"\n\t}\n\
            \tchain ep_0_0 {\n\t\tmeta l4proto udp dnat to 10.99.0.21:53\n\t}\n\
            \tchain svc_1 {\n\t\tjhash ip saddr mod 1 seed 0x1 vmap { 0 : goto ep_1_0 }\n\t}\n\
            \tchain ep_1_0 {\n\t\tmeta l4proto udp dnat to 10.99.0.22:53\n\t}\n}\n";
        assert_eq!(digest_of(listing), Some("0123456789abcdef"));
        assert_eq!(
            dispatched(listing)
                .into_iter()
                .map(|(p, s)| format!("{p}>{s}"))
                .collect::<Vec<_>>(),
            ["53>10.99.0.21:53", "5353>10.99.0.22:53"]
        );
    }

    #[test]
    fn untranslated_flows_are_told_by_their_reply_source() {
        let listing = "udp      17 29 src=10.99.0.100 dst=10.99.0.10 sport=40003 dport=53 [UNREPLIED] \
                       src=10.99.0.10 dst=10.99.0.100 sport=53 dport=40003 mark=0 use=1\n\
                       udp      17 29 src=10.99.0.100 dst=10.99.0.10 sport=46929 dport=53 \
                       src=10.99.0.21 dst=10.99.0.10 sport=53 dport=46929 mark=0 use=1\n";
        let flows = conntrack_flows(listing);
        assert_eq!(flows.len(), 2);
        assert_eq!(flows[0].1, flows[0].2, "the untranslated one");
        assert_eq!(flows[1].2, "10.99.0.21");
    }

    #[test]
    fn the_source_seed_is_fixed_per_mapping() {
        assert_eq!(source_seed("dns"), source_seed("dns"));
        assert_ne!(source_seed("dns"), source_seed("syslog"));
    }
}
