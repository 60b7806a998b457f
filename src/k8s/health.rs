//! What `/healthz` and `/readyz` decide, and the watch that feeds the controller, kept so that its
//! progress can be seen.
//!
//! - [`WatchProgress`] records what the controller's watch of its tunnels delivers. kube's watcher says
//!   nothing while a watch is quiet (it swallows bookmarks and re-watches silently), so
//!   [`watch_with_relists`] starts a new watch, which lists again, after a quiet spell: a healthy watch
//!   then shows progress at least that often, and one stuck on a dead connection is replaced.
//! - [`tunnel_readiness`] is one tunnel's part of readiness: up, reported, or still pending.
//! - [`restart_delay`] is the exponential backoff between restarts of a tunnel whose task died.
//!
//! Pure apart from the watch itself: the time is an argument, so the rules are tested exactly.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use kube::runtime::watcher;

use super::tunnel_runtime::Phase;

/// What a health or readiness check found: problems (the check fails when there is any) and notes
/// (said either way). Each line names the check and, where there is one, the tunnel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Why the check fails; empty when it passes.
    pub problems: Vec<String>,
    /// Other things worth saying (tunnels reported failing, watch errors).
    pub notes: Vec<String>,
}

impl Report {
    /// True when nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The answer's body: `ok` or `failed`, then one line per problem and note.
    pub fn body(&self) -> String {
        let mut out = String::from(if self.ok() { "ok\n" } else { "failed\n" });
        for line in self.problems.iter().chain(&self.notes) {
            let _ = writeln!(out, "- {line}");
        }
        out
    }
}

/// What the controller's watch has delivered, and when.
#[derive(Debug)]
pub struct WatchProgress {
    inner: Mutex<Progress>,
}

#[derive(Debug)]
struct Progress {
    /// When watching began; stands in for the last progress before there was any.
    started: Instant,
    /// The last event or successful list page.
    last_progress: Option<Instant>,
    /// Watch errors since the last progress, and the last one's message.
    errors: u32,
    last_error: Option<String>,
    /// New watches started after a quiet spell.
    relists: u64,
}

impl WatchProgress {
    /// A watch that begins at `now`.
    pub fn new(now: Instant) -> WatchProgress {
        WatchProgress {
            inner: Mutex::new(Progress {
                started: now,
                last_progress: None,
                errors: 0,
                last_error: None,
                relists: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one item of the watch stream. Events and list pages are progress; `Init` (sent before
    /// the list is even requested) is not; an error starts or extends an error streak.
    pub fn record<K>(&self, item: &watcher::Result<watcher::Event<K>>, now: Instant) {
        let mut progress = self.lock();
        match item {
            Ok(watcher::Event::Init) => {}
            Ok(_) => {
                progress.last_progress = Some(now);
                progress.errors = 0;
                progress.last_error = None;
            }
            Err(error) => {
                progress.errors = progress.errors.saturating_add(1);
                progress.last_error = Some(error.to_string());
            }
        }
    }

    /// Records that a quiet watch was replaced by a new one.
    pub fn record_relist(&self) {
        let mut progress = self.lock();
        progress.relists += 1;
    }

    /// How many quiet watches were replaced.
    pub fn relists(&self) -> u64 {
        self.lock().relists
    }

    /// The liveness verdict: a problem when nothing was delivered (no event, no successful list) for
    /// longer than `bound`, with the error streak if there is one; otherwise a note on errors, if any.
    pub fn check(&self, now: Instant, bound: Duration, report: &mut Report) {
        let progress = self.lock();
        let since = progress.last_progress.unwrap_or(progress.started);
        let quiet = now.saturating_duration_since(since);
        let errors = match (&progress.last_error, progress.errors) {
            (Some(error), n) if n > 0 => format!("; {n} watch errors in a row, the last: {error}"),
            _ => String::new(),
        };
        let what = if progress.last_progress.is_some() {
            "no watch event and no successful list"
        } else {
            "the first list has not completed"
        };
        if quiet > bound {
            report.problems.push(format!(
                "watch: {what} of this node's tunnels for {} s (the bound is {} s){errors}",
                quiet.as_secs(),
                bound.as_secs()
            ));
        } else if !errors.is_empty() {
            report.notes.push(format!(
                "watch: last progress {} s ago{errors}",
                quiet.as_secs()
            ));
        }
    }
}

/// The watch stream of `make` (called again for each new watch), with each item recorded in
/// `progress`, and replaced by a new watch, which starts with a list, when it has delivered nothing
/// for `quiet`. Each new watch begins with `Init`, so a reflector fed from this stream rebuilds its
/// store from the new list.
pub fn watch_with_relists<K: Send + 'static>(
    mut make: impl FnMut() -> BoxStream<'static, watcher::Result<watcher::Event<K>>> + Send + 'static,
    quiet: Duration,
    progress: std::sync::Arc<WatchProgress>,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send {
    let first = make();
    futures::stream::unfold(
        (first, make, progress),
        move |(mut current, mut make, progress)| async move {
            loop {
                tokio::select! {
                    item = current.next() => match item {
                        Some(item) => {
                            progress.record(&item, Instant::now());
                            return Some((item, (current, make, progress)));
                        }
                        // kube's watcher never ends; should one, watch again.
                        None => current = make(),
                    },
                    () = tokio::time::sleep(quiet) => {
                        tracing::debug!(quiet_s = quiet.as_secs(), "the watch was quiet; listing again");
                        progress.record_relist();
                        current = make();
                    }
                }
            }
        },
    )
}

/// One tunnel's part of readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelReadiness {
    /// The runtime reports it Running.
    Up,
    /// Not Running, past the startup grace, and its status says why (the Ready condition's reason).
    Reported(String),
    /// Neither: it holds readiness back (the text says why).
    Pending(String),
}

/// Where a tunnel stands for readiness. `phase` is the runtime's (`None`: not started),
/// `reported` the reason of a Ready=False condition in its status for its current generation, and
/// `seen_for` how long ago the controller first saw it.
pub fn tunnel_readiness(
    phase: Option<Phase>,
    reported: Option<&str>,
    seen_for: Duration,
    grace: Duration,
) -> TunnelReadiness {
    if phase == Some(Phase::Running) {
        return TunnelReadiness::Up;
    }
    let where_ = match phase {
        Some(phase) => format!("{phase:?}"),
        None => "not started".into(),
    };
    if seen_for < grace {
        return TunnelReadiness::Pending(format!(
            "not Running yet ({where_}), {} s into the {} s startup grace",
            seen_for.as_secs(),
            grace.as_secs()
        ));
    }
    match reported {
        Some(reason) => TunnelReadiness::Reported(reason.to_string()),
        None => TunnelReadiness::Pending(format!(
            "not Running ({where_}) {} s after it was first seen, and its status does not say why yet",
            seen_for.as_secs()
        )),
    }
}

/// The delay before the `failures`-th restart (1, 2, ...) of a tunnel whose task died: `base`
/// doubled for each failure before it, at most `cap`.
pub fn restart_delay(failures: u32, base: Duration, cap: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    base.saturating_mul(1u32 << doublings).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn restart_delays_double_up_to_the_cap() {
        let delays: Vec<u64> = (1..=12)
            .map(|n| restart_delay(n, S(1), S(300)).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(restart_delay(u32::MAX, S(1), S(300)), S(300));
        assert_eq!(restart_delay(0, S(2), S(300)), S(2));
    }

    #[test]
    fn readiness_waits_out_the_grace_then_takes_a_report() {
        let grace = S(60);
        assert_eq!(
            tunnel_readiness(Some(Phase::Running), None, S(1), grace),
            TunnelReadiness::Up
        );
        // Within the grace even a reported failure holds readiness back: it may still come up.
        let pending = tunnel_readiness(Some(Phase::Failed), Some("TaskPanicked"), S(10), grace);
        assert!(
            matches!(&pending, TunnelReadiness::Pending(why) if why.contains("Failed") && why.contains("10 s into the 60 s")),
            "{pending:?}"
        );
        assert_eq!(
            tunnel_readiness(Some(Phase::Failed), Some("TaskPanicked"), S(61), grace),
            TunnelReadiness::Reported("TaskPanicked".into())
        );
        assert_eq!(
            tunnel_readiness(None, Some("Conflict"), S(61), grace),
            TunnelReadiness::Reported("Conflict".into())
        );
        let silent = tunnel_readiness(Some(Phase::WaitingForMemif), None, S(90), grace);
        assert!(
            matches!(&silent, TunnelReadiness::Pending(why) if why.contains("does not say why")),
            "{silent:?}"
        );
    }

    #[test]
    fn a_watch_is_wedged_when_nothing_arrives_for_the_bound() {
        let t0 = Instant::now();
        let progress = WatchProgress::new(t0);
        let mut report = Report::default();
        progress.check(t0 + S(5), S(10), &mut report);
        assert!(report.ok(), "{report:?}");

        // The first list never completing counts too.
        let mut report = Report::default();
        progress.check(t0 + S(11), S(10), &mut report);
        assert!(
            report.problems[0].contains("the first list has not completed"),
            "{report:?}"
        );

        progress.record::<()>(&Ok(watcher::Event::InitDone), t0 + S(11));
        let mut report = Report::default();
        progress.check(t0 + S(20), S(10), &mut report);
        assert!(report.ok(), "{report:?}");

        // Errors are not progress; they are said, and they fail the check once the bound passes.
        let error: watcher::Result<watcher::Event<()>> = Err(watcher::Error::NoResourceVersion);
        progress.record(&error, t0 + S(15));
        let mut report = Report::default();
        progress.check(t0 + S(20), S(10), &mut report);
        assert!(report.ok() && report.notes[0].contains("1 watch errors in a row"));
        let mut report = Report::default();
        progress.check(t0 + S(22), S(10), &mut report);
        assert!(
            report.problems[0].contains("no watch event and no successful list")
                && report.problems[0].contains("for 11 s"),
            "{report:?}"
        );
        // `Init` comes before the list is asked for: not progress either.
        progress.record::<()>(&Ok(watcher::Event::Init), t0 + S(22));
        let mut report = Report::default();
        progress.check(t0 + S(22), S(10), &mut report);
        assert!(!report.ok());
        progress.record::<()>(&Ok(watcher::Event::Apply(())), t0 + S(23));
        let mut report = Report::default();
        progress.check(t0 + S(24), S(10), &mut report);
        assert_eq!(report, Report::default());
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_watch_is_replaced_by_a_new_list() {
        let made = Arc::new(AtomicUsize::new(0));
        let counter = made.clone();
        let progress = Arc::new(WatchProgress::new(Instant::now()));
        // Each watch lists one object, then stays quiet.
        let make = move || {
            counter.fetch_add(1, Ordering::Relaxed);
            futures::stream::iter([
                Ok(watcher::Event::Init),
                Ok(watcher::Event::InitApply(1u8)),
                Ok(watcher::Event::InitDone),
            ])
            .chain(futures::stream::pending())
            .boxed()
        };
        let stream = watch_with_relists(make, S(10), progress.clone());
        futures::pin_mut!(stream);
        let mut inits = 0;
        while inits < 3 {
            if let Some(Ok(watcher::Event::Init)) = stream.next().await {
                inits += 1;
            }
        }
        assert_eq!(made.load(Ordering::Relaxed), 3);
        assert_eq!(progress.relists(), 2);
    }
}
