//! `dodvpn tunnel status`: the daemon answers on a Unix socket (mode 0600) with a JSON
//! snapshot of its SAs and counters.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use crate::daemon::Status;

pub fn serve(path: &Path, status: Arc<Mutex<Status>>) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(path);
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    std::thread::Builder::new()
        .name("tunnel-control".into())
        .spawn(move || {
            for s in listener.incoming().flatten() {
                let snap = status.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let mut s = s;
                let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
                let _ = s.write_all(serde_json::to_string(&snap).unwrap_or_default().as_bytes());
            }
        })?;
    Ok(())
}

pub fn query(path: &Path) -> anyhow::Result<serde_json::Value> {
    let mut s = UnixStream::connect(path).with_context(|| {
        format!(
            "no tunnel daemon answers on {} (is `dodvpn tunnel --config …` running?)",
            path.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .context("the daemon's answer was cut off")?;
    serde_json::from_str(&text).context("the daemon's answer is not JSON")
}
