//! Every module's documentation against its spec, and every module's
//! EXAMPLES run as written against the emulator.

use std::process::Command;

use craftlb_modules::MODULES;
use craftlb_modules::doc::NO_LOG_NOTE;
use craftlb_modules::protocol::{Spec, Type};
use craftlb_testbed as support;
use serde_json::{Value, json};
use support::{Emulator, assert_success};

/// What ansible-doc read from the installed doc must say exactly what the
/// spec says; `path` names where a difference was found.
fn compare(spec: &Spec, options: &Value, path: &str, diffs: &mut Vec<String>) {
    let documented: Vec<&String> = options
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    for name in &documented {
        if !spec.all_params().any(|p| p.name == name.as_str()) {
            diffs.push(format!("{path}{name}: documented, not in the spec"));
        }
    }
    for p in spec.all_params() {
        let at = format!("{path}{}", p.name);
        let Some(o) = options.get(p.name) else {
            diffs.push(format!("{at}: in the spec, not documented"));
            continue;
        };
        let mut check = |what: &str, doc: Value, want: Value| {
            if doc != want {
                diffs.push(format!("{at}.{what}: doc {doc}, spec {want}"));
            }
        };
        check("type", o["type"].clone(), json!(p.ty.name()));
        check(
            "required",
            json!(o["required"].as_bool().unwrap_or(false)),
            json!(p.required),
        );
        check(
            "default",
            o["default"].clone(),
            p.default.map_or(Value::Null, |d| d.to_value()),
        );
        let choices: Vec<Value> = p
            .choices
            .iter()
            .map(|c| match (p.ty, c.parse::<i64>()) {
                (Type::Int, Ok(n)) => json!(n),
                _ => json!(c),
            })
            .collect();
        check(
            "choices",
            o.get("choices").cloned().unwrap_or(json!([])),
            json!(choices),
        );
        check(
            "aliases",
            o.get("aliases").cloned().unwrap_or(json!([])),
            json!(p.aliases),
        );
        check(
            "elements",
            o.get("elements").cloned().unwrap_or(Value::Null),
            p.elements.map_or(Value::Null, |e| json!(e.name())),
        );
        let text: Vec<String> = match &o["description"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|l| l.as_str().map(str::to_owned))
                .collect(),
            _ => vec![],
        };
        if text.is_empty() {
            diffs.push(format!("{at}: no description"));
        }
        if text.iter().any(|l| l == NO_LOG_NOTE) != p.no_log {
            diffs.push(format!(
                "{at}: no_log is {} but the doc says otherwise",
                p.no_log
            ));
        }
        match (p.options, o.get("suboptions")) {
            (Some(sub), Some(doc)) => compare(sub, doc, &format!("{at}."), diffs),
            (None, None) => {}
            (Some(_), None) => diffs.push(format!("{at}: sub-options not documented")),
            (None, Some(_)) => {
                diffs.push(format!("{at}: documented sub-options, none in the spec"))
            }
        }
    }
}

fn ansible_doc_json(name: &str, lib: &std::path::Path) -> Value {
    let out = support::ansible_command("ansible-doc", lib)
        .args(["--json", "-M"])
        .arg(lib)
        .arg(name)
        .output()
        .unwrap_or_else(|e| panic!("ansible-doc: {e}"));
    assert_success(&format!("ansible-doc --json {name}"), &out);
    let json: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("ansible-doc json: {e}"));
    json[name].clone()
}

#[test]
fn the_binary_lists_the_modules_it_holds() {
    let source: Vec<&str> = MODULES.iter().map(|m| m.name).collect();
    assert_eq!(support::module_names(), source);
}

#[test]
fn every_sidecar_doc_says_what_its_spec_says() {
    let bins: Vec<(&str, String)> = MODULES
        .iter()
        .map(|m| {
            (
                m.name,
                support::module_bin(m.name).to_string_lossy().into_owned(),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = bins.iter().map(|(n, b)| (*n, b.as_str())).collect();
    let lib = support::library(&refs);
    let mut diffs = Vec::new();
    for m in MODULES {
        let doc = ansible_doc_json(m.name, lib.path());
        assert!(
            doc["doc"]["options"].is_object(),
            "{}: no options in {doc}",
            m.name
        );
        compare(
            m.spec,
            &doc["doc"]["options"],
            &format!("{}: ", m.name),
            &mut diffs,
        );
        for key in ["examples", "return"] {
            assert!(!doc[key].is_null(), "{}: no {key}", m.name);
        }
    }
    assert!(
        diffs.is_empty(),
        "docs and specs disagree:\n{}",
        diffs.join("\n")
    );
}

/// Runs a module's EXAMPLES, as written, in a play whose module_defaults
/// point the AWS modules at the emulator.
fn run_examples(
    name: &str,
    lib: &std::path::Path,
    emu: &Emulator,
    around: Option<(&str, &str)>,
    vars: &[(&str, &str)],
) -> std::process::Output {
    let doc = ansible_doc_json(name, lib);
    let examples = doc["examples"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: no EXAMPLES"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("examples.yml"), examples).unwrap_or_else(|e| panic!("{e}"));
    let play = format!(
        "- name: EXAMPLES of {name}\n  hosts: localhost\n  gather_facts: false\n  module_defaults:\n{0}  tasks:\n    - name: The examples, as written\n      ansible.builtin.include_tasks: {1}\n",
        // Every module in the library points at the emulator.
        std::fs::read_dir(lib)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|f| MODULES.iter().any(|m| m.name == f))
            .map(|m| format!("    {m}:\n      endpoint_url: \"{}\"\n", emu.url))
            .collect::<String>(),
        dir.path().join("examples.yml").display()
    );
    let playbook = dir.path().join("play.yml");
    std::fs::write(&playbook, play).unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = support::ansible_command("ansible-playbook", lib);
    for (k, v) in vars {
        cmd.arg("-e").arg(format!("{k}={v}"));
    }
    if let Some((setup, teardown)) = around {
        // In a private mount namespace: what the setup mounts is this run's only.
        let extra: String = vars.iter().map(|(k, v)| format!(" -e {k}={v}")).collect();
        let inner = format!(
            "{setup}\nset +e\n{} {}{extra}\nrc=$?\n{teardown}\nexit $rc\n",
            repo_venv("ansible-playbook"),
            playbook.display()
        );
        let mut wrapped = Command::new("unshare");
        wrapped
            .args(["--mount", "--propagation", "private", "sh", "-ec", &inner])
            .current_dir(support::repo_root());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => wrapped.env(k, v),
                None => wrapped.env_remove(k),
            };
        }
        cmd = wrapped;
    } else {
        cmd.arg(&playbook);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("ansible-playbook: {e}"))
}

fn repo_venv(tool: &str) -> String {
    support::repo_root()
        .join(".venv/bin")
        .join(tool)
        .to_string_lossy()
        .into_owned()
}

/// The EXAMPLES of every AWS resource module, as written, each against a
/// fresh emulator holding what the examples refer to (a group, a role).
#[test]
fn aws_module_examples_run_as_written() {
    let bootstrap = support::workspace_bin("bootstrap");
    for name in [
        "asg_lifecycle_hook",
        "autoscaling_group",
        "aws_caller_info",
        "ec2_ami_info",
        "ec2_eip_pool",
        "ec2_launch_template",
        "ec2_security_group",
        "iam_role",
        "lambda",
        "ec2_vpc_subnet_info",
        "route53_healthcheck",
        "s3_bucket",
        "s3_object",
        "sns_topic",
    ] {
        let emu = Emulator::start();
        match name {
            "asg_lifecycle_hook" => {
                support::scenario(&emu, &["world", "--no-hooks"]);
            }
            "lambda" => {
                support::scenario(&emu, &["iam-role", "--name", "mylb-route53-lambda"]);
            }
            _ => {}
        }
        let mut vars = vec![(
            "craftlb_bootstrap".to_owned(),
            bootstrap.to_string_lossy().into_owned(),
        )];
        let mut lib_modules = vec![name];
        // The group's examples make their launch template.
        if name == "s3_object" {
            lib_modules.push("s3_bucket");
        }
        if name == "autoscaling_group" || name == "ec2_vpc_subnet_info" {
            // The examples make their launch template; the group launches
            // into the emulator's default subnets.
            let net = support::scenario(&emu, &["network"]);
            let subnets: Vec<&str> = net["subnets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            vars.push(("subnets".into(), subnets.join(",")));
            vars.push((
                "image_id".into(),
                net["image_id"].as_str().unwrap_or_default().into(),
            ));
            if name == "autoscaling_group" {
                lib_modules.push("ec2_launch_template");
            }
        }
        let lib = support::all_modules(&lib_modules);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        support::clear_request_log(&emu.url);
        let out = run_examples(name, lib.path(), &emu, None, &vars);
        assert_success(&format!("{name} EXAMPLES"), &out);
        // Each example did what it says: the writes AWS received, in order,
        // and every resource task reported a change.
        let (changed, writes) = (recap_changed(&out), example_writes(&emu));
        let (want_changed, want_writes) = expected_example_effects(name);
        assert_eq!(
            (
                changed,
                writes.iter().map(String::as_str).collect::<Vec<_>>()
            ),
            (want_changed, want_writes.to_vec()),
            "{name} EXAMPLES: (changed tasks, AWS writes in order)"
        );
        if name == "ec2_ami_info" {
            // The emulator has Amazon Linux 2023 images: one was found.
            let text = String::from_utf8_lossy(&out.stdout);
            // (The callback prints YAML or JSON, depending on the config.)
            assert!(
                text.contains("\"msg\": \"ami-") || text.contains("msg: ami-"),
                "{text}"
            );
        }
        if name == "route53_healthcheck" {
            let checks = support::control(&emu, "/_craftlb/route53/healthchecks");
            // The named check was removed by the last example; the HTTPS one stays.
            assert_eq!(checks.as_array().map(Vec::len), Some(1), "{checks}");
        }
    }
}

/// `changed=N` of the play recap.
fn recap_changed(out: &std::process::Output) -> u64 {
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| l.starts_with("localhost"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("changed="))
        })
        .filter_map(|n| n.parse().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no play recap in:\n{text}"))
}

/// The calls of the modules that changed something and succeeded, in
/// order (a retried call counts once: its failed attempts are not here).
fn example_writes(emu: &Emulator) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in support::request_log(&emu.url) {
        let op = r["operation"].as_str().unwrap_or_default();
        let ours = r["agent"]
            .as_str()
            .unwrap_or_default()
            .starts_with("aws-sdk-rust");
        let ok = r["status"].as_u64().is_some_and(|s| s < 300);
        let read = ["Describe", "Get", "List", "Head"]
            .iter()
            .any(|p| op.starts_with(p));
        if ours && ok && !read {
            out.push(op.to_owned());
        }
    }
    out
}

/// What each module's EXAMPLES do, read from the examples themselves: the
/// number of tasks that change something, and the writes in order.
fn expected_example_effects(name: &str) -> (u64, &'static [&'static str]) {
    match name {
        // Create; drop the target (a second put); delete.
        "asg_lifecycle_hook" => (
            3,
            &[
                "PutLifecycleHook",
                "PutLifecycleHook",
                "DeleteLifecycleHook",
            ],
        ),
        // The template; the group with its hooks in one create; scaled to
        // zero through its hooks, then deleted.
        "autoscaling_group" => (
            3,
            &[
                "CreateLaunchTemplate",
                "CreateAutoScalingGroup",
                "UpdateAutoScalingGroup",
                "DeleteAutoScalingGroup",
            ],
        ),
        // Read-only modules.
        "aws_caller_info" | "ec2_ami_info" | "ec2_vpc_subnet_info" => (0, &[]),
        // Two addresses in, two out.
        "ec2_eip_pool" => (
            2,
            &[
                "AllocateAddress",
                "AllocateAddress",
                "ReleaseAddress",
                "ReleaseAddress",
            ],
        ),
        // Create; a new version made the default; delete.
        "ec2_launch_template" => (
            3,
            &[
                "CreateLaunchTemplate",
                "CreateLaunchTemplateVersion",
                "ModifyLaunchTemplate",
                "DeleteLaunchTemplate",
            ],
        ),
        // Create with rules; egress explicit (AWS's default revoked); ingress
        // purged to the listed rules; delete.
        "ec2_security_group" => (
            4,
            &[
                "CreateSecurityGroup",
                "AuthorizeSecurityGroupIngress",
                "RevokeSecurityGroupEgress",
                "AuthorizeSecurityGroupEgress",
                "RevokeSecurityGroupIngress",
                "DeleteSecurityGroup",
            ],
        ),
        // The Lambda's role with its inline policy; the node role with a
        // managed policy and its instance profile; both deleted with what
        // they hold.
        "iam_role" => (
            3,
            &[
                "CreateRole",
                "PutRolePolicy",
                "CreateRole",
                "AttachRolePolicy",
                "CreateInstanceProfile",
                "AddRoleToInstanceProfile",
                "DeleteRolePolicy",
                "DeleteRole",
                "DetachRolePolicy",
                "RemoveRoleFromInstanceProfile",
                "DeleteInstanceProfile",
                "DeleteRole",
            ],
        ),
        // Create with the topic's permission; clear environment and
        // description; delete.
        "lambda" => (
            3,
            &[
                "CreateFunction",
                "AddPermission",
                "UpdateFunctionConfiguration",
                "DeleteFunction",
            ],
        ),
        // A named check (created, then tagged); an HTTPS check; disabled by
        // id; the named one removed.
        "route53_healthcheck" => (
            4,
            &[
                "CreateHealthCheck",
                "ChangeTagsForResource",
                "CreateHealthCheck",
                "UpdateHealthCheck",
                "DeleteHealthCheck",
            ],
        ),
        // Created private and tagged; deleted (empty, nothing to empty).
        "s3_bucket" => (
            2,
            &[
                "CreateBucket",
                "PutPublicAccessBlock",
                "PutBucketTagging",
                "DeleteBucket",
            ],
        ),
        "s3_object" => (
            3,
            &[
                "CreateBucket",
                "PutPublicAccessBlock",
                "PutObject",
                "DeleteObject",
            ],
        ),
        // The topic with the Lambda's subscription; a raw queue subscription;
        // the topic deleted (its subscriptions with it).
        "sns_topic" => (3, &["CreateTopic", "Subscribe", "Subscribe", "DeleteTopic"]),
        other => panic!("no expected effects for {other}'s EXAMPLES"),
    }
}

/// update_peers runs on a node: /etc/haproxy and /run/haproxy are private
/// tmpfs mounts of this test (a mount namespace: the host's stay untouched),
/// haproxy runs there with a config that uses the peers, IMDS is the
/// emulator's for an instance of a group, and `systemctl` (no systemd here)
/// is a stand-in that reloads that haproxy the way the unit's ExecReload does.
#[test]
fn update_peers_examples_run_as_written_on_a_node() {
    let emu = Emulator::start();
    support::scenario(
        &emu,
        &[
            "world",
            "--no-hooks",
            "--subnet-cidr",
            "127.77.6.0/24",
            "--group",
            "doc-asg",
        ],
    );
    support::scenario(&emu, &["scale", "--group", "doc-asg", "--desired", "2"]);
    let got = support::scenario(&emu, &["wait", "--group", "doc-asg", "--in-service", "2"]);
    let id = got["instances"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let ip = got["instances"][0]["private_ip"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let lib = support::all_modules(&["update_peers"]);
    let shim = lib.path().join("shim");
    std::fs::create_dir_all(&shim).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        shim.join("systemctl"),
        "#!/bin/sh\n# test stand-in for `systemctl reload craftlb-haproxy.service`\n\
         [ \"$1\" = reload ] || exit 1\n\
         haproxy -c -q -L \"$(cat /run/haproxy/local_peer)\" -f /etc/haproxy/haproxy.cfg -f /etc/haproxy/peers.cfg\n\
         kill -USR2 \"$(head -n 1 /run/haproxy/haproxy.pid)\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(shim.join("systemctl"), mode).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all("/run/haproxy").unwrap_or_else(|e| panic!("{e}"));
    let setup = format!(
        "mount -t tmpfs craftlb-etc /etc/haproxy\nmount -t tmpfs craftlb-run /run/haproxy\n\
         printf '%s' '{id}' > /run/haproxy/local_peer\n\
         printf 'peers lb_replication\\n    peer {id} {ip}:7777\\n' > /etc/haproxy/peers.cfg\n\
         printf 'global\\n    zero-warning\\ndefaults\\n    mode tcp\\n    timeout connect 5s\\n    timeout client 30s\\n    timeout server 30s\\n\
backend sticky\\n    stick-table type ip size 1k peers lb_replication\\n\
frontend fe\\n    bind {ip}:18090\\n    tcp-request content track-sc0 src table sticky\\n    default_backend none\\nbackend none\\n' > /etc/haproxy/haproxy.cfg\n\
         haproxy -W -D -p /run/haproxy/haproxy.pid -S /run/haproxy/master.sock -L {id} -f /etc/haproxy/haproxy.cfg -f /etc/haproxy/peers.cfg\n\
         export PATH={}:$PATH AWS_EC2_METADATA_SERVICE_ENDPOINT={}/_craftlb/imds/{id}\n",
        shim.display(),
        emu.url
    );
    let teardown = "kill \"$(head -n 1 /run/haproxy/haproxy.pid)\" 2>/dev/null || true";
    let out = run_examples(
        "update_peers",
        lib.path(),
        &emu,
        Some((&setup, teardown)),
        &[],
    );
    assert_success("update_peers EXAMPLES on a node", &out);
    let log = String::from_utf8_lossy(&out.stdout);
    // The group's peers, then the fixed ones: two writes; the watch changed nothing.
    assert!(
        log.contains("changed=2") && log.contains("failed=0"),
        "{log}"
    );
}
