//! Which TCP ports to probe: a built-in list of commonly exposed services, or a set
//! the operator gives (`22,80,8000-8100`).

/// The default set: the 1,000 TCP ports most often open (see [`crate::top_tcp`]) and the
/// few below that the seed diagnoses and MHLW's notices name but the top 1,000 lacks.
pub fn default_tcp() -> Vec<u16> {
    let mut v: Vec<u16> = crate::top_tcp::TOP_1000_TCP.to_vec();
    v.extend_from_slice(CURATED_TCP);
    v.sort_unstable();
    v.dedup();
    v
}

/// Services seen exposed in the seed diagnoses and in MHLW's notices, plus the usual
/// suspects (remote maintenance, VPN appliances' web pages, inetd services).
pub const CURATED_TCP: &[u16] = &[
    7, 9, 13, 19, 21, 22, 23, 25, 26, 37, 53, 79, 80, 81, 88, 106, 110, 111, 113, 119, 135, 139,
    143, 144, 179, 199, 389, 427, 443, 444, 445, 465, 513, 514, 515, 543, 544, 548, 554, 587, 631,
    636, 646, 873, 990, 993, 995, 1025, 1026, 1027, 1080, 1110, 1433, 1521, 1720, 1723, 1755, 1900,
    2000, 2001, 2049, 2121, 2717, 3000, 3128, 3306, 3389, 3986, 4433, 4443, 4899, 5000, 5009, 5051,
    5060, 5101, 5190, 5357, 5432, 5631, 5666, 5800, 5900, 5901, 6000, 6001, 6646, 7070, 8000, 8008,
    8009, 8080, 8081, 8443, 8888, 9100, 9999, 10000, 10443, 32768, 49152, 49153, 49154, 49155,
    49156, 49157,
];

/// Parse `22,80,8000-8100`; sorted, deduplicated, 1–65535.
pub fn parse(spec: &str) -> Result<Vec<u16>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || {
            format!("ポート指定が不正です / bad port or range {part:?} (use e.g. 22,80,8000-8100)")
        };
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<u16>().map_err(|_| bad())?,
                b.trim().parse::<u16>().map_err(|_| bad())?,
            ),
            None => {
                let p = part.parse::<u16>().map_err(|_| bad())?;
                (p, p)
            }
        };
        if a == 0 || b < a {
            return Err(bad());
        }
        out.extend(a..=b);
    }
    if out.is_empty() {
        return Err("ポートが指定されていません / no ports given".into());
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn specs() {
        assert_eq!(
            parse("22, 80,8000-8002,80").unwrap(),
            vec![22, 80, 8000, 8001, 8002]
        );
        assert!(parse("0").is_err());
        assert!(parse("9-1").is_err());
        assert!(parse("x").is_err());
        assert!(parse("").is_err());
        assert!(parse("70000").is_err());
        assert_eq!(parse("1-65535").unwrap().len(), 65535);
        let mut t = CURATED_TCP.to_vec();
        t.sort_unstable();
        t.dedup();
        assert_eq!(t.len(), CURATED_TCP.len());
        let d = default_tcp();
        assert!(d.len() >= 1000 && d.windows(2).all(|w| w[0] < w[1]));
        for p in [
            7, 13, 19, 21, 22, 23, 53, 80, 443, 445, 1080, 3128, 3389, 5900, 8443, 10443,
        ] {
            assert!(d.contains(&p), "{p}");
        }
        let top = crate::top_tcp::TOP_1000_TCP;
        assert!(top.windows(2).all(|w| w[0] < w[1]) && top[0] > 0);
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = parse(&s);
        }
    }
}
