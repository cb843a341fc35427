//! The daemon's control socket (mode 0600): one JSON request line in, one JSON answer
//! out. `dodvpn tunnel status` and `dodvpn tunnel down` are its clients.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::daemon::Handle;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status,
    /// Delete the IKE SAs of one connection (or of all when `conn` is absent).
    Down {
        conn: Option<String>,
    },
}

/// Longest request line accepted; anything longer is refused unread.
const MAX_REQUEST: u64 = 4096;

pub fn serve(path: &Path, daemon: Handle) -> anyhow::Result<()> {
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
            for mut s in listener.incoming().flatten() {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
                let answer = answer(&mut s, &daemon);
                let _ = s.write_all(answer.to_string().as_bytes());
            }
        })?;
    Ok(())
}

fn answer(s: &mut UnixStream, daemon: &Handle) -> serde_json::Value {
    let mut line = String::new();
    if let Err(e) = BufReader::new(s.take(MAX_REQUEST)).read_line(&mut line) {
        return serde_json::json!({"error": format!("cannot read the request: {e}")});
    }
    let result = serde_json::from_str::<Request>(line.trim())
        .map_err(|e| anyhow::anyhow!("bad request: {e}"))
        .and_then(|req| match req {
            Request::Status => Ok(serde_json::to_value(daemon.status()?)?),
            Request::Down { conn } => {
                Ok(serde_json::json!({"deleted_ike_sas": daemon.down(conn.as_deref())?}))
            }
        });
    result.unwrap_or_else(|e| serde_json::json!({"error": format!("{e:#}")}))
}

/// Send one request to the daemon listening on `path` and return its answer; an
/// `{"error": …}` answer becomes an error.
pub fn request(path: &Path, req: &Request) -> anyhow::Result<serde_json::Value> {
    let mut s = UnixStream::connect(path).with_context(|| {
        format!(
            "no tunnel daemon answers on {} (is `dodvpn tunnel --config …` running?)",
            path.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    s.write_all(line.as_bytes())
        .context("cannot send the request")?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .context("the daemon's answer was cut off")?;
    let v: serde_json::Value =
        serde_json::from_str(&text).context("the daemon's answer is not JSON")?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        anyhow::bail!("the tunnel daemon refused: {e}");
    }
    Ok(v)
}
