//! The server name in a TLS ClientHello (RFC 8446 4.1.2, RFC 6066 3), read without
//! decrypting anything: after a CONNECT the gateway reads the client's first bytes,
//! checks the name against the CONNECT host, then relays the bytes unchanged.
//! A ClientHello may span several TLS records; they are joined up to a limit.

/// The largest ClientHello the gateway will wait for (post-quantum key shares make
/// them a few KiB; 16 KiB is one full record).
pub const MAX_HELLO: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sni {
    /// More bytes are needed.
    Incomplete,
    /// A ClientHello without a server_name extension (or without a host_name entry).
    Absent,
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SniError {
    NotTls,
    NotClientHello,
    TooLarge,
    Malformed(&'static str),
}

impl std::fmt::Display for SniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotTls => write!(f, "not a TLS handshake"),
            Self::NotClientHello => write!(f, "the first handshake message is not a ClientHello"),
            Self::TooLarge => write!(f, "the ClientHello is larger than {MAX_HELLO} bytes"),
            Self::Malformed(what) => write!(f, "malformed ClientHello: {what}"),
        }
    }
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SniError> {
        if self.b.len() < n {
            return Err(SniError::Malformed(what));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self, what: &'static str) -> Result<usize, SniError> {
        Ok(self.take(1, what)?[0] as usize)
    }
    fn u16(&mut self, what: &'static str) -> Result<usize, SniError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
    }
    fn vec8(&mut self, what: &'static str) -> Result<&'a [u8], SniError> {
        let n = self.u8(what)?;
        self.take(n, what)
    }
    fn vec16(&mut self, what: &'static str) -> Result<&'a [u8], SniError> {
        let n = self.u16(what)?;
        self.take(n, what)
    }
}

/// Join the handshake bytes of the leading handshake records.
fn handshake_bytes(buf: &[u8]) -> Result<Option<Vec<u8>>, SniError> {
    let mut out = Vec::new();
    let mut rest = buf;
    loop {
        if rest.len() < 5 {
            return Ok(None);
        }
        if rest[0] != 22 {
            return Err(if out.is_empty() {
                SniError::NotTls
            } else {
                SniError::Malformed("record type")
            });
        }
        if rest[1] != 3 {
            return Err(SniError::NotTls);
        }
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        if len == 0 || len > MAX_HELLO {
            return Err(SniError::Malformed("record length"));
        }
        if rest.len() < 5 + len {
            return Ok(None);
        }
        out.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
        if out.len() >= 4 {
            if out[0] != 1 {
                return Err(SniError::NotClientHello);
            }
            let want = 4 + (((out[1] as usize) << 16) | ((out[2] as usize) << 8) | out[3] as usize);
            if want > MAX_HELLO {
                return Err(SniError::TooLarge);
            }
            if out.len() >= want {
                out.truncate(want);
                return Ok(Some(out));
            }
        }
    }
}

/// The SNI host name in the bytes a client sent first. Never panics on any input.
pub fn server_name(buf: &[u8]) -> Result<Sni, SniError> {
    let Some(hs) = handshake_bytes(buf)? else {
        return if buf.len() > MAX_HELLO + 5 * 4 {
            Err(SniError::TooLarge)
        } else {
            Ok(Sni::Incomplete)
        };
    };
    let mut r = Reader { b: &hs[4..] };
    r.take(2 + 32, "version and random")?;
    r.vec8("session id")?;
    r.vec16("cipher suites")?;
    r.vec8("compression methods")?;
    if r.b.is_empty() {
        return Ok(Sni::Absent);
    }
    let mut ext = Reader {
        b: r.vec16("extensions")?,
    };
    while !ext.b.is_empty() {
        let typ = ext.u16("extension type")?;
        let body = ext.vec16("extension body")?;
        if typ != 0 {
            continue;
        }
        let mut list = Reader {
            b: Reader { b: body }.vec16("server name list")?,
        };
        while !list.b.is_empty() {
            let kind = list.u8("name type")?;
            let name = list.vec16("host name")?;
            if kind == 0 {
                let name = std::str::from_utf8(name)
                    .map_err(|_| SniError::Malformed("host name is not text"))?;
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
                {
                    return Err(SniError::Malformed("host name characters"));
                }
                return Ok(Sni::Name(name.to_ascii_lowercase()));
            }
        }
        return Ok(Sni::Absent);
    }
    Ok(Sni::Absent)
}
