//! HTTP/1 responses as the checks need them: status, `Server`, page title, and
//! whether the page is a directory index or an appliance's login page.

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub server: Option<String>,
    pub title: Option<String>,
    pub body_start: String,
}

/// Parse what arrived of a response (head and the start of the body). None if it is
/// not an HTTP/1 response.
pub fn parse(buf: &[u8]) -> Option<Head> {
    let text = String::from_utf8_lossy(buf);
    let mut lines = text.split('\n');
    let status_line = lines.next()?.trim_end_matches('\r');
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    let mut head = Head {
        status,
        ..Default::default()
    };
    for l in lines.by_ref() {
        let l = l.trim_end_matches('\r');
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.trim().eq_ignore_ascii_case("server") {
                head.server = Some(v.trim().chars().take(200).collect());
            }
        }
    }
    let body: String = lines.collect::<Vec<_>>().join("\n");
    head.title = title(&body);
    head.body_start = body.chars().take(4096).collect();
    Some(head)
}

fn title(body: &str) -> Option<String> {
    let lower = body.to_ascii_lowercase();
    let start = lower.find("<title")?;
    let gt = lower[start..].find('>')? + start + 1;
    let end = lower[gt..]
        .find("</title")
        .map(|e| e + gt)
        .unwrap_or(lower.len().min(gt + 200));
    let t: String = body
        .get(gt..end)?
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    Some(t.chars().take(200).collect())
}

impl Head {
    /// Apache's, nginx's and lighttpd's automatic index pages.
    pub fn is_directory_listing(&self) -> bool {
        self.status == 200
            && (self
                .title
                .as_deref()
                .is_some_and(|t| t.starts_with("Index of /"))
                || self.body_start.contains("<h1>Index of /"))
    }

    /// Titles and banners of VPN and remote-maintenance appliances' login pages.
    pub fn vpn_login_product(&self) -> Option<&'static str> {
        const MARKS: &[(&str, &str)] = &[
            ("fortigate", "Fortinet FortiGate"),
            ("fortinet", "Fortinet"),
            ("globalprotect", "Palo Alto GlobalProtect"),
            ("pulse secure", "Pulse Secure"),
            ("ivanti connect secure", "Ivanti Connect Secure"),
            ("sonicwall", "SonicWall"),
            ("citrix gateway", "Citrix Gateway"),
            ("netscaler", "Citrix NetScaler"),
            ("sslvpn", "SSL-VPN"),
            ("ssl-vpn", "SSL-VPN"),
            ("ssl vpn", "SSL-VPN"),
        ];
        let hay = format!(
            "{} {}",
            self.title.as_deref().unwrap_or("").to_ascii_lowercase(),
            self.server.as_deref().unwrap_or("").to_ascii_lowercase()
        );
        MARKS.iter().find(|(m, _)| hay.contains(m)).map(|(_, p)| *p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn apache_index() {
        let r = b"HTTP/1.1 200 OK\r\nDate: x\r\nServer: Apache/2.4.62 (Debian)\r\n\r\n<html><head>\n<title>Index of /</title></head><body><h1>Index of /</h1>";
        let h = parse(r).unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.server.as_deref(), Some("Apache/2.4.62 (Debian)"));
        assert_eq!(h.title.as_deref(), Some("Index of /"));
        assert!(h.is_directory_listing());
        assert_eq!(h.vpn_login_product(), None);
        let v = parse(b"HTTP/1.0 200 OK\r\n\r\n<TITLE> FortiGate  Login</TITLE>").unwrap();
        assert_eq!(v.vpn_login_product(), Some("Fortinet FortiGate"));
        assert!(parse(b"SSH-2.0-x\r\n").is_none());
        assert!(parse(b"HTTP/1.1 abc\r\n").is_none());
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..800)) {
            if let Some(h) = parse(&b) {
                let _ = h.is_directory_listing();
                let _ = h.vpn_login_product();
            }
        }
    }
}
