//! The head of a request a member's terminal sends its proxy: `CONNECT host:port` for
//! HTTPS, or an absolute-form `GET http://host/path` for plain HTTP. Bounded: a head
//! larger than [`MAX_HEAD`] or with more than [`MAX_HEADERS`] headers is refused.

pub const MAX_HEAD: usize = 16 * 1024;
pub const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRequest {
    /// `CONNECT`, `GET`, `POST`…
    pub method: String,
    pub host: String,
    pub port: u16,
    /// The path and query of a plain-HTTP request; `None` for CONNECT.
    pub path: Option<String>,
    /// The value of `Proxy-Authorization`, if sent (not logged).
    pub proxy_authorization: Option<String>,
    /// Bytes of the head, including the blank line.
    pub head_len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    TooLarge,
    Malformed(String),
    /// An origin-form request (`GET /path`): not a request to a proxy.
    NotProxyForm,
    UnsupportedScheme(String),
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge => write!(
                f,
                "request head larger than {MAX_HEAD} bytes or {MAX_HEADERS} headers"
            ),
            Self::Malformed(e) => write!(f, "malformed request: {e}"),
            Self::NotProxyForm => write!(
                f,
                "not a proxy request (expected CONNECT host:port or an absolute http:// URL)"
            ),
            Self::UnsupportedScheme(s) => {
                write!(f, "scheme {s} is not proxied (use CONNECT for https)")
            }
        }
    }
}

/// `host:port`, `[v6]:port`; the port is required.
fn authority(a: &str, default_port: Option<u16>) -> Result<(String, u16), HeadError> {
    let bad = || HeadError::Malformed(format!("bad authority {a:?}"));
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (h, tail) = rest.split_once(']').ok_or_else(bad)?;
        (h, tail.strip_prefix(':'))
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (a, None),
        }
    };
    let port = match (port, default_port) {
        (Some(p), _) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?,
        (None, Some(d)) => d,
        (None, None) => return Err(bad()),
    };
    if host.is_empty()
        || host
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b"/?#@".contains(&b))
    {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// Parse the head in `buf`; `Ok(None)` until the blank line has arrived.
pub fn parse(buf: &[u8]) -> Result<Option<ProxyRequest>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    };
    if head_len > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let method = req.method.unwrap_or_default().to_string();
    let target = req.path.unwrap_or_default();
    let proxy_authorization = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("proxy-authorization"))
        .map(|h| String::from_utf8_lossy(h.value).into_owned());
    let (host, port, path) = if method == "CONNECT" {
        let (h, p) = authority(target, None)?;
        (h, p, None)
    } else if let Some(rest) = target.strip_prefix("http://") {
        let (auth, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        let auth = auth.rsplit_once('@').map(|(_, a)| a).unwrap_or(auth);
        let (h, p) = authority(auth, Some(80))?;
        let path = if path.is_empty() {
            "/".to_string()
        } else if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        (h, p, Some(path))
    } else if target.starts_with('/') || target == "*" {
        return Err(HeadError::NotProxyForm);
    } else {
        let scheme = target.split("://").next().unwrap_or(target).to_string();
        return Err(HeadError::UnsupportedScheme(scheme));
    };
    Ok(Some(ProxyRequest {
        method,
        host,
        port,
        path,
        proxy_authorization,
        head_len,
    }))
}
