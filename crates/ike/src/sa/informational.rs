//! INFORMATIONAL requests from the peer (§1.4): DELETE of child SAs or of the
//! IKE SA, liveness checks (empty), MOBIKE address updates and COOKIE2
//! (RFC 4555 §3.5, §3.8).

use std::time::Instant;

use dodvpn_wire::{Delete, ExchangeType, NotifyType, Payload, ProtocolId};

use super::payloads::{find_notify, first_error, notify};
use super::{IkeSa, State};
use crate::{DownReason, Event};

impl IkeSa {
    /// The answer to our UPDATE_SA_ADDRESSES (RFC 4555 §3.5): the SA now runs
    /// on the new addresses; whether a NAT is in the new path (§3.9).
    pub(super) fn on_update_response(&mut self, payloads: &[Payload]) {
        if let Some(e) = first_error(payloads) {
            // §3.9 UNEXPECTED_NAT_DETECTED and the like: the peer refused the move.
            tracing::warn!(
                "IKE SA {:016x}: the peer refused our new address: {e:?}",
                self.id()
            );
            return self.fail(format!("address update refused: {e:?}"));
        }
        let (supported, nat) = self.check_nat(payloads, self.spi_r, self.local, self.remote);
        if supported {
            self.local_behind_nat = nat;
        }
        self.events.push_back(Event::AddressesChanged {
            sa: self.id(),
            local: self.local,
            remote: self.remote,
            nat_t: self.nat_t,
        });
    }

    pub(super) fn on_informational(&mut self, now: Instant, id: u32, payloads: &[Payload]) {
        let mut out = Vec::new();
        let mut delete_ike = false;
        let nat_detection = find_notify(payloads, NotifyType::NatDetectionSourceIp).is_some();
        for p in payloads {
            match p {
                Payload::Delete(d) if d.protocol == ProtocolId::Ike => delete_ike = true,
                Payload::Delete(d)
                    if d.protocol == ProtocolId::Esp || d.protocol == ProtocolId::Ah =>
                {
                    let mut ours = Vec::new();
                    for spi in d.spis_u32() {
                        if let Some(i) = self.children.iter().position(|c| c.remote_spi == spi) {
                            let c = self.children.remove(i);
                            ours.push(c.local_spi);
                            self.events.push_back(Event::ChildSaDeleted {
                                sa: self.id(),
                                local_spi: c.local_spi,
                                remote_spi: c.remote_spi,
                            });
                        }
                    }
                    // §1.4.1: the response carries the paired DELETE.
                    if !ours.is_empty() {
                        out.push(Payload::Delete(Delete::esp(&ours)));
                    }
                }
                Payload::Notify(n) => match n.notify_type {
                    // RFC 4555 §3.5 / §3.8: MOBIKE address update and return routability.
                    NotifyType::UpdateSaAddresses if nat_detection => {
                        out.extend(self.nat_notifies(self.spi_r));
                    }
                    NotifyType::Cookie2 => out.push(notify(NotifyType::Cookie2, n.data.clone())),
                    _ => {}
                },
                _ => {}
            }
        }
        self.respond(now, ExchangeType::Informational, id, &out);
        if delete_ike {
            self.close(if self.state == State::Rekeyed {
                DownReason::Rekeyed
            } else {
                DownReason::PeerDeleted
            });
        }
    }
}
