//! `dodvpn message`: secure store-and-forward messages between members (R-SVC-4).
//! Signed with this device's service key and encrypted to the recipients' mailbox
//! certificates here, before anything leaves; the centre stores ciphertext only.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::keystore::KeyStoreArgs;
use crate::output;

/// What every `dodvpn message` command needs: the device's key store and the centre.
#[derive(Args)]
pub struct Common {
    #[command(flatten)]
    ks: KeyStoreArgs,
    /// Override the centre URL stored at enrolment.
    #[arg(long, env = "DODVPN_CENTER")]
    center: Option<String>,
}

#[derive(Subcommand)]
pub enum MessageCmd {
    /// Create a mailbox key in the key store, have the centre certify it and publish it in
    /// the directory (the organisation's mailbox, or a person's with --person). Run
    /// again to renew: the new key is added and old messages still open with the old one.
    Publish {
        #[command(flatten)]
        c: Common,
        /// A person's mailbox (person:<org>:<name>); the key store should then be the
        /// person's PKCS#11 token (--pkcs11-module …).
        #[arg(long)]
        person: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Sign, encrypt and send a file (or standard input) to one or more mailboxes.
    Send {
        #[command(flatten)]
        c: Common,
        /// Recipient mailbox, e.g. org:clinic-a or person:clinic-a:dr-sato; repeatable.
        #[arg(long = "to", required = true)]
        to: Vec<String>,
        /// The file to send, streamed in constant memory (attachments up to 2 GiB);
        /// standard input when absent (held in memory, at most 32 MiB).
        #[arg(long, visible_alias = "attach")]
        file: Option<PathBuf>,
        /// Ask for a read receipt (audited at the centre).
        #[arg(long)]
        receipt: bool,
        #[arg(long)]
        json: bool,
    },
    /// List the messages in a mailbox this device holds (metadata only).
    List {
        #[command(flatten)]
        c: Common,
        /// Default: this organisation's mailbox.
        #[arg(long)]
        mailbox: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Save a message's ciphertext (DER CMS, openable by `openssl cms -decrypt` too).
    Fetch {
        #[command(flatten)]
        c: Common,
        id: String,
        #[arg(long)]
        mailbox: Option<String>,
        /// Where to write the ciphertext.
        #[arg(long)]
        out: PathBuf,
    },
    /// Decrypt and verify a message (by id from the centre, or a saved file with --in).
    /// A signer whose certificate is revoked is flagged. Opening by id records the read
    /// (and sends the receipt the sender asked for).
    Open {
        #[command(flatten)]
        c: Common,
        /// The message id (from `dodvpn message list`).
        #[arg(required_unless_present = "input")]
        id: Option<String>,
        /// A saved ciphertext instead of an id.
        #[arg(long = "in", conflicts_with = "id")]
        input: Option<PathBuf>,
        #[arg(long)]
        mailbox: Option<String>,
        /// Where to write the content (default: standard output). Written 0600.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Do not record the read at the centre.
        #[arg(long)]
        no_receipt: bool,
        #[arg(long)]
        json: bool,
    },
    /// Delete a message from the mailbox.
    Delete {
        #[command(flatten)]
        c: Common,
        id: String,
        #[arg(long)]
        mailbox: Option<String>,
    },
}

fn read_input(file: &Option<PathBuf>) -> anyhow::Result<Vec<u8>> {
    match file {
        Some(f) => std::fs::read(f)
            .with_context(|| format!("cannot read {} / 読み込めません", f.display())),
        None => {
            let mut v = Vec::new();
            std::io::stdin()
                .read_to_end(&mut v)
                .context("cannot read standard input / 標準入力を読めません")?;
            Ok(v)
        }
    }
}

impl MessageCmd {
    fn common(&self) -> &Common {
        match self {
            MessageCmd::Publish { c, .. }
            | MessageCmd::Send { c, .. }
            | MessageCmd::List { c, .. }
            | MessageCmd::Fetch { c, .. }
            | MessageCmd::Open { c, .. }
            | MessageCmd::Delete { c, .. } => c,
        }
    }
}

pub async fn run(cmd: MessageCmd) -> anyhow::Result<()> {
    let c = cmd.common();
    let store = c.ks.open()?;
    let agent = dodvpn_agent::sync::Agent::open(store.clone(), c.center.as_deref())?;
    let client = &agent.client;
    use dodvpn_agent::mailbox;
    match cmd {
        MessageCmd::Publish { c: _, person, json } => {
            let p = mailbox::publish(client, &store, person.as_deref()).await?;
            if json {
                output::print(&serde_json::to_value(&p)?, true);
            } else {
                println!(
                    "mailbox {} published (key {}, certificate serial {}) / メールボックスを公開しました",
                    p.mailbox, p.key_index, p.serial
                );
            }
            Ok(())
        }
        MessageCmd::Send {
            c: _,
            to,
            file,
            receipt,
            json,
        } => {
            let meta = match &file {
                Some(f) => mailbox::send_file(client, &store, &to, f, receipt).await?,
                None => {
                    let content = read_input(&file)?;
                    mailbox::send(client, &store, &to, &content, receipt).await?
                }
            };
            if json {
                output::print(&meta, true);
            } else {
                println!(
                    "sent {} ({} bytes of ciphertext) / 送信しました",
                    meta["id"].as_str().unwrap_or("?"),
                    meta["size"]
                );
            }
            Ok(())
        }
        MessageCmd::List {
            c: _,
            mailbox: m,
            json,
        } => {
            let v: serde_json::Value = client
                .get(&format!(
                    "/api/v1/device/messages{}",
                    mailbox::mailbox_query(m.as_deref())
                ))
                .await?;
            output::print(&v, json);
            Ok(())
        }
        MessageCmd::Fetch {
            c: _,
            id,
            mailbox: m,
            out,
        } => {
            let n = mailbox::fetch_to(client, m.as_deref(), &id, &out).await?;
            println!(
                "saved {} bytes of ciphertext to {} / 暗号文を保存しました",
                n,
                out.display()
            );
            Ok(())
        }
        MessageCmd::Open {
            c: _,
            id,
            input,
            mailbox: m,
            out,
            no_receipt,
            json,
        } => {
            // With --out, in constant memory: the ciphertext streams to a temporary
            // file, the content is decrypted beside --out and renamed there only once
            // the tag and the signature have checked.
            let (content, report) = match &out {
                Some(out_path) => {
                    let report = match (&id, &input) {
                        (Some(id), _) => {
                            mailbox::fetch_and_open(client, &store, m.as_deref(), id, out_path)
                                .await?
                        }
                        (None, Some(f)) => mailbox::open_file(client, &store, f, out_path).await?,
                        (None, None) => anyhow::bail!("give a message id or --in FILE / メッセージ ID か --in FILE を指定してください"),
                    };
                    (None, report)
                }
                None => {
                    let cms = match (&id, &input) {
                        (Some(id), _) => mailbox::fetch(client, m.as_deref(), id).await?,
                        (None, Some(f)) => std::fs::read(f).with_context(|| {
                            format!("cannot read {} / 読み込めません", f.display())
                        })?,
                        (None, None) => anyhow::bail!("give a message id or --in FILE / メッセージ ID か --in FILE を指定してください"),
                    };
                    let (opened, report) = mailbox::open(client, &store, &cms).await?;
                    (Some(opened), report)
                }
            };
            if let (Some(id), false) = (&id, no_receipt) {
                let _: serde_json::Value = client
                    .post(
                        &format!(
                            "/api/v1/device/messages/{}/read{}",
                            mailbox::url_part(id),
                            mailbox::mailbox_query(m.as_deref())
                        ),
                        &serde_json::json!({}),
                    )
                    .await?;
            }
            let warning = match report.signer_status.as_str() {
                "trusted" => None,
                "revoked" => Some("WARNING: the sender's certificate is REVOKED / 警告: 送信者の証明書は失効しています"),
                "unsigned" => Some("WARNING: the message is not signed / 警告: 署名がありません"),
                _ => Some("WARNING: the sender's certificate is not trusted / 警告: 送信者の証明書を信頼できません"),
            };
            if let Some(w) = warning {
                eprintln!("{w}");
            }
            if let (Some(opened), false) = (&content, json) {
                std::io::stdout().write_all(&opened.content)?;
            }
            if json {
                let mut v = serde_json::to_value(&report)?;
                if let Some(opened) = &content {
                    v["content_base64"] = serde_json::Value::String(base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        opened.content.as_slice(),
                    ));
                }
                output::print(&v, true);
            } else if out.is_some() {
                println!(
                    "opened: {} bytes, signer {} ({}) / 開封しました",
                    report.size,
                    report.signer.as_deref().unwrap_or("-"),
                    report.signer_status
                );
            }
            Ok(())
        }
        MessageCmd::Delete {
            c: _,
            id,
            mailbox: m,
        } => {
            let _: serde_json::Value = client
                .delete(&format!(
                    "/api/v1/device/messages/{}{}",
                    mailbox::url_part(&id),
                    mailbox::mailbox_query(m.as_deref())
                ))
                .await?;
            println!("deleted {id} / 削除しました");
            Ok(())
        }
    }
}
