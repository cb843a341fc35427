//! dodvpn-pki
