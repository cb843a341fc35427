//! dodvpn-center
