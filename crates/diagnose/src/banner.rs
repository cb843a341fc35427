//! What a service's first words say about it.

/// The service a greeting (bytes a server sends unasked) reveals.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Greeting {
    Ssh,
    Ftp,
    Smtp,
    Vnc,
    /// Telnet option negotiation (IAC DO/WILL …).
    Telnet,
    Other,
}

pub fn classify(b: &[u8]) -> Greeting {
    if b.starts_with(b"SSH-") {
        Greeting::Ssh
    } else if b.starts_with(b"RFB ") {
        Greeting::Vnc
    } else if b.first() == Some(&0xff) && b.get(1).is_some_and(|c| (0xfb..=0xfe).contains(c)) {
        Greeting::Telnet
    } else if b.starts_with(b"220") {
        let line = first_line(b).to_ascii_lowercase();
        if line.contains("smtp")
            || line.contains("esmtp")
            || line.contains("mail")
            || line.contains("postfix")
            || line.contains("exim")
        {
            Greeting::Smtp
        } else {
            Greeting::Ftp
        }
    } else {
        Greeting::Other
    }
}

/// The first line, without CR/LF (at most 256 bytes).
pub fn first_line(b: &[u8]) -> String {
    let end = b
        .iter()
        .position(|&c| c == b'\n')
        .unwrap_or(b.len())
        .min(256);
    String::from_utf8_lossy(&b[..end])
        .trim_end_matches('\r')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn greetings() {
        assert_eq!(classify(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n"), Greeting::Ssh);
        assert_eq!(classify(b"220 (vsFTPd 3.0.3)\r\n"), Greeting::Ftp);
        assert_eq!(
            classify(b"220 mx.example ESMTP Postfix\r\n"),
            Greeting::Smtp
        );
        assert_eq!(classify(b"RFB 003.008\n"), Greeting::Vnc);
        assert_eq!(classify(&[0xff, 0xfd, 0x18]), Greeting::Telnet);
        assert_eq!(classify(b""), Greeting::Other);
        assert_eq!(first_line(b"220 a\r\n221 b"), "220 a");
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = classify(&b);
            prop_assert!(first_line(&b).len() <= 256 * 3);
        }
    }
}
