//! PKCS#11 key store (R-PKI-3): hardware token, HSM or TPM (tested with
//! SoftHSM2). Keys are generated on the token as sensitive, non-extractable
//! P-256 key pairs labelled `dodvpn-tier1` / `dodvpn-tier2`; signing is
//! CKM_ECDSA over a SHA-256 digest computed here. Certificates and small
//! files live in a directory beside it.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use super::{CertDir, KeyStore};
use crate::{der, PkiError, Tier};

/// Key store on a PKCS#11 token.
pub struct Pkcs11KeyStore {
    module: PathBuf,
    token_label: String,
    certs: CertDir,
    /// PKCS#11 sessions are not thread-safe; one call at a time.
    session: Mutex<Session>,
    // Dropped last: finalises the module after the session is closed.
    _ctx: Pkcs11,
}

impl std::fmt::Debug for Pkcs11KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11KeyStore")
            .field("module", &self.module)
            .field("token", &self.token_label)
            .finish_non_exhaustive()
    }
}

fn ck(what: &str) -> impl Fn(CkError) -> PkiError + '_ {
    move |e| PkiError::Pkcs11(format!("{what}: {e}"))
}

fn label(tier: Tier) -> Vec<u8> {
    format!("dodvpn-tier{}", tier.number()).into_bytes()
}

/// CKA_EC_POINT is a DER OCTET STRING holding the point (some modules return
/// the bare point); accept both and return the 65-byte uncompressed point.
fn ec_point(v: &[u8]) -> Option<Vec<u8>> {
    match v {
        [0x04, 0x41, rest @ ..] if rest.len() == 65 && rest[0] == 0x04 => Some(rest.to_vec()),
        [0x04, ..] if v.len() == 65 => Some(v.to_vec()),
        _ => None,
    }
}

impl Pkcs11KeyStore {
    /// Load `module_path`, find the token labelled `token_label`, log in as
    /// user with `pin`; certificates and files go to `dir_for_certs`.
    pub fn open(
        module_path: &Path,
        token_label: &str,
        pin: &str,
        dir_for_certs: &Path,
    ) -> Result<Pkcs11KeyStore, PkiError> {
        let ctx = Pkcs11::new(module_path).map_err(|e| {
            PkiError::Pkcs11(format!(
                "cannot load PKCS#11 module {}: {e}",
                module_path.display()
            ))
        })?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => {
                return Err(PkiError::Pkcs11(format!(
                    "initialising {}: {e}",
                    module_path.display()
                )))
            }
        }
        let mut slot = None;
        for s in ctx.get_slots_with_token().map_err(ck("listing slots"))? {
            let info = ctx.get_token_info(s).map_err(ck("reading token info"))?;
            if info.label().trim_end() == token_label {
                slot = Some(s);
                break;
            }
        }
        let slot = slot.ok_or_else(|| {
            PkiError::Pkcs11(format!(
                "no token labelled {token_label:?} in {}",
                module_path.display()
            ))
        })?;
        let session = ctx.open_rw_session(slot).map_err(ck("opening a session"))?;
        let pin = AuthPin::from(pin.to_owned());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                return Err(PkiError::Pkcs11(format!(
                    "wrong PIN for token {token_label:?}"
                )))
            }
            Err(e) => {
                return Err(PkiError::Pkcs11(format!(
                    "login to token {token_label:?}: {e}"
                )))
            }
        }
        Ok(Pkcs11KeyStore {
            module: module_path.to_owned(),
            token_label: token_label.to_owned(),
            certs: CertDir::new(dir_for_certs)?,
            session: Mutex::new(session),
            _ctx: ctx,
        })
    }

    fn session(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn find(
        session: &Session,
        tier: Tier,
        class: ObjectClass,
    ) -> Result<Option<ObjectHandle>, PkiError> {
        let found = session
            .find_objects(&[Attribute::Class(class), Attribute::Label(label(tier))])
            .map_err(ck("searching the token"))?;
        Ok(found.into_iter().next())
    }

    fn spki(session: &Session, tier: Tier) -> Result<Option<Vec<u8>>, PkiError> {
        let Some(public) = Self::find(session, tier, ObjectClass::PUBLIC_KEY)? else {
            return Ok(None);
        };
        let attrs = session
            .get_attributes(public, &[AttributeType::EcPoint])
            .map_err(ck("reading the public key"))?;
        for a in attrs {
            if let Attribute::EcPoint(v) = a {
                let point = ec_point(&v).ok_or_else(|| {
                    PkiError::Pkcs11("token returned an unexpected EC point".into())
                })?;
                return Ok(Some(der::p256_spki(&point)));
            }
        }
        Err(PkiError::Pkcs11(
            "token did not return the public EC point".into(),
        ))
    }

    fn generate_on_token(session: &Session, tier: Tier) -> Result<Vec<u8>, PkiError> {
        let id = vec![tier.number()];
        let public = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(der::P256_EC_PARAMS.to_vec()),
            Attribute::Label(label(tier)),
            Attribute::Id(id.clone()),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(label(tier)),
            Attribute::Id(id),
        ];
        session
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            .map_err(ck("generating a P-256 key pair on the token"))?;
        Self::spki(session, tier)?
            .ok_or_else(|| PkiError::Pkcs11("generated key not found on the token".into()))
    }

    /// (CKA_SENSITIVE, CKA_EXTRACTABLE) of the tier's private key, for audits and tests.
    pub fn key_protection(&self, tier: Tier) -> Result<(bool, bool), PkiError> {
        let session = self.session();
        let private =
            Self::find(&session, tier, ObjectClass::PRIVATE_KEY)?.ok_or(PkiError::NoKey(tier))?;
        let attrs = session
            .get_attributes(
                private,
                &[AttributeType::Sensitive, AttributeType::Extractable],
            )
            .map_err(ck("reading key attributes"))?;
        let (mut sensitive, mut extractable) = (false, true);
        for a in attrs {
            match a {
                Attribute::Sensitive(v) => sensitive = v,
                Attribute::Extractable(v) => extractable = v,
                _ => {}
            }
        }
        Ok((sensitive, extractable))
    }
}

const MAILBOX_LABEL: &str = "dodvpn-mailbox-";

impl Pkcs11KeyStore {
    /// Mailbox keys on the token: (index, private handle), oldest first.
    fn mailbox_handles(session: &Session) -> Result<Vec<(u32, ObjectHandle)>, PkiError> {
        let found = session
            .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
            .map_err(ck("searching the token"))?;
        let mut out = Vec::new();
        for h in found {
            let attrs = session
                .get_attributes(h, &[AttributeType::Label])
                .map_err(ck("reading a key label"))?;
            for a in attrs {
                if let Attribute::Label(l) = a {
                    let l = String::from_utf8_lossy(&l).to_string();
                    if let Some(i) = l
                        .strip_prefix(MAILBOX_LABEL)
                        .and_then(|n| n.parse::<u32>().ok())
                    {
                        out.push((i, h));
                    }
                }
            }
        }
        out.sort_unstable_by_key(|(i, _)| *i);
        Ok(out)
    }

    fn mailbox_spki(session: &Session, index: u32) -> Result<Vec<u8>, PkiError> {
        let label = format!("{MAILBOX_LABEL}{index}").into_bytes();
        let public = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Label(label),
            ])
            .map_err(ck("searching the token"))?
            .into_iter()
            .next()
            .ok_or_else(|| PkiError::Pkcs11(format!("mailbox key {index} has no public key")))?;
        for a in session
            .get_attributes(public, &[AttributeType::EcPoint])
            .map_err(ck("reading the public key"))?
        {
            if let Attribute::EcPoint(v) = a {
                let point = ec_point(&v).ok_or_else(|| {
                    PkiError::Pkcs11("token returned an unexpected EC point".into())
                })?;
                return Ok(der::p256_spki(&point));
            }
        }
        Err(PkiError::Pkcs11(
            "token did not return the public EC point".into(),
        ))
    }
}

impl KeyStore for Pkcs11KeyStore {
    /// A P-256 key pair generated on the token for key agreement only (CKA_DERIVE, not
    /// CKA_SIGN), sensitive and not extractable: the person's key never leaves the token.
    fn mailbox_generate(&self) -> Result<(u32, Vec<u8>), PkiError> {
        let session = self.session();
        let index = Self::mailbox_handles(&session)?
            .last()
            .map(|(i, _)| i + 1)
            .unwrap_or(1);
        let label = format!("{MAILBOX_LABEL}{index}").into_bytes();
        let mut id = b"M".to_vec();
        id.extend_from_slice(&index.to_be_bytes());
        let public = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::EcParams(der::P256_EC_PARAMS.to_vec()),
            Attribute::Label(label.clone()),
            Attribute::Id(id.clone()),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Derive(true),
            Attribute::Sign(false),
            Attribute::Label(label),
            Attribute::Id(id),
        ];
        session
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            .map_err(ck("generating a mailbox key pair on the token"))?;
        Ok((index, Self::mailbox_spki(&session, index)?))
    }

    fn mailbox_keys(&self) -> Result<Vec<(u32, Vec<u8>)>, PkiError> {
        let session = self.session();
        Self::mailbox_handles(&session)?
            .into_iter()
            .map(|(i, _)| Ok((i, Self::mailbox_spki(&session, i)?)))
            .collect()
    }

    /// CKM_ECDH1_DERIVE with the null KDF on the token; Z comes back as a session-only
    /// secret, is read and destroyed at once (the KDF of RFC 5753 runs here).
    fn mailbox_ecdh(&self, index: u32, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, PkiError> {
        let session = self.session();
        let (_, private) = Self::mailbox_handles(&session)?
            .into_iter()
            .find(|(i, _)| *i == index)
            .ok_or_else(|| PkiError::InvalidInput(format!("no mailbox key {index}")))?;
        let params = Ecdh1DeriveParams::new(EcKdf::null(), peer);
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::ValueLen(32.into()),
            Attribute::Token(false),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
        ];
        let z = session
            .derive_key(&Mechanism::Ecdh1Derive(params), private, &template)
            .map_err(ck("ECDH on the token"))?;
        let attrs = session.get_attributes(z, &[AttributeType::Value]);
        let _ = session.destroy_object(z);
        for a in attrs.map_err(ck("reading the shared secret"))? {
            if let Attribute::Value(v) = a {
                return Ok(Zeroizing::new(v));
            }
        }
        Err(PkiError::Pkcs11(
            "token did not return the shared secret".into(),
        ))
    }

    fn generate(&self, tier: Tier) -> Result<Vec<u8>, PkiError> {
        let session = self.session();
        if Self::find(&session, tier, ObjectClass::PRIVATE_KEY)?.is_some() {
            return Err(PkiError::KeyExists(tier));
        }
        Self::generate_on_token(&session, tier)
    }

    fn replace(&self, tier: Tier) -> Result<Vec<u8>, PkiError> {
        let session = self.session();
        for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
            while let Some(h) = Self::find(&session, tier, class)? {
                session
                    .destroy_object(h)
                    .map_err(ck("destroying the old key"))?;
            }
        }
        self.certs.remove_cert(tier)?;
        Self::generate_on_token(&session, tier)
    }

    fn public_key(&self, tier: Tier) -> Result<Option<Vec<u8>>, PkiError> {
        Self::spki(&self.session(), tier)
    }

    fn sign(&self, tier: Tier, msg: &[u8]) -> Result<Vec<u8>, PkiError> {
        let session = self.session();
        let private =
            Self::find(&session, tier, ObjectClass::PRIVATE_KEY)?.ok_or(PkiError::NoKey(tier))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, msg);
        let raw = session
            .sign(&Mechanism::Ecdsa, private, digest.as_ref())
            .map_err(ck("signing on the token"))?;
        der::ecdsa_raw_to_der(&raw)
            .ok_or_else(|| PkiError::Pkcs11("token returned a malformed ECDSA signature".into()))
    }

    fn put_cert(&self, tier: Tier, pem: &str) -> Result<(), PkiError> {
        self.certs.put_cert(tier, pem, self.public_key(tier)?)
    }

    fn cert(&self, tier: Tier) -> Result<Option<String>, PkiError> {
        self.certs.cert(tier)
    }

    fn put_file(&self, name: &str, data: &[u8]) -> Result<(), PkiError> {
        self.certs.put_file(name, data)
    }

    fn get_file(&self, name: &str) -> Result<Option<Vec<u8>>, PkiError> {
        self.certs.get_file(name)
    }

    fn describe(&self) -> String {
        format!(
            "PKCS#11 key store: token {:?} via {}, certificates in {}",
            self.token_label,
            self.module.display(),
            self.certs.dir().display()
        )
    }
}
