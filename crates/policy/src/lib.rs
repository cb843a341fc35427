//! dodvpn-policy
