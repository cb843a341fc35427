//! FTP replies (RFC 959) and what an anonymous listing shows.

/// A complete reply: its code and text, once the final line (`NNN text`) has arrived;
/// None while more bytes are needed or if the bytes are not an FTP reply.
pub fn reply(buf: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(buf);
    let first = text.get(..3)?;
    let code: u16 = first.parse().ok()?;
    for line in text.split("\r\n").chain(text.split('\n')) {
        let line = line.trim_end_matches('\r');
        if line.len() >= 4 && line.starts_with(first) && line.as_bytes()[3] == b' ' {
            // Only final if the line was terminated.
            if text.contains(&format!("{line}\n")) || text.contains(&format!("{line}\r\n")) {
                return Some((code, text.trim_end().to_string()));
            }
        }
        if line.len() == 3 && line == first && text.contains(&format!("{line}\n")) {
            return Some((code, text.trim_end().to_string()));
        }
    }
    None
}

/// The data address of a `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)` reply. Only the
/// port is used: the data connection goes to the same host as the control one, so a
/// hostile server cannot point the scanner elsewhere.
pub fn pasv_port(reply: &str) -> Option<u16> {
    let open = reply.find('(')?;
    let close = reply[open..].find(')')? + open;
    let nums: Vec<u16> = reply[open + 1..close]
        .split(',')
        .map(|s| s.trim().parse::<u16>())
        .collect::<Result<_, _>>()
        .ok()?;
    if nums.len() != 6 || nums.iter().any(|&n| n > 255) {
        return None;
    }
    Some(nums[4] * 256 + nums[5])
}

/// Lines of a Unix `LIST` whose entry is a directory writable by everyone
/// (`drwxrwxrwx`, `drwx-w--w-`…: the 9th permission character, other-write, is `w`).
pub fn world_writable_dirs(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter(|l| {
            let b = l.as_bytes();
            b.len() >= 10 && b[0] == b'd' && b[8] == b'w'
        })
        .map(|l| l.trim_end().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn replies() {
        assert_eq!(
            reply(b"220 (vsFTPd 3.0.3)\r\n"),
            Some((220, "220 (vsFTPd 3.0.3)".into()))
        );
        assert_eq!(reply(b"220 (vsFTPd"), None);
        assert_eq!(reply(b"230-Welcome\r\n"), None);
        assert_eq!(
            reply(b"230-Welcome\r\n230 Login successful.\r\n").map(|r| r.0),
            Some(230)
        );
        assert_eq!(reply(b"HTTP/1.1 400\r\n"), None);
        assert_eq!(
            pasv_port("227 Entering Passive Mode (10,0,0,1,195,80)."),
            Some(50000)
        );
        assert_eq!(pasv_port("227 (1,2,3,4,300,1)"), None);
        assert_eq!(pasv_port("227 nothing"), None);
    }

    #[test]
    fn writable_directories() {
        let l = "drwxr-xr-x    2 0 0 4096 Dec 02 16:00 pub\r\ndrwxrwxrwx    2 0 0 4096 Dec 02 16:00 incoming\r\n-rw-rw-rw- 1 0 0 1 Dec 02 f\r\n";
        assert_eq!(
            world_writable_dirs(l),
            vec!["drwxrwxrwx    2 0 0 4096 Dec 02 16:00 incoming"]
        );
    }

    proptest! {
        #[test]
        fn never_panic(b in proptest::collection::vec(any::<u8>(), 0..400), s in ".{0,100}") {
            let _ = reply(&b);
            let _ = pasv_port(&s);
            let _ = world_writable_dirs(&s);
        }
    }
}
