//! What the NAT tests (punch.rs, roaming.rs) share: a CA made on the spot and
//! service certificates under it.

use std::sync::Arc;

use dodvpn_ike::{LocalAuth, RemoteAuth, RsaScheme};
use dodvpn_tunnel::peer::PeerCertValidator;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair,
};

pub struct Pki {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "NAT test CA");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).unwrap();
        Pki {
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// Our certificate for `dns` (ECDSA P-256) and the key that signs with it.
    pub fn local_auth(&self, dns: &str) -> LocalAuth {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![dns.to_string()]).unwrap();
        p.not_before = date_time_ymd(2025, 1, 1);
        p.not_after = date_time_ymd(2035, 1, 1);
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        let cert_der = p.signed_by(&key, &self.issuer).unwrap().der().to_vec();
        let signer =
            dodvpn_ike::signer_from_pkcs8(&key.serialize_der(), RsaScheme::Pkcs1Sha256).unwrap();
        LocalAuth::Cert { cert_der, signer }
    }

    /// Peers' certificates are checked against this CA.
    pub fn remote_auth(&self) -> RemoteAuth {
        RemoteAuth::Cert(Arc::new(
            PeerCertValidator::from_pem(self.pem.as_bytes()).unwrap(),
        ))
    }
}
