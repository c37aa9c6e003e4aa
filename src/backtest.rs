//! A backtest: a candidate policy and the policy in force replayed over one
//! instance's stored history, tick by tick as the live job would have. The HTTP
//! handler parses the request, reads the history from the store and maps the
//! report; the orchestration (two replays on blocking threads, fed in chunks as
//! the history streams in) is here.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::policy::Policy;
use crate::scaling::Sample;
use crate::scaling::replay::{Replay, ReplayReport, ReplaySummary};
use crate::store::{StoreError, StoreResult};

/// Samples handed to the replay threads at a time.
const REPLAY_CHUNK: usize = 2048;

/// What to replay.
#[derive(Debug, Clone)]
pub struct Backtest {
    /// The instance's policy in force.
    pub baseline: Policy,
    pub candidate: Policy,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The scaling interval the replays tick at.
    pub interval: TimeDelta,
    /// The level both replays start at; each policy's `min_level` when `None`.
    pub start_level: Option<i32>,
}

/// What a backtest found: the candidate's whole replay and the baseline's summary.
#[derive(Debug, Clone, PartialEq)]
pub struct BacktestReport {
    pub candidate: ReplayReport,
    pub baseline: ReplaySummary,
}

/// Why a backtest has no report.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A replay thread panicked.
    #[error("a replay failed: {0}")]
    Replay(#[from] tokio::task::JoinError),
}

impl Backtest {
    /// Where the history must start: the longer window before `from`, so the
    /// first tick sees a full window.
    pub fn since(&self) -> DateTime<Utc> {
        self.from - self.candidate.window.max(self.baseline.window)
    }

    /// Replays `history` (samples from [`Backtest::since`] to `to`, oldest first).
    /// The two replays run on blocking threads, fed in chunks as the history streams
    /// in: the read and both replays overlap, and memory stays at the window plus a
    /// few chunks whatever the span. A candidate equal to the baseline runs once.
    pub async fn run(
        self,
        history: BoxStream<'_, StoreResult<Sample>>,
    ) -> Result<BacktestReport, BacktestError> {
        let policies = if self.candidate == self.baseline {
            vec![&self.candidate]
        } else {
            vec![&self.candidate, &self.baseline]
        };
        let mut feeds = Vec::new();
        let mut runs = Vec::new();
        for policy in policies {
            let (feed, mut chunks) = tokio::sync::mpsc::channel::<Arc<[Sample]>>(4);
            let start = self.start_level.unwrap_or(policy.min_level);
            let mut run = Replay::new(policy.clone(), start, self.from, self.to, self.interval);
            feeds.push(feed);
            runs.push(tokio::task::spawn_blocking(move || {
                while let Some(chunk) = chunks.blocking_recv() {
                    for sample in chunk.iter() {
                        run.push(*sample);
                    }
                }
                run.finish()
            }));
        }
        let mut samples = history.chunks(REPLAY_CHUNK);
        while let Some(chunk) = samples.next().await {
            let chunk: Arc<[Sample]> = chunk.into_iter().collect::<Result<_, _>>()?;
            for feed in &feeds {
                // A replay thread only stops early by panicking; the join below says so.
                let _ = feed.send(chunk.clone()).await;
            }
        }
        drop(samples);
        drop(feeds);
        let mut reports = Vec::new();
        for run in runs {
            reports.push(run.await?);
        }
        let candidate = reports.swap_remove(0);
        let baseline = reports
            .pop()
            .map_or_else(|| candidate.summary.clone(), |r| r.summary);
        Ok(BacktestReport {
            candidate,
            baseline,
        })
    }
}
