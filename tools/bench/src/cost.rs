//! What one webhook costs, split by who pays: the hosts' CPU, PostgreSQL's CPU (the postmaster
//! and every backend, from /proc), the load generator's own CPU, the WAL written, and the
//! statements and transactions the hosts sent (`pg_stat_statements`).
//! Read before and after a run; the difference divided by the run's webhooks is the split.

use std::time::Duration;

use anyhow::Context;

use crate::database::{BenchDatabase, bench_pool};
use crate::load::{Server, process_cpu_time, stat_ticks};

/// The counters at one moment.
#[derive(Clone, Debug)]
pub struct CostCounters {
    host_cpu: Duration,
    postgres_cpu: Option<Duration>,
    load_generator_cpu: Duration,
    wal_bytes: i64,
    statements: Option<i64>,
    nested_statements: Option<i64>,
    statement_calls: Vec<(String, i64)>,
}

/// One run's cost per webhook.
#[derive(Clone, Debug)]
pub struct CostSplit {
    pub webhooks: usize,
    pub host_cpu_micros: f64,
    pub postgres_cpu_micros: Option<f64>,
    pub load_generator_cpu_micros: f64,
    pub wal_bytes: f64,
    /// Statements the hosts sent, each one round trip.
    pub statements: Option<f64>,
    /// Statements PostgreSQL ran inside them (foreign key checks, triggers).
    pub nested_statements: Option<f64>,
    /// Explicit transactions: the `COMMIT`s sent.
    pub transactions: Option<f64>,
    /// Calls per webhook of each statement the run sent, most frequent first.
    pub statement_mix: Vec<(String, f64)>,
}

/// CPU time of a postmaster and its children: the live ones, and those that exited and were
/// waited for (the postmaster's cutime and cstime).
fn postgres_cpu_time(postmaster: u32) -> Duration {
    let mut total = process_cpu_time(postmaster) + children_cpu_time(postmaster);
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return total;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        if parent_pid(pid) == Some(postmaster) {
            total += process_cpu_time(pid);
        }
    }
    total
}

/// The parent of a process (field 4 of /proc/<pid>/stat).
fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.rsplit_once(')')?.1;
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// cutime + cstime (fields 16 and 17): CPU of the children the process waited for.
fn children_cpu_time(pid: u32) -> Duration {
    stat_ticks(pid, 13..15)
}

/// Reads every counter. Transactions are counted as the `COMMIT`s in `pg_stat_statements`,
/// which counts at once, rather than from `pg_stat_database`, which a busy backend may update
/// only seconds later.
pub async fn read_counters(
    database: &BenchDatabase,
    servers: &[Server],
) -> anyhow::Result<CostCounters> {
    let pool = bench_pool(&database.url)?;
    let wal_bytes: i64 =
        sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
            .fetch_one(&pool)
            .await
            .context("reading the WAL position")?;
    // Absent when the extension is not loaded (a `--database-url` without it).
    let statement_calls: Option<Vec<(String, i64)>> = sqlx::query_as(
        "SELECT CASE WHEN toplevel THEN '' ELSE '(nested) ' END || query, calls
         FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(&pool)
    .await
    .ok();
    pool.close().await;
    Ok(CostCounters {
        host_cpu: servers
            .iter()
            .map(|server| process_cpu_time(server.pid))
            .sum(),
        postgres_cpu: database.postmaster_pid().map(postgres_cpu_time),
        load_generator_cpu: process_cpu_time(std::process::id()),
        wal_bytes,
        statements: count_calls(statement_calls.as_deref(), false),
        nested_statements: count_calls(statement_calls.as_deref(), true),
        statement_calls: statement_calls.unwrap_or_default(),
    })
}

/// The calls of the top-level statements, or of the nested ones.
fn count_calls(calls: Option<&[(String, i64)]>, nested: bool) -> Option<i64> {
    calls.map(|calls| {
        calls
            .iter()
            .filter(|(query, _)| query.starts_with("(nested) ") == nested)
            .map(|(_, count)| count)
            .sum()
    })
}

impl CostSplit {
    /// The cost of the `webhooks` of a run, from the counters read around it.
    pub fn between(before: &CostCounters, after: &CostCounters, webhooks: usize) -> CostSplit {
        let per = |total: f64| total / webhooks.max(1) as f64;
        let micros = |later: Duration, earlier: Duration| {
            per(later.saturating_sub(earlier).as_secs_f64() * 1e6)
        };
        let mut statement_mix: Vec<(String, f64)> = after
            .statement_calls
            .iter()
            .map(|(query, calls)| {
                let earlier = before
                    .statement_calls
                    .iter()
                    .find(|(other, _)| other == query)
                    .map_or(0, |(_, count)| *count);
                (one_line(query), per((calls - earlier) as f64))
            })
            .filter(|(_, calls)| *calls > 0.0)
            .collect();
        statement_mix.sort_by(|a, b| b.1.total_cmp(&a.1));
        CostSplit {
            webhooks,
            host_cpu_micros: micros(after.host_cpu, before.host_cpu),
            postgres_cpu_micros: after
                .postgres_cpu
                .zip(before.postgres_cpu)
                .map(|(later, earlier)| micros(later, earlier)),
            load_generator_cpu_micros: micros(after.load_generator_cpu, before.load_generator_cpu),
            wal_bytes: per((after.wal_bytes - before.wal_bytes) as f64),
            statements: after
                .statements
                .zip(before.statements)
                .map(|(later, earlier)| per((later - earlier) as f64)),
            nested_statements: after
                .nested_statements
                .zip(before.nested_statements)
                .map(|(later, earlier)| per((later - earlier) as f64)),
            transactions: calls_of(&statement_mix, "COMMIT"),
            statement_mix,
        }
    }
}

/// The calls per webhook of one statement of the mix, when statements were counted.
fn calls_of(statement_mix: &[(String, f64)], query: &str) -> Option<f64> {
    statement_mix
        .iter()
        .find(|(text, _)| text == query)
        .map(|(_, calls)| *calls)
}

/// A statement's text on one line, cut to its first 90 characters.
fn one_line(query: &str) -> String {
    let words: Vec<&str> = query.split_whitespace().collect();
    let line = words.join(" ");
    match line.char_indices().nth(90) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

fn optional(value: Option<f64>, precision: usize) -> String {
    value.map_or("n/a".to_owned(), |value| format!("{value:.precision$}"))
}

/// The split of each labelled run as one Markdown table, then the statement mix of the last.
pub fn print_cost_table(rows: &[(String, CostSplit)]) {
    println!();
    println!(
        "| run | webhooks | host CPU µs | PostgreSQL CPU µs | load generator CPU µs | WAL bytes | statements sent | nested statements | transactions |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (label, split) in rows {
        println!(
            "| {label} | {} | {:.0} | {} | {:.0} | {:.0} | {} | {} | {} |",
            split.webhooks,
            split.host_cpu_micros,
            optional(split.postgres_cpu_micros, 0),
            split.load_generator_cpu_micros,
            split.wal_bytes,
            optional(split.statements, 3),
            optional(split.nested_statements, 3),
            optional(split.transactions, 3),
        );
    }
    let Some((label, last)) = rows.last() else {
        return;
    };
    if last.statement_mix.is_empty() {
        return;
    }
    println!();
    println!("statements per webhook in the run '{label}', by statement:");
    println!();
    println!("| calls per webhook | statement |");
    println!("|---|---|");
    for (query, calls) in last.statement_mix.iter().take(12) {
        println!("| {calls:.3} | `{}` |", query.replace('|', "\\|"));
    }
}
