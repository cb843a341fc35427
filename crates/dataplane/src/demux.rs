//! UDP 4500 demultiplexing (RFC 3948) and the events handed to the IKE layer.

use std::net::{IpAddr, SocketAddr};

use dodvpn_wire::{classify_udp4500, Udp4500};
use ipnet::IpNet;

/// An IKE datagram for the IKE layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkeDatagram {
    /// Local socket it arrived on (port 500 or 4500).
    pub local: SocketAddr,
    /// Sender.
    pub remote: SocketAddr,
    /// The IKE message (without the non-ESP marker on 4500).
    pub data: Vec<u8>,
}

/// Events from the data plane to the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A packet hit a trap selector with no SA: negotiate one.
    Acquire {
        /// The trap selector.
        selector: IpNet,
        /// Inner destination of the packet that triggered it.
        first_packet_dst: IpAddr,
    },
    /// An IKE datagram arrived.
    Ike(IkeDatagram),
}

/// What a UDP 4500 payload is, for the data path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demux {
    /// ESP with this SPI: the whole payload is the ESP packet.
    Esp(u32),
    /// IKE: the message starts at this offset (4, after the marker).
    Ike(usize),
    /// NAT keepalive (0xFF).
    Keepalive,
    /// Garbage.
    Invalid,
}

/// Classify a UDP payload received on the NAT-T port.
#[inline]
pub fn demux_udp4500(payload: &[u8]) -> Demux {
    match classify_udp4500(payload) {
        Udp4500::Esp(h) => Demux::Esp(h.spi),
        Udp4500::Ike(_) => Demux::Ike(dodvpn_wire::NON_ESP_MARKER.len()),
        Udp4500::Keepalive => Demux::Keepalive,
        _ => Demux::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esp_ike_keepalive_invalid() {
        let esp = [0x12, 0x34, 0x56, 0x78, 0, 0, 0, 1, 9, 9, 9, 9];
        assert_eq!(demux_udp4500(&esp), Demux::Esp(0x1234_5678));
        let mut ike = vec![0, 0, 0, 0];
        ike.extend_from_slice(&[0xAA; 28]);
        assert_eq!(demux_udp4500(&ike), Demux::Ike(4));
        assert_eq!(&ike[4..], &[0xAA; 28][..]);
        assert_eq!(demux_udp4500(&[0xFF]), Demux::Keepalive);
        assert_eq!(demux_udp4500(&[1, 2, 3]), Demux::Invalid);
        assert_eq!(demux_udp4500(&[]), Demux::Invalid);
        // 0xFF followed by more bytes is not a keepalive.
        assert_ne!(
            demux_udp4500(&[0xFF, 0, 0, 0, 0, 0, 0, 1]),
            Demux::Keepalive
        );
    }
}
