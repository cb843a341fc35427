//! The TR §9 scenario, one function per step, each printing and counting its checks.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use super::lab::{ip, wait_for, Lab, EQUIPMENT, MAINTENANCE_PORT};
use super::DemoArgs;

/// One step of the scenario.
pub type Step = fn(&mut Lab, &DemoArgs, &mut Report) -> anyhow::Result<()>;

/// The scenario of TR §9, in order.
pub const STEPS: &[Step] = &[
    centre,
    enrol,
    groups_and_policies,
    agents,
    applications,
    on_demand,
    overlapping,
    dynamic_address,
    isolation,
    around_the_tunnels,
    idle,
    session_audit,
    vendor_window,
    narrowed_policy,
    resilience,
    revocation,
    audit,
];

/// Checks passed and failed, printed as they happen.
#[derive(Default)]
pub struct Report {
    pub passed: usize,
    pub failed: Vec<String>,
}

impl Report {
    pub fn check(&mut self, ok: bool, what: &str) -> bool {
        if ok {
            self.passed += 1;
            println!("  ✔ {what}");
        } else {
            self.failed.push(what.to_string());
            println!("  ✘ {what}");
        }
        ok
    }
}

pub fn step(title: &str) {
    println!("\n== {title}");
}

/// The hospital's policy: group B for anything, the lab for `lab_services`, the vendor
/// only at the equipment's maintenance port inside an approval window.
fn hospital_policy(lab: &Lab, lab_services: &str) -> Value {
    let vendor_org = &lab.site("vendor").org;
    serde_json::json!({
        "inbound": [
            {"from": "group:B", "services": ["any"]},
            {"from": "kind:lab", "services": [lab_services]},
            {"from": format!("org:{vendor_org}"), "hosts": [format!("{EQUIPMENT}/32")], "services": [format!("tcp/{MAINTENANCE_PORT}")], "require_approval": true}
        ],
        "outbound": [{"to": "*", "services": ["any"]}]
    })
}

/// Ping every 50 ms until no answer for a full probe; the time from `t0` to the first
/// failed probe.
pub fn time_until_cut(
    lab: &Lab,
    from: &str,
    to_addr: &str,
    t0: Instant,
    limit: Duration,
) -> Option<Duration> {
    while t0.elapsed() < limit {
        let started = t0.elapsed();
        let ok = lab.ping_within(from, to_addr, "0.3");
        if !ok {
            return Some(started);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Record a cut measured by [`time_until_cut`]: it must come within 2 s.
fn check_cut(report: &mut Report, cut: Option<Duration>, what: &str, after: &str) {
    report.check(
        cut.is_some_and(|d| d <= Duration::from_secs(2)),
        &format!(
            "{what} {}",
            cut.map(|d| format!("{} ms after {after}", d.as_millis()))
                .unwrap_or_else(|| "— NOT within 5 s".into())
        ),
    );
}

/// The centre on the embedded SQLite, in the bridge namespace.
fn centre(lab: &mut Lab, _args: &DemoArgs, _report: &mut Report) -> anyhow::Result<()> {
    step("Centre (embedded SQLite) starting in its own namespace");
    lab.start_centre()?;
    println!(
        "  centre at {} ; data, audit database and logs under {}",
        lab.center_url,
        lab.work.display()
    );
    Ok(())
}

/// TR D.6 a–l for every site.
fn enrol(lab: &mut Lab, _args: &DemoArgs, _report: &mut Report) -> anyhow::Result<()> {
    step("Enrolling seven sites through TR D.6 a–l (real CLI, real key stores); two clinics share 10.2.0.0/24");
    lab.enrol_all()?;
    Ok(())
}

/// Three groups and each organisation's policy.
fn groups_and_policies(
    lab: &mut Lab,
    _args: &DemoArgs,
    _report: &mut Report,
) -> anyhow::Result<()> {
    let open = serde_json::json!({"inbound": [{"from": "*", "services": ["any"]}], "outbound": [{"to": "*", "services": ["any"]}]});
    step("Groups and policies: A = hospital, lab, vendor; B = hospital, both clinics, pharmacy; C = outsider");
    for (g, members) in [
        ("A", &["hosp", "lab", "vendor"][..]),
        ("B", &["hosp", "clinic", "pharm", "clinic2"][..]),
        ("C", &["outsider"][..]),
    ] {
        lab.admin(&["group", "create", g])?;
        for m in members {
            lab.admin(&["group", "add", g, &lab.site(m).device])?;
        }
    }
    for k in ["clinic", "pharm", "lab", "outsider", "clinic2"] {
        lab.set_policy(k, &open)?;
    }
    lab.set_policy("hosp", &hospital_policy(lab, "any"))?;
    lab.set_policy("vendor", &serde_json::json!({"inbound": [], "outbound": [{"to": "kind:hospital", "services": [format!("tcp/{MAINTENANCE_PORT}")]}]}))?;
    println!("  hospital accepts group B and the lab for any service, the vendor only at {EQUIPMENT} tcp/{MAINTENANCE_PORT} inside an approval window");
    Ok(())
}

/// An agent in every site; the hospital's equipment and its services.
fn agents(lab: &mut Lab, args: &DemoArgs, report: &mut Report) -> anyhow::Result<()> {
    step("Agents starting in every site (each holds only its own key store)");
    for s in lab.sites.clone() {
        lab.start_agent(s.key, args.idle_timeout)?;
    }
    let without: Vec<&str> = lab
        .sites
        .iter()
        .filter(|s| !lab.firewall_installed(s.key))
        .map(|s| s.key)
        .collect();
    report.check(
        without.is_empty(),
        &format!(
            "every agent installed its gateway firewall (nftables table inet {}){}",
            dodvpn_agent::firewall::TABLE,
            if without.is_empty() {
                String::new()
            } else {
                format!(" — missing at {}", without.join(", "))
            }
        ),
    );
    // The hospital's equipment and its services.
    let hosp_ns = lab.site("hosp").ns.clone();
    ip(&[
        "-n",
        &hosp_ns,
        "addr",
        "add",
        &format!("{EQUIPMENT}/32"),
        "dev",
        "site0",
    ])?;
    lab.echo_server("hosp", EQUIPMENT, MAINTENANCE_PORT)?;
    lab.echo_server("hosp", EQUIPMENT, 80)?;
    lab.echo_server("hosp", &lab.site("hosp").host(), 8080)?;
    Ok(())
}

/// TR D.6 k: connection applications, granted or refused by the policies.
fn applications(lab: &mut Lab, _args: &DemoArgs, report: &mut Report) -> anyhow::Result<()> {
    step("Connection applications (TR D.6 k)");
    for (from, to, want) in [
        ("clinic", "hosp", true),
        ("pharm", "hosp", true),
        ("lab", "hosp", true),
        ("clinic", "lab", false),
        ("outsider", "hosp", false),
        ("outsider", "clinic", false),
        ("vendor", "hosp", false),
    ] {
        let (granted, why) = lab.apply(from, to)?;
        let what = if want { "granted" } else { "refused" };
        report.check(
            granted == want,
            &format!(
                "{from} → {to}: {what}{}",
                if why.is_empty() {
                    String::new()
                } else {
                    format!(" ({why})")
                }
            ),
        );
    }
    let pushed = wait_for(Duration::from_secs(10), || {
        lab.has_connection("clinic", "hosp")
            && lab.has_connection("hosp", "clinic")
            && lab.has_connection("lab", "hosp")
    });
    report.check(
        pushed.is_some(),
        &format!(
            "grants pushed to both ends and installed{}",
            pushed
                .map(|d| format!(" in {} ms", d.as_millis()))
                .unwrap_or_default()
        ),
    );
    Ok(())
}

/// No SA until traffic; the first packet brings the tunnel up; multi-session at the hospital.
fn on_demand(lab: &mut Lab, _args: &DemoArgs, report: &mut Report) -> anyhow::Result<()> {
    step("On demand: no tunnel until traffic, then up at the first packet");
    report.check(
        lab.live_children("clinic") == 0 && lab.live_children("hosp") == 0,
        "no SA exists before any traffic",
    );
    let hosp_host = lab.site("hosp").host();
    let t0 = Instant::now();
    let first = lab.ping("clinic", &hosp_host);
    report.check(
        first,
        &format!(
            "clinic → hospital: the first echo is answered ({} ms including tunnel setup)",
            t0.elapsed().as_millis()
        ),
    );
    report.check(
        lab.tcp("clinic", &hosp_host, 8080),
        "clinic → hospital: TCP through the tunnel",
    );
    report.check(
        lab.ping("pharm", &hosp_host) && lab.ping("lab", &hosp_host),
        "pharmacy and lab reach the hospital too: the hospital holds three sessions at once",
    );
    let sessions = lab
        .tunnel_status("hosp")
        .ok()
        .and_then(|v| {
            v["connections"]
                .as_array()
                .map(|cs| cs.iter().filter(|c| c["state"] == "established").count())
        })
        .unwrap_or(0);
    report.check(
        sessions >= 3,
        &format!("hospital: {sessions} established IKE SAs (multi-session)"),
    );
    Ok(())
}

/// TR D.7 c: two clinics on the same private range, told apart by mapping.
fn overlapping(lab: &mut Lab, _args: &DemoArgs, report: &mut Report) -> anyhow::Result<()> {
    let hosp_host = lab.site("hosp").host();
    step("Overlapping private ranges (TR D.7 c): both clinics are 10.2.0.0/24 inside");
    let visible = |key: &str| -> Option<Ipv4Addr> {
        let d = lab.admin(&["device", "show", &lab.site(key).device]).ok()?;
        let net = d["mapped_subnets"][0].as_str()?.to_string();
        let base: Ipv4Addr = net.split('/').next()?.parse().ok()?;
        println!(
            "  {:<14} inside {} is seen by its peers as {net}",
            lab.site(key).name,
            lab.site(key).subnet()
        );
        Some(Ipv4Addr::from(u32::from(base) + 1))
    };
    let (v1, v2) = (visible("clinic"), visible("clinic2"));
    report.check(
        v1.is_some() && v2.is_some() && v1 != v2,
        "the centre gave the two clinics distinct visible prefixes",
    );
    let (granted, why) = lab.apply("clinic2", "hosp")?;
    report.check(granted, &format!("second clinic → hospital: granted {why}"));
    wait_for(Duration::from_secs(10), || {
        lab.has_connection("clinic2", "hosp")
    });
    report.check(
        lab.ping("clinic2", &hosp_host) && lab.tcp("clinic2", &hosp_host, 8080),
        "second clinic (also 10.2.0.1 inside) → hospital: ICMP and TCP",
    );
    report.check(
        lab.ping("clinic", &hosp_host),
        "first clinic → hospital still works",
    );
    if let (Some(v1), Some(v2)) = (v1, v2) {
        let ping = |to: Ipv4Addr| lab.ping("hosp", &to.to_string());
        report.check(
            ping(v1) && ping(v2),
            &format!("hospital → {v1} and {v2}: each answered by its own clinic"),
        );
    }
    Ok(())
}

/// Issue 19: the second clinic is on consumer broadband behind its own NAT, with no
/// registered address. It is found by its certificate; a new DHCP lease behind the
/// NAT moves its session with MOBIKE instead of ending it.
fn dynamic_address(lab: &mut Lab, _args: &DemoArgs, report: &mut Report) -> anyhow::Result<()> {
    let c2 = lab.site("clinic2").clone();
    let Some((_, public)) = c2.nat.clone() else {
        return Ok(());
    };
    step("A clinic on a dynamic address behind NAT: no endpoint registered; a new DHCP lease keeps the session (MOBIKE)");
    let dev = lab.admin(&["device", "show", &c2.device])?;
    report.check(
        dev["endpoint"].is_null(),
        "the centre holds no endpoint for the second clinic",
    );
    let hosp_host = lab.site("hosp").host();
    let conn = |key: &str, peer: &str| -> Value {
        let dev = lab.site(peer).device.clone();
        lab.tunnel_status(key)
            .ok()
            .and_then(|v| {
                v["connections"]
                    .as_array()?
                    .iter()
                    .find(|c| c["name"].as_str() == Some(&dev))
                    .cloned()
            })
            .unwrap_or(Value::Null)
    };
    report.check(
        lab.ping("clinic2", &hosp_host),
        "second clinic → hospital from behind its NAT",
    );
    let seen = conn("hosp", "clinic2")["remote"]
        .as_str()
        .unwrap_or("")
        .to_string();
    report.check(
        seen == public.to_string(),
        &format!(
            "the hospital meets it at its NAT's public address {public} (it is {} inside), identified by its certificate",
            c2.outer
        ),
    );
    let before = conn("clinic2", "hosp")["session"]
        .as_str()
        .map(String::from);
    let (old, new) = (c2.outer, c2.next_lease());
    let router = std::net::Ipv4Addr::from(u32::from(old) & 0xffff_ff00 | 1).to_string();
    ip(&[
        "-n",
        &c2.ns,
        "addr",
        "del",
        &format!("{old}/24"),
        "dev",
        "out0",
    ])?;
    ip(&[
        "-n",
        &c2.ns,
        "addr",
        "add",
        &format!("{new}/24"),
        "dev",
        "out0",
    ])?;
    ip(&["-n", &c2.ns, "route", "add", "default", "via", &router])?;
    let t0 = Instant::now();
    let back = wait_for(Duration::from_secs(10), || {
        lab.ping_within("clinic2", &hosp_host, "1")
    });
    let after = conn("clinic2", "hosp")["session"]
        .as_str()
        .map(String::from);
    report.check(
        back.is_some() && before.is_some() && after == before,
        &format!(
            "a new DHCP lease ({old} → {new}, a new NAT mapping): answered again after {} ms, session {} kept",
            t0.elapsed().as_millis(),
            before.as_deref().unwrap_or("?")
        ),
    );
    if let Some(s) = lab.sites.iter_mut().find(|s| s.key == "clinic2") {
        s.outer = new;
    }
    Ok(())
}

/// No grant, no path through the tunnels.
fn isolation(lab: &mut Lab, _args: &DemoArgs, report: &mut Report) -> anyhow::Result<()> {
    let hosp_host = lab.site("hosp").host();
    step("Isolation: no grant, no path");
    let lab_host = lab.site("lab").host();
    report.check(
        !lab.ping("clinic", &lab_host),
        "clinic → lab: unreachable (different groups)",
    );
    report.check(
        !lab.ping("outsider", &hosp_host) && !lab.ping("outsider", &lab.site("clinic").host()),
        "outsider → anyone: unreachable",
    );
    report.check(
        !lab.ping("pharm", &lab.site("clinic").host()),
        "pharmacy → clinic: unreachable (no grant between them)",
    );
    Ok(())
}

/// Issue 9.3: an outsider that routes plain IP to each site's inside via the site's
/// outer address (around the tunnels) gets no answer; the outer addresses themselves
/// answer, so the probes do reach the gateways.
fn around_the_tunnels(lab: &mut Lab, _args: &DemoArgs, report: &mut Report) -> anyhow::Result<()> {
    step("Around the tunnels: the outsider routes plain IP to every site's inside via the site's outer address");
    let o = lab.site("outsider").clone();
    let src = o.outer.to_string();
    let (mut inside, mut outer) = (Vec::new(), Vec::new());
    for (i, s) in lab.sites.iter().filter(|s| s.key != "outsider").enumerate() {
        // One routing table per site (the two clinics share 10.2.0.0/24), chosen by the
        // probe's socket mark.
        let mark = (100 + i).to_string();
        // A site behind a NAT is reached at the NAT's public address.
        let via = s.public().to_string();
        ip(&[
            "-n",
            &o.ns,
            "route",
            "add",
            &s.subnet(),
            "via",
            &via,
            "dev",
            "out0",
            "onlink",
            "table",
            &mark,
        ])?;
        ip(&["-n", &o.ns, "rule", "add", "fwmark", &mark, "lookup", &mark])?;
        let mut to = vec![(s.host(), 8080)];
        if s.key == "hosp" {
            to.extend([
                (EQUIPMENT.to_string(), MAINTENANCE_PORT),
                (EQUIPMENT.to_string(), 80),
            ]);
        }
        for (addr, port) in to {
            let what = format!("{} {addr}", s.name);
            inside.push((
                format!("{what} ICMP"),
                serde_json::json!({"mark": mark, "src": src, "addr": addr}),
            ));
            inside.push((
                format!("{what}:{port} TCP"),
                serde_json::json!({"mark": mark, "src": src, "addr": addr, "port": port}),
            ));
        }
        outer.push((
            format!("{} {via}", s.name),
            serde_json::json!({"mark": mark, "src": src, "addr": via}),
        ));
    }
    let answered = |probes: &[(String, Value)]| -> anyhow::Result<Vec<String>> {
        let ok = lab.probe(
            &o.ns,
            &probes.iter().map(|p| p.1.clone()).collect::<Vec<_>>(),
        )?;
        Ok(probes
            .iter()
            .zip(ok)
            .filter(|(_, ok)| *ok)
            .map(|(p, _)| p.0.clone())
            .collect())
    };
    let reached = answered(&outer)?;
    report.check(
        reached.len() == outer.len(),
        &format!("the outsider reaches every site's outer address ({}/{} echoes answered): the probes get there", reached.len(), outer.len()),
    );
    let leaked = answered(&inside)?;
    report.check(
        leaked.is_empty(),
        &format!(
            "the outsider around the tunnels → the sites' inside (ICMP and TCP, incl. {EQUIPMENT}:{MAINTENANCE_PORT}): {} of {} answered{}",
            leaked.len(),
            inside.len(),
            if leaked.is_empty() { " — dropped by every gateway's firewall".to_string() } else { format!(": {}", leaked.join(", ")) }
        ),
    );
    for i in 0..outer.len() {
        let mark = (100 + i).to_string();
        ip(&["-n", &o.ns, "rule", "del", "fwmark", &mark, "lookup", &mark])?;
        ip(&["-n", &o.ns, "route", "flush", "table", &mark])?;
    }
    Ok(())
}

/// Idle tunnels go down and come back on demand.
fn idle(lab: &mut Lab, args: &DemoArgs, report: &mut Report) -> anyhow::Result<()> {
    let hosp_host = lab.site("hosp").host();
    step("Idle: tunnels go down by themselves");
    let idle = wait_for(args.idle_timeout * 3 + Duration::from_secs(5), || {
        lab.live_children("clinic") == 0
    });
    report.check(
        idle.is_some(),
        &format!("clinic's SAs deleted after {:?} idle", args.idle_timeout),
    );
    report.check(
        lab.ping("clinic", &hosp_host),
        "…and back on demand at the next packet",
    );
    Ok(())
}

/// The three-point audit of a session, and an operator cut.
fn session_audit(lab: &mut Lab, _args: &DemoArgs, report: &mut Report) -> anyhow::Result<()> {
    let hosp_host = lab.site("hosp").host();
    step("Three-point audit: both ends report the session to the centre under one id");
    let hosp_dev = lab.site("hosp").device.clone();
    let clinic_dev = lab.site("clinic").device.clone();
    let both_ends = |v: &Value| {
        v["ends"].as_array().is_some_and(|e| {
            let who: Vec<&str> = e.iter().filter_map(|x| x["device_id"].as_str()).collect();
            who.contains(&hosp_dev.as_str()) && who.contains(&clinic_dev.as_str())
        })
    };
    lab.ping("clinic", &hosp_host);
    let mut live = None;
    wait_for(Duration::from_secs(5), || {
        live = lab
            .admin(&["session", "list", "--device", &clinic_dev])
            .ok()
            .and_then(|v| v.as_array().and_then(|a| a.last().cloned()))
            .and_then(|s| s["id"].as_str().map(String::from))
            .and_then(|id| {
                lab.admin(&["session", "show", &id])
                    .ok()
                    .filter(both_ends)
                    .map(|_| id)
            });
        live.is_some()
    });
    report.check(
        live.is_some(),
        "clinic ↔ hospital session: reported up by both ends, one session id",
    );
    if let Some(id) = live {
        lab.admin(&["session", "cut", &id, "--reason", "demo: operator cut"])?;
        let gone = wait_for(Duration::from_secs(3), || {
            ["clinic", "hosp"].iter().all(|k| {
                lab.tunnel_status(k)
                    .is_ok_and(|v| !v.to_string().contains(&id))
            })
        });
        report.check(
            gone.is_some(),
            &format!("operator cut session {id}: SAs deleted at both ends"),
        );
        let downs = wait_for(Duration::from_secs(5), || {
            lab.admin(&["session", "show", &id]).is_ok_and(|v| {
                v["ends"]
                    .as_array()
                    .is_some_and(|e| e.len() == 2 && e.iter().all(|x| !x["down_at"].is_null()))
            })
        });
        report.check(
            downs.is_some(),
            "both ends reported the cut session down, with their byte counts",
        );
    }
    Ok(())
}

/// TR §9.2: the vendor inside an approval window, only the contracted host and port.
fn vendor_window(lab: &mut Lab, _args: &DemoArgs, report: &mut Report) -> anyhow::Result<()> {
    let hosp_host = lab.site("hosp").host();
    let vendor_org = lab.site("vendor").org.clone();
    step("Vendor maintenance window (TR §9.2): only the contracted equipment and port");
    let hosp_org = lab.site("hosp").org.clone();
    let cred = lab.work.join("hosp-admin.token");
    lab.admin(&["org", "admin", &hosp_org, "--out", &cred.to_string_lossy()])?;
    let appr = lab.admin_as(
        &cred,
        &[
            "approval",
            "open",
            "--approver",
            &hosp_org,
            "--applicant",
            &vendor_org,
            "--minutes",
            "30",
        ],
    )?;
    let appr = appr["id"].as_str().context("approval id")?.to_string();
    println!("  the hospital opened approval window {appr} for the vendor");
    let (granted, why) = lab.apply("vendor", "hosp")?;
    report.check(
        granted,
        &format!("vendor → hospital: granted inside the window {why}"),
    );
    wait_for(Duration::from_secs(10), || {
        lab.has_connection("vendor", "hosp")
    });
    report.check(
        lab.tcp("vendor", EQUIPMENT, MAINTENANCE_PORT),
        &format!("vendor → {EQUIPMENT}:{MAINTENANCE_PORT}: open"),
    );
    report.check(
        !lab.tcp("vendor", EQUIPMENT, 80),
        &format!(
            "vendor → {EQUIPMENT}:80: refused by the agents' service filters (not contracted)"
        ),
    );
    report.check(
        !lab.ping("vendor", &hosp_host),
        "vendor → the hospital's other hosts: unreachable",
    );
    let t0 = Instant::now();
    lab.admin_as(&cred, &["approval", "close", &appr])?;
    let cut = time_until_cut(lab, "vendor", EQUIPMENT, t0, Duration::from_secs(5));
    check_cut(
        report,
        cut,
        "window closed: the vendor's path is cut",
        "the change",
    );
    report.check(
        !lab.tcp("vendor", EQUIPMENT, MAINTENANCE_PORT),
        "vendor → equipment after the window: refused",
    );
    Ok(())
}

/// A narrowed policy re-issues a live grant; the cut comes within 2 s.
fn narrowed_policy(lab: &mut Lab, _args: &DemoArgs, report: &mut Report) -> anyhow::Result<()> {
    let hosp_host = lab.site("hosp").host();
    step("A policy narrowed: the hospital now accepts the lab for TCP 8080 only");
    report.check(
        lab.ping("lab", &hosp_host) && lab.tcp("lab", &hosp_host, 8080),
        "lab → hospital: ICMP and TCP 8080 before",
    );
    let t0 = Instant::now();
    lab.set_policy("hosp", &hospital_policy(lab, "tcp/8080"))?;
    let cut = time_until_cut(lab, "lab", &hosp_host, t0, Duration::from_secs(5));
    check_cut(
        report,
        cut,
        "the lab's grant re-issued narrower: its ICMP is refused",
        "the policy change",
    );
    report.check(
        lab.tcp("lab", &hosp_host, 8080),
        "lab → hospital TCP 8080 still works on the renegotiated tunnel",
    );
    Ok(())
}

/// The centre away and an agent crash: tunnels and reports survive.
fn resilience(lab: &mut Lab, args: &DemoArgs, report: &mut Report) -> anyhow::Result<()> {
    let hosp_host = lab.site("hosp").host();
    let clinic_dev = lab.site("clinic").device.clone();
    step("Resilience: the centre goes away, an agent crashes");
    let connects = |lab: &Lab| -> Vec<usize> {
        lab.sites
            .iter()
            .map(|s| {
                std::fs::read_to_string(lab.work.join(format!("agent-{}.log", s.key)))
                    .map(|t| t.matches("connected to the centre").count())
                    .unwrap_or(0)
            })
            .collect()
    };
    let clinic_log = lab.work.join("agent-clinic.log");
    let mark = std::fs::metadata(&clinic_log)
        .map(|m| m.len() as usize)
        .unwrap_or(0);
    lab.stop("center.log");
    println!("  centre stopped");
    report.check(
        lab.ping("clinic", &hosp_host),
        "centre down: clinic → hospital still works",
    );
    wait_for(args.idle_timeout * 3 + Duration::from_secs(5), || {
        lab.live_children("clinic") == 0
    });
    report.check(
        lab.ping("clinic", &hosp_host),
        "centre down: after idle teardown, on-demand setup still works for the grants held",
    );
    // Sessions that came and went while the centre was away: their reports wait in
    // the key store, across the crash below.
    let offline: Vec<String> = std::fs::read_to_string(&clinic_log)
        .unwrap_or_default()
        .get(mark..)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(": down ("))
        .filter_map(|l| {
            l.split_whitespace()
                .skip_while(|w| *w != "session")
                .nth(1)
                .map(String::from)
        })
        .collect();
    lab.kill9("agent-clinic.log");
    println!("  clinic's agent killed with SIGKILL");
    lab.start_agent("clinic", args.idle_timeout)?;
    let back = wait_for(Duration::from_secs(10), || lab.ping("clinic", &hosp_host));
    report.check(back.is_some(), "agent restarted with the centre still down: its grants came back from the key store and the tunnel works");
    let before = connects(lab);
    lab.start_centre()?;
    let back = wait_for(Duration::from_secs(15), || {
        connects(lab)
            .iter()
            .zip(&before)
            .all(|(now, then)| now > then)
    });
    report.check(
        back.is_some(),
        &format!(
            "centre back: every agent reconnected{}",
            back.map(|d| format!(" within {} ms", d.as_millis()))
                .unwrap_or_default()
        ),
    );
    let delivered = !offline.is_empty()
        && wait_for(Duration::from_secs(15), || {
            offline.iter().all(|id| {
                lab.admin(&["session", "show", id]).is_ok_and(|v| {
                    v["ends"].as_array().is_some_and(|e| {
                        e.iter().any(|x| {
                            x["device_id"].as_str() == Some(clinic_dev.as_str())
                                && !x["down_at"].is_null()
                        })
                    })
                })
            })
        })
        .is_some();
    report.check(
        delivered,
        &format!("the clinic's reports of {} session(s) held while the centre was away, across its crash, reached the centre", offline.len()),
    );
    let grant = lab
        .admin(&[
            "grant",
            "list",
            "--device",
            &clinic_dev,
            "--status",
            "active",
        ])?
        .as_array()
        .and_then(|a| a.first().cloned())
        .and_then(|g| g["id"].as_str().map(String::from))
        .context("clinic holds no active grant")?;
    let t0 = Instant::now();
    lab.admin(&[
        "grant",
        "withdraw",
        &grant,
        "--reason",
        "demo: policy review",
    ])?;
    let cut = time_until_cut(lab, "clinic", &hosp_host, t0, Duration::from_secs(10));
    report.check(cut.is_some(), &format!("agents resynchronised with the restarted centre: a grant withdrawn there cut the clinic's path {}", cut.map(|d| format!("{} ms later", d.as_millis())).unwrap_or_default()));
    Ok(())
}

/// A revocation cuts a live tunnel; the revoked agent stops and is reaped.
fn revocation(lab: &mut Lab, _args: &DemoArgs, report: &mut Report) -> anyhow::Result<()> {
    let hosp_host = lab.site("hosp").host();
    step("Revocation cuts a live tunnel");
    report.check(lab.ping("pharm", &hosp_host), "pharmacy ↔ hospital live");
    let pharm_dev = lab.site("pharm").device.clone();
    let t0 = Instant::now();
    lab.admin(&[
        "device",
        "revoke",
        &pharm_dev,
        "--reason",
        "demo: stolen device",
    ])?;
    let cut = time_until_cut(lab, "pharm", &hosp_host, t0, Duration::from_secs(5));
    check_cut(
        report,
        cut,
        "pharmacy revoked: tunnel cut",
        "the revocation",
    );
    report.check(
        !lab.ping("pharm", &hosp_host),
        "the revoked pharmacy stays out",
    );
    let exited = lab.reap("agent-pharm.log", Duration::from_secs(10));
    report.check(
        exited.is_some(),
        &format!(
            "the revoked pharmacy's agent stopped by itself and was reaped ({})",
            exited.map_or("still running after 10 s".into(), |st| st.to_string())
        ),
    );
    report.check(
        !lab.firewall_installed("pharm"),
        "…and removed its gateway firewall on the way out",
    );
    Ok(())
}

/// The audit trail holds every kind of event and its chain verifies.
fn audit(lab: &mut Lab, _args: &DemoArgs, report: &mut Report) -> anyhow::Result<()> {
    step("Audit");
    let actions = lab.audit_actions()?;
    for a in [
        "connection.granted",
        "connection.denied",
        "approval.opened",
        "approval.closed",
        "connection.withdrawn",
        "device.revoked",
        "session.up",
        "session.down",
        "session.cut",
    ] {
        report.check(actions.iter().any(|x| x == a), &format!("audit holds {a}"));
    }
    let v = lab.admin(&["audit", "verify"])?;
    report.check(
        v["ok"].as_bool() == Some(true),
        &format!("audit chain verifies ({} records)", v["records"]),
    );
    Ok(())
}
