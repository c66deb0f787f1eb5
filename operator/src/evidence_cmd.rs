//! `brainboxctl audit verify` and `brainboxctl evidence list|show|verify|export`.

use crate::exit;
use brainbox_audit::{
    chain::{self, HeadPolicy},
    evidence::{BundleError, EvidenceStore},
};
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::{Path, PathBuf};

/// `audit` subcommands.
#[derive(Subcommand)]
pub enum AuditCmd {
    /// Walk the hash chain of an audit log and name the first bad record.
    Verify {
        /// The audit log.
        #[arg(
            env = "BRAINBOX_AUDIT_LOG",
            default_value = "/var/lib/brainbox/audit.log"
        )]
        file: PathBuf,
        /// Do not require the `<file>.head` anchor (records cut off the end then go unseen).
        #[arg(long)]
        no_head: bool,
    },
}

/// Where the evidence store is.
#[derive(Args)]
pub struct StoreArg {
    /// The evidence store directory.
    #[arg(
        long,
        env = "BRAINBOX_EVIDENCE_DIR",
        default_value = "/var/lib/brainbox/evidence"
    )]
    store: PathBuf,
}

/// `evidence` subcommands.
#[derive(Subcommand)]
pub enum EvidenceCmd {
    /// List sealed bundles.
    List {
        #[command(flatten)]
        store: StoreArg,
    },
    /// Show a bundle's manifest.
    Show {
        /// Bundle id.
        id: String,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Verify one bundle, or all; with --audit, also check that the audit chain and the store
    /// agree (no sealed bundle missing, no bundle that was never sealed).
    Verify {
        /// Bundle id (all bundles when omitted).
        id: Option<String>,
        #[command(flatten)]
        store: StoreArg,
        /// The audit log to cross-check against.
        #[arg(long)]
        audit: Option<PathBuf>,
    },
    /// Copy a verified bundle to DIR/<id>/ and verify the copy.
    Export {
        /// Bundle id.
        id: String,
        /// Destination directory.
        dir: PathBuf,
        #[command(flatten)]
        store: StoreArg,
    },
}

/// Runs an `audit` subcommand; returns the exit code.
pub fn audit(cmd: AuditCmd, json_out: bool) -> i32 {
    match cmd {
        AuditCmd::Verify { file, no_head } => {
            let policy = if no_head {
                HeadPolicy::Ignore
            } else {
                HeadPolicy::Require
            };
            match chain::verify(&file, policy) {
                Ok(rep) => {
                    if json_out {
                        println!(
                            "{}",
                            json!({"ok": true, "file": file, "records": rep.records,
                                   "last_hash": rep.last_hash, "head_checked": rep.head_checked,
                                   "head_lag": rep.head_lag})
                        );
                    } else {
                        println!(
                            "audit log {}: intact, {} records, last hash {}{}",
                            file.display(),
                            rep.records,
                            rep.last_hash,
                            if rep.head_checked {
                                ""
                            } else {
                                " (head not checked)"
                            }
                        );
                    }
                    exit::OK
                }
                Err(chain::ChainError::Broken { brk, .. }) => {
                    if json_out {
                        println!(
                            "{}",
                            json!({"ok": false, "file": file, "seq": brk.seq(), "error": brk.to_string()})
                        );
                    }
                    eprintln!("brainboxctl: audit log {} FAILED: {brk}", file.display());
                    exit::VERIFY_FAILED
                }
                Err(e) => {
                    eprintln!("brainboxctl: {e}");
                    exit::DATA
                }
            }
        }
    }
}

/// Runs an `evidence` subcommand; returns the exit code.
pub fn evidence(cmd: EvidenceCmd, json_out: bool) -> i32 {
    let res = match cmd {
        EvidenceCmd::List { store } => list(&store.store, json_out),
        EvidenceCmd::Show { id, store } => show(&store.store, &id, json_out),
        EvidenceCmd::Verify { id, store, audit } => {
            return verify(&store.store, id.as_deref(), audit.as_deref(), json_out)
        }
        EvidenceCmd::Export { id, dir, store } => open(&store.store).and_then(|s| {
            let out = s.export(&id, &dir)?;
            if json_out {
                println!("{}", json!({"ok": true, "id": id, "path": out}));
            } else {
                println!("exported and verified bundle {id} to {}", out.display());
            }
            Ok(())
        }),
    };
    match res {
        Ok(()) => exit::OK,
        Err(e @ BundleError::Tampered { .. }) => {
            eprintln!("brainboxctl: {e}");
            exit::VERIFY_FAILED
        }
        Err(e) => {
            eprintln!("brainboxctl: {e}");
            exit::DATA
        }
    }
}

fn open(root: &Path) -> Result<EvidenceStore, BundleError> {
    if !root.is_dir() {
        return Err(BundleError::Io {
            path: root.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no evidence store here"),
        });
    }
    EvidenceStore::open(root)
}

fn list(root: &Path, json_out: bool) -> Result<(), BundleError> {
    let store = open(root)?;
    let l = store.list()?;
    if json_out {
        println!("{}", serde_json::to_string(&l).unwrap_or_default());
        return Ok(());
    }
    if l.is_empty() {
        println!("no evidence bundles in {}", root.display());
    }
    for b in l {
        println!(
            "{}  {}  {:>3} files  {:>10} bytes  {}",
            b.id,
            b.created,
            b.files,
            b.bytes,
            if b.subject.is_null() {
                String::new()
            } else {
                b.subject.to_string()
            }
        );
    }
    Ok(())
}

fn show(root: &Path, id: &str, json_out: bool) -> Result<(), BundleError> {
    let store = open(root)?;
    let m = store.manifest(id)?;
    if json_out {
        println!("{}", serde_json::to_string(&m).unwrap_or_default());
        return Ok(());
    }
    println!("bundle   {id}");
    println!("created  {}", m.created);
    println!("subject  {}", m.subject);
    println!(
        "bounds   {} bytes per file, {} bytes in all",
        m.bounds.max_file_bytes, m.bounds.max_total_bytes
    );
    println!(
        "protect  mode {}, immutable: {}{}",
        m.protection.mode,
        m.protection.immutable,
        m.protection
            .immutable_error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    );
    for f in &m.files {
        println!(
            "  {}  {:>10}  {}{}",
            f.blake3,
            f.size,
            f.path,
            if f.truncated { "  [cut at bound]" } else { "" }
        );
    }
    Ok(())
}

fn verify(root: &Path, id: Option<&str>, audit: Option<&Path>, json_out: bool) -> i32 {
    let store = match open(root) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("brainboxctl: {e}");
            return exit::DATA;
        }
    };
    let ids: Vec<String> = match id {
        Some(i) => vec![i.to_owned()],
        None => match store.list() {
            Ok(l) => l.into_iter().map(|b| b.id).collect(),
            Err(e) => {
                eprintln!("brainboxctl: {e}");
                return exit::DATA;
            }
        },
    };
    let mut failures: Vec<String> = Vec::new();
    let mut ok = 0usize;
    for i in &ids {
        match store.verify(i) {
            Ok(_) => ok += 1,
            Err(e) => failures.push(e.to_string()),
        }
    }
    if let Some(audit) = audit {
        match chain::read_records(audit).and_then(|r| {
            chain::verify(audit, HeadPolicy::Require)?;
            Ok(r)
        }) {
            Err(e) => failures.push(format!("audit chain: {e}")),
            Ok(records) => {
                let sealed: Vec<(u64, String)> = records
                    .into_iter()
                    .filter(|r| r.kind == "evidence.sealed")
                    .map(|r| (r.seq, r.subject))
                    .collect();
                for (seq, sid) in &sealed {
                    if id.is_none_or(|x| x == sid) && !store.root().join(sid).is_dir() {
                        failures.push(format!(
                            "bundle {sid} sealed in audit record {seq} is missing from the store"
                        ));
                    }
                }
                for i in &ids {
                    if !sealed.iter().any(|(_, s)| s == i) {
                        failures.push(format!(
                            "bundle {i} is not in the audit chain (never sealed by the agent)"
                        ));
                    }
                }
            }
        }
    }
    if json_out {
        println!(
            "{}",
            json!({"ok": failures.is_empty(), "verified": ok, "failures": failures})
        );
    } else if failures.is_empty() {
        println!(
            "{ok} bundle(s) intact{}",
            if audit.is_some() {
                ", and the audit chain agrees"
            } else {
                ""
            }
        );
    }
    for f in &failures {
        eprintln!("brainboxctl: FAILED: {f}");
    }
    if failures.is_empty() {
        exit::OK
    } else {
        exit::VERIFY_FAILED
    }
}
