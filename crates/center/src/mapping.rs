//! Address mapping of overlapping site ranges (R-DP-8, TR D.7 c): whenever a
//! device's subnets are set, the centre re-plans which IPv4 subnets collide
//! and gives each of them a visible prefix from the mapping space
//! (`dodvpn_policy::mapping`), stores it in `devices.mapped_subnets` and
//! re-issues the grants whose visible addresses moved.

use std::collections::HashSet;

use dodvpn_policy::mapping::{self, MappedDevice, DEFAULT_MAPPING_SPACE};
use ipnet::IpNet;
use sqlx::Row;

use crate::db::WriteTx;
use crate::error::ApiError;

fn nets(json: &str) -> Result<Vec<IpNet>, ApiError> {
    serde_json::from_str(json).map_err(|_| ApiError::internal("stored subnets unreadable"))
}

/// A device's stored (subnets, mapped_subnets).
pub async fn load(
    tx: &mut WriteTx<'_>,
    device_id: &str,
) -> Result<(Vec<IpNet>, Vec<IpNet>), ApiError> {
    let row = sqlx::query("SELECT subnets, mapped_subnets FROM devices WHERE id = $1")
        .bind(device_id)
        .fetch_optional(&mut *tx.tx)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no device {device_id}")))?;
    Ok((
        nets(&row.get::<String, _>(0))?,
        nets(&row.get::<String, _>(1))?,
    ))
}

/// The mapping a device keeps when its subnets change to `subnets`.
pub async fn realigned(
    tx: &mut WriteTx<'_>,
    device_id: &str,
    subnets: &[IpNet],
) -> Result<Vec<IpNet>, ApiError> {
    let (old, mapped) = load(tx, device_id).await?;
    Ok(mapping::realign(&old, &mapped, subnets))
}

/// Re-plan the mapping of every device; store and audit what changed.
/// Returns the devices whose visible prefixes changed (their grants need
/// re-issuing).
pub async fn remap(tx: &mut WriteTx<'_>, actor: &str) -> Result<HashSet<String>, ApiError> {
    // Devices with neither ranges nor mappings take no part in the plan.
    let rows = sqlx::query(
        "SELECT id, subnets, mapped_subnets FROM devices \
         WHERE subnets <> '[]' OR mapped_subnets <> '[]' ORDER BY created_ms, id",
    )
    .fetch_all(&mut *tx.tx)
    .await?;
    let mut devices = Vec::with_capacity(rows.len());
    for r in rows {
        devices.push(MappedDevice {
            device_id: r.get(0),
            subnets: nets(&r.get::<String, _>(1))?,
            mapped: nets(&r.get::<String, _>(2))?,
        });
    }
    let changes = mapping::plan(&devices, DEFAULT_MAPPING_SPACE)
        .map_err(|e| ApiError::conflict("mapping_space_exhausted", e.to_string()))?;
    let mut changed = HashSet::new();
    for (id, mapped) in changes {
        sqlx::query("UPDATE devices SET mapped_subnets = $2, updated_ms = $3 WHERE id = $1")
            .bind(&id)
            .bind(serde_json::to_string(&mapped).unwrap_or_else(|_| "[]".into()))
            .bind(tx.now)
            .execute(&mut *tx.tx)
            .await?;
        let subnets = devices
            .iter()
            .find(|d| d.device_id == id)
            .map(|d| d.subnets.clone())
            .unwrap_or_default();
        tx.audit(
            actor,
            "device.mapped",
            &id,
            serde_json::json!({"subnets": subnets, "mapped_subnets": mapped}),
        )
        .await?;
        changed.insert(id);
    }
    Ok(changed)
}
