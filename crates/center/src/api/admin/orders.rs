//! Orders (TR D.6 b): a subscriber orders a VPN device from the device provider.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::orgs::{check_name, org_exists};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::{new_id, Center};

// ---------- orders (step b) ----------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    pub org_id: String,
    /// 1–200 printable characters.
    #[schema(min_length = 1, max_length = 200)]
    pub model: String,
}

#[derive(Serialize, ToSchema)]
pub struct Order {
    pub id: String,
    pub org_id: String,
    pub model: String,
    pub created_ms: i64,
}

/// TR D.6 b: the subscriber orders a VPN device from the device provider.
#[utoipa::path(post, path = "/api/v1/orders", tag = "devices", request_body = NewOrder,
    responses((status = 201, body = Order), (status = 403, body = ErrorBody)))]
pub async fn create_order(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<NewOrder>, JsonRejection>,
) -> Result<(StatusCode, Json<Order>), ApiError> {
    let Json(body) = body?;
    caller.require_org(&body.org_id)?;
    check_name("model", &body.model)?;
    let mut tx = c.db.begin_write().await?;
    org_exists(&mut tx, &body.org_id).await?;
    let id = new_id("order");
    sqlx::query("INSERT INTO orders (id, org_id, model, created_ms) VALUES ($1,$2,$3,$4)")
        .bind(&id)
        .bind(&body.org_id)
        .bind(&body.model)
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await?;
    tx.audit(
        &caller.actor(),
        "device.ordered",
        &id,
        serde_json::json!({"org": body.org_id, "model": body.model, "step": "b"}),
    )
    .await?;
    let o = Order {
        id,
        org_id: body.org_id,
        model: body.model,
        created_ms: tx.now,
    };
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(o)))
}

#[utoipa::path(get, path = "/api/v1/orders", tag = "devices", responses((status = 200, body = [Order])))]
pub async fn list_orders(
    State(c): State<Arc<Center>>,
    caller: Caller,
) -> Result<Json<Vec<Order>>, ApiError> {
    let scope = caller.org_scope()?;
    let rows = sqlx::query("SELECT id, org_id, model, created_ms FROM orders WHERE ($1 = '' OR org_id = $1) ORDER BY created_ms")
        .bind(scope.unwrap_or(""))
        .fetch_all(&c.db.pool)
        .await?;
    Ok(Json(
        rows.iter()
            .map(|r| Order {
                id: r.get(0),
                org_id: r.get(1),
                model: r.get(2),
                created_ms: r.get(3),
            })
            .collect(),
    ))
}
