//! HTTPS with rustls. Client certificates are optional at the TLS layer (administrators
//! use bearer credentials) but, when presented, must chain to the device CA or the
//! service CA; which tier an endpoint accepts is decided per request (auth.rs).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::Service;

use crate::auth::PeerCert;
use crate::Center;

pub fn tls_config(center: &Center) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for pem in [center.pki.device_ca_pem(), center.pki.service_ca_pem()] {
        for der in pem_certs(pem)? {
            roots
                .add(der)
                .context("CA certificate rejected by rustls")?;
        }
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .context("cannot build the client-certificate verifier")?;
    let chain: Vec<CertificateDer<'static>> = center
        .pki
        .tls_server_cert_chain_der()
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(center.pki.tls_server_key_der()));
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("the centre's TLS certificate and key do not match")?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

pub fn pem_certs(pem: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    let out = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("unreadable PEM certificate")?;
    if out.is_empty() {
        anyhow::bail!("no certificate in PEM");
    }
    Ok(out)
}

/// Accept connections until the listener fails; each connection is served on its own task.
pub struct Prepared {
    acceptor: TlsAcceptor,
    app: axum::Router,
    center: Arc<Center>,
}

/// Build everything that can fail before the first connection is accepted.
pub fn prepare(center: Arc<Center>) -> anyhow::Result<Prepared> {
    prepare_with(
        center,
        utoipa_axum::router::OpenApiRouter::new(),
        axum::Router::new(),
    )
}

/// Like [`prepare`], with `extra_api` routes described in the API (the console's user
/// administration) and `extra` routes served beside the API on the same port (the
/// web console under `/console`, crates/console). The latter get neither the API's JSON
/// error pages nor its body pre-read: they answer for themselves.
pub fn prepare_with(
    center: Arc<Center>,
    extra_api: utoipa_axum::router::OpenApiRouter<Arc<Center>>,
    extra: axum::Router,
) -> anyhow::Result<Prepared> {
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(&center)?));
    let app = crate::api::router_with(center.clone(), extra_api)
        .merge(extra)
        .layer(axum::middleware::from_fn_with_state(
            center.clone(),
            crate::refusals::observe,
        ))
        // Requests by route template and status, for /metrics (metrics.rs).
        .layer(axum::middleware::from_fn(crate::metrics::observe_http));
    Ok(Prepared {
        acceptor,
        app,
        center,
    })
}

pub async fn serve(prepared: Prepared, listener: TcpListener) -> anyhow::Result<()> {
    let Prepared {
        acceptor,
        app,
        center,
    } = prepared;
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: keep serving the connections we have.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let center = center.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(
                std::time::Duration::from_secs(15),
                acceptor.accept(tcp),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::info!(%remote, error = %e, "TLS handshake refused");
                    crate::refusals::tls_refused(&center, remote, &e).await;
                    return;
                }
                Err(_) => return,
            };
            let peer = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|der| dodvpn_pki::inspect(der).ok())
                .map(|info| PeerCert {
                    serial: info.serial,
                    fingerprint: info.fingerprint_sha256_hex,
                });
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    if let Some(p) = &peer {
                        req.extensions_mut().insert(p.clone());
                    }
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(remote));
                    app.clone().call(req)
                },
            );
            if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                .await
            {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
}

pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}
