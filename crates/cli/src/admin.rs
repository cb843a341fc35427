//! `dodvpn admin …`: every administrator step of TR D.6 (a–l) and the rest of the
//! control plane, one API call each (each one is audited by the centre).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use dodvpn_agent::CenterClient;
use serde_json::{json, Value};

use crate::output;

#[derive(Args, Clone)]
pub struct Conn {
    /// The centre's URL.
    #[arg(long, env = "DODVPN_CENTER", default_value = "https://127.0.0.1:8443")]
    pub center: String,
    /// CA certificate that issued the centre's TLS certificate (DATA/pki/root.pem).
    #[arg(long, env = "DODVPN_CA")]
    pub ca: PathBuf,
    /// File holding the administrator credential (DATA/admin.token, or one from `org admin`).
    #[arg(long, env = "DODVPN_ADMIN_CREDENTIAL_FILE")]
    pub credential_file: Option<PathBuf>,
}

impl Conn {
    pub fn ca_pem(&self) -> anyhow::Result<String> {
        std::fs::read_to_string(&self.ca)
            .with_context(|| format!("cannot read the CA file {}", self.ca.display()))
    }
    pub fn client(&self) -> anyhow::Result<CenterClient> {
        let cred = match (&self.credential_file, std::env::var("DODVPN_ADMIN_CREDENTIAL")) {
            (Some(f), _) => std::fs::read_to_string(f).with_context(|| format!("cannot read the credential file {}", f.display()))?,
            (None, Ok(c)) => c,
            (None, Err(_)) => anyhow::bail!("no administrator credential: give --credential-file or set DODVPN_ADMIN_CREDENTIAL(_FILE)"),
        };
        CenterClient::admin(&self.center, &self.ca_pem()?, cred.trim())
    }
}

#[derive(Args)]
pub struct AdminArgs {
    #[command(flatten)]
    conn: Conn,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: AdminCmd,
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Organisations (subscribers): step a, administrators, check sheets.
    #[command(subcommand)]
    Org(OrgCmd),
    /// An organisation's own policy (R-POL-3).
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Device orders: step b.
    #[command(subcommand)]
    Order(OrderCmd),
    /// Devices: steps c and f, network, revocation.
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Service: steps g, h and l.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Groups: the provider policy (R-POL-1).
    #[command(subcommand)]
    Group(GroupCmd),
    /// The organisation's ledger: connections through and outside dodvpn, equipment, diagram (R-SVC-2).
    #[command(subcommand)]
    Ledger(LedgerCmd),
    /// Security check sheets (TR Annex C, MHLW checklist): answers, scores, history (R-SVC-3).
    #[command(subcommand)]
    Checksheet(ChecksheetCmd),
    /// Approval windows for per-session approval, e.g. vendor maintenance (R-POL-3).
    #[command(subcommand)]
    Approval(ApprovalCmd),
    /// Connection applications on behalf of a device: step k.
    #[command(subcommand)]
    Connection(ConnectionCmd),
    /// Grants (connection info issued).
    #[command(subcommand)]
    Grant(GrantCmd),
    /// Certificates: list and revoke.
    #[command(subcommand)]
    Cert(CertCmd),
    /// Tunnel sessions as both ends report them (three-point audit); cut one.
    #[command(subcommand)]
    Session(SessionCmd),
    /// The hash-chained audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Who may write secure messages to whom (R-SVC-4); nobody may unless allowed here.
    #[command(subcommand)]
    MessagePolicy(MessagePolicyCmd),
    /// Web console accounts: list, invite (a one-time code for /console/setup), disable.
    #[command(subcommand)]
    User(UserCmd),
    /// The gateway centre (R-SVC-1): nodes, categories, applications for sites, decisions, logs.
    #[command(subcommand)]
    Gateway(crate::gateway::AdminGatewayCmd),
}

#[derive(Subcommand)]
enum UserCmd {
    /// The console accounts this credential may see (an organisation's admin: its own).
    List,
    /// Create a one-time invitation (valid 3 days); the person opens /console/setup
    /// with the code, chooses a password and sets up the second factor.
    Invite {
        /// provider_admin, provider_operator, auditor, device_provider, org_admin or org_approver.
        #[arg(long)]
        role: String,
        /// The account's organisation; leave out for provider-wide roles.
        #[arg(long)]
        org: Option<String>,
    },
    /// Disable an account (by id, from `list`) and end its sessions.
    Disable { id: String },
}

#[derive(Subcommand)]
enum MessagePolicyCmd {
    /// Let the members of FROM write to the mailboxes of TO (one direction; provider only).
    Allow { from: String, to: String },
    /// List who may write to whom.
    List,
}

#[derive(Subcommand)]
enum OrgCmd {
    /// Step a: enrol a subscriber organisation.
    Create {
        name: String,
        /// hospital | clinic | pharmacy | lab | vendor | patient
        #[arg(long)]
        kind: String,
    },
    List,
    Show {
        id: String,
    },
    /// Issue an administrator credential for one organisation (printed once).
    Admin {
        id: String,
        #[arg(long, default_value = "organisation administrator")]
        label: String,
        /// Write the credential to this file (0600) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Issue a read-only auditor credential for one organisation (printed once): it
    /// reads, verifies and exports that organisation's audit records, nothing else.
    Auditor {
        id: String,
        #[arg(long, default_value = "auditor")]
        label: String,
        /// Write the credential to this file (0600) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Record the organisation's security check sheet result (R-POL-6).
    Checksheet {
        id: String,
        #[arg(long)]
        passed: bool,
    },
    /// Grant or revoke the device provider role (TR D.6 c–f): never implied by an
    /// organisation's kind.
    #[command(subcommand)]
    DeviceProvider(DeviceProviderCmd),
    /// Which owner organisations a device provider serves.
    #[command(subcommand)]
    ProviderContract(ProviderContractCmd),
    /// The organisation's Internet-facing addresses: the only ones `dodvpn diagnose`
    /// probes for it (R-SVC-5). Only the provider changes them; every change is audited.
    #[command(subcommand)]
    PublicAddresses(PublicAddressesCmd),
}

#[derive(Subcommand)]
enum PublicAddressesCmd {
    /// Replace the list (provider only): addresses or prefixes of at most 1024 addresses.
    /// No address clears it.
    Set { org: String, addresses: Vec<String> },
    /// Show the list (the provider, or the organisation itself).
    List { org: String },
}

#[derive(Subcommand)]
enum DeviceProviderCmd {
    /// Make ORG a device provider (it still needs a contract per owner).
    Grant { org: String },
    /// Withdraw the role: ORG no longer registers, certifies or delivers devices.
    Revoke { org: String },
}

#[derive(Subcommand)]
enum ProviderContractCmd {
    /// Record that device provider PROVIDER_ORG serves owner OWNER_ORG.
    Add {
        provider_org: String,
        owner_org: String,
    },
    /// End that contract.
    Remove {
        provider_org: String,
        owner_org: String,
    },
    List,
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Replace the policy with a JSON document (see README, "Subscriber policy").
    Set {
        org: String,
        #[arg(long)]
        file: PathBuf,
    },
    Show {
        org: String,
    },
    /// Show what `set` would do to the grants (added, narrowed, widened, changed,
    /// withdrawn) without saving anything.
    DryRun {
        org: String,
        #[arg(long)]
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum OrderCmd {
    /// Step b: an organisation orders a VPN device.
    Create {
        #[arg(long)]
        org: String,
        #[arg(long)]
        model: String,
    },
    List,
}

#[derive(Subcommand)]
enum DeviceCmd {
    /// Step c: the device provider registers a device (serial, model, owner).
    Register {
        #[arg(long)]
        serial: String,
        #[arg(long)]
        model: String,
        #[arg(long)]
        owner: String,
        #[arg(long)]
        order: Option<String>,
        /// Outer address (host or host:port).
        #[arg(long)]
        endpoint: Option<String>,
        /// Inside subnet behind the device; repeat for several.
        #[arg(long = "subnet")]
        subnets: Vec<String>,
    },
    List {
        #[arg(long)]
        org: Option<String>,
        #[arg(long)]
        serial: Option<String>,
    },
    Show {
        id: String,
    },
    /// Set the outer endpoint and inside subnets.
    Network {
        id: String,
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long = "subnet")]
        subnets: Vec<String>,
    },
    /// Step c: the owner (or the provider) confirms a device a device provider
    /// registered for it; it cannot be certified before.
    Confirm {
        id: String,
    },
    /// Step f: the certified device is handed to its owner.
    Deliver {
        id: String,
    },
    /// Revoke the device and every certificate it holds; live tunnels are cut.
    Revoke {
        id: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum ServiceCmd {
    /// Step g: the owner applies for VPN service for a device.
    Apply { device: String },
    /// Step h: the provider approves; the service CA will issue at enrolment.
    Approve { device: String },
    /// Step l: start (or resume) VPN service to an enrolled device.
    Start { device: String },
    /// Suspend service: grants are withdrawn.
    Stop { device: String },
}

#[derive(Subcommand)]
enum GroupCmd {
    Create {
        name: String,
        #[arg(long)]
        require_checksheet: bool,
        /// Allowed service inside the group, e.g. tcp/443 or icmp; repeat. None = unrestricted.
        #[arg(long = "service")]
        services: Vec<String>,
        /// With --require-checksheet: the sheet(s) that must pass (large, small, provider, mhlw); repeat.
        #[arg(long = "gate-sheet")]
        gate_sheets: Vec<String>,
        /// Minimum score in percent for --gate-sheet.
        #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
        gate_min: u8,
        /// What an expired sheet does to the membership: suspend (grants withdrawn) or warn.
        #[arg(long, default_value = "suspend", value_parser = ["suspend", "warn"])]
        gate_on_expiry: String,
    },
    /// Replace a group's provider policy.
    Update {
        name: String,
        #[arg(long)]
        require_checksheet: bool,
        #[arg(long = "service")]
        services: Vec<String>,
        /// With --require-checksheet: the sheet(s) that must pass (large, small, provider, mhlw); repeat.
        #[arg(long = "gate-sheet")]
        gate_sheets: Vec<String>,
        /// Minimum score in percent for --gate-sheet.
        #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
        gate_min: u8,
        /// What an expired sheet does to the membership: suspend (grants withdrawn) or warn.
        #[arg(long, default_value = "suspend", value_parser = ["suspend", "warn"])]
        gate_on_expiry: String,
    },
    List,
    Add {
        name: String,
        device: String,
    },
    Remove {
        name: String,
        device: String,
    },
}

#[derive(Subcommand)]
enum LedgerCmd {
    /// Every connection of ORG (through dodvpn, derived from its grants; and outside it,
    /// as recorded), and its equipment; overdue reviews are flagged.
    Show { org: String },
    /// Write the hand-kept rows as CSV for Excel (UTF-8 with BOM).
    Export {
        org: String,
        #[arg(value_enum)]
        table: LedgerTable,
        #[arg(long)]
        out: PathBuf,
    },
    /// Replace the hand-kept rows from CSV (UTF-8 or Shift_JIS). All or nothing: the
    /// first bad cell is named by line and column and nothing is imported.
    Import {
        org: String,
        #[arg(value_enum)]
        table: LedgerTable,
        file: PathBuf,
    },
    /// The network diagram of ORG, or of every member with --all.
    Diagram {
        #[arg(required_unless_present = "all")]
        org: Option<String>,
        #[arg(long, conflicts_with = "org")]
        all: bool,
        #[arg(long, default_value = "svg", value_parser = ["svg", "pdf", "dot"])]
        format: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// The printable report for an inspector: ledger, equipment, diagram, check-sheet
    /// results and gaps, in Japanese and English (PDF through headless Chromium).
    Report {
        org: String,
        #[arg(long, default_value = "pdf", value_parser = ["html", "pdf"])]
        format: String,
        #[arg(long)]
        out: PathBuf,
    },
}

/// Write through a temporary file and rename, so a crash never leaves half a file.
fn write_file(out: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = out.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .with_context(|| format!("cannot write {} / 書き込めません", tmp.display()))?;
    std::fs::rename(&tmp, out)
        .with_context(|| format!("cannot write {} / 書き込めません", out.display()))
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LedgerTable {
    /// Connections outside dodvpn (vendor VPN boxes, leased lines…).
    Outside,
    /// Servers, terminals and network devices.
    Equipment,
}

impl LedgerTable {
    fn path(self) -> &'static str {
        match self {
            Self::Outside => "outside",
            Self::Equipment => "equipment",
        }
    }
}

async fn ledger(c: &CenterClient, cmd: LedgerCmd) -> anyhow::Result<Value> {
    use dodvpn_ledger::{from_csv, to_csv, Equipment, External};
    Ok(match cmd {
        LedgerCmd::Show { org } => c.get(&format!("/api/v1/orgs/{org}/ledger")).await?,
        LedgerCmd::Export { org, table, out } => {
            let l: Value = c.get(&format!("/api/v1/orgs/{org}/ledger")).await?;
            let csv = match table {
                LedgerTable::Outside => {
                    let rows: Vec<External> = l["outside"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|o| serde_json::from_value(o["row"].clone()))
                        .collect::<Result<_, _>>()?;
                    to_csv(&rows)
                }
                LedgerTable::Equipment => {
                    let rows: Vec<Equipment> = l["equipment"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|e| {
                            let mut e = e.clone();
                            if let Some(m) = e.as_object_mut() {
                                // What the centre adds to a row is not part of it.
                                m.remove("review_overdue");
                                m.remove("findings");
                            }
                            serde_json::from_value(e)
                        })
                        .collect::<Result<_, _>>()?;
                    to_csv(&rows)
                }
            };
            write_file(&out, &csv)?;
            json!({"written": out, "bytes": csv.len()})
        }
        LedgerCmd::Import { org, table, file } => {
            let bytes = std::fs::read(&file)
                .with_context(|| format!("cannot read {} / 読めません", file.display()))?;
            let what = format!("{}: ", file.display());
            let rows = match table {
                LedgerTable::Outside => serde_json::to_value(
                    from_csv::<External>(&bytes).map_err(|e| anyhow::anyhow!("{what}{e}"))?,
                )?,
                LedgerTable::Equipment => serde_json::to_value(
                    from_csv::<Equipment>(&bytes).map_err(|e| anyhow::anyhow!("{what}{e}"))?,
                )?,
            };
            c.put(
                &format!("/api/v1/orgs/{org}/ledger/{}", table.path()),
                &json!({"rows": rows}),
            )
            .await?
        }
        LedgerCmd::Report { org, format, out } => {
            let bytes = c
                .get_bytes(&format!("/api/v1/orgs/{org}/report?format={format}"))
                .await?;
            write_file(&out, &bytes)?;
            json!({"written": out, "bytes": bytes.len(), "format": format})
        }
        LedgerCmd::Diagram {
            org,
            all: _,
            format,
            out,
        } => {
            let path = match &org {
                Some(o) => format!("/api/v1/orgs/{o}/ledger/diagram?format={format}"),
                None => format!("/api/v1/ledger/diagram?format={format}"),
            };
            let bytes = c.get_bytes(&path).await?;
            write_file(&out, &bytes)?;
            json!({"written": out, "bytes": bytes.len(), "format": format})
        }
    })
}

#[derive(Subcommand)]
enum ChecksheetCmd {
    /// The sheets this centre scores against: items, roles, services, in both languages.
    Sheets,
    /// A submission skeleton for ORG: the items the centre can answer from its own
    /// records filled in, with the evidence. Edit it and pass it to `submit`.
    Prefill {
        org: String,
        /// large, small, provider or mhlw.
        #[arg(long)]
        sheet: String,
        /// A service the organisation uses or provides (decides the ▲ items); repeat.
        #[arg(long = "service")]
        services: Vec<String>,
    },
    /// Submit answers (a JSON file as `prefill` writes it); prints the score and the gaps.
    Submit { org: String, file: PathBuf },
    /// Every submission of ORG, newest first, with its state (current, expiring, expired…).
    History { org: String },
    /// One submission with its answers and gaps.
    Show { org: String, submission: String },
    /// What changed between two submissions of the same sheet.
    Compare {
        org: String,
        from: String,
        to: String,
    },
    /// Upload an evidence file (at most 10 MiB); prints the id an answer's `attachment` names.
    Attach {
        org: String,
        file: PathBuf,
        /// The name shown with it (default: the file's own name).
        #[arg(long)]
        name: Option<String>,
    },
    /// The evidence files of ORG.
    Attachments { org: String },
    /// Download one evidence file (its content is checked against the stored SHA-256).
    Attachment {
        org: String,
        id: String,
        #[arg(long)]
        out: PathBuf,
    },
}

fn gate(sheets: &[String], min: u8, on_expiry: &str) -> Value {
    if sheets.is_empty() {
        Value::Null
    } else {
        json!({"sheets": sheets, "min_percent": min, "on_expiry": on_expiry})
    }
}

#[derive(Subcommand)]
enum ApprovalCmd {
    /// Open a window in which APPLICANT may reach APPROVER where its policy demands approval.
    /// From now for --minutes, or from --start to --end (RFC 3339, e.g.
    /// 2026-12-05T09:00:00+09:00), at most 24 hours, up to 90 days ahead.
    Open {
        #[arg(long)]
        approver: String,
        #[arg(long)]
        applicant: String,
        #[arg(long)]
        device: Option<String>,
        /// Length from now (default 60 when --end is not given).
        #[arg(long, conflicts_with_all = ["start", "end"])]
        minutes: Option<u32>,
        #[arg(long, value_parser = humantime::parse_rfc3339_weak, requires = "end")]
        start: Option<std::time::SystemTime>,
        #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
        end: Option<std::time::SystemTime>,
        /// A contracted host (address or prefix) of the approver's sites (repeatable); default:
        /// whatever the approver's policy rule allows.
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// A contracted service, e.g. tcp/22 (repeatable); default: the rule's.
        #[arg(long = "service")]
        services: Vec<String>,
    },
    List,
    /// Applications waiting for a window: refused in the last 7 days for want of one.
    Requests,
    Close {
        id: String,
    },
}

#[derive(Subcommand)]
enum ConnectionCmd {
    /// Step k: apply for a connection from a device to a device or a group.
    Apply {
        #[arg(long)]
        from: String,
        #[arg(long, conflicts_with = "group", required_unless_present = "group")]
        to: Option<String>,
        #[arg(long)]
        group: Option<String>,
        /// What the connection is for (shown in both organisations' ledgers), e.g.
        /// "PACS image exchange / 画像連携".
        #[arg(long)]
        purpose: Option<String>,
    },
    /// Applications refused in the last 7 days and not granted since, with the reason.
    Refused,
}

#[derive(Subcommand)]
enum GrantCmd {
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        device: Option<String>,
    },
    /// One grant with both ends' connection info (the ends your organisation owns):
    /// identities, traffic selectors, services and proposals, e.g. to configure a
    /// standard IKEv2 router by hand.
    Show { id: String },
    Withdraw {
        id: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum CertCmd {
    List {
        #[arg(long)]
        device: Option<String>,
    },
    Revoke {
        serial: u64,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum SessionCmd {
    /// Live sessions (or all with --all).
    List {
        /// Include sessions that are down.
        #[arg(long)]
        all: bool,
        /// Only sessions with this device at one end.
        #[arg(long)]
        device: Option<String>,
    },
    /// One session with both ends' reports side by side.
    Show { id: String },
    /// Cut a live session: both devices are told to drop it now (audited).
    Cut {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    List {
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Verify the hash chain: in the centre's database, or in an exported FILE.
    Verify {
        #[arg(long)]
        file: Option<PathBuf>,
        /// FILE is one organisation's export (its own records, with gaps): check each
        /// record and the links between neighbours.
        #[arg(long, requires = "file")]
        excerpt: bool,
    },
    /// Revoke an auditor credential.
    RevokeAuditor { id: String },
    /// Write the whole log as JSON lines for auditors.
    Export {
        #[arg(long)]
        out: PathBuf,
    },
    /// Prove that record SEQ is in the audit tree: fetch its inclusion proof, the
    /// newest signed checkpoint and the log key, and verify them here (R-AUD-4).
    Prove {
        /// The record's sequence number.
        seq: u64,
        /// Only accept this log key (its SHA-256 fingerprint, hex, from `audit log-key`).
        #[arg(long)]
        key_fingerprint: Option<String>,
    },
    /// The newest signed checkpoint of the audit tree (size, root, time, signed note).
    Checkpoint,
    /// The key that signs the checkpoints and its fingerprint (pin it).
    LogKey,
    /// Devices' reports of a failed audit proof (the log inconsistent with a
    /// checkpoint they kept), newest first. Provider only.
    Alerts,
    /// Write the auditor's bundle (log key, every record, every signed checkpoint)
    /// for `dodvpn audit check` (offline). Provider only.
    Bundle {
        #[arg(long)]
        out: PathBuf,
    },
}

fn services(v: &[String]) -> anyhow::Result<Option<Vec<dodvpn_policy::Service>>> {
    if v.is_empty() {
        return Ok(None);
    }
    v.iter()
        .map(|s| {
            s.parse::<dodvpn_policy::Service>()
                .map_err(|e| anyhow::anyhow!("service {s:?}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .map(Some)
}

pub async fn run(a: AdminArgs) -> anyhow::Result<()> {
    let json = a.json;
    // Offline verification needs no centre.
    if let AdminCmd::Audit(AuditCmd::Verify {
        file: Some(f),
        excerpt,
    }) = &a.cmd
    {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        let recs = dodvpn_audit::from_jsonl(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
        if *excerpt {
            return match dodvpn_audit::verify_excerpt(recs.iter()) {
                Ok(n) => {
                    output::print(&json!({"ok": true, "records": n, "excerpt": true}), json);
                    Ok(())
                }
                Err(e) => {
                    output::print(
                        &json!({"ok": false, "records": recs.len(), "error": e.to_string(), "problem": e.code(), "first_bad_seq": e.seq()}),
                        json,
                    );
                    anyhow::bail!("the audit excerpt does not verify: {e}")
                }
            };
        }
        return match dodvpn_audit::verify(recs.iter()) {
            Ok(s) => {
                output::print(
                    &json!({"ok": true, "records": s.count, "head_hash": s.head_hash}),
                    json,
                );
                Ok(())
            }
            Err(e) => {
                output::print(
                    &json!({"ok": false, "records": recs.len(), "error": e.to_string(), "problem": e.code(), "first_bad_seq": e.seq()}),
                    json,
                );
                anyhow::bail!("the audit log does not verify: {e}")
            }
        };
    }
    let c = a.conn.client()?;
    let v: Value = match a.cmd {
        AdminCmd::Org(cmd) => match cmd {
            OrgCmd::Create { name, kind } => c.post("/api/v1/orgs", &json!({"name": name, "kind": kind})).await?,
            OrgCmd::List => c.get("/api/v1/orgs").await?,
            OrgCmd::Show { id } => c.get(&format!("/api/v1/orgs/{id}")).await?,
            OrgCmd::Admin { id, label, out } => {
                let v: Value = c.post(&format!("/api/v1/orgs/{id}/admins"), &json!({"label": label})).await?;
                if let Some(out) = out {
                    let cred = v["credential"].as_str().context("no credential in the answer")?;
                    dodvpn_center::init::write_secret_file(&out, cred.as_bytes())?;
                    json!({"id": v["id"], "org_id": v["org_id"], "credential_file": out.display().to_string()})
                } else {
                    v
                }
            }
            OrgCmd::Auditor { id, label, out } => {
                let v: Value = c.post(&format!("/api/v1/orgs/{id}/auditors"), &json!({"label": label})).await?;
                if let Some(out) = out {
                    let cred = v["credential"].as_str().context("no credential in the answer")?;
                    dodvpn_center::init::write_secret_file(&out, cred.as_bytes())?;
                    json!({"id": v["id"], "org_id": v["org_id"], "credential_file": out.display().to_string()})
                } else {
                    v
                }
            }
            OrgCmd::PublicAddresses(PublicAddressesCmd::Set { org, addresses }) => {
                c.put(&format!("/api/v1/orgs/{org}/public-addresses"), &json!({"addresses": addresses})).await?
            }
            OrgCmd::PublicAddresses(PublicAddressesCmd::List { org }) => c.get(&format!("/api/v1/orgs/{org}/public-addresses")).await?,
            OrgCmd::Checksheet { id, passed } => c.put(&format!("/api/v1/orgs/{id}/checksheet"), &json!({"passed": passed})).await?,
            OrgCmd::DeviceProvider(DeviceProviderCmd::Grant { org }) => {
                c.put(&format!("/api/v1/orgs/{org}/device-provider"), &json!({})).await?
            }
            OrgCmd::DeviceProvider(DeviceProviderCmd::Revoke { org }) => c.delete(&format!("/api/v1/orgs/{org}/device-provider")).await?,
            OrgCmd::ProviderContract(cmd) => match cmd {
                ProviderContractCmd::Add { provider_org, owner_org } => {
                    c.post("/api/v1/provider-contracts", &json!({"provider_org": provider_org, "owner_org": owner_org})).await?
                }
                ProviderContractCmd::Remove { provider_org, owner_org } => {
                    c.delete(&format!("/api/v1/provider-contracts/{provider_org}/{owner_org}")).await?
                }
                ProviderContractCmd::List => c.get("/api/v1/provider-contracts").await?,
            },
        },
        AdminCmd::Policy(cmd) => match cmd {
            PolicyCmd::Set { org, file } => {
                let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
                let doc: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
                c.put(&format!("/api/v1/orgs/{org}/policy"), &doc).await?
            }
            PolicyCmd::Show { org } => c.get(&format!("/api/v1/orgs/{org}/policy")).await?,
            PolicyCmd::DryRun { org, file } => {
                let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
                let doc: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
                c.post(&format!("/api/v1/orgs/{org}/policy/dry-run"), &doc).await?
            }
        },
        AdminCmd::Order(cmd) => match cmd {
            OrderCmd::Create { org, model } => c.post("/api/v1/orders", &json!({"org_id": org, "model": model})).await?,
            OrderCmd::List => c.get("/api/v1/orders").await?,
        },
        AdminCmd::Device(cmd) => match cmd {
            DeviceCmd::Register { serial, model, owner, order, endpoint, subnets } => {
                c.post(
                    "/api/v1/devices",
                    &json!({"serial": serial, "model": model, "owner_org": owner, "order_id": order, "endpoint": endpoint, "subnets": subnets}),
                )
                .await?
            }
            DeviceCmd::List { org, serial } => {
                let mut q = vec![];
                if let Some(o) = org {
                    q.push(format!("org={o}"));
                }
                if let Some(s) = serial {
                    q.push(format!("serial={s}"));
                }
                c.get(&format!("/api/v1/devices?{}", q.join("&"))).await?
            }
            DeviceCmd::Show { id } => c.get(&format!("/api/v1/devices/{id}")).await?,
            DeviceCmd::Network { id, endpoint, subnets } => {
                c.put(&format!("/api/v1/devices/{id}/network"), &json!({"endpoint": endpoint, "subnets": subnets})).await?
            }
            DeviceCmd::Confirm { id } => c.post(&format!("/api/v1/devices/{id}/confirm"), &json!({})).await?,
            DeviceCmd::Deliver { id } => c.post(&format!("/api/v1/devices/{id}/deliver"), &json!({})).await?,
            DeviceCmd::Revoke { id, reason } => c.post(&format!("/api/v1/devices/{id}/revoke"), &json!({"reason": reason})).await?,
        },
        AdminCmd::Service(cmd) => {
            let (d, step) = match cmd {
                ServiceCmd::Apply { device } => (device, "apply"),
                ServiceCmd::Approve { device } => (device, "approve"),
                ServiceCmd::Start { device } => (device, "start"),
                ServiceCmd::Stop { device } => (device, "stop"),
            };
            c.post(&format!("/api/v1/devices/{d}/service/{step}"), &json!({})).await?
        }
        AdminCmd::Group(cmd) => match cmd {
            GroupCmd::Create { name, require_checksheet, services: s, gate_sheets, gate_min, gate_on_expiry } => {
                let gate = gate(&gate_sheets, gate_min, &gate_on_expiry);
                c.post(
                    "/api/v1/groups",
                    &json!({"name": name, "require_checksheet": require_checksheet, "services": services(&s)?, "checksheet_gate": gate}),
                )
                .await?
            }
            GroupCmd::Update { name, require_checksheet, services: s, gate_sheets, gate_min, gate_on_expiry } => {
                let gate = gate(&gate_sheets, gate_min, &gate_on_expiry);
                c.put(
                    &format!("/api/v1/groups/{name}"),
                    &json!({"name": name, "require_checksheet": require_checksheet, "services": services(&s)?, "checksheet_gate": gate}),
                )
                .await?
            }
            GroupCmd::List => c.get("/api/v1/groups").await?,
            GroupCmd::Add { name, device } => c.post(&format!("/api/v1/groups/{name}/members"), &json!({"device_id": device})).await?,
            GroupCmd::Remove { name, device } => c.delete(&format!("/api/v1/groups/{name}/members/{device}")).await?,
        },
        AdminCmd::Ledger(cmd) => ledger(&c, cmd).await?,
        AdminCmd::Gateway(cmd) => crate::gateway::admin(&c, cmd).await?,
        AdminCmd::Checksheet(cmd) => match cmd {
            ChecksheetCmd::Sheets => c.get("/api/v1/checksheets").await?,
            ChecksheetCmd::Prefill { org, sheet, services } => {
                c.get(&format!("/api/v1/orgs/{org}/checksheets/prefill?sheet={sheet}&services={}", services.join(",")))
                    .await?
            }
            ChecksheetCmd::Submit { org, file } => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {} / ファイルを読めません", file.display()))?;
                let body: Value = serde_json::from_str(&text).with_context(|| {
                    format!("{} is not JSON as `checksheet prefill` writes it / JSON として読めません", file.display())
                })?;
                c.post(&format!("/api/v1/orgs/{org}/checksheets"), &body).await?
            }
            ChecksheetCmd::History { org } => c.get(&format!("/api/v1/orgs/{org}/checksheets")).await?,
            ChecksheetCmd::Show { org, submission } => c.get(&format!("/api/v1/orgs/{org}/checksheets/{submission}")).await?,
            ChecksheetCmd::Compare { org, from, to } => {
                c.get(&format!("/api/v1/orgs/{org}/checksheets/compare?from={from}&to={to}")).await?
            }
            ChecksheetCmd::Attach { org, file, name } => {
                let bytes = std::fs::read(&file)
                    .with_context(|| format!("cannot read {} / 読み込めません", file.display()))?;
                let name = match name {
                    Some(n) => n,
                    None => file
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "attachment".into()),
                };
                let q: String = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("name", &name)
                    .finish();
                c.post_bytes(
                    &format!("/api/v1/orgs/{org}/checksheets/attachments?{q}"),
                    "application/octet-stream",
                    bytes,
                )
                .await?
            }
            ChecksheetCmd::Attachments { org } => {
                c.get(&format!("/api/v1/orgs/{org}/checksheets/attachments")).await?
            }
            ChecksheetCmd::Attachment { org, id, out } => {
                let bytes = c
                    .get_bytes(&format!("/api/v1/orgs/{org}/checksheets/attachments/{id}"))
                    .await?;
                write_file(&out, &bytes)?;
                json!({"written": out, "bytes": bytes.len()})
            }
        },
        AdminCmd::User(cmd) => match cmd {
            UserCmd::List => c.get("/api/v1/users").await?,
            UserCmd::Invite { role, org } => {
                c.post("/api/v1/users/invitations", &json!({"role": role, "org_id": org}))
                    .await?
            }
            UserCmd::Disable { id } => c.post(&format!("/api/v1/users/{id}/disable"), &json!({})).await?,
        },
        AdminCmd::Approval(cmd) => match cmd {
            ApprovalCmd::Open { approver, applicant, device, minutes, start, end, hosts, services } => {
                let unix = |t: std::time::SystemTime| {
                    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
                };
                // A bare address is one host.
                let hosts: Vec<String> = hosts
                    .into_iter()
                    .map(|h| match (h.contains('/'), h.contains(':')) {
                        (true, _) => h,
                        (false, true) => format!("{h}/128"),
                        (false, false) => format!("{h}/32"),
                    })
                    .collect();
                let mut body = json!({"approver_org": approver, "applicant_org": applicant, "applicant_device": device,
                    "hosts": hosts, "services": services});
                match end {
                    Some(end) => {
                        body["not_after"] = json!(unix(end));
                        if let Some(start) = start {
                            body["not_before"] = json!(unix(start));
                        }
                    }
                    None => body["minutes"] = json!(minutes.unwrap_or(60)),
                }
                c.post("/api/v1/approvals", &body).await?
            }
            ApprovalCmd::List => c.get("/api/v1/approvals").await?,
            ApprovalCmd::Requests => c.get("/api/v1/approvals/requests").await?,
            ApprovalCmd::Close { id } => c.post(&format!("/api/v1/approvals/{id}/close"), &json!({})).await?,
        },
        AdminCmd::Connection(ConnectionCmd::Refused) => c.get("/api/v1/connections/refused").await?,
        AdminCmd::Connection(ConnectionCmd::Apply { from, to, group, purpose }) => {
            let v: Value = c
                .post("/api/v1/connections", &json!({"from_device": from, "to_device": to, "to_group": group, "purpose": purpose}))
                .await?;
            return output::application(&v, json);
        }
        AdminCmd::MessagePolicy(cmd) => match cmd {
            MessagePolicyCmd::Allow { from, to } => {
                c.put::<_, Value>("/api/v1/message-policies", &json!({"from_org": from, "to_org": to})).await?;
                json!({"allowed": {"from_org": from, "to_org": to}})
            }
            MessagePolicyCmd::List => c.get("/api/v1/message-policies").await?,
        },
        AdminCmd::Grant(cmd) => match cmd {
            GrantCmd::List { status, device } => {
                c.get(&format!("/api/v1/grants?status={}&device={}", status.unwrap_or_default(), device.unwrap_or_default()))
                    .await?
            }
            GrantCmd::Show { id } => c.get(&format!("/api/v1/grants/{id}")).await?,
            GrantCmd::Withdraw { id, reason } => {
                c.post::<_, Value>(&format!("/api/v1/grants/{id}/withdraw"), &json!({"reason": reason})).await?;
                json!({"withdrawn": id})
            }
        },
        AdminCmd::Cert(cmd) => match cmd {
            CertCmd::List { device } => c.get(&format!("/api/v1/certs?device={}", device.unwrap_or_default())).await?,
            CertCmd::Revoke { serial, reason } => c.post(&format!("/api/v1/certs/{serial}/revoke"), &json!({"reason": reason})).await?,
        },
        AdminCmd::Session(cmd) => match cmd {
            SessionCmd::List { all, device } => {
                c.get(&format!("/api/v1/sessions?all={all}&device={}", device.unwrap_or_default())).await?
            }
            SessionCmd::Show { id } => c.get(&format!("/api/v1/sessions/{id}")).await?,
            SessionCmd::Cut { id, reason } => c.post(&format!("/api/v1/sessions/{id}/cut"), &json!({"reason": reason})).await?,
        },
        AdminCmd::Audit(cmd) => match cmd {
            AuditCmd::List { after, limit } => c.get(&format!("/api/v1/audit?after={after}&limit={limit}")).await?,
            AuditCmd::Verify { .. } => {
                let v: Value = c.get("/api/v1/audit/verify").await?;
                if v["ok"] != json!(true) {
                    output::print(&v, json);
                    anyhow::bail!("the audit log does not verify: {}", v["error"].as_str().unwrap_or("unknown"));
                }
                v
            }
            AuditCmd::RevokeAuditor { id } => c.post(&format!("/api/v1/auditors/{id}/revoke"), &json!({})).await?,
            AuditCmd::Prove { seq, key_fingerprint } => prove(&c, seq, key_fingerprint.as_deref()).await?,
            AuditCmd::Checkpoint => c.get("/api/v1/audit/checkpoint").await?,
            AuditCmd::LogKey => c.get("/api/v1/audit/log-key").await?,
            AuditCmd::Alerts => c.get("/api/v1/audit/alerts").await?,
            AuditCmd::Bundle { out } => {
                let text = c.get_text("/api/v1/audit/bundle").await?;
                let b: dodvpn_audit::bundle::Bundle =
                    serde_json::from_str(&text).context("the centre's bundle is unreadable")?;
                write_file(&out, text.as_bytes())?;
                json!({"records": b.records.len(), "checkpoints": b.checkpoints.len(), "cosignatures": b.cosignatures.len(), "file": out.display().to_string()})
            }
            AuditCmd::Export { out } => {
                let text = c.get_text("/api/v1/audit/export").await?;
                let n = text.lines().count();
                write_file(&out, text.as_bytes())?;
                json!({"records": n, "file": out.display().to_string()})
            }
        },
    };
    output::print(&v, json);
    Ok(())
}

/// `admin audit prove`: the centre's answer is not trusted, it is checked here.
async fn prove(c: &CenterClient, seq: u64, pinned: Option<&str>) -> anyhow::Result<Value> {
    use base64::Engine as _;
    use dodvpn_audit::{merkle, note::SignedNote};
    let key: Value = c.get("/api/v1/audit/log-key").await?;
    let point = base64::engine::general_purpose::STANDARD
        .decode(key["public_key"].as_str().unwrap_or_default())
        .context("the log key is not base64")?;
    let fp = dodvpn_audit::bundle::key_fingerprint(&point);
    if let Some(p) = pinned {
        if !p.eq_ignore_ascii_case(&fp) {
            anyhow::bail!("the centre's log key (fingerprint {fp}) is not the pinned one / ログ署名鍵が指定の指紋と一致しません");
        }
    }
    let cp: Value = c.get("/api/v1/audit/checkpoint").await?;
    let note = SignedNote::parse(cp["note"].as_str().unwrap_or_default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let signer = key["signer"].as_str().unwrap_or_default();
    note.verify(signer, &point)
        .map_err(|e| anyhow::anyhow!("{e} / チェックポイントの署名が検証できません"))?;
    let p: Value = c
        .get(&format!(
            "/api/v1/audit/proof/inclusion?seq={seq}&size={}",
            note.head.size
        ))
        .await?;
    let hashes = p["proof"]
        .as_array()
        .context("no proof in the answer")?
        .iter()
        .map(|h| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(h.as_str().unwrap_or_default(), &mut out)
                .map(|_| out)
                .context("a proof hash is not 32 bytes of hex")
        })
        .collect::<anyhow::Result<Vec<merkle::Hash>>>()?;
    let leaf = merkle::record_leaf_input(p["record_hash"].as_str().unwrap_or_default())
        .context("the record hash is not 32 bytes of hex")?;
    merkle::verify_inclusion(&leaf, seq - 1, note.head.size, &note.head.root, &hashes).map_err(
        |e| anyhow::anyhow!("{e} / レコード {seq} は署名済みの監査ツリーに含まれていません"),
    )?;
    Ok(json!({
        "ok": true,
        "seq": seq,
        "record_hash": p["record_hash"],
        "tree_size": note.head.size,
        "root": hex::encode(note.head.root),
        "checkpoint_time_ms": note.head.time_ms,
        "proof": p["proof"],
        "log_key_fingerprint": fp,
        "verified": "the record is in the tree the centre signed / レコードは署名済みツリーに含まれています",
    }))
}
