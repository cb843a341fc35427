//! `dodvpn diagnose`: probe an organisation's registered public addresses, post the
//! findings to the centre, and show what is new, fixed and unchanged (R-SVC-5).

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use dodvpn_diagnose::{ports, Options, Scope};
use serde_json::{json, Value};

use crate::admin::Conn;

#[derive(Args)]
pub struct DiagnoseArgs {
    #[command(flatten)]
    conn: Conn,
    /// The organisation whose public addresses are diagnosed (the provider, or that
    /// organisation's own administrator).
    #[arg(long)]
    org: String,
    /// Addresses or prefixes to diagnose; each must lie inside the organisation's
    /// registered public addresses. Default: all of them.
    targets: Vec<String>,
    /// TCP ports, e.g. `21,22,80,8000-8100`. Default: the 1,000 TCP ports most often
    /// found open (nmap's frequency ranking, numbers only) plus a few remote-maintenance
    /// and inetd ports the MHLW notices name (about 1,030).
    #[arg(long)]
    ports: Option<String>,
    /// Most probes (connections or datagrams) per second to one target.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rate: u32,
    /// Connect timeout.
    #[arg(long, default_value = "1500ms", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
    /// Longest wait for one answer.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    read_timeout: Duration,
    /// The provider's own canary HOST:PORT for the open-proxy check (GET and CONNECT
    /// through a suspected proxy to it). Without it the check is skipped.
    #[arg(long)]
    canary: Option<String>,
    /// A zone to try to transfer (AXFR) from any DNS server found; repeatable.
    #[arg(long = "dns-zone")]
    dns_zones: Vec<String>,
    /// Skip the UDP services (echo, chargen, daytime, SNMP) and the ICMP timestamp.
    #[arg(long)]
    no_udp: bool,
    /// Diagnose without posting the results to the centre.
    #[arg(long)]
    no_post: bool,
    /// Repeat every INTERVAL (e.g. `7d`) until stopped.
    #[arg(long, value_parser = humantime::parse_duration)]
    every: Option<Duration>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

fn parse_canary(s: &str) -> anyhow::Result<(String, u16)> {
    let (h, p) = s
        .rsplit_once(':')
        .context("--canary は HOST:PORT で指定してください / --canary must be HOST:PORT")?;
    let p: u16 = p
        .parse()
        .ok()
        .filter(|&p| p > 0)
        .context("--canary のポートが不正です / --canary has a bad port")?;
    let h = h.trim_start_matches('[').trim_end_matches(']');
    anyhow::ensure!(
        !h.is_empty(),
        "--canary に HOST がありません / --canary has no host"
    );
    Ok((h.to_string(), p))
}

pub async fn run(a: DiagnoseArgs) -> anyhow::Result<()> {
    let mut opts = Options {
        rate: a.rate,
        connect_timeout: a.connect_timeout,
        read_timeout: a.read_timeout,
        dns_zones: a.dns_zones.clone(),
        udp_and_icmp: !a.no_udp,
        ..Options::default()
    };
    if let Some(p) = &a.ports {
        opts.ports = ports::parse(p).map_err(anyhow::Error::msg)?;
    }
    if let Some(c) = &a.canary {
        opts.canary = Some(parse_canary(c)?);
    }
    let c = a.conn.client()?;
    loop {
        once(&a, &c, &opts).await?;
        match a.every {
            Some(d) => tokio::time::sleep(d).await,
            None => return Ok(()),
        }
    }
}

async fn once(
    a: &DiagnoseArgs,
    c: &dodvpn_agent::CenterClient,
    opts: &Options,
) -> anyhow::Result<()> {
    // The scope comes from the centre each time: a list the provider shrank is obeyed.
    let list: Value = c
        .get(&format!("/api/v1/orgs/{}/public-addresses", a.org))
        .await
        .context(
            "組織の公開アドレスを取得できません / cannot read the organisation's public addresses",
        )?;
    let nets = list["addresses"]
        .as_array()
        .map(|v| v.iter().filter_map(|x| x.as_str()?.parse().ok()).collect())
        .unwrap_or_default();
    let scope = Scope {
        org: a.org.clone(),
        nets,
    };
    let targets = scope.targets(&a.targets)?;
    anyhow::ensure!(
        !targets.is_empty(),
        "組織 {} に公開アドレスが登録されていません / organisation {} has no registered public addresses",
        a.org,
        a.org
    );
    let report = dodvpn_diagnose::diagnose(&targets, opts).await;
    let compared: Value = if a.no_post {
        Value::Null
    } else {
        c.post(
            &format!("/api/v1/orgs/{}/diagnoses", a.org),
            &json!({
                "started_ms": report.started_ms,
                "finished_ms": report.finished_ms,
                "targets": report.targets,
                "findings": report.findings,
            }),
        )
        .await
        .context("診断結果をセンターに送れません / cannot post the results to the centre")?
    };
    if a.json {
        let out = json!({"report": report, "comparison": compared});
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    table(&report, &compared);
    Ok(())
}

fn table(r: &dodvpn_diagnose::run::Report, cmp: &Value) {
    let status_of = |f: &dodvpn_diagnose::Finding| -> &'static str {
        let same = |x: &Value| {
            x["target"] == f.target.as_str()
                && x["port"] == f.port
                && x["check"] == f.check.as_str()
        };
        if cmp.is_null() {
            return "-";
        }
        if cmp["new"].as_array().is_some_and(|v| v.iter().any(same)) {
            "new/新規"
        } else {
            "unchanged/継続"
        }
    };
    println!(
        "診断対象 / targets: {}   プローブ数 / probes: {}   所要 / took: {} ms",
        r.targets.join(", "),
        r.probes,
        r.finished_ms - r.started_ms
    );
    println!(
        "{:<16} {:<9} {:<22} {:<9} {:<15} finding / 所見",
        "target", "port", "check", "severity", "status"
    );
    for f in &r.findings {
        println!(
            "{:<16} {:<9} {:<22} {:<9} {:<15} {} / {}",
            f.target,
            format!("{:?}/{}", f.proto, f.port).to_lowercase(),
            f.check,
            format!("{:?}", f.severity).to_lowercase(),
            status_of(f),
            f.title_en,
            f.title_ja
        );
        println!("{:<16} evidence: {}", "", f.evidence);
    }
    if r.findings.is_empty() {
        println!("所見なし / no findings");
    }
    if let Some(fixed) = cmp["fixed"].as_array() {
        for x in fixed {
            println!(
                "fixed/解消  {} {}/{} {}",
                x["target"].as_str().unwrap_or("?"),
                x["proto"].as_str().unwrap_or("?"),
                x["port"],
                x["check"].as_str().unwrap_or("?")
            );
        }
    }
    for s in &r.skipped {
        println!("skipped/省略: {s}");
    }
    if let Some(id) = cmp["run"]["id"].as_str() {
        println!("run {id} recorded / センターに記録しました");
    }
}
