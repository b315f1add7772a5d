//! `edge-agent buffer inspect|verify|repair DIR`: the disk buffer's offline tools for
//! operators (run them while no agent uses the directory).

use std::path::Path;

use ingest_core::buffer::{self, BufferReport};

/// What to do with the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum BufferAction {
    /// Report entries, bytes, age and damage; change nothing.
    Inspect,
    /// Verify every checksum; exit status 1 when something is damaged.
    Verify,
    /// Quarantine damaged ranges (into DIR/quarantine) so the buffer opens clean.
    Repair,
}

fn print(report: &BufferReport) {
    println!("segments:        {}", report.segments.len());
    println!(
        "entries:         {} ({} not yet acknowledged)",
        report.entries, report.unacked_entries
    );
    println!("bytes:           {}", report.bytes);
    match report.oldest_segment_age {
        Some(age) => println!("oldest segment:  {} s old", age.as_secs()),
        None => println!("oldest segment:  none"),
    }
    if report.ledger_damaged {
        println!("ledger:          DAMAGED (acknowledged records will be delivered again)");
    }
    if report.damaged.is_empty() {
        println!("damage:          none");
    }
    for range in &report.damaged {
        let what = if range.torn_tail {
            "torn write at the end (cut off on open)"
        } else {
            "damaged (quarantined on open or by repair)"
        };
        println!(
            "damaged:         {} at offset {}, {} bytes: {} - {what}",
            range.segment, range.offset, range.len, range.reason
        );
    }
}

/// Runs the action; the exit status is 0, or 1 when `verify` found damage.
///
/// # Errors
///
/// When the directory cannot be read.
pub fn run(action: BufferAction, dir: &Path) -> anyhow::Result<i32> {
    let report = match action {
        BufferAction::Inspect | BufferAction::Verify => buffer::inspect(dir)?,
        BufferAction::Repair => buffer::repair(dir)?,
    };
    print(&report);
    Ok(match action {
        BufferAction::Verify if !report.is_clean() => 1,
        _ => 0,
    })
}
