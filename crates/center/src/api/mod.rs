//! The JSON API (R-OPS-2). Every route is declared with its OpenAPI description next to
//! the handler and collected by `utoipa_axum`, so the served description cannot drift
//! from the router: a route without a description does not compile into the router.

mod admin;
mod contract;
mod device;
mod gateway;
pub mod message;
mod nat;
mod pki;
mod sessions;
mod witness;

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

/// The body limit of a path: a diagnosis run's findings, a check-sheet submission or a
/// ledger table may take up to 1 MiB, every
/// other call [`MAX_BODY`]. Read before routing (contract::read_body_first), so it is
/// decided by path; the route's own `DefaultBodyLimit` says the same.
pub(crate) fn body_limit(path: &str) -> usize {
    let large = [
        "/diagnoses",
        "/ledger/outside",
        "/ledger/equipment",
        "/checksheets",
    ];
    if path.starts_with("/api/v1/orgs/") && path.ends_with("/checksheets/attachments") {
        admin::checksheet_attachments::MAX_ATTACHMENT + 1024
    } else if path.starts_with("/api/v1/orgs/") && large.iter().any(|l| path.ends_with(l)) {
        admin::diagnose::MAX_RUN_BODY
    } else if path == "/api/v1/device/gateway/log" {
        gateway::MAX_LOG_BODY
    } else if path == "/api/v1/device/messages" {
        message::MAX_DEPOSIT_BODY
    } else {
        MAX_BODY
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "dodvpn centre API", description = "Control plane of the Dynamic On-Demand VPN (ISO/TR 11636)"),
    // What each `data:` field of the device's event stream carries.
    components(schemas(crate::hub::Event)),
    tags(
        (name = "organisations", description = "Subscribers and their administrators, policies and check sheets"),
        (name = "devices", description = "TR D.6 steps b–h, l: order, register, certify, deliver, apply, approve, start"),
        (name = "device", description = "Calls made by the VPN device itself over mutual TLS (steps i–k, push)"),
        (name = "policy", description = "Groups (provider policy), approvals and grants"),
        (name = "pki", description = "CA bundle, CRLs and certificate status (VA service)"),
        (name = "sessions", description = "Tunnel sessions as both ends report them (three-point audit) and operator cut"),
        (name = "audit", description = "Hash-chained audit log"),
        (name = "diagnose", description = "Exposure diagnosis: an organisation's public addresses and the findings of each run (R-SVC-5)"),
        (name = "gateway", description = "The gateway centre: gateway nodes, categories, organisations' applications for sites and their decisions, request logs (R-SVC-1)"),
        (name = "messages", description = "Store-and-forward messages between members, end-to-end encrypted CMS; the centre keeps ciphertext only (R-SVC-4)")
    )
)]
struct ApiDoc;

pub fn openapi_and_router(center: Arc<Center>) -> (axum::Router, utoipa::openapi::OpenApi) {
    openapi_and_router_with(center, OpenApiRouter::new())
}

/// The API with `extra` routes of another crate (the console's `/api/v1/users`) merged
/// in, so they are described in `/openapi.json` and get the API's JSON error contract.
pub fn openapi_and_router_with(
    center: Arc<Center>,
    extra: OpenApiRouter<Arc<Center>>,
) -> (axum::Router, utoipa::openapi::OpenApi) {
    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(extra)
        .routes(routes!(admin::orgs::create_org, admin::orgs::list_orgs))
        .routes(routes!(admin::orgs::get_org))
        .routes(routes!(admin::orgs::create_org_admin))
        .routes(routes!(admin::orgs::put_policy, admin::orgs::get_policy))
        .routes(routes!(admin::orgs::dry_run_policy))
        .routes(routes!(admin::orgs::put_checksheet))
        .routes(routes!(admin::checksheets::list_catalogues))
        .merge(
            // A full sheet or ledger with evidence notes may exceed 64 KiB.
            OpenApiRouter::new()
                .routes(routes!(
                    admin::checksheets::submit,
                    admin::checksheets::history
                ))
                .routes(routes!(admin::ledger::put_outside))
                .routes(routes!(admin::ledger::put_equipment))
                .layer(DefaultBodyLimit::max(admin::diagnose::MAX_RUN_BODY)),
        )
        .merge(
            OpenApiRouter::new()
                .routes(routes!(
                    admin::checksheet_attachments::upload,
                    admin::checksheet_attachments::list
                ))
                .layer(DefaultBodyLimit::max(
                    admin::checksheet_attachments::MAX_ATTACHMENT + 1024,
                )),
        )
        .routes(routes!(admin::checksheet_attachments::download))
        .routes(routes!(admin::checksheets::compare))
        .routes(routes!(admin::checksheets::prefill))
        .routes(routes!(admin::checksheets::get_submission))
        .routes(routes!(admin::ledger::get_ledger))
        .routes(routes!(admin::ledger::org_diagram_handler))
        .routes(routes!(admin::report::get_report))
        .routes(routes!(admin::ledger::provider_diagram_handler))
        .routes(routes!(
            admin::diagnose::put_public_addresses,
            admin::diagnose::get_public_addresses
        ))
        .merge(
            // A run's findings may exceed the 64 KiB other bodies are held to.
            OpenApiRouter::new()
                .routes(routes!(
                    admin::diagnose::post_run,
                    admin::diagnose::list_runs
                ))
                .layer(DefaultBodyLimit::max(admin::diagnose::MAX_RUN_BODY)),
        )
        .merge(
            // A deposit carries up to 32 MiB of ciphertext in base64.
            OpenApiRouter::new()
                .routes(routes!(message::deposit, message::list))
                .layer(DefaultBodyLimit::max(message::MAX_DEPOSIT_BODY)),
        )
        .merge(
            OpenApiRouter::new()
                .routes(routes!(message::deposit_stream))
                .layer(DefaultBodyLimit::disable()),
        )
        .routes(routes!(message::publish))
        .routes(routes!(message::directory))
        .routes(routes!(message::fetch, message::delete))
        .routes(routes!(message::read))
        .routes(routes!(message::allow, message::list_policies))
        .routes(routes!(admin::diagnose::get_run))
        .routes(routes!(
            admin::providers::grant_role,
            admin::providers::revoke_role
        ))
        .routes(routes!(
            admin::providers::add_contract,
            admin::providers::list_contracts
        ))
        .routes(routes!(admin::providers::remove_contract))
        .routes(routes!(admin::providers::confirm_device))
        .routes(routes!(
            admin::orders::create_order,
            admin::orders::list_orders
        ))
        .routes(routes!(
            admin::devices::register_device,
            admin::devices::list_devices
        ))
        .routes(routes!(admin::devices::get_device))
        .routes(routes!(admin::devices::set_network))
        .routes(routes!(admin::certs::issue_device_cert))
        .routes(routes!(admin::certs::device_cert_installed))
        .routes(routes!(admin::devices::deliver))
        .routes(routes!(admin::devices::service_apply))
        .routes(routes!(admin::devices::service_approve))
        .routes(routes!(admin::devices::service_start))
        .routes(routes!(admin::devices::service_stop))
        .routes(routes!(admin::devices::revoke_device))
        .routes(routes!(admin::certs::revoke_cert))
        .routes(routes!(admin::certs::list_certs))
        .routes(routes!(
            admin::groups::create_group,
            admin::groups::list_groups
        ))
        .routes(routes!(admin::groups::put_group))
        .routes(routes!(admin::groups::add_member))
        .routes(routes!(admin::groups::remove_member))
        .routes(routes!(
            admin::approvals::open_approval,
            admin::approvals::list_approvals
        ))
        .routes(routes!(admin::approvals::close_approval))
        .routes(routes!(admin::approvals::waiting_applications))
        .routes(routes!(admin::approvals::refused_applications))
        .routes(routes!(admin::grants::apply_connection))
        .routes(routes!(admin::grants::list_grants))
        .routes(routes!(admin::grants::get_grant))
        .routes(routes!(admin::grants::withdraw_grant))
        .routes(routes!(device::enroll))
        .routes(routes!(device::service_cert_installed))
        .routes(routes!(device::state))
        .routes(routes!(device::events))
        .routes(routes!(device::connect))
        .routes(routes!(device::whoami))
        .routes(routes!(device::put_software))
        .routes(routes!(device::put_candidates))
        .routes(routes!(nat::introduce))
        .routes(routes!(nat::relay))
        .routes(routes!(device::my_certs))
        .routes(routes!(sessions::report))
        .routes(routes!(sessions::list))
        .routes(routes!(sessions::get))
        .routes(routes!(sessions::cut))
        .routes(routes!(pki::ca_bundle))
        .routes(routes!(pki::crl))
        .routes(routes!(pki::cert_status))
        .routes(routes!(admin::audit::list))
        .routes(routes!(admin::audit::verify))
        .routes(routes!(admin::audit::export))
        .routes(routes!(admin::audit::create_auditor))
        .routes(routes!(admin::audit::revoke_auditor))
        .routes(routes!(admin::tlog::latest))
        .routes(routes!(admin::tlog::list))
        .routes(routes!(admin::tlog::inclusion))
        .routes(routes!(admin::tlog::consistency))
        .routes(routes!(admin::tlog::log_key))
        .routes(routes!(admin::tlog::bundle))
        .routes(routes!(gateway::add_node, gateway::list_nodes))
        .routes(routes!(gateway::list_categories))
        .routes(routes!(gateway::put_category))
        .routes(routes!(gateway::put_settings, gateway::get_settings))
        .routes(routes!(gateway::apply, gateway::list_applications))
        .routes(routes!(gateway::decide))
        .routes(routes!(gateway::withdraw))
        .routes(routes!(gateway::org_log))
        .routes(routes!(gateway::node_policy))
        .merge(
            // A batch of request records may exceed 64 KiB.
            OpenApiRouter::new()
                .routes(routes!(gateway::node_log))
                .layer(DefaultBodyLimit::max(gateway::MAX_LOG_BODY)),
        )
        .routes(routes!(gateway::node_digest))
        .routes(routes!(gateway::user_check))
        .routes(routes!(witness::consistency))
        .routes(routes!(witness::cosign))
        .routes(routes!(witness::report_alert))
        .routes(routes!(witness::list_alerts))
        .with_state(center)
        .split_for_parts();
    let mut api = api;
    utoipa::Modify::modify(&contract::Contract, &mut api);
    (router, api)
}

pub fn router(center: Arc<Center>) -> axum::Router {
    router_with(center, OpenApiRouter::new())
}

/// [`router`] with `extra` described routes (see [`openapi_and_router_with`]).
pub fn router_with(center: Arc<Center>, extra: OpenApiRouter<Arc<Center>>) -> axum::Router {
    let (router, api) = openapi_and_router_with(center, extra);
    let api = Arc::new(api);
    router
        .route(
            "/openapi.json",
            get(move || async move { Json((*api).clone()) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(contract::read_body_first))
        .layer(axum::middleware::from_fn(contract::json_errors))
}

/// How long before its end a window's applicant is warned (api/admin/approvals.rs).
pub(crate) fn admin_approvals_warning_secs() -> i64 {
    admin::approvals::WARNING_SECS
}

/// The devices an organisation owns (for pushes outside the API's handlers).
pub(crate) async fn org_devices_of(
    tx: &mut crate::db::WriteTx<'_>,
    org: &str,
) -> Result<Vec<String>, crate::error::ApiError> {
    admin::orgs::org_devices(tx, org).await
}

/// Parse `ids` like "dev-1,dev-2" into a set (used by re-evaluation).
pub(crate) fn set_of<I: IntoIterator<Item = String>>(ids: I) -> std::collections::HashSet<String> {
    ids.into_iter().collect()
}
