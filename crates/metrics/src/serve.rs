//! The plain-HTTP listener: `GET /metrics` answers the exposition, anything else 404.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::{Access, Options, Refused};

/// The OpenMetrics text format that prometheus-client writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Builds the exposition text for one scrape (reads the process's current state).
pub type Render = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

/// A scrape that takes longer is answered 503 rather than left hanging past
/// Prometheus' own timeout (10 s by default).
const RENDER_TIMEOUT: Duration = Duration::from_secs(8);

#[derive(Clone)]
struct Ctx {
    access: Access,
    render: Render,
}

/// Check the options, bind the listener and serve it on a task of its own. Returns
/// the bound address (the port may have been 0).
pub async fn start(opts: &Options, render: Render) -> anyhow::Result<SocketAddr> {
    let access = Access::from_options(opts)?;
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen for metrics on {}", opts.listen))?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/metrics", get(scrape))
        .fallback(|| async { (StatusCode::NOT_FOUND, "only /metrics is served here\n") })
        .with_state(Ctx { access, render });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(addr)
}

async fn scrape(
    State(ctx): State<Ctx>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let auth = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if let Err(why) = ctx.access.check(remote.ip(), auth) {
        tracing::info!(%remote, reason = why.as_str(), "metrics scrape refused");
        return match why {
            Refused::Remote => (
                StatusCode::FORBIDDEN,
                "this address may not read the metrics\n",
            )
                .into_response(),
            Refused::NoToken | Refused::WrongToken => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "a valid bearer token is required\n",
            )
                .into_response(),
        };
    }
    match tokio::time::timeout(RENDER_TIMEOUT, (ctx.render)()).await {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the metrics could not be gathered in time\n",
        )
            .into_response(),
    }
}
