//! The JSON API (R-OPS-2). Every route is declared with its OpenAPI description next to
//! the handler and collected by `utoipa_axum`, so the served description cannot drift
//! from the router: a route without a description does not compile into the router.

mod admin;
mod audit;
mod device;
mod orgs;
mod pki;
mod sessions;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Json;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::Center;

/// Request bodies above this are refused with 413 before they are parsed.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(title = "dodvpn centre API", description = "Control plane of the Dynamic On-Demand VPN (ISO/TR 11636)"),
    tags(
        (name = "organisations", description = "Subscribers and their administrators, policies and check sheets"),
        (name = "devices", description = "TR D.6 steps b–h, l: order, register, certify, deliver, apply, approve, start"),
        (name = "device", description = "Calls made by the VPN device itself over mutual TLS (steps i–k, push)"),
        (name = "policy", description = "Groups (provider policy), approvals and grants"),
        (name = "pki", description = "CA bundle, CRLs and certificate status (VA service)"),
        (name = "sessions", description = "Tunnel sessions as both ends report them (three-point audit) and operator cut"),
        (name = "audit", description = "Hash-chained audit log")
    )
)]
struct ApiDoc;

pub fn openapi_and_router(center: Arc<Center>) -> (axum::Router, utoipa::openapi::OpenApi) {
    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(orgs::create_org, orgs::list_orgs))
        .routes(routes!(orgs::get_org))
        .routes(routes!(orgs::create_org_admin))
        .routes(routes!(orgs::put_policy, orgs::get_policy))
        .routes(routes!(orgs::put_checksheet))
        .routes(routes!(admin::create_order, admin::list_orders))
        .routes(routes!(admin::register_device, admin::list_devices))
        .routes(routes!(admin::get_device))
        .routes(routes!(admin::set_network))
        .routes(routes!(admin::issue_device_cert))
        .routes(routes!(admin::device_cert_installed))
        .routes(routes!(admin::deliver))
        .routes(routes!(admin::service_apply))
        .routes(routes!(admin::service_approve))
        .routes(routes!(admin::service_start))
        .routes(routes!(admin::service_stop))
        .routes(routes!(admin::revoke_device))
        .routes(routes!(admin::revoke_cert))
        .routes(routes!(admin::list_certs))
        .routes(routes!(admin::create_group, admin::list_groups))
        .routes(routes!(admin::put_group))
        .routes(routes!(admin::add_member))
        .routes(routes!(admin::remove_member))
        .routes(routes!(admin::open_approval, admin::list_approvals))
        .routes(routes!(admin::close_approval))
        .routes(routes!(admin::apply_connection))
        .routes(routes!(admin::list_grants))
        .routes(routes!(admin::get_grant))
        .routes(routes!(admin::withdraw_grant))
        .routes(routes!(device::enroll))
        .routes(routes!(device::service_cert_installed))
        .routes(routes!(device::state))
        .routes(routes!(device::events))
        .routes(routes!(device::connect))
        .routes(routes!(device::whoami))
        .routes(routes!(device::my_certs))
        .routes(routes!(sessions::report))
        .routes(routes!(sessions::list))
        .routes(routes!(sessions::get))
        .routes(routes!(sessions::cut))
        .routes(routes!(pki::ca_bundle))
        .routes(routes!(pki::crl))
        .routes(routes!(pki::cert_status))
        .routes(routes!(audit::list))
        .routes(routes!(audit::verify))
        .routes(routes!(audit::export))
        .routes(routes!(audit::create_auditor))
        .routes(routes!(audit::revoke_auditor))
        .with_state(center)
        .split_for_parts();
    (router, api)
}

pub fn router(center: Arc<Center>) -> axum::Router {
    let (router, api) = openapi_and_router(center);
    let api = Arc::new(api);
    router
        .route(
            "/openapi.json",
            get(move || async move { Json((*api).clone()) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

/// Parse `ids` like "dev-1,dev-2" into a set (used by re-evaluation).
pub(crate) fn set_of<I: IntoIterator<Item = String>>(ids: I) -> std::collections::HashSet<String> {
    ids.into_iter().collect()
}
