//! dodvpn-agent
