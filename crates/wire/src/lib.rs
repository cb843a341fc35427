//! dodvpn-wire
