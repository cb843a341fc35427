//! `dodvpn gateway run`: the agent (enrolled like a site, its tunnels and firewall)
//! with the proxy beside it, bound only to tunnel-side addresses. The centre's policy
//! is fetched at start, again at each `gateway.policy` push and every minute; the
//! request log goes to the centre as it grows and as a daily digest.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use dodvpn_agent::run::Say;
use dodvpn_agent::sync::{Agent, SyncState, Update};
use dodvpn_agent::CenterClient;
use dodvpn_gateway::feed::{
    GatewayPolicy, LogBatch, UserCheck as UserCheckBody, UserCheckAnswer, DIGEST_PATH, LOG_PATH,
    POLICY_EVENT, POLICY_PATH, USER_CHECK_PATH,
};
use dodvpn_gateway::DialPolicy;
use dodvpn_pki::KeyStore;
use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::log::{utc_day, RequestLog};
use crate::members::Members;
use crate::proxy::{now_ms, serve, Limits, Shared, UserCheck};

pub struct NodeOptions {
    /// Tunnel-side addresses to serve on (never an unspecified address).
    pub listen: Vec<SocketAddr>,
    /// Ranges the proxy never dials besides the special ones (the VPN's, the provider's).
    pub internal: Vec<IpNet>,
    /// Special ranges the provider knowingly lets the proxy dial (a DMZ, a test network).
    pub permit: Vec<IpNet>,
    pub log_dir: std::path::PathBuf,
    pub keep_days: u32,
    pub limits: Limits,
}

/// How often the policy is fetched without a push, and the log sent.
const POLICY_REFRESH: Duration = Duration::from_secs(60);
const LOG_SEND: Duration = Duration::from_secs(2);

struct CentreUsers(CenterClient);

impl UserCheck for CentreUsers {
    fn check<'a>(
        &'a self,
        org_id: &'a str,
        user: &'a str,
        password: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<bool>> + Send + 'a>>
    {
        Box::pin(async move {
            let a: UserCheckAnswer = self
                .0
                .post(
                    USER_CHECK_PATH,
                    &UserCheckBody {
                        org_id: org_id.into(),
                        user: user.into(),
                        password: password.into(),
                    },
                )
                .await?;
            Ok(a.ok)
        })
    }
}

fn members_now(st: &SyncState) -> Members {
    Members::from_state(st, now_ms() / 1000)
}

/// Bind every listen address, refusing any that would face the open network.
pub async fn bind(listen: &[SocketAddr]) -> anyhow::Result<Vec<TcpListener>> {
    if listen.is_empty() {
        bail!("name the tunnel-side address to serve on with --listen ADDR:PORT");
    }
    let mut out = Vec::new();
    for a in listen {
        if a.ip().is_unspecified() {
            bail!(
                "--listen {a}: an unspecified address would serve the open network; name this node's tunnel-side address / 未指定アドレスでは待ち受けできません"
            );
        }
        out.push(
            TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a}"))?,
        );
    }
    Ok(out)
}

async fn fetch_policy(client: &CenterClient, shared: &Shared, say: &Say) {
    match client.get::<GatewayPolicy>(POLICY_PATH).await {
        Ok(p) => {
            let (v, orgs) = (p.version, p.orgs.len());
            if shared.set_policy(p) {
                say(format!(
                    "gateway policy version {v} in force ({orgs} organisations)"
                ));
            }
        }
        Err(e) => say(format!(
            "cannot fetch the gateway policy ({e:#}); keeping version {}",
            shared.policy_version()
        )),
    }
}

async fn send_logs(client: &CenterClient, log: &RequestLog) -> anyhow::Result<()> {
    while let Some((day, records, offset)) = log.unsent()? {
        if !records.is_empty() {
            let _: serde_json::Value = client.post(LOG_PATH, &LogBatch { records }).await?;
        }
        log.mark_sent(&day, offset)?;
    }
    Ok(())
}

async fn send_digests(client: &CenterClient, log: &RequestLog, say: &Say) -> anyhow::Result<()> {
    for d in log.digests_due(&utc_day(now_ms()))? {
        let _: serde_json::Value = client.post(DIGEST_PATH, &d).await?;
        log.mark_digested(&d)?;
        say(format!(
            "request log of {} ({} records, sha256 {}) is in the centre's audit chain",
            d.day, d.records, d.sha256
        ));
    }
    Ok(())
}

pub async fn run(
    agent: Agent,
    store: Arc<dyn KeyStore>,
    tunnel: dodvpn_agent::tunnels::TunnelOptions,
    fw: dodvpn_agent::firewall::FirewallOptions,
    say: Say,
    opts: NodeOptions,
) -> anyhow::Result<()> {
    let listeners = bind(&opts.listen).await?;
    let mut internal = opts.internal.clone();
    internal.extend(opts.listen.iter().map(|a| IpNet::from(a.ip())));
    let dial = DialPolicy {
        internal,
        permitted: opts.permit.clone(),
    };
    let log = RequestLog::open(&opts.log_dir, opts.keep_days)?;
    let client = agent.client.clone();
    let shared = Shared::new(
        dial,
        log,
        Arc::new(CentreUsers(client.clone())),
        opts.limits.clone(),
    );
    shared.set_members(members_now(&agent.state));
    fetch_policy(&client, &shared, &say).await;
    let refetch = Arc::new(Notify::new());
    let observer: dodvpn_agent::run::Observer = {
        let (shared, refetch) = (shared.clone(), refetch.clone());
        Arc::new(move |u: &Update, st: &SyncState| {
            if let Update::Other { kind, .. } = u {
                if kind == POLICY_EVENT {
                    refetch.notify_one();
                }
            }
            if !matches!(u, Update::Witness(_) | Update::WitnessUnavailable { .. }) {
                shared.set_members(members_now(st));
            }
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    for l in listeners {
        say(format!(
            "gateway proxy listening on {} (tunnel side only; at most {} connections)",
            l.local_addr()?,
            opts.limits.max_connections
        ));
        tasks.spawn(serve(l, shared.clone()));
    }
    {
        let (client, shared, say) = (client.clone(), shared.clone(), say.clone());
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = refetch.notified() => {}
                    _ = tokio::time::sleep(POLICY_REFRESH) => {}
                }
                fetch_policy(&client, &shared, &say).await;
            }
        });
    }
    {
        let (shared, say) = (shared.clone(), say.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if shared.expire() {
                    say("an approved site expired: removed from the allowlist".into());
                }
            }
        });
    }
    {
        let (client, shared, say) = (client.clone(), shared.clone(), say.clone());
        tasks.spawn(async move {
            let mut logs = tokio::time::interval(LOG_SEND);
            loop {
                logs.tick().await;
                // A day is digested once all its records are in the centre.
                let sent = send_logs(&client, &shared.log).await;
                if let Err(e) = &sent {
                    tracing::debug!("request log not sent now: {e:#}");
                }
                if sent.is_ok() {
                    if let Err(e) = send_digests(&client, &shared.log, &say).await {
                        say(format!("request log digest not accepted now: {e:#}"));
                    }
                }
            }
        });
    }
    let r = dodvpn_agent::run::run_observed(agent, store, tunnel, fw, say, Some(observer)).await;
    tasks.abort_all();
    r
}
