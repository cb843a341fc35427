//! `dodvpn`: one binary for the centre, the device agent and the administrator CLI.

mod admin;
mod assets;
mod audit_check;
mod backup;
mod config;
mod demo;
mod diagnose;
mod gateway;
mod keystore;
mod message;
mod metrics;
mod output;
mod relay;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "dodvpn",
    version,
    about = "Dynamic On-Demand VPN for health networks (ISO/TR 11636)",
    long_about = "dodvpn runs the provider's centre (PKI, enrolment, groups, policy, connection info, push, audit), \
the VPN device agent, and the administrator CLI that drives every registration step of TR D.6 (a–l)."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the provider's centre (control plane). Initialises DATA on first start.
    Center(CenterArgs),
    /// Administrator commands against a running centre (TR D.6 steps a–l, policy, audit).
    Admin(admin::AdminArgs),
    /// Device-provider commands that touch a device's key store.
    Device {
        #[command(subcommand)]
        cmd: DeviceCmd,
    },
    /// Static IPsec connections (IKEv2 + ESP, userspace over TUN + UDP) from a TOML
    /// file; `dodvpn tunnel status` lists the SAs with their counters.
    Tunnel(TunnelArgs),
    /// The TR §9 network on this machine (as root): a centre and six sites in network
    /// namespaces, enrolled for real, showing on-demand tunnels, group isolation, a vendor
    /// maintenance window and a revocation, with live progress. Ctrl-C cleans up.
    Demo(demo::DemoArgs),
    /// Auditor's tools that need no centre: `dodvpn audit check BUNDLE`.
    Audit {
        #[command(subcommand)]
        cmd: audit_check::AuditTopCmd,
    },
    /// Exposure diagnosis of an organisation's registered public addresses (R-SVC-5):
    /// open ports, banners, anonymous FTP, open proxies, DNS recursion/AXFR/version,
    /// echo/chargen/daytime, old TLS, exposed RDP/VNC/telnet/SMB. Non-destructive and
    /// rate-limited; refuses any address not registered to the organisation; results are
    /// posted to the centre and compared with the previous run.
    Diagnose(diagnose::DiagnoseArgs),
    /// Secure messages between members (R-SVC-4): signed with this device's service key,
    /// encrypted to the recipients' mailbox keys (standard CMS, AES-256-GCM); the centre
    /// stores ciphertext only. publish | send | list | fetch | open | delete.
    Message {
        #[command(subcommand)]
        cmd: message::MessageCmd,
    },
    /// The gateway centre's node (R-SVC-1): allowlisted, approved Internet access for
    /// member sites, over their tunnels only.
    Gateway {
        #[command(subcommand)]
        cmd: gateway::GatewayCmd,
    },
    /// The provider relay (issue 19): forwards IKE and ESP-in-UDP between two sites
    /// that cannot reach each other directly, as bound by the centre; holds no keys.
    Relay(relay::RelayArgs),
    /// The VPN device agent.
    Agent {
        #[command(subcommand)]
        cmd: AgentCmd,
    },
    /// Write the man pages and shell completions into DIR (scripts/package-deb.sh).
    #[command(hide = true)]
    GenerateAssets { dir: PathBuf },
}

#[derive(Parser)]
#[command(args_conflicts_with_subcommands = true)]
struct CenterArgs {
    /// Without a subcommand: run the centre.
    #[command(subcommand)]
    op: Option<backup::CenterOp>,
    /// Data directory: PKI, SQLite database, admin credential. Created on first start.
    #[arg(long, env = "DODVPN_DATA", default_value = "./dodvpn-center")]
    data: PathBuf,
    /// Address to serve HTTPS on.
    #[arg(long, env = "DODVPN_LISTEN", default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Database URL: sqlite://FILE (default: DATA/center.db) or postgres://USER@HOST:PORT/DB for replicas.
    #[arg(long, env = "DODVPN_DATABASE_URL")]
    database: Option<String>,
    /// Extra DNS names or IP addresses for the centre's TLS certificate (first start only).
    #[arg(long = "tls-name")]
    tls_names: Vec<String>,
    #[command(flatten)]
    config: config::ConfigArgs,
    #[command(flatten)]
    metrics: metrics::MetricsArgs,
}

#[derive(Parser)]
#[command(args_conflicts_with_subcommands = true)]
struct TunnelArgs {
    /// The tunnel configuration (TOML; see README.md, "Static tunnels").
    #[arg(long, required = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Option<TunnelCmd>,
}

#[derive(Subcommand)]
enum TunnelCmd {
    /// List connections and SAs with byte and packet counts.
    Status {
        /// The daemon's control socket (`control` in its configuration).
        #[arg(long, default_value = "/run/dodvpn/tunnel.sock")]
        control: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Delete the IKE SAs (and their child SAs) of one connection, or of all. Trap
    /// connections come back up at the next packet.
    Down {
        /// The connection's `name`; every connection when absent.
        conn: Option<String>,
        /// The daemon's control socket (`control` in its configuration).
        #[arg(long, default_value = "/run/dodvpn/tunnel.sock")]
        control: PathBuf,
    },
}

#[derive(Subcommand)]
enum DeviceCmd {
    /// TR D.6 d–e: generate the tier-1 key inside the key store and install the device
    /// certificate issued for it by the device CA. Run by the device provider.
    Provision {
        #[command(flatten)]
        conn: admin::Conn,
        #[command(flatten)]
        ks: keystore::KeyStoreArgs,
        /// The registered device's id (from `dodvpn admin device register`).
        #[arg(long)]
        device: String,
    },
}

#[derive(Subcommand)]
enum AgentCmd {
    /// TR D.6 i–j: authenticate with the device certificate and obtain a service
    /// certificate for a separate tier-2 key. With --csr, for a standard IKEv2 router
    /// that keeps its own key: the router's certificate request is submitted instead and
    /// the certificate written to --cert-out (the key store holds only the tier-1 key).
    Enroll {
        #[command(flatten)]
        ks: keystore::KeyStoreArgs,
        /// The centre's URL, e.g. https://centre.example:8443
        #[arg(long, env = "DODVPN_CENTER")]
        center: String,
        /// A PKCS#10 certificate request (PEM or DER) made on the router, e.g. with
        /// strongSwan `pki --req --type priv --in KEY --dn "CN=…" --san <device-id>.dodvpn`.
        #[arg(long, requires = "cert_out")]
        csr: Option<PathBuf>,
        /// Where to write the issued service certificate (PEM) for the router.
        #[arg(long, requires = "csr")]
        cert_out: Option<PathBuf>,
        /// Where to write the service CA certificate (PEM) that every peer's certificate
        /// is issued by (default: service-ca.pem next to --cert-out).
        #[arg(long, requires = "csr")]
        ca_out: Option<PathBuf>,
        /// Where to write the root CA certificate (PEM) above the service CA; strongSwan
        /// needs the chain up to it (default: root-ca.pem next to the service CA).
        #[arg(long, requires = "csr")]
        root_out: Option<PathBuf>,
    },
    /// TR D.6 k: apply to connect to a peer device or to a group.
    Connect {
        #[command(flatten)]
        ks: keystore::KeyStoreArgs,
        /// Peer device id.
        #[arg(long, conflicts_with = "group", required_unless_present = "group")]
        to: Option<String>,
        /// Every other member of this group.
        #[arg(long)]
        group: Option<String>,
        /// What the connection is for (shown in both organisations' ledgers).
        #[arg(long)]
        purpose: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Run the VPN device: keep the event stream to the centre, install every grant's
    /// connection info, bring tunnels up on the first packet and down when idle. Needs
    /// root (TUN device, UDP 500/4500). With the centre away, tunnels keep working
    /// from the last signed connection info held in the key store.
    Run {
        #[command(flatten)]
        ks: keystore::KeyStoreArgs,
        /// Override the centre URL stored at enrolment.
        #[arg(long, env = "DODVPN_CENTER")]
        center: Option<String>,
        /// TUN interface the tunnels use.
        #[arg(long, default_value = "dodvpn0")]
        interface: String,
        /// Inner MTU of the TUN interface.
        #[arg(long, default_value_t = 1400)]
        mtu: u16,
        /// Tunnels idle this long are deleted (and come back on the next packet).
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        idle_timeout: std::time::Duration,
        /// Control socket (`dodvpn tunnel status --control PATH` reads the SAs).
        #[arg(long, default_value = "/run/dodvpn/agent.sock")]
        control: PathBuf,
        /// Only keep the connection info current; no data plane (no root needed).
        #[arg(long)]
        sync_only: bool,
        /// Outer (untrusted) interface of this gateway; repeatable. Default: the one that
        /// routes to the centre. From it only this gateway's own address and the tunnels
        /// are reachable, and nothing is forwarded to it (nftables table inet dodvpn_agent).
        #[arg(long = "outer-interface", value_name = "IFACE")]
        outer_interface: Vec<String>,
        /// Let outside hosts reach an inside destination around the tunnels: NET[,SERVICE]
        /// (e.g. 10.1.0.80,tcp/443). Repeatable; nothing is allowed by default.
        #[arg(long, value_name = "NET[,SERVICE]")]
        allow_in: Vec<dodvpn_agent::firewall::Allow>,
        /// Let inside hosts reach an outside destination through this gateway:
        /// NET[,SERVICE] (e.g. 0.0.0.0/0,tcp/443). Repeatable; nothing by default.
        #[arg(long, value_name = "NET[,SERVICE]")]
        allow_out: Vec<dodvpn_agent::firewall::Allow>,
        #[command(flatten)]
        config: config::ConfigArgs,
        #[command(flatten)]
        metrics: metrics::MetricsArgs,
    },
    /// Show what the agent holds: identity, version, connection info.
    Status {
        #[command(flatten)]
        ks: keystore::KeyStoreArgs,
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            // Default: warnings, plus the SA lifecycle lines of IKE and the tunnel daemon
            // (up, rekey, down, refusals) that an operator needs (docs/interop.md).
            tracing_subscriber::EnvFilter::try_from_env("DODVPN_LOG")
                .unwrap_or_else(|_| "warn,dodvpn_tunnel=info,dodvpn_ike=info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour only for a terminal: a log file or journal gets plain, greppable text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // The flags, merged with a configuration file where the command takes --config.
    let cli: Cli = config::parse_cli();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Center(CenterArgs { op: Some(op), .. }) => backup::run(op).await,
        Cmd::Center(a) => run_center(a).await,
        Cmd::Admin(a) => admin::run(a).await,
        Cmd::Audit { cmd } => audit_check::run(cmd),
        Cmd::Device {
            cmd: DeviceCmd::Provision { conn, ks, device },
        } => {
            let client = conn.client()?;
            let store = ks.open()?;
            let ca = conn.ca_pem()?;
            eprintln!("provisioning device {device} in {} …", store.describe());
            let p = dodvpn_agent::enroll::provision(&client, &ca, store.as_ref(), &device).await?;
            println!(
                "device certificate installed: serial {} fingerprint {}{}",
                p.serial,
                p.fingerprint,
                if p.recovered {
                    " (recovered after an interrupted run)"
                } else {
                    ""
                }
            );
            Ok(())
        }
        Cmd::Agent { cmd } => run_agent(cmd).await,
        Cmd::Gateway { cmd } => gateway::run(cmd).await,
        Cmd::Relay(a) => tokio::task::spawn_blocking(move || relay::run(a)).await?,
        Cmd::Tunnel(t) => run_tunnel(t).await,
        Cmd::Demo(a) => demo::run(a).await,
        Cmd::Diagnose(a) => diagnose::run(a).await,
        Cmd::Message { cmd } => message::run(cmd).await,
        Cmd::GenerateAssets { dir } => assets::generate(&dir),
    }
}

async fn run_tunnel(t: TunnelArgs) -> anyhow::Result<()> {
    use dodvpn_tunnel::control::{request, Request};
    match t.cmd {
        Some(TunnelCmd::Status { control, json }) => {
            let v = request(&control, &Request::Status)?;
            if json {
                output::print(&v, true);
            } else {
                print_tunnel_status(&v);
            }
            return Ok(());
        }
        Some(TunnelCmd::Down { conn, control }) => {
            let v = request(&control, &Request::Down { conn })?;
            println!("deleted {} IKE SA(s)", v["deleted_ike_sas"]);
            return Ok(());
        }
        None => {}
    }
    let path = t.config.context("--config is required")?;
    let cfg = dodvpn_tunnel::TunnelConfig::load(&path)?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let daemon = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut d = dodvpn_tunnel::daemon::Daemon::start(&cfg)?;
        dodvpn_tunnel::control::serve(&cfg.control, d.handle())?;
        println!(
            "tunnel up on {} with {} connection(s); status: dodvpn tunnel status --control {}",
            d.interface(),
            cfg.connections.len(),
            cfg.control.display()
        );
        println!("ready");
        d.run(&|| flag.load(std::sync::atomic::Ordering::Relaxed));
        // Tell every peer before we go (RFC 7296 §1.4.1), so none keeps a stale SA.
        let n = d.shutdown(dodvpn_tunnel::daemon::SHUTDOWN_WAIT);
        println!(
            "deleted {n} IKE SA(s), the peers told / IKE SA を {n} 件削除し、相手に通知しました"
        );
        Ok(())
    });
    let mut daemon = daemon;
    tokio::select! {
        r = &mut daemon => r.context("tunnel daemon failed")?,
        _ = shutdown_signal() => {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            println!("stopping: deleting the IKE SAs / 停止します: IKE SA を削除しています");
            // The loop notices within a tick, then waits at most SHUTDOWN_WAIT.
            let limit = dodvpn_tunnel::daemon::SHUTDOWN_WAIT + std::time::Duration::from_secs(2);
            match tokio::time::timeout(limit, daemon).await {
                Ok(r) => r.context("tunnel daemon failed")?,
                Err(_) => Ok(()),
            }
        }
    }
}

fn print_tunnel_status(v: &serde_json::Value) {
    println!("interface {}", v["interface"].as_str().unwrap_or("?"));
    for c in v["connections"].as_array().into_iter().flatten() {
        println!(
            "{}: {} to {}{}",
            c["name"].as_str().unwrap_or("?"),
            c["state"].as_str().unwrap_or("?"),
            c["remote"].as_str().unwrap_or("?"),
            c["ike_sa"]
                .as_str()
                .map(|s| format!(", IKE SA {s}"))
                .unwrap_or_default()
        );
        for ch in c["children"].as_array().into_iter().flatten() {
            println!(
                "  child {}/{} {}: in {} bytes {} packets, out {} bytes {} packets, up {} s, idle {} s",
                ch["spi_in"].as_str().unwrap_or("?"),
                ch["spi_out"].as_str().unwrap_or("?"),
                ch["remote"],
                ch["bytes_in"],
                ch["packets_in"],
                ch["bytes_out"],
                ch["packets_out"],
                ch["age_secs"],
                ch["idle_secs"]
            );
        }
        if let Some(e) = c["last_error"].as_str() {
            println!("  last error: {e}");
        }
    }
    for d in v["drops"].as_array().into_iter().flatten() {
        println!("drop {} {}", d[0].as_str().unwrap_or("?"), d[1]);
    }
}

async fn run_center(a: CenterArgs) -> anyhow::Result<()> {
    a.metrics.check()?;
    let cfg = dodvpn_center::CenterConfig {
        data_dir: a.data.clone(),
        listen: a.listen,
        database_url: a.database.clone(),
        tls_names: a.tls_names.clone(),
    };
    let listener = dodvpn_center::server::bind(a.listen).await?;
    let (center, report) = dodvpn_center::init::open(&cfg).await?;
    // The web console (crates/console) under /console on the same port; its first
    // provider administrator comes from a one-time code written like admin.token.
    let setup_code = dodvpn_console::bootstrap(&center, &a.data).await?;
    let prepared = dodvpn_center::server::prepare_with(
        center.clone(),
        dodvpn_console::api_routes(),
        dodvpn_console::router(center.clone()),
    )?;
    println!(
        "dodvpn centre {} in {}",
        if report.created {
            "initialised"
        } else {
            "started"
        },
        a.data.display()
    );
    for (what, where_) in &report.lines {
        println!("  {what:<28} {where_}");
    }
    println!(
        "  {:<28} https://{}/",
        "API",
        listener.local_addr().unwrap_or(a.listen)
    );
    println!(
        "  {:<28} https://{}/openapi.json",
        "OpenAPI",
        listener.local_addr().unwrap_or(a.listen)
    );
    println!(
        "  {:<28} https://{}/console/",
        "console / コンソール",
        listener.local_addr().unwrap_or(a.listen)
    );
    if let Some(p) = &setup_code {
        println!(
            "  {:<28} {} (one-time: open /console/setup / 初回のみ /console/setup で使用)",
            "console first admin code",
            p.display()
        );
    }
    metrics::start_center(&a.metrics, center).await?;
    println!("ready");
    let server = tokio::spawn(dodvpn_center::server::serve(prepared, listener));
    tokio::select! {
        r = server => r.context("server task failed")?,
        _ = shutdown_signal() => {
            println!("shutting down");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

async fn run_agent(cmd: AgentCmd) -> anyhow::Result<()> {
    match cmd {
        AgentCmd::Enroll {
            ks,
            center,
            csr: Some(csr),
            cert_out: Some(cert_out),
            ca_out,
            root_out,
        } => {
            let bytes = std::fs::read(&csr).with_context(|| {
                format!("cannot read the certificate request {}", csr.display())
            })?;
            let req = dodvpn_agent::enroll::parse_router_csr(&bytes)
                .with_context(|| format!("{} refused", csr.display()))?;
            let store = ks.open()?;
            eprintln!(
                "enrolling the key of {} with {center} using the device certificate in {} …",
                csr.display(),
                store.describe()
            );
            let e = dodvpn_agent::enroll::enroll_for_csr(&center, store, &req).await?;
            let ca_out = ca_out.unwrap_or_else(|| cert_out.with_file_name("service-ca.pem"));
            let root_out = root_out.unwrap_or_else(|| ca_out.with_file_name("root-ca.pem"));
            for (path, text) in [
                (&cert_out, &e.certificate),
                (&ca_out, &e.service_ca),
                (&root_out, &e.root_ca),
            ] {
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, text)
                    .with_context(|| format!("cannot write {}", tmp.display()))?;
                std::fs::rename(&tmp, path)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            println!(
                "enrolled: device {} service certificate serial {} fingerprint {}{}\n  certificate: {}\n  service CA:  {}\n  root CA:     {}\n  IKE identity: {}",
                e.device_id,
                e.serial,
                e.fingerprint,
                if e.recovered {
                    " (recovered after an interrupted run)"
                } else {
                    ""
                },
                cert_out.display(),
                ca_out.display(),
                root_out.display(),
                e.identity
            );
            Ok(())
        }
        AgentCmd::Enroll { ks, center, .. } => {
            let store = ks.open()?;
            eprintln!(
                "enrolling with {center} using the device certificate in {} …",
                store.describe()
            );
            let e = dodvpn_agent::enroll::enroll(&center, store).await?;
            println!(
                "enrolled: device {} service certificate serial {} fingerprint {}{}",
                e.device_id,
                e.serial,
                e.fingerprint,
                if e.recovered {
                    " (recovered after an interrupted run)"
                } else {
                    ""
                }
            );
            Ok(())
        }
        AgentCmd::Connect {
            ks,
            to,
            group,
            purpose,
            json,
        } => {
            let store = ks.open()?;
            let agent = dodvpn_agent::sync::Agent::open(store, None)?;
            let body = serde_json::json!({"to_device": to, "to_group": group, "purpose": purpose});
            let res: serde_json::Value = agent
                .client
                .post("/api/v1/device/connections", &body)
                .await?;
            output::application(&res, json)
        }
        AgentCmd::Run {
            ks,
            center,
            interface,
            mtu,
            idle_timeout,
            control,
            sync_only,
            outer_interface,
            allow_in,
            allow_out,
            config: _,
            metrics,
        } => {
            let metrics = metrics::start_agent(&metrics).await?;
            let store = ks.open()?;
            let mut agent = dodvpn_agent::sync::Agent::open(store.clone(), center.as_deref())?;
            if !sync_only {
                println!(
                    "agent for device {} (state version {}, {} grants held)",
                    agent.device_id,
                    agent.state.version,
                    agent.state.grants.len()
                );
                let opts = dodvpn_agent::tunnels::TunnelOptions {
                    interface,
                    mtu,
                    idle_timeout,
                    control,
                    metrics,
                    ..Default::default()
                };
                let say: dodvpn_agent::run::Say = Arc::new(|line| {
                    println!("{} {line}", clock());
                });
                let fw = dodvpn_agent::firewall::FirewallOptions {
                    outer: outer_interface,
                    allow_in,
                    allow_out,
                };
                return tokio::select! {
                    r = dodvpn_agent::run::run(agent, store, opts, fw, say) => r,
                    _ = shutdown_signal() => { println!("stopped"); Ok(()) }
                };
            }
            println!(
                "agent for device {} (state version {})",
                agent.device_id, agent.state.version
            );
            let mut on = |u: &dodvpn_agent::sync::Update, st: &dodvpn_agent::sync::SyncState| {
                use dodvpn_agent::sync::Update::*;
                if let Some(m) = &metrics {
                    m.on_update(u, st);
                }
                match u {
                    Connected { version } => println!(
                        "connected to the centre, resuming after event {version}; {} grants held",
                        st.grants.len()
                    ),
                    GrantInstalled {
                        grant_id,
                        peer,
                        version,
                    } => println!("grant {grant_id} to {peer} installed (version {version})"),
                    GrantRemoved { grant_id, reason } => {
                        println!("grant {grant_id} removed: {reason}")
                    }
                    PolicyChanged { seq } => println!("policy changed (event {seq})"),
                    Revoked => println!("this device has been REVOKED"),
                    SessionCut { session_id, reason } => {
                        println!("session {session_id} cut by an operator: {reason}")
                    }
                    WindowEnding {
                        approval,
                        seconds_left,
                    } => eprintln!(
                        "{}",
                        dodvpn_agent::sync::window_ending_message(approval, *seconds_left)
                    ),
                    // Sync only (no data plane): nothing to punch or relay here.
                    Introduce { peer, .. } => println!("introduced to {peer}"),
                    Relay { peer, relay, .. } => println!("relay {relay} allocated for {peer}"),
                    Other { seq, kind } => println!("event {seq}: {kind}"),
                    Witness(o @ dodvpn_agent::witness::Outcome::Alarm { .. }) => {
                        eprintln!("{}", dodvpn_agent::witness::describe(o))
                    }
                    Witness(o) => println!("{}", dodvpn_agent::witness::describe(o)),
                    WitnessUnavailable { error } => {
                        eprintln!("audit checkpoint not witnessed now ({error}) / 監査チェックポイントを今は確認できません")
                    }
                    Disconnected { error, retry_in } => {
                        eprintln!("centre unreachable ({error}); retrying in {retry_in:?}")
                    }
                }
            };
            let on: &mut (dyn FnMut(&dodvpn_agent::sync::Update, &dodvpn_agent::sync::SyncState)
                      + Send) = &mut on;
            tokio::select! {
                r = agent.run(on) => r,
                _ = shutdown_signal() => { println!("stopped"); Ok(()) }
            }
        }
        AgentCmd::Status { ks, json } => {
            let store: Arc<dyn dodvpn_pki::KeyStore> = ks.open()?;
            let cfg = dodvpn_agent::enroll::load_config(store.as_ref())?;
            let st = dodvpn_agent::sync::SyncState::load(store.as_ref())?;
            let v = serde_json::json!({
                "keystore": store.describe(),
                "device_id": cfg.as_ref().map(|c| c.device_id.clone()),
                "center": cfg.as_ref().map(|c| c.center.clone()),
                "device_certificate": store.cert(dodvpn_pki::Tier::Device)?.is_some(),
                "service_certificate": store.cert(dodvpn_pki::Tier::Service)?.is_some(),
                "version": st.version,
                "revoked": st.revoked,
                "grants": st.grants.values().map(|g| serde_json::json!({
                    "grant_id": g.info.grant_id, "peer": g.info.peer.device_id, "version": g.info.version,
                    "not_after": g.info.not_after,
                })).collect::<Vec<_>>(),
            });
            output::print(&v, json);
            Ok(())
        }
    }
}

/// Wall-clock time of day (UTC) for progress lines.
fn clock() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let s = d.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        d.subsec_millis()
    )
}
