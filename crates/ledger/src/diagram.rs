//! The network diagram as Graphviz DOT. Graphviz (`dot`, from Debian) lays it out:
//! its layered layout of clusters is mature and it writes SVG and PDF directly, which
//! no Rust layout crate does as well today. This module only describes the picture.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeKind {
    /// A site (device) of the organisation the diagram is about.
    OwnSite,
    /// A peer's site reached through dodvpn.
    PeerSite,
    /// The far end of a connection outside dodvpn.
    Outside,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub id: String,
    pub label: String,
    pub kind: NodeKind,
    /// Nodes with the same group are drawn in one box (an organisation).
    pub group: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EdgeState {
    /// A session is up now.
    Live,
    /// Granted, no session up.
    Idle,
    /// Granted only inside approval windows (remote maintenance).
    WindowBound,
    /// A connection outside dodvpn.
    Outside,
}

impl EdgeState {
    /// Colour and line style; the legend in the picture names them in both languages.
    fn style(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Live => ("#1a7f37", "solid", "live / 通信中"),
            Self::Idle => ("#57606a", "solid", "idle / 待機"),
            Self::WindowBound => ("#9a6700", "dashed", "window-bound / 時間枠限定"),
            Self::Outside => ("#cf222e", "dotted", "outside DOD-VPN / DOD-VPN 外"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub state: EdgeState,
    pub label: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Diagram {
    pub title: String,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

/// A DOT double-quoted string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Diagram {
    pub fn to_dot(&self) -> String {
        let mut d = String::new();
        let _ = writeln!(d, "digraph ledger {{");
        let _ = writeln!(d, "  graph [label={}, labelloc=t, rankdir=LR, fontname=\"Noto Sans CJK JP,sans-serif\", compound=true];", quote(&self.title));
        let _ = writeln!(d, "  node [shape=box, style=\"rounded,filled\", fontname=\"Noto Sans CJK JP,sans-serif\"];");
        let _ = writeln!(
            d,
            "  edge [dir=none, fontname=\"Noto Sans CJK JP,sans-serif\", fontsize=10];"
        );
        let mut groups: BTreeMap<&str, Vec<&Node>> = BTreeMap::new();
        for n in &self.nodes {
            groups.entry(n.group.as_str()).or_default().push(n);
        }
        for (i, (group, nodes)) in groups.iter().enumerate() {
            let _ = writeln!(d, "  subgraph cluster_{i} {{");
            let _ = writeln!(
                d,
                "    label={}; style=rounded; color=\"#8c959f\";",
                quote(group)
            );
            for n in nodes {
                let fill = match n.kind {
                    NodeKind::OwnSite => "#ddf4ff",
                    NodeKind::PeerSite => "#f6f8fa",
                    NodeKind::Outside => "#ffebe9",
                };
                let _ = writeln!(
                    d,
                    "    {} [label={}, fillcolor=\"{fill}\"];",
                    quote(&n.id),
                    quote(&n.label)
                );
            }
            let _ = writeln!(d, "  }}");
        }
        for e in &self.edges {
            let (color, style, _) = e.state.style();
            let _ = writeln!(
                d,
                "  {} -> {} [label={}, color=\"{color}\", fontcolor=\"{color}\", style={style}, penwidth=2];",
                quote(&e.from),
                quote(&e.to),
                quote(&e.label)
            );
        }
        // The legend: one sample line per state, so a printed page explains itself.
        let _ = writeln!(d, "  subgraph cluster_legend {{");
        let _ = writeln!(
            d,
            "    label=\"legend / 凡例\"; style=dashed; color=\"#8c959f\";"
        );
        for (i, s) in [
            EdgeState::Live,
            EdgeState::Idle,
            EdgeState::WindowBound,
            EdgeState::Outside,
        ]
        .into_iter()
        .enumerate()
        {
            let (color, style, text) = s.style();
            let _ = writeln!(d, "    legend_{i}a [label=\"\", shape=point, width=0.05];");
            let _ = writeln!(
                d,
                "    legend_{i}b [label={}, shape=plaintext, style=\"\"];",
                quote(text)
            );
            let _ = writeln!(
                d,
                "    legend_{i}a -> legend_{i}b [color=\"{color}\", style={style}, penwidth=2];"
            );
        }
        let _ = writeln!(d, "  }}");
        let _ = writeln!(d, "}}");
        d
    }
}
