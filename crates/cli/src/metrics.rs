//! `--metrics-listen`, `--metrics-allow` and `--metrics-token-file` of `dodvpn center`
//! and `dodvpn agent run`: where Prometheus scrapes `/metrics` (docs/metrics.md).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use ipnet::IpNet;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics over plain HTTP at http://ADDR/metrics, e.g.
    /// 127.0.0.1:9464. Off unless given: no port is opened that was not asked for.
    #[arg(long, env = "DODVPN_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// A network or address allowed to scrape (repeatable). Default: loopback only;
    /// required when ADDR is reachable from other hosts (0.0.0.0, a LAN address).
    #[arg(long, value_name = "NET", value_parser = parse_net, requires = "metrics_listen")]
    pub metrics_allow: Vec<IpNet>,
    /// A file (mode 0600) holding a token that scrapers must present as
    /// `Authorization: Bearer TOKEN` (Prometheus: `authorization: credentials_file`).
    #[arg(
        long,
        env = "DODVPN_METRICS_TOKEN_FILE",
        value_name = "FILE",
        requires = "metrics_listen"
    )]
    pub metrics_token_file: Option<PathBuf>,
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is neither an address nor a network like 192.0.2.0/24"))
}

impl MetricsArgs {
    fn options(&self) -> Option<dodvpn_metrics::Options> {
        Some(dodvpn_metrics::Options {
            listen: self.metrics_listen?,
            allow: self.metrics_allow.clone(),
            token_file: self.metrics_token_file.clone(),
        })
    }

    /// Refuse options that cannot work before anything else starts (a listener other
    /// hosts reach with a loopback-only allow-list, an unreadable or open token file).
    pub fn check(&self) -> anyhow::Result<()> {
        if let Some(o) = self.options() {
            dodvpn_metrics::Access::from_options(&o)?;
        }
        Ok(())
    }

    fn describe(&self, addr: SocketAddr) -> String {
        let who = if self.metrics_allow.is_empty() {
            "loopback".to_string()
        } else {
            self.metrics_allow
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "http://{addr}/metrics (scrapers: {who}{})",
            if self.metrics_token_file.is_some() {
                ", bearer token"
            } else {
                ""
            }
        )
    }
}

/// Start the centre's metrics listener if asked for, and print where it is.
pub async fn start_center(
    args: &MetricsArgs,
    center: Arc<dodvpn_center::Center>,
) -> anyhow::Result<()> {
    let Some(opts) = args.options() else {
        return Ok(());
    };
    let render: dodvpn_metrics::Render = Arc::new(move || {
        let center = center.clone();
        Box::pin(async move { dodvpn_center::metrics::render(&center).await })
    });
    let addr = dodvpn_metrics::start(&opts, render).await?;
    println!("  {:<28} {}", "metrics", args.describe(addr));
    Ok(())
}

/// Start the agent's metrics listener if asked for; the metrics the tunnels and the
/// sync loop report into.
pub async fn start_agent(
    args: &MetricsArgs,
) -> anyhow::Result<Option<Arc<dodvpn_agent::metrics::AgentMetrics>>> {
    let Some(opts) = args.options() else {
        return Ok(None);
    };
    let metrics = Arc::new(dodvpn_agent::metrics::AgentMetrics::new());
    let m = metrics.clone();
    let render: dodvpn_metrics::Render = Arc::new(move || {
        let m = m.clone();
        Box::pin(async move { m.render().await })
    });
    let addr = dodvpn_metrics::start(&opts, render).await?;
    println!("metrics: {}", args.describe(addr));
    Ok(Some(metrics))
}
