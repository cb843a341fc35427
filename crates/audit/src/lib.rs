//! dodvpn-audit
