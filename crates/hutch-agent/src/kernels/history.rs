//! Execution history and statistics of this sandbox, in memory (the newest [`HISTORY_LEN`]
//! entries; totals count everything since the agent started).

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use super::{code_digest, Outcome, RunStatus};

/// Entries kept.
pub(super) const HISTORY_LEN: usize = 1000;

/// One execution.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    /// The execution id (also in the response).
    pub execution_id: String,
    /// When it finished.
    pub timestamp: String,
    /// Canonical language name.
    pub language: &'static str,
    /// The context, for kernel languages.
    pub context_id: Option<String>,
    /// Seconds the code ran (for a cache hit: the time to serve it).
    pub execution_time: f64,
    /// Success as in the response.
    pub success: bool,
    /// Exit code as in the response.
    pub exit_code: i32,
    /// `finished`, `timed_out`, `cancelled` or `kernel_died`.
    pub status: RunStatus,
    /// Served from the result cache.
    pub cache_hit: bool,
    /// Compiled code was reused.
    pub compile_hit: bool,
    /// The kernel was restarted (state lost).
    pub kernel_restarted: bool,
    /// Hex SHA-256 of the code.
    pub code_sha256: String,
    /// Code length in bytes.
    pub code_length: usize,
    /// Artifacts produced: outputs richer than plain text (figures, HTML, images, JSON, …).
    pub artifacts: usize,
}

/// Totals for `GET /execute/stats`.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Executions since the agent started (cache hits included).
    pub total_executions: u64,
    /// Of which succeeded.
    pub successful_executions: u64,
    /// Of which failed (exception, non-zero exit, timeout, kernel death).
    pub failed_executions: u64,
    /// Mean execution time in seconds.
    pub average_execution_time: f64,
    /// Executions served from the result cache.
    pub cache_hits: u64,
    /// Executions that ran (total − hits).
    pub cache_misses: u64,
    /// cache_hits / total_executions.
    pub cache_hit_ratio: f64,
    /// Executions that reused compiled code.
    pub compile_cache_hits: u64,
    /// Compiled entries held now (kernel compilation caches + built Go programs).
    pub cached_compilations: u64,
    /// Artifacts produced (outputs richer than plain text: figures, HTML, images, JSON, …);
    /// cache hits produce none.
    pub artifacts_count: u64,
    /// Executions that timed out.
    pub timeouts: u64,
    /// Executions after which a kernel had to be restarted.
    pub kernel_restarts: u64,
    /// Executions per language.
    pub by_language: BTreeMap<&'static str, u64>,
    /// Entries kept in the history.
    pub history_size: usize,
}

pub(super) struct History {
    entries: VecDeque<HistoryEntry>,
    cap: usize,
    total: u64,
    ok: u64,
    seconds: f64,
    cache_hits: u64,
    compile_hits: u64,
    artifacts: u64,
    timeouts: u64,
    restarts: u64,
    by_language: BTreeMap<&'static str, u64>,
}

impl History {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            entries: VecDeque::with_capacity(cap.min(64)),
            cap: cap.max(1),
            total: 0,
            ok: 0,
            seconds: 0.0,
            cache_hits: 0,
            compile_hits: 0,
            artifacts: 0,
            timeouts: 0,
            restarts: 0,
            by_language: BTreeMap::new(),
        }
    }

    pub(super) fn record(&mut self, o: &Outcome, code: &str) {
        let entry = HistoryEntry {
            execution_id: o.execution_id.clone(),
            timestamp: hutch_types::now_rfc3339(),
            language: o.language.name(),
            context_id: o.context_id.clone(),
            execution_time: o.duration.as_secs_f64(),
            success: o.success(),
            exit_code: o.exit_code,
            status: o.status,
            cache_hit: o.cache_hit,
            compile_hit: o.compile_hit,
            kernel_restarted: o.kernel_restarted,
            code_sha256: code_digest(code),
            code_length: code.len(),
            artifacts: o.rich_outputs(),
        };
        self.total += 1;
        self.ok += u64::from(entry.success);
        self.seconds += entry.execution_time;
        self.cache_hits += u64::from(o.cache_hit);
        self.compile_hits += u64::from(o.compile_hit && !o.cache_hit);
        if !o.cache_hit {
            self.artifacts += entry.artifacts as u64;
        }
        self.timeouts += u64::from(o.status == RunStatus::TimedOut);
        self.restarts += u64::from(o.kernel_restarted);
        *self.by_language.entry(entry.language).or_default() += 1;
        if self.entries.len() == self.cap {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    pub(super) fn recent(&self, limit: usize) -> Vec<HistoryEntry> {
        self.entries.iter().rev().take(limit).cloned().collect()
    }

    pub(super) fn stats(&self, cached_compilations: u64) -> Stats {
        let ratio = |n: u64| {
            if self.total == 0 {
                0.0
            } else {
                n as f64 / self.total as f64
            }
        };
        Stats {
            total_executions: self.total,
            successful_executions: self.ok,
            failed_executions: self.total - self.ok,
            average_execution_time: if self.total == 0 {
                0.0
            } else {
                self.seconds / self.total as f64
            },
            cache_hits: self.cache_hits,
            cache_misses: self.total - self.cache_hits,
            cache_hit_ratio: ratio(self.cache_hits),
            compile_cache_hits: self.compile_hits,
            cached_compilations,
            artifacts_count: self.artifacts,
            timeouts: self.timeouts,
            kernel_restarts: self.restarts,
            by_language: self.by_language.clone(),
            history_size: self.entries.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Language;

    #[test]
    fn bounded_and_counted() {
        let mut h = History::new(2);
        for i in 0..3 {
            let mut o = Outcome::new(Language::Python, None);
            o.exit_code = i;
            o.cache_hit = i == 2;
            h.record(&o, "x");
        }
        assert_eq!(h.recent(10).len(), 2);
        assert_eq!(h.recent(10)[0].exit_code, 2);
        let s = h.stats(5);
        assert_eq!(s.total_executions, 3);
        assert_eq!(s.successful_executions, 1);
        assert_eq!(s.cache_hits, 1);
        assert_eq!(s.cache_misses, 2);
        assert_eq!(s.cached_compilations, 5);
        assert_eq!(s.history_size, 2);
    }
}
