//! `dodvpn demo`: the TR §9 network on one machine. A centre on the embedded default
//! (SQLite) and seven sites (two of them on the same private range), each in its own network namespace on a shared "internet"
//! bridge, enrolled through the real flow (TR D.6 a–l) with the real CLI. Then it shows,
//! and checks, what the DOD-VPN is for: on-demand tunnels, group isolation, a vendor
//! maintenance window, a revocation cutting a live tunnel, and nothing reaching a site's
//! inside around its tunnels.
//!
//! Everything it creates (namespaces, processes, files) is removed on exit or Ctrl-C.
//!
//! [`lab`] builds the namespaces and runs the processes, [`enrol`] is TR D.6 through the
//! CLI (shared with the cli tests), [`steps`] is the scenario, one function per step.

pub mod enrol;
pub mod lab;
pub mod steps;

use std::path::PathBuf;
use std::time::Duration;

use lab::{Lab, SITES};
use steps::Report;

#[derive(clap::Parser, Clone)]
pub struct DemoArgs {
    /// Run the scenario, print the summary and stop (exit status 1 if a check failed),
    /// instead of staying up for exploration until Ctrl-C.
    #[arg(long)]
    pub exit: bool,
    /// Working directory for the centre's data, key stores and logs (default: a new
    /// directory under /tmp, removed on exit unless --keep).
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// Keep the working directory (logs, audit database) after exit.
    #[arg(long)]
    pub keep: bool,
    /// Idle time after which tunnels are deleted.
    #[arg(long, default_value = "6s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
}

/// The scenario of TR §9, checked step by step; stops at the first step that errs.
pub fn scenario(lab: &mut Lab, args: &DemoArgs, report: &mut Report) -> anyhow::Result<()> {
    steps::STEPS
        .iter()
        .try_for_each(|step| step(lab, args, report))
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let work = match &args.work {
        Some(w) => w.clone(),
        None => std::env::temp_dir().join(format!("dodvpn-demo-{}", std::process::id())),
    };
    let keep = args.keep || args.work.is_some();
    println!("dodvpn demo: a DOD-VPN on one machine (TR §9). Ctrl-C stops it and removes everything it made.");
    let lab = tokio::task::spawn_blocking({
        let work = work.clone();
        move || Lab::build(work, SITES)
    })
    .await??;
    let cleanup = lab.clone();
    let mut lab2 = lab.clone();
    let args2 = args.clone();
    let scenario = tokio::task::spawn_blocking(move || {
        let mut report = Report::default();
        let r = scenario(&mut lab2, &args2, &mut report);
        (r, report)
    });
    let outcome = tokio::select! {
        r = scenario => Some(r?),
        _ = crate::shutdown_signal() => None,
    };
    let Some((r, report)) = outcome else {
        println!("\nstopping: removing namespaces and processes");
        cleanup.cleanup(keep);
        println!(
            "stopped; nothing left behind{}",
            if keep {
                format!(" but {}", work.display())
            } else {
                String::new()
            }
        );
        // The scenario thread cannot be interrupted mid-step; leave without it.
        std::process::exit(130);
    };
    println!(
        "\n{} checks passed, {} failed",
        report.passed,
        report.failed.len()
    );
    for f in &report.failed {
        println!("  failed: {f}");
    }
    if let Err(e) = &r {
        println!("the demo stopped early: {e:#}");
    }
    println!("audit log: `dodvpn admin audit list` against {} (database {}/center/center.db); API description at {}/openapi.json",
        lab.center_url, work.display(), lab.center_url);
    if !args.exit && r.is_ok() {
        println!("everything stays up for you to explore (e.g. `ip netns exec {} ping {}`); Ctrl-C to stop", lab.site("clinic").ns, lab.site("hosp").host());
        crate::shutdown_signal().await;
    }
    cleanup.cleanup(keep);
    if keep {
        println!("kept {}", work.display());
    }
    r?;
    if !report.failed.is_empty() {
        anyhow::bail!(
            "{} of {} checks failed",
            report.failed.len(),
            report.passed + report.failed.len()
        );
    }
    Ok(())
}
