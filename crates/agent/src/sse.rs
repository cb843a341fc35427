//! A small incremental parser for server-sent events (the centre's push stream).
//! Bytes arrive in arbitrary chunks; complete events come out. Only the fields the
//! centre sends are kept (`id`, `event`, `data`); comments (keep-alives) are skipped.

/// One complete event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// Largest event we accept; a stream that sends more is broken or hostile.
pub const MAX_EVENT: usize = 4 * 1024 * 1024;

#[derive(Default)]
pub struct SseParser {
    buf: Vec<u8>,
    cur: SseEvent,
    has_data: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SseError {
    TooLarge,
}

impl std::fmt::Display for SseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "an event on the centre's stream exceeds {MAX_EVENT} bytes"
        )
    }
}

impl std::error::Error for SseError {}

impl SseParser {
    /// Feed bytes; returns the events they complete.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(nl) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + nl;
            let mut line = &self.buf[start..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = String::from_utf8_lossy(line).into_owned();
            start = end + 1;
            if line.is_empty() {
                if self.has_data || self.cur.event.is_some() {
                    out.push(std::mem::take(&mut self.cur));
                }
                self.cur = SseEvent::default();
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.find(':') {
                Some(i) => (
                    &line[..i],
                    line[i + 1..].strip_prefix(' ').unwrap_or(&line[i + 1..]),
                ),
                None => (line.as_str(), ""),
            };
            match field {
                "id" => self.cur.id = Some(value.to_string()),
                "event" => self.cur.event = Some(value.to_string()),
                "data" => {
                    if self.has_data {
                        self.cur.data.push('\n');
                    }
                    self.cur.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
            if self.cur.data.len() > MAX_EVENT {
                return Err(SseError::TooLarge);
            }
        }
        self.buf.drain(..start);
        if self.buf.len() > MAX_EVENT {
            return Err(SseError::TooLarge);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_events_split_anywhere() {
        let text = b": keep-alive\n\nid: 7\nevent: grant\ndata: {\"a\":1}\n\nid: 8\nevent: hello\ndata: x\ndata: y\n\n";
        for split in 0..text.len() {
            let mut p = SseParser::default();
            let mut got = p.push(&text[..split]).unwrap();
            got.extend(p.push(&text[split..]).unwrap());
            assert_eq!(got.len(), 2, "split at {split}");
            assert_eq!(got[0].id.as_deref(), Some("7"));
            assert_eq!(got[0].event.as_deref(), Some("grant"));
            assert_eq!(got[0].data, "{\"a\":1}");
            assert_eq!(got[1].data, "x\ny");
        }
    }

    #[test]
    fn crlf_and_incomplete_event_held_back() {
        let mut p = SseParser::default();
        assert!(p.push(b"id: 1\r\ndata: a\r\n").unwrap().is_empty());
        let got = p.push(b"\r\n").unwrap();
        assert_eq!(
            got,
            vec![SseEvent {
                id: Some("1".into()),
                event: None,
                data: "a".into()
            }]
        );
    }

    #[test]
    fn refuses_endless_line() {
        let mut p = SseParser::default();
        let big = vec![b'a'; MAX_EVENT + 1];
        assert_eq!(p.push(&big), Err(SseError::TooLarge));
    }

    proptest! {
        #[test]
        fn never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20)) {
            let mut p = SseParser::default();
            for c in chunks {
                let _ = p.push(&c);
            }
        }

        #[test]
        fn round_trips_any_events(evs in proptest::collection::vec(("[0-9]{1,6}", "[a-z_]{1,10}", "[ -~]{0,40}"), 1..10), cut in 0usize..2000) {
            let mut text = String::new();
            for (id, ev, data) in &evs {
                text.push_str(&format!("id: {id}\nevent: {ev}\ndata: {data}\n\n"));
            }
            let bytes = text.as_bytes();
            let cut = cut.min(bytes.len());
            let mut p = SseParser::default();
            let mut got = p.push(&bytes[..cut]).unwrap();
            got.extend(p.push(&bytes[cut..]).unwrap());
            prop_assert_eq!(got.len(), evs.len());
            for (g, (id, ev, data)) in got.iter().zip(&evs) {
                prop_assert_eq!(g.id.as_deref(), Some(id.as_str()));
                prop_assert_eq!(g.event.as_deref(), Some(ev.as_str()));
                prop_assert_eq!(&g.data, data);
            }
        }
    }
}
