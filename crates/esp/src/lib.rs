//! dodvpn-esp
