//! What every route promises beyond its own handler, stated once so the served
//! description cannot say less than the server does (checked by schemathesis in
//! `crates/cli/tests/api_schema.rs`):
//!
//! - who may call it: `admin_bearer` (administrator or auditor credential),
//!   `device_mtls` (a device certificate in the TLS handshake), or nobody (the VA
//!   service under `/pki`);
//! - the errors the extractors and the credential check can answer on any route:
//!   400 (query or path that does not parse), 401, 403, 404 (a path naming an object),
//!   413/415/422 (a body too large, not JSON, or not the documented shape), 503
//!   (storage unavailable);
//! - that every error, including axum's own rejections and 405, is the JSON
//!   [`ErrorBody`](crate::error::ErrorBody) (`json_errors`).

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Response as ApiResponse, ResponseBuilder};

use crate::error::ApiError;

pub const ADMIN_BEARER: &str = "admin_bearer";
pub const DEVICE_MTLS: &str = "device_mtls";

/// The credential a route needs, from where it lives: the device's own calls under
/// `/api/v1/device/`, the public VA service under `/pki/`, administrators elsewhere.
fn scheme_for(path: &str) -> Option<&'static str> {
    if path.starts_with("/pki/") {
        None
    } else if path.starts_with("/api/v1/device/") {
        Some(DEVICE_MTLS)
    } else {
        Some(ADMIN_BEARER)
    }
}

pub struct Contract;

impl utoipa::Modify for Contract {
    fn modify(&self, api: &mut OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            ADMIN_BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("dodvpn-admin.<id>.<secret> or dodvpn-auditor.<id>.<secret>")
                    .description(Some(
                        "An administrator credential (provider or organisation) or a read-only auditor credential",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            DEVICE_MTLS,
            SecurityScheme::MutualTls {
                description: Some(
                    "The device's certificate in the TLS handshake: tier 1 (device) or tier 2 (service), as each route says"
                        .into(),
                ),
                extensions: None,
            },
        );
        for (path, item) in api.paths.paths.iter_mut() {
            let scheme = scheme_for(path);
            let has_path_params = path.contains('{');
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                complete(op, scheme, has_path_params);
            }
        }
    }
}

fn complete(op: &mut Operation, scheme: Option<&str>, has_path_params: bool) {
    op.security = Some(match scheme {
        Some(s) => vec![SecurityRequirement::new::<_, [&str; 0], &str>(s, [])],
        // An empty requirement list: callable without credentials.
        None => vec![SecurityRequirement::default()],
    });
    let mut add = |status: &str, why: &str| {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| error_response(why));
    };
    add("400", "The query, path or body is not valid");
    if scheme.is_some() {
        add("401", "No credential, or one that is not valid");
        add("403", "The credential may not do this");
        add("503", "Storage unavailable; nothing was changed");
    }
    if has_path_params || op.request_body.is_some() {
        add(
            "404",
            "No such object (named in the path or the body), or one the caller may not see",
        );
    }
    if op.request_body.is_some() {
        add("413", "The body is larger than the limit");
        add("415", "The body is not application/json");
        add("422", "The body is JSON but not of the documented shape");
    }
}

fn error_response(description: &str) -> RefOr<ApiResponse> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("ErrorBody"))),
            )
            .build(),
    )
}

/// Read the whole request body (at most the route's limit, [`body_limit`](super::body_limit)) before routing.
/// An answer given before the body was read (an unknown route, a path that does not
/// parse, a refused credential) would otherwise close a connection with unread data,
/// which the kernel turns into a reset that can reach the client before the answer.
pub async fn read_body_first(req: Request<Body>, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    // A streamed deposit (up to 2 GiB) is read by its handler as it arrives, never
    // held whole; the handler answers early refusals itself (message::deposit_stream).
    if parts.method == axum::http::Method::POST && parts.uri.path() == super::message::STREAM_PATH {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let limit = super::body_limit(parts.uri.path());
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(_) => {
            let mut resp = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body is larger than {limit} bytes"),
            )
            .into_response();
            resp.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            resp
        }
    }
}

/// Every error answer is the JSON error body: axum's own rejections (a query or path
/// that does not parse, an unknown method) are plain text, and a client should need
/// only one error shape.
pub async fn json_errors(req: Request<Body>, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let allow = resp.headers().get(header::ALLOW).cloned();
    let text = match axum::body::to_bytes(resp.into_body(), 4096).await {
        Ok(b) if !b.is_empty() => String::from_utf8_lossy(&b).into_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_string(),
    };
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let mut out = ApiError::new(status, code, text).into_response();
    if let Some(allow) = allow {
        out.headers_mut().insert(header::ALLOW, allow);
    }
    out
}
