/*!
What a module does to a local haproxy: validate a configuration, reload the
master hitlessly, and talk to the runtime API (stats socket) to drain.
*/

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// `haproxy -c` over the given files (in order), with the local peer name.
/// Err carries haproxy's own output, which names file and line.
pub fn validate(bin: &str, local_peer: &str, files: &[PathBuf]) -> Result<(), String> {
    let mut cmd = Command::new(bin);
    cmd.arg("-c").arg("-L").arg(local_peer);
    for f in files {
        cmd.arg("-f").arg(f);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run '{bin}' to validate the configuration: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A warning means a config we did not mean (e.g. a peers section without
    // the local peer is silently dropped), so it fails like an error.
    if out.status.success() && !text.contains("[WARNING]") && !text.contains("[ALERT]") {
        Ok(())
    } else {
        Err(format!(
            "'{bin} -c -L {local_peer}{}' rejected the configuration ({}):\n{}",
            files
                .iter()
                .map(|f| format!(" -f {}", f.display()))
                .collect::<String>(),
            out.status,
            text.trim()
        ))
    }
}

/// How haproxy is told to reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// SIGUSR2 to the master-worker master whose pid is the pidfile's first line.
    MasterPidfile(PathBuf),
    /// A command, e.g. `systemctl reload craftlb-haproxy.service`.
    Command(Vec<String>),
}

pub fn reload(how: &Reload) -> Result<(), String> {
    let argv: Vec<String> = match how {
        Reload::MasterPidfile(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read haproxy pidfile '{}': {e}", p.display()))?;
            let pid = text
                .split_whitespace()
                .next()
                .and_then(|s| s.parse::<u32>().ok())
                .ok_or_else(|| {
                    format!("haproxy pidfile '{}' holds no pid: {text:?}", p.display())
                })?;
            vec!["kill".into(), "-USR2".into(), pid.to_string()]
        }
        Reload::Command(argv) => argv.clone(),
    };
    let Some((prog, args)) = argv.split_first() else {
        return Err("reload_command is empty".into());
    };
    let out = Command::new(prog)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run reload command {argv:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "reload command {argv:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// One runtime-API command on the stats socket; the answer as text.
pub fn runtime(socket: &Path, command: &str) -> Result<String, String> {
    let what = |e: std::io::Error| {
        format!(
            "haproxy runtime API '{}' ({command}): {e}",
            socket.display()
        )
    };
    let mut s = UnixStream::connect(socket).map_err(what)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(what)?;
    s.write_all(format!("{command}\n").as_bytes())
        .map_err(what)?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(what)?;
    Ok(out)
}

/// One command on the master CLI (`haproxy -S <socket>`): the master keeps
/// the connection open for more, so the command is followed by `quit`.
/// `@1 <cmd>` reaches the current worker, `@!<pid> <cmd>` any worker.
///
/// While the master re-executes itself for a reload its socket refuses
/// connections for a moment (ECONNREFUSED), and a connection it accepted just
/// before is dropped (ECONNRESET, EPIPE); that is waited out (up to 10 s).
pub fn master(socket: &Path, command: &str) -> Result<String, String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let reloading = |e: &str| {
        ["(os error 111)", "(os error 104)", "(os error 32)"]
            .iter()
            .any(|code| e.contains(code))
    };
    loop {
        match runtime(socket, &format!("{command};quit")) {
            Err(e) if std::time::Instant::now() < deadline && reloading(&e) => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// The worker pids of `show proc` on the master CLI: the current worker
/// and every old one still finishing connections after a reload.
pub fn workers(show_proc: &str) -> Vec<u32> {
    show_proc
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            let pid = cols.next()?.parse().ok()?;
            (cols.next()? == "worker").then_some(pid)
        })
        .collect()
}

/// A row of `show stat`: proxy, server (`FRONTEND`, `BACKEND` or a
/// server's name), current sessions, status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatRow {
    pub proxy: String,
    pub server: String,
    pub sessions: u64,
    pub status: String,
    /// The last health check's result (`L4OK`, `L4CON`, …); `INI` before the
    /// first check of this process, when haproxy reports a server UP
    /// whatever it is.
    pub check_status: String,
}

/// Every row of a `show stat` CSV answer.
pub fn stat_rows(csv: &str) -> Result<Vec<StatRow>, String> {
    let mut lines = csv.lines();
    let header = lines
        .next()
        .and_then(|h| h.strip_prefix("# "))
        .ok_or_else(|| format!("unexpected 'show stat' answer: {:?}", csv.lines().next()))?;
    let cols: Vec<&str> = header.split(',').collect();
    let col = |name: &str| {
        cols.iter()
            .position(|c| *c == name)
            .ok_or_else(|| format!("'show stat' has no column '{name}'"))
    };
    let (px, sv, scur, status) = (col("pxname")?, col("svname")?, col("scur")?, col("status")?);
    let check = cols.iter().position(|c| *c == "check_status");
    Ok(lines
        .filter(|l| !l.is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let text = |i: usize| f.get(i).copied().unwrap_or_default().to_owned();
            StatRow {
                proxy: text(px),
                server: text(sv),
                sessions: f.get(scur).and_then(|s| s.parse().ok()).unwrap_or(0),
                status: text(status),
                check_status: check.map(text).unwrap_or_default(),
            }
        })
        .collect())
}

/// A frontend row of `show stat`: name, current sessions, status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendStat {
    pub name: String,
    pub sessions: u64,
    pub status: String,
}

/// The FRONTEND rows of a `show stat` CSV answer.
pub fn frontends(csv: &str) -> Result<Vec<FrontendStat>, String> {
    Ok(stat_rows(csv)?
        .into_iter()
        .filter(|r| r.server == "FRONTEND")
        .map(|r| FrontendStat {
            name: r.proxy,
            sessions: r.sessions,
            status: r.status,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontend_rows_from_show_stat() {
        let csv = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,status\n\
                   fe_http,FRONTEND,,,3,5,100,9,OPEN\n\
                   acme_http,s1,0,0,1,1,,4,UP\n\
                   stats,FRONTEND,,,1,1,100,2,OPEN\n\
                   fe_https,FRONTEND,,,0,2,100,7,PAUSED\n\n";
        let rows = frontends(csv).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0],
            FrontendStat {
                name: "fe_http".into(),
                sessions: 3,
                status: "OPEN".into()
            }
        );
        assert_eq!(rows[2].status, "PAUSED");
        assert!(frontends("Unknown command\n").is_err());
        let all = stat_rows(csv).unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(
            (
                all[1].proxy.as_str(),
                all[1].server.as_str(),
                all[1].status.as_str()
            ),
            ("acme_http", "s1", "UP")
        );
    }

    #[test]
    fn workers_of_show_proc_include_old_ones() {
        let text = "#<PID>          <type>          <reloads>       <uptime>        <version>\n\
                    5830            master          2 [failed: 0]   0d00h00m12s     2.6.12\n\
                    # workers\n\
                    6092            worker          0               0d00h00m01s     2.6.12\n\
                    # old workers\n\
                    5939            worker          1               0d00h00m05s     2.6.12\n\
                    # programs\n\n";
        assert_eq!(workers(text), vec![6092, 5939]);
        assert!(workers("Unknown command.\n").is_empty());
    }

    #[test]
    fn validation_reports_haproxy_output_and_fails_on_warnings() {
        let dir = tempfile::tempdir().unwrap();
        let peers = dir.path().join("peers.cfg");
        std::fs::write(&peers, "peers p\n    peer i-a 127.0.0.1:7777\n").unwrap();
        assert_eq!(
            validate("haproxy", "i-a", std::slice::from_ref(&peers)),
            Ok(())
        );
        // Not the local peer: haproxy only warns and drops the section.
        let e = validate("haproxy", "i-zzz", std::slice::from_ref(&peers)).unwrap_err();
        assert!(e.contains("no peer named 'i-zzz'"), "{e}");
        let e = validate("/nonexistent/haproxy", "i-a", &[peers]).unwrap_err();
        assert!(e.contains("cannot run"), "{e}");
    }

    #[test]
    fn reload_reads_the_pidfile_and_reports_failures() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        std::fs::write(&pidfile, "garbage\n").unwrap();
        let e = reload(&Reload::MasterPidfile(pidfile)).unwrap_err();
        assert!(e.contains("holds no pid"), "{e}");
        let e = reload(&Reload::Command(vec!["false".into()])).unwrap_err();
        assert!(e.contains("failed"), "{e}");
        assert_eq!(reload(&Reload::Command(vec!["true".into()])), Ok(()));
    }
}
