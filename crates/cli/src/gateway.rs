//! `dodvpn gateway run` (the gateway centre's node, R-SVC-1) and
//! `dodvpn admin gateway …` (its nodes, categories, applications, decisions and logs).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use dodvpn_agent::CenterClient;
use ipnet::IpNet;
use serde_json::{json, Value};

use crate::keystore;

#[derive(Subcommand)]
pub enum GatewayCmd {
    /// Run a gateway node: the agent (enrolled like a site: device certificate, then
    /// service certificate; its tunnels and firewall) and an HTTP forward proxy
    /// (CONNECT + plain HTTP) on tunnel-side addresses only. Member sites with a grant to
    /// this device reach it over their tunnels; nothing else does. Needs root.
    Run(RunArgs),
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    ks: keystore::KeyStoreArgs,
    /// Override the centre URL stored at enrolment.
    #[arg(long, env = "DODVPN_CENTER")]
    center: Option<String>,
    /// Tunnel-side address and port to serve the proxy on (this node's site address,
    /// e.g. 10.99.0.1:3128); repeatable. An unspecified address is refused.
    #[arg(long, required = true)]
    listen: Vec<SocketAddr>,
    /// A range the proxy never dials besides the special-purpose ones (the VPN's address
    /// plan, the provider's own networks); repeatable. The ranges in this node's grants
    /// and its listen addresses are always included.
    #[arg(long, value_name = "NET")]
    internal: Vec<IpNet>,
    /// A special-purpose range the provider knowingly lets the proxy dial (its own
    /// DMZ, a test network); repeatable. Never overrides --internal.
    #[arg(long, value_name = "NET")]
    permit: Vec<IpNet>,
    /// Where the request log is written (one file per UTC day).
    #[arg(long, default_value = "/var/log/dodvpn-gateway")]
    log_dir: PathBuf,
    /// Days of request log kept on this node.
    #[arg(long, default_value_t = 400)]
    log_days: u32,
    /// Connections served at once; one more is answered 503.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Time a client has to send its request head (and, after CONNECT, its ClientHello).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    head_timeout: Duration,
    /// TUN interface the tunnels use.
    #[arg(long, default_value = "dodvpn0")]
    interface: String,
    #[arg(long, default_value_t = 1400)]
    mtu: u16,
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// Control socket (`dodvpn tunnel status --control PATH`).
    #[arg(long, default_value = "/run/dodvpn/gateway.sock")]
    control: PathBuf,
    /// Outer (untrusted) interface; repeatable. Default: the one that routes to the centre.
    #[arg(long = "outer-interface", value_name = "IFACE")]
    outer_interface: Vec<String>,
}

pub async fn run(cmd: GatewayCmd) -> anyhow::Result<()> {
    let GatewayCmd::Run(a) = cmd;
    let store = a.ks.open()?;
    let agent = dodvpn_agent::sync::Agent::open(store.clone(), a.center.as_deref())?;
    println!(
        "gateway node for device {} (state version {}, {} grants held)",
        agent.device_id,
        agent.state.version,
        agent.state.grants.len()
    );
    let tunnel = dodvpn_agent::tunnels::TunnelOptions {
        interface: a.interface,
        mtu: a.mtu,
        idle_timeout: a.idle_timeout,
        control: a.control,
        ..Default::default()
    };
    let fw = dodvpn_agent::firewall::FirewallOptions {
        outer: a.outer_interface,
        allow_in: vec![],
        allow_out: vec![],
    };
    let say: dodvpn_agent::run::Say = Arc::new(|line| println!("{} {line}", crate::clock()));
    let limits = dodvpn_gateway_node::proxy::Limits {
        max_connections: a.max_connections.max(1),
        head_timeout: a.head_timeout,
        hello_timeout: a.head_timeout,
        ..Default::default()
    };
    let opts = dodvpn_gateway_node::node::NodeOptions {
        listen: a.listen,
        internal: a.internal,
        permit: a.permit,
        log_dir: a.log_dir,
        keep_days: a.log_days.max(1),
        limits,
    };
    tokio::select! {
        r = dodvpn_gateway_node::node::run(agent, store, tunnel, fw, say, opts) => r,
        _ = crate::shutdown_signal() => { println!("stopped"); Ok(()) }
    }
}

#[derive(Subcommand)]
pub enum AdminGatewayCmd {
    /// Gateway nodes (provider): make a registered device one, or list them.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Provider-kept categories of sites, e.g. update servers (TR C 3-6-1).
    #[command(subcommand)]
    Category(CategoryCmd),
    /// An organisation's gateway settings: categories opted into, user authentication.
    Settings {
        #[arg(long)]
        org: String,
        /// Opt into this category; repeatable. Without --category/--user-auth: show.
        #[arg(long)]
        category: Vec<String>,
        /// device (the tunnel's device identity) | password (Proxy-Authorization
        /// against the organisation's console accounts, TR C 4-8-2).
        #[arg(long)]
        user_auth: Option<String>,
    },
    /// Apply for a site on behalf of the organisation, with a reason.
    Apply {
        #[arg(long)]
        org: String,
        /// host[:port], *.domain[:port] or http://host[:port]/prefix
        #[arg(long)]
        entry: String,
        #[arg(long)]
        reason: String,
    },
    /// The organisation's applications.
    List {
        #[arg(long)]
        org: String,
        /// pending | approved | refused | withdrawn | expired
        #[arg(long)]
        status: Option<String>,
    },
    /// Approve a pending application, with an expiry (security officer or provider).
    Approve {
        id: String,
        #[arg(long)]
        org: String,
        /// The approval ends after this long (e.g. 30d, 90s); at most 366 days.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Duration,
        #[arg(long)]
        note: Option<String>,
    },
    /// Refuse a pending application.
    Refuse {
        id: String,
        #[arg(long)]
        org: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Withdraw an application or an approval: the site is removed at once.
    Withdraw {
        id: String,
        #[arg(long)]
        org: String,
    },
    /// The organisation's requests through the gateway (its own only).
    Log {
        #[arg(long)]
        org: String,
        #[arg(long)]
        since_ms: Option<i64>,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
}

#[derive(Subcommand)]
pub enum NodeCmd {
    Add { device: String },
    List,
}

#[derive(Subcommand)]
pub enum CategoryCmd {
    /// Create or replace a category.
    Set {
        name: String,
        #[arg(long)]
        title_en: String,
        #[arg(long)]
        title_ja: String,
        /// An allowlist entry; repeatable.
        #[arg(long = "entry")]
        entries: Vec<String>,
    },
    List,
}

pub async fn admin(c: &CenterClient, cmd: AdminGatewayCmd) -> anyhow::Result<Value> {
    Ok(match cmd {
        AdminGatewayCmd::Node(NodeCmd::Add { device }) => {
            c.post("/api/v1/gateway/nodes", &json!({"device_id": device}))
                .await?
        }
        AdminGatewayCmd::Node(NodeCmd::List) => c.get("/api/v1/gateway/nodes").await?,
        AdminGatewayCmd::Category(CategoryCmd::Set {
            name,
            title_en,
            title_ja,
            entries,
        }) => {
            c.put(
                &format!("/api/v1/gateway/categories/{name}"),
                &json!({"title_en": title_en, "title_ja": title_ja, "entries": entries}),
            )
            .await?
        }
        AdminGatewayCmd::Category(CategoryCmd::List) => c.get("/api/v1/gateway/categories").await?,
        AdminGatewayCmd::Settings {
            org,
            category,
            user_auth,
        } => {
            let path = format!("/api/v1/orgs/{org}/gateway/settings");
            if category.is_empty() && user_auth.is_none() {
                c.get(&path).await?
            } else {
                c.put(
                    &path,
                    &json!({"categories": category, "user_auth": user_auth.unwrap_or_else(|| "device".into())}),
                )
                .await?
            }
        }
        AdminGatewayCmd::Apply { org, entry, reason } => {
            c.post(
                &format!("/api/v1/orgs/{org}/gateway/applications"),
                &json!({"entry": entry, "reason": reason}),
            )
            .await?
        }
        AdminGatewayCmd::List { org, status } => {
            let q = status.map(|s| format!("?status={s}")).unwrap_or_default();
            c.get(&format!("/api/v1/orgs/{org}/gateway/applications{q}"))
                .await?
        }
        AdminGatewayCmd::Approve {
            id,
            org,
            expires_in,
            note,
        } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let until = (now + expires_in).as_millis() as i64;
            c.post(
                &format!("/api/v1/orgs/{org}/gateway/applications/{id}/decision"),
                &json!({"approve": true, "expires_ms": until, "note": note}),
            )
            .await?
        }
        AdminGatewayCmd::Refuse { id, org, note } => {
            c.post(
                &format!("/api/v1/orgs/{org}/gateway/applications/{id}/decision"),
                &json!({"approve": false, "note": note}),
            )
            .await?
        }
        AdminGatewayCmd::Withdraw { id, org } => {
            c.post(
                &format!("/api/v1/orgs/{org}/gateway/applications/{id}/withdraw"),
                &json!({}),
            )
            .await?
        }
        AdminGatewayCmd::Log {
            org,
            since_ms,
            limit,
        } => {
            c.get(&format!(
                "/api/v1/orgs/{org}/gateway/log?since_ms={}&limit={limit}",
                since_ms.unwrap_or(0)
            ))
            .await?
        }
    })
}
