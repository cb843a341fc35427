//! The centre's web console (issue 10, R-OPS-2): server-rendered pages under
//! `/console` on the centre's HTTPS port, and the human accounts that log in to them
//! with a password and a second factor.
//!
//! Every page a person reads is in Japanese and English (i18n.rs). Every action goes
//! through the centre's own JSON API in-process, as a `Caller` of the person's
//! organisation, so a console user meets exactly the organisation checks an API
//! credential meets; the console adds its role checks in front (deny by default,
//! roles.rs). HTML is rendered by maud (escaped by default); the few lines of script
//! are a static asset, and the Content-Security-Policy allows no inline script.

pub mod api;
pub mod assets;
pub mod i18n;
mod pages;
pub mod passkey;
pub mod password;
pub mod roles;
pub mod store;
pub mod totp;
mod web;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use dodvpn_center::Center;

/// Everything the console's handlers share.
pub struct Console {
    pub center: Arc<Center>,
    /// The centre's API router, called in-process with the user's `Caller`.
    api: Router,
    /// The newest live-sessions snapshot per organisation scope (None: provider-wide),
    /// shared by every open sessions page so that N tabs cost one query a second.
    live: tokio::sync::Mutex<LiveCache>,
}

type LiveCache = std::collections::HashMap<Option<String>, (std::time::Instant, Arc<String>)>;

/// The console's routes, to be merged beside the API (`server::prepare_with`).
pub fn router(center: Arc<Center>) -> Router {
    let api = dodvpn_center::api::router(center.clone()).layer(
        axum::middleware::from_fn_with_state(center.clone(), dodvpn_center::refusals::observe),
    );
    pages::routes(Arc::new(Console {
        center,
        api,
        live: Default::default(),
    }))
}

/// The console's described JSON routes (`/api/v1/users`), merged into the centre's API.
pub fn api_routes() -> utoipa_axum::router::OpenApiRouter<Arc<Center>> {
    api::routes()
}

/// File the first provider administrator's one-time invitation code is written to.
pub const SETUP_CODE_FILE: &str = "console-setup.code";

/// At `dodvpn center` start: if the console has no provider administrator and no
/// live invitation for one, create one and write its code to `DIR/console-setup.code`
/// (mode 0600), like `admin.token`. Returns the file while the invitation is unused.
pub async fn bootstrap(center: &Center, data_dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    let path = data_dir.join(SETUP_CODE_FILE);
    if store::has_provider_admin(center)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?
    {
        return Ok(None);
    }
    if store::live_provider_invite(center)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?
        && path.exists()
    {
        return Ok(Some(path));
    }
    let code = store::create_invite(
        center,
        "centre",
        roles::Role::ProviderAdmin,
        None,
        store::SETUP_INVITE_TTL_MS,
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "cannot create the console's first invitation: {}",
            e.message
        )
    })?;
    dodvpn_center::init::write_secret_file(&path, code.as_bytes())?;
    Ok(Some(path))
}
