//! The forward proxy itself: CONNECT for HTTPS (the ClientHello is peeked, never
//! decrypted) and absolute-form plain HTTP. Every decision comes from
//! `dodvpn-gateway`; this file only moves bytes, with limits on everything a client
//! controls: connections at once, head size, time to send the head and the
//! ClientHello. Each request ends in exactly one log record.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use dodvpn_gateway::feed::{GatewayPolicy, LogRecord, Outcome, UserAuth};
use dodvpn_gateway::{ip_literal, normal_host, DialPolicy, ProxyRequest, Sni, Target, Verdict};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::log::RequestLog;
use crate::members::{Member, Members};
use crate::page;
use crate::policy::Compiled;

/// A Proxy-Authorization checked against the console's accounts (via the centre).
pub trait UserCheck: Send + Sync {
    fn check<'a>(
        &'a self,
        org_id: &'a str,
        user: &'a str,
        password: &'a str,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<bool>> + Send + 'a>>;
}

#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once; one more gets 503 at once.
    pub max_connections: usize,
    /// Time a client has to send its whole request head (slowloris).
    pub head_timeout: Duration,
    /// Time a client has, after 200, to send its ClientHello.
    pub hello_timeout: Duration,
    pub resolve_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 4096,
            head_timeout: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(10),
            resolve_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// What every connection reads; replaced whole when the centre or the tunnels change.
pub struct Shared {
    policy_doc: RwLock<GatewayPolicy>,
    policy: RwLock<Arc<Compiled>>,
    members: RwLock<Arc<Members>>,
    /// The provider's own ranges (`--internal`, the listen addresses).
    base_dial: DialPolicy,
    dial: RwLock<Arc<DialPolicy>>,
    pub log: RequestLog,
    users: Arc<dyn UserCheck>,
    pub limits: Limits,
    slots: Arc<Semaphore>,
    /// Connections being told 503 at once (beyond them a connection is dropped).
    refusals: Arc<Semaphore>,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn lock<T: Clone>(l: &RwLock<T>) -> T {
    l.read().unwrap_or_else(|p| p.into_inner()).clone()
}

impl Shared {
    pub fn new(
        base_dial: DialPolicy,
        log: RequestLog,
        users: Arc<dyn UserCheck>,
        limits: Limits,
    ) -> Arc<Shared> {
        let doc = GatewayPolicy::default();
        Arc::new(Shared {
            policy: RwLock::new(Arc::new(Compiled::new(&doc, now_ms()))),
            policy_doc: RwLock::new(doc),
            members: RwLock::new(Arc::new(Members::default())),
            dial: RwLock::new(Arc::new(base_dial.clone())),
            base_dial,
            log,
            users,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            refusals: Arc::new(Semaphore::new(limits.max_connections * 2)),
            limits,
        })
    }

    /// Take a new policy document unless it is older than the one held. Returns
    /// whether it was taken.
    pub fn set_policy(&self, doc: GatewayPolicy) -> bool {
        let mut held = self.policy_doc.write().unwrap_or_else(|p| p.into_inner());
        if doc.version < held.version {
            return false;
        }
        let c = Compiled::new(&doc, now_ms());
        for r in &c.rejected {
            tracing::warn!("policy entry not understood, ignored: {r}");
        }
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(c);
        *held = doc;
        true
    }

    pub fn policy_version(&self) -> u64 {
        lock(&self.policy).version
    }

    /// Compile again if a rule's expiry has passed (called every second).
    pub fn expire(&self) -> bool {
        let now = now_ms();
        if !lock(&self.policy).stale_at(now) {
            return false;
        }
        let doc = lock(&self.policy_doc);
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Compiled::new(&doc, now));
        true
    }

    pub fn set_members(&self, m: Members) {
        let mut dial = self.base_dial.clone();
        dial.internal.extend(m.vpn_ranges.iter().copied());
        *self.dial.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(dial);
        *self.members.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(m);
    }

    fn record(&self, r: &LogRecord) {
        tracing::info!(
            org = %r.org_id, device = %r.device_id, user = r.user.as_deref().unwrap_or("-"),
            host = %r.host, port = r.port, method = %r.method, up = r.bytes_up, down = r.bytes_down,
            ms = r.duration_ms, outcome = ?r.outcome, reason = %r.reason, "request"
        );
        if let Err(e) = self.log.append(r) {
            tracing::error!("request not logged: {e:#}");
        }
    }
}

/// Serve on `listener` until the future is dropped.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors and the like: wait rather than spin.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        match shared.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(async move {
                    handle(sock, peer, &shared).await;
                    drop(permit);
                });
            }
            Err(_) => match shared.refusals.clone().try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(async move {
                        answer_and_close(
                            sock,
                            &page::error(
                                503,
                                "the gateway is serving as many connections as it may; try again",
                                "ゲートウェイの同時接続数が上限に達しています。しばらくしてから再試行してください",
                            ),
                        )
                        .await;
                        drop(permit);
                    });
                }
                // Past even that: the connection is dropped unanswered.
                Err(_) => drop(sock),
            },
        }
    }
}

/// Send `bytes`, then close so that the client reads them: half-close, and drain what
/// it still sends for a moment (closing with unread bytes would reset the connection
/// and could destroy the answer before the client reads it).
async fn answer_and_close(mut sock: TcpStream, bytes: &[u8]) {
    let _ = tokio::time::timeout(Duration::from_secs(2), sock.write_all(bytes)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), sock.shutdown()).await;
    let mut sink = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut drained = 0usize;
    while drained < 64 * 1024 {
        match tokio::time::timeout_at(deadline, sock.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
}

/// The request being served, filled in as it goes, logged once at the end.
struct Req {
    started: Instant,
    rec: LogRecord,
}

impl Req {
    fn refuse(&mut self, reason: impl Into<String>) {
        self.rec.outcome = Outcome::Refused;
        self.rec.reason = reason.into();
    }
}

async fn handle(mut sock: TcpStream, peer: SocketAddr, shared: &Shared) {
    let _ = sock.set_nodelay(true);
    let member = lock(&shared.members).of(peer.ip()).cloned();
    let Some(member) = member else {
        // Not a member with a grant to this node: not served, not even read.
        tracing::warn!(%peer, "connection from an address no grant covers: closed");
        return;
    };
    let mut req = Req {
        started: Instant::now(),
        rec: LogRecord {
            at_ms: now_ms(),
            org_id: member.org_id.clone(),
            device_id: member.device_id.clone(),
            user: None,
            host: String::new(),
            port: 0,
            method: String::new(),
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: 0,
            outcome: Outcome::Refused,
            reason: String::new(),
        },
    };
    let answer = serve_one(&mut sock, &member, shared, &mut req).await;
    req.rec.duration_ms = req.started.elapsed().as_millis() as u64;
    shared.record(&req.rec);
    if let Some(bytes) = answer {
        answer_and_close(sock, &bytes).await;
    }
}

/// Read the head within the time limit. Err is the response to send.
async fn read_head(
    sock: &mut TcpStream,
    shared: &Shared,
    req: &mut Req,
) -> Result<(ProxyRequest, Vec<u8>), Vec<u8>> {
    let mut buf = Vec::with_capacity(2048);
    let deadline = tokio::time::Instant::now() + shared.limits.head_timeout;
    let mut chunk = [0u8; 4096];
    loop {
        let n = match tokio::time::timeout_at(deadline, sock.read(&mut chunk)).await {
            Err(_) => {
                req.refuse("head_timeout");
                return Err(page::error(
                    408,
                    "the request head did not arrive in time",
                    "リクエストヘッダが時間内に届きませんでした",
                ));
            }
            Ok(Err(_)) | Ok(Ok(0)) => {
                req.refuse("closed_before_head");
                return Err(Vec::new());
            }
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        req.rec.bytes_up = buf.len() as u64;
        match dodvpn_gateway::request::parse(&buf) {
            Ok(Some(r)) => return Ok((r, buf)),
            Ok(None) => continue,
            Err(e) => {
                let (status, reason, ja) = match e {
                    dodvpn_gateway::HeadError::TooLarge => {
                        (431, "head_too_large", "リクエストヘッダが大きすぎます")
                    }
                    dodvpn_gateway::HeadError::NotProxyForm => (
                        400,
                        "not_proxy_form",
                        "プロキシへのリクエストではありません",
                    ),
                    dodvpn_gateway::HeadError::UnsupportedScheme(_) => (
                        400,
                        "unsupported_scheme",
                        "このスキームは中継しません（https は CONNECT を使ってください）",
                    ),
                    dodvpn_gateway::HeadError::Malformed(_) => {
                        (400, "malformed", "リクエストの形式が正しくありません")
                    }
                };
                req.refuse(reason);
                return Err(page::error(status, &e.to_string(), ja));
            }
        }
    }
}

/// `Basic base64(user:password)` → (user, password).
fn basic(value: &str) -> Option<(String, String)> {
    let b64 = value.trim().strip_prefix("Basic ")?.trim();
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    (!u.is_empty()).then(|| (u.to_string(), p.to_string()))
}

/// Resolve (or take the literal) and keep the first address the dial policy allows.
async fn destination(host: &str, port: u16, shared: &Shared) -> Result<SocketAddr, String> {
    let addrs: Vec<IpAddr> = match ip_literal(host) {
        Some(ip) => vec![ip],
        None => {
            let found = tokio::time::timeout(
                shared.limits.resolve_timeout,
                tokio::net::lookup_host((host, port)),
            )
            .await
            .map_err(|_| "resolve:timeout".to_string())?
            .map_err(|_| "resolve:no_address".to_string())?;
            found.map(|a| a.ip()).collect()
        }
    };
    let dial = lock(&shared.dial);
    let mut first_refusal = None;
    for ip in &addrs {
        match dial.check(*ip) {
            None => return Ok(SocketAddr::new(*ip, port)),
            Some(r) => {
                first_refusal.get_or_insert(format!("address:{}:{ip}", r.as_str()));
            }
        }
    }
    Err(first_refusal.unwrap_or_else(|| "resolve:no_address".into()))
}

/// Serve one request; the bytes to answer with when it ends in an error or refusal.
async fn serve_one(
    sock: &mut TcpStream,
    member: &Member,
    shared: &Shared,
    req: &mut Req,
) -> Option<Vec<u8>> {
    let (head, buf) = match read_head(sock, shared, req).await {
        Ok(x) => x,
        Err(answer) => return (!answer.is_empty()).then_some(answer),
    };
    let host = normal_host(&head.host);
    req.rec.host = host.clone();
    req.rec.port = head.port;
    req.rec.method = head.method.clone();
    let policy = lock(&shared.policy);
    let org = policy.org(&member.org_id);
    if org.is_some_and(|o| o.user_auth == UserAuth::Password) {
        let Some((user, password)) = head.proxy_authorization.as_deref().and_then(basic) else {
            req.refuse("auth_required");
            return Some(page::forbidden(&host, head.port, "auth_required"));
        };
        match shared.users.check(&member.org_id, &user, &password).await {
            Ok(true) => req.rec.user = Some(user),
            Ok(false) => {
                req.rec.user = Some(user);
                req.refuse("auth_required:bad_credentials");
                return Some(page::forbidden(&host, head.port, "auth_required"));
            }
            Err(e) => {
                req.refuse("auth_unavailable");
                tracing::warn!("user check failed: {e:#}");
                return Some(page::error(
                    503,
                    "cannot check your sign-in now; try again",
                    "現在サインインを確認できません。再試行してください",
                ));
            }
        }
    }
    let target = Target {
        host: &host,
        port: head.port,
        path: head.path.as_deref(),
    };
    let entry = match policy.decide(&member.org_id, &target) {
        Verdict::Allow(e) => e,
        Verdict::WrongPort => {
            req.refuse("wrong_port");
            return Some(page::forbidden(&host, head.port, "wrong_port"));
        }
        Verdict::NotListed => {
            req.refuse("not_listed");
            return Some(page::forbidden(&host, head.port, "not_listed"));
        }
    };
    let allow_literal_without_sni = policy.allow_ip_literal_without_sni;
    drop(policy);
    let dest = match destination(&host, head.port, shared).await {
        Ok(d) => d,
        Err(why) => {
            req.refuse(why.clone());
            return Some(page::forbidden(&host, head.port, &why));
        }
    };
    if head.method == "CONNECT" {
        connect(
            sock,
            shared,
            req,
            &host,
            dest,
            &entry,
            allow_literal_without_sni,
            &buf[head.head_len..],
        )
        .await
    } else {
        plain(sock, shared, req, &head, &buf, dest, &entry).await
    }
}

#[allow(clippy::too_many_arguments)]
async fn connect(
    sock: &mut TcpStream,
    shared: &Shared,
    req: &mut Req,
    host: &str,
    dest: SocketAddr,
    entry: &str,
    allow_literal_without_sni: bool,
    early: &[u8],
) -> Option<Vec<u8>> {
    if sock
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_err()
    {
        req.refuse("closed");
        return None;
    }
    // The ClientHello, before a byte goes upstream.
    let mut hello = early.to_vec();
    let deadline = tokio::time::Instant::now() + shared.limits.hello_timeout;
    let mut chunk = [0u8; 4096];
    let sni = loop {
        match dodvpn_gateway::server_name(&hello) {
            Ok(Sni::Incomplete) => {}
            Ok(s) => break s,
            Err(e) => {
                req.refuse(format!("not_tls:{e}"));
                return None;
            }
        }
        match tokio::time::timeout_at(deadline, sock.read(&mut chunk)).await {
            Err(_) => {
                req.refuse("hello_timeout");
                return None;
            }
            Ok(Err(_)) | Ok(Ok(0)) => {
                req.refuse("closed_before_hello");
                return None;
            }
            Ok(Ok(n)) => {
                hello.extend_from_slice(&chunk[..n]);
                req.rec.bytes_up += n as u64;
            }
        }
    };
    match sni {
        Sni::Name(n) if normal_host(&n) == host => {}
        Sni::Name(n) => {
            // Domain fronting: an allowed CONNECT carrying a TLS session to another name.
            req.refuse(format!("sni_mismatch:{n}"));
            return None;
        }
        _ if ip_literal(host).is_some() && allow_literal_without_sni => {}
        _ => {
            req.refuse("no_sni");
            return None;
        }
    }
    let mut up =
        match tokio::time::timeout(shared.limits.connect_timeout, TcpStream::connect(dest)).await {
            Ok(Ok(s)) => s,
            _ => {
                req.refuse(format!("connect_failed:{dest}"));
                return None;
            }
        };
    let _ = up.set_nodelay(true);
    if up.write_all(&hello).await.is_err() {
        req.refuse(format!("connect_failed:{dest}"));
        return None;
    }
    req.rec.outcome = Outcome::Allowed;
    req.rec.reason = format!("allowed:{entry}");
    let (a, b) = tokio::io::copy_bidirectional(sock, &mut up)
        .await
        .unwrap_or((0, 0));
    req.rec.bytes_up += a;
    req.rec.bytes_down += b;
    None
}

/// Plain HTTP: the head again in origin form, without the proxy's own headers, one
/// request per connection.
async fn plain(
    sock: &mut TcpStream,
    shared: &Shared,
    req: &mut Req,
    head: &ProxyRequest,
    buf: &[u8],
    dest: SocketAddr,
    entry: &str,
) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; dodvpn_gateway::request::MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    if !matches!(parsed.parse(buf), Ok(httparse::Status::Complete(_))) {
        req.refuse("malformed");
        return Some(page::error(
            400,
            "malformed request",
            "リクエストの形式が正しくありません",
        ));
    }
    let mut out = format!(
        "{} {} HTTP/1.1\r\n",
        head.method,
        head.path.as_deref().unwrap_or("/")
    );
    let mut has_host = false;
    for h in parsed.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        if matches!(
            name.as_str(),
            "proxy-authorization" | "proxy-connection" | "connection" | "keep-alive"
        ) {
            continue;
        }
        has_host |= name == "host";
        out.push_str(h.name);
        out.push_str(": ");
        out.push_str(&String::from_utf8_lossy(h.value));
        out.push_str("\r\n");
    }
    if !has_host {
        out.push_str(&format!("Host: {}\r\n", head.host));
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut up =
        match tokio::time::timeout(shared.limits.connect_timeout, TcpStream::connect(dest)).await {
            Ok(Ok(s)) => s,
            _ => {
                req.refuse(format!("connect_failed:{dest}"));
                return Some(page::error(
                    502,
                    "the site could not be reached",
                    "サイトに接続できませんでした",
                ));
            }
        };
    if up.write_all(out.as_bytes()).await.is_err()
        || up.write_all(&buf[head.head_len..]).await.is_err()
    {
        req.refuse(format!("connect_failed:{dest}"));
        return None;
    }
    req.rec.outcome = Outcome::Allowed;
    req.rec.reason = format!("allowed:{entry}");
    let (a, b) = tokio::io::copy_bidirectional(sock, &mut up)
        .await
        .unwrap_or((0, 0));
    req.rec.bytes_up += a;
    req.rec.bytes_down = b;
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials() {
        assert_eq!(
            basic("Basic dXNlcjpwYTpzcw=="),
            Some(("user".into(), "pa:ss".into()))
        );
        assert_eq!(basic("Bearer x"), None);
        assert_eq!(basic("Basic !!!"), None);
        assert_eq!(basic("Basic OnB3"), None, "an empty user name");
    }
}
