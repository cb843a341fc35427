//! Key store selection (R-PKI-3): the encrypted file store by default, or a PKCS#11
//! token (HSM, TPM, smart card; SoftHSM2 in tests).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use dodvpn_pki::KeyStore;

#[derive(Args, Clone)]
pub struct KeyStoreArgs {
    /// Key store directory (keys encrypted at rest, files 0600). With PKCS#11 it holds
    /// the certificates and agent state; the keys stay on the token.
    #[arg(long, env = "DODVPN_KEYSTORE")]
    pub keystore: PathBuf,
    /// File holding the file store's passphrase (or set DODVPN_KEYSTORE_PASSPHRASE).
    #[arg(long, env = "DODVPN_KEYSTORE_PASSPHRASE_FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so; selects the PKCS#11 store.
    #[arg(long, env = "DODVPN_PKCS11_MODULE")]
    pub pkcs11_module: Option<PathBuf>,
    /// Label of the PKCS#11 token.
    #[arg(long, env = "DODVPN_PKCS11_TOKEN", requires = "pkcs11_module")]
    pub pkcs11_token: Option<String>,
    /// File holding the token's user PIN (or set DODVPN_PKCS11_PIN).
    #[arg(long, env = "DODVPN_PKCS11_PIN_FILE", requires = "pkcs11_module")]
    pub pkcs11_pin_file: Option<PathBuf>,
}

fn secret_from(file: &Option<PathBuf>, env: &str, what: &str) -> anyhow::Result<String> {
    if let Some(f) = file {
        let s = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the {what} file {}", f.display()))?;
        return Ok(s.trim_end_matches(['\n', '\r']).to_string());
    }
    std::env::var(env).map_err(|_| {
        anyhow::anyhow!(
            "no {what}: give --{}-file or set {env}",
            what.replace(' ', "-")
        )
    })
}

impl KeyStoreArgs {
    pub fn open(&self) -> anyhow::Result<Arc<dyn KeyStore>> {
        match &self.pkcs11_module {
            Some(module) => {
                let token = self
                    .pkcs11_token
                    .as_deref()
                    .context("--pkcs11-token is required with --pkcs11-module")?;
                let pin = secret_from(&self.pkcs11_pin_file, "DODVPN_PKCS11_PIN", "pkcs11 pin")?;
                let ks = dodvpn_pki::Pkcs11KeyStore::open(module, token, &pin, &self.keystore)?;
                Ok(Arc::new(ks))
            }
            None => {
                let pass = secret_from(
                    &self.passphrase_file,
                    "DODVPN_KEYSTORE_PASSPHRASE",
                    "passphrase",
                )?;
                let ks = dodvpn_pki::FileKeyStore::open(&self.keystore, pass.as_bytes())?;
                Ok(Arc::new(ks))
            }
        }
    }
}
