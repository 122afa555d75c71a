//! How many requests one pixel may have in flight: adaptive request concurrency in the manner
//! of Vector's (AIMD on the observed round-trip time and on the answers), plus what Meta says
//! of its budget (the usage headers and how long to wait), and, with a shared budget, what the
//! other instances sending to the same pixel report.
//!
//! Pure logic: every method takes the time it happens at, so tests drive it with a made-up
//! clock. The sink wraps it in [`super::flow::Flow`].
//!
//! Each round-trip time (the average RTT so far), the controller looks back on the answers of
//! that interval:
//! - it adds one to the limit when the limit was reached, no answer pushed back, usage is below
//!   [`HOLD_PERCENT`] and the interval's mean RTT is no worse than the long-run mean;
//! - it multiplies the limit by `decrease_ratio` when an answer pushed back (Meta's throttling
//!   codes, HTTP 429, 5xx, a timeout), a usage figure reached [`CUT_PERCENT`], or the mean RTT
//!   rose beyond `rtt_deviation_scale` standard deviations (and a tenth) of the long-run mean.
//!
//! Meta's usage figures are averages over a window, so they trail the rate: from
//! [`CAUTION_PERCENT`] on, the limit grows, and usage cuts it, at most once every
//! [`CAUTION_INTERVAL`], or it would overshoot (or undershoot) before the figures show it.
//!
//! With `peers` instances sharing the pixel's budget, each grows on every `peers`-th chance
//! only and stays below its share of `max`, so together they grow as one would.

use std::time::{Duration, Instant};

/// Usage (any figure of Meta's headers, in percent) from which the limit stops growing.
pub const HOLD_PERCENT: f64 = 85.0;
/// Usage from which the limit is cut as if Meta had pushed back.
pub const CUT_PERCENT: f64 = 95.0;
/// Usage from which the limit grows at most once every [`CAUTION_INTERVAL`]: Meta's figures
/// are averages over a window, so they trail a rising rate, and growing every round trip would
/// overshoot the limit before they show it.
pub const CAUTION_PERCENT: f64 = 50.0;
/// See [`CAUTION_PERCENT`].
pub const CAUTION_INTERVAL: Duration = Duration::from_millis(500);

/// RTT differences below a microsecond are rounding, not a change of pace.
const NOISE_SECS: f64 = 1e-6;
/// Nor is an RTT within this share of the mean a slowdown, however steady the RTTs were: once
/// the variance has settled near zero, a scheduling hiccup would otherwise cut the limit.
const RTT_NOISE_RATIO: f64 = 0.1;

/// `request.concurrency`: a fixed number, or adaptive with its tuning.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Concurrency {
    /// Always this many requests at most (Meta's waits are still honoured).
    Fixed(usize),
    /// Found by the controller.
    Adaptive(AdaptiveSettings),
}

/// `request.adaptive_concurrency`: Vector's names and defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveSettings {
    /// The limit to start from.
    pub initial: usize,
    /// The limit is never raised beyond this.
    pub max: usize,
    /// What a cut multiplies the limit by.
    pub decrease_ratio: f64,
    /// Weight of the newest interval in the long-run RTT mean.
    pub ewma_alpha: f64,
    /// How many standard deviations above the mean an RTT counts as a slowdown.
    pub rtt_deviation_scale: f64,
}

impl Default for AdaptiveSettings {
    fn default() -> Self {
        AdaptiveSettings {
            initial: 1,
            max: 200,
            decrease_ratio: 0.9,
            ewma_alpha: 0.4,
            rtt_deviation_scale: 2.5,
        }
    }
}

/// What one attempt's answer meant for the budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Meta took the request: its RTT is a measurement.
    Accepted,
    /// Meta (or what is in between) asks to slow down.
    BackPressure,
    /// Neither: a rejected payload, a credentials error, a connection error.
    Other,
}

/// One attempt, as the controller learns of it.
#[derive(Clone, Copy, Debug)]
pub struct Attempt {
    /// How long it took.
    pub rtt: Duration,
    /// What its answer meant.
    pub outcome: Outcome,
    /// The highest usage figure of its headers, if any.
    pub usage_percent: Option<f64>,
    /// How long Meta says to wait before the next request, if it says.
    pub wait: Option<Duration>,
}

/// What the other instances sharing the pixel report (see `shared_budget`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Peers {
    /// Live instances, this one included (at least 1).
    pub live: usize,
    /// The highest usage any of them read.
    pub usage_percent: Option<f64>,
    /// The latest any of them was told to wait until.
    pub paused_until: Option<Instant>,
    /// Whether one of them was pushed back since the last report.
    pub back_pressure: bool,
}

/// Why a request cannot start now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Meta asked to wait until then.
    Paused(Instant),
    /// The limit is reached: wait for a request to finish.
    Full,
}

/// Exponentially weighted mean and variance of the RTT, in seconds.
#[derive(Clone, Copy, Debug)]
struct Ewma {
    mean: f64,
    variance: f64,
}

/// The limit of one pixel and what it is decided from.
#[derive(Debug)]
pub struct Controller {
    settings: Option<AdaptiveSettings>,
    limit: usize,
    in_flight: usize,
    past_rtt: Option<Ewma>,
    /// Sum and count of this interval's RTTs.
    current_rtt: (f64, u32),
    next_update: Instant,
    back_pressure: bool,
    reached_limit: bool,
    own_usage: Option<f64>,
    peers: Peers,
    paused_until: Option<Instant>,
    /// Chances to grow so far, for the share of growth with peers.
    chances: u64,
    /// When the limit last grew.
    grown_at: Instant,
    /// When usage last cut the limit.
    usage_cut_at: Option<Instant>,
}

impl Controller {
    /// A controller starting at `now`.
    pub fn new(concurrency: Concurrency, now: Instant) -> Self {
        let (settings, limit) = match concurrency {
            Concurrency::Fixed(n) => (None, n.max(1)),
            Concurrency::Adaptive(s) => (Some(s), s.initial.clamp(1, s.max.max(1))),
        };
        Controller {
            settings,
            limit,
            in_flight: 0,
            past_rtt: None,
            current_rtt: (0.0, 0),
            next_update: now,
            back_pressure: false,
            reached_limit: false,
            own_usage: None,
            peers: Peers {
                live: 1,
                ..Peers::default()
            },
            paused_until: None,
            chances: 0,
            grown_at: now,
            usage_cut_at: None,
        }
    }

    /// Requests allowed in flight now.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Until when Meta (directly, or through a peer) asked to wait, if that is still ahead.
    pub fn paused_until(&self, now: Instant) -> Option<Instant> {
        [self.paused_until, self.peers.paused_until]
            .into_iter()
            .flatten()
            .max()
            .filter(|&until| until > now)
    }

    /// The highest usage figure known, this instance's or a peer's.
    pub fn usage_percent(&self) -> Option<f64> {
        [self.own_usage, self.peers.usage_percent]
            .into_iter()
            .flatten()
            .reduce(f64::max)
    }

    /// Start a request if the limit and Meta allow it.
    pub fn try_start(&mut self, now: Instant) -> Result<(), Wait> {
        if let Some(until) = self.paused_until(now) {
            return Err(Wait::Paused(until));
        }
        if self.in_flight >= self.limit {
            return Err(Wait::Full);
        }
        self.in_flight += 1;
        if self.in_flight >= self.limit {
            self.reached_limit = true;
        }
        Ok(())
    }

    /// A request started with [`Controller::try_start`] is over.
    pub fn finish(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Learn from one attempt's answer; adjusts the limit once an interval is over.
    pub fn observe(&mut self, now: Instant, attempt: Attempt) {
        if attempt.outcome == Outcome::BackPressure {
            self.back_pressure = true;
        }
        if let Some(usage) = attempt.usage_percent {
            self.own_usage = Some(usage);
        }
        if let Some(wait) = attempt.wait {
            let until = now + wait;
            self.paused_until = Some(self.paused_until.map_or(until, |u| u.max(until)));
        }
        if attempt.outcome == Outcome::Accepted {
            self.current_rtt.0 += attempt.rtt.as_secs_f64();
            self.current_rtt.1 += 1;
        }
        self.adjust(now);
    }

    /// Take in the peers' latest reports.
    pub fn set_peers(&mut self, now: Instant, peers: Peers) {
        self.back_pressure |= peers.back_pressure;
        self.peers = Peers {
            live: peers.live.max(1),
            back_pressure: false,
            ..peers
        };
        if let Some(s) = self.settings {
            // A new peer takes its share at once, not after a throttled answer.
            self.limit = self.limit.min(share(s.max, self.peers.live));
        }
        self.adjust(now);
    }

    fn adjust(&mut self, now: Instant) {
        let current =
            (self.current_rtt.1 > 0).then(|| self.current_rtt.0 / f64::from(self.current_rtt.1));
        let Some(past) = self.past_rtt else {
            if let Some(rtt) = current {
                self.past_rtt = Some(Ewma {
                    mean: rtt,
                    variance: 0.0,
                });
                self.next_update = now + Duration::from_secs_f64(rtt);
                self.reset();
            }
            return;
        };
        if now < self.next_update {
            return;
        }
        if let Some(settings) = self.settings {
            self.manage(now, settings, past, current);
        }
        let past = match current {
            Some(rtt) => {
                let alpha = self.settings.unwrap_or_default().ewma_alpha;
                let diff = rtt - past.mean;
                let increment = alpha * diff;
                Ewma {
                    mean: past.mean + increment,
                    variance: (1.0 - alpha) * (past.variance + diff * increment),
                }
            }
            None => past,
        };
        self.past_rtt = Some(past);
        self.next_update = now + Duration::from_secs_f64(past.mean.max(0.001));
        self.reset();
    }

    fn manage(&mut self, now: Instant, s: AdaptiveSettings, past: Ewma, current: Option<f64>) {
        let usage = self.usage_percent().unwrap_or(0.0);
        let slower = current.is_some_and(|rtt| {
            let deviation =
                (past.variance.sqrt() * s.rtt_deviation_scale).max(past.mean * RTT_NOISE_RATIO);
            rtt > past.mean + deviation + NOISE_SECS
        });
        let max = share(s.max, self.peers.live);
        // The figures trail a cut as they trail growth: one cut on usage per interval of caution.
        let usage_cut = usage >= CUT_PERCENT
            && self
                .usage_cut_at
                .is_none_or(|at| now >= at + CAUTION_INTERVAL);
        if usage_cut {
            self.usage_cut_at = Some(now);
        }
        if self.back_pressure || usage_cut || slower {
            if self.limit > 1 {
                // Floor, so the limit always goes down; at least one request.
                self.limit = ((self.limit as f64 * s.decrease_ratio) as usize).max(1);
            }
        } else if self.limit < max
            && self.reached_limit
            && usage < HOLD_PERCENT
            && current.is_some_and(|rtt| rtt <= past.mean + NOISE_SECS)
            && (usage < CAUTION_PERCENT || now >= self.grown_at + CAUTION_INTERVAL)
        {
            self.chances += 1;
            if self.chances.is_multiple_of(self.peers.live as u64) {
                self.limit += 1;
                self.grown_at = now;
            }
        }
        self.limit = self.limit.min(max);
    }

    fn reset(&mut self) {
        self.current_rtt = (0.0, 0);
        self.back_pressure = false;
        self.reached_limit = self.in_flight >= self.limit;
    }
}

/// One instance's part of `max` among `live` instances (at least 1).
fn share(max: usize, live: usize) -> usize {
    max.div_ceil(live.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTT: Duration = Duration::from_millis(100);

    fn adaptive(initial: usize, max: usize) -> Concurrency {
        Concurrency::Adaptive(AdaptiveSettings {
            initial,
            max,
            ..AdaptiveSettings::default()
        })
    }

    fn accepted(usage: Option<f64>) -> Attempt {
        Attempt {
            rtt: RTT,
            outcome: Outcome::Accepted,
            usage_percent: usage,
            wait: None,
        }
    }

    /// Fill the limit, answer every request after one RTT with `attempt`, and return the
    /// limit after each of `rounds` rounds.
    fn rounds(
        c: &mut Controller,
        clock: &mut Instant,
        rounds: usize,
        attempt: Attempt,
    ) -> Vec<usize> {
        (0..rounds)
            .map(|_| {
                let mut started = 0;
                while c.try_start(*clock).is_ok() {
                    started += 1;
                }
                *clock += RTT;
                for _ in 0..started {
                    c.finish();
                    c.observe(*clock, attempt);
                }
                c.limit()
            })
            .collect()
    }

    #[test]
    fn the_limit_grows_by_one_a_round_trip_while_answers_are_good_and_fast() {
        let mut clock = Instant::now();
        let mut c = Controller::new(adaptive(1, 5), clock);
        let limits = rounds(&mut c, &mut clock, 8, accepted(Some(10.0)));
        // The first round only measures the RTT.
        assert_eq!(limits, [1, 2, 3, 4, 5, 5, 5, 5]);
    }

    #[test]
    fn throttling_cuts_the_limit_multiplicatively() {
        let mut clock = Instant::now();
        let mut c = Controller::new(adaptive(20, 50), clock);
        rounds(&mut c, &mut clock, 1, accepted(None));
        let throttled = Attempt {
            outcome: Outcome::BackPressure,
            ..accepted(None)
        };
        let limits = rounds(&mut c, &mut clock, 3, throttled);
        assert_eq!(limits, [18, 16, 14]);
        // Down to one request, never zero.
        let limits = rounds(&mut c, &mut clock, 40, throttled);
        assert_eq!(limits.last(), Some(&1));
    }

    #[test]
    fn usage_stops_growth_above_the_hold_mark_and_cuts_above_the_cut_mark() {
        let mut clock = Instant::now();
        let mut c = Controller::new(adaptive(10, 50), clock);
        rounds(&mut c, &mut clock, 1, accepted(None));
        let held = rounds(&mut c, &mut clock, 3, accepted(Some(88.0)));
        assert_eq!(held, [10, 10, 10]);
        // One cut, then none until the figures could show it, half a second on.
        let cut = rounds(&mut c, &mut clock, 6, accepted(Some(97.0)));
        assert_eq!(cut, [9, 9, 9, 9, 9, 8]);
        assert_eq!(rounds(&mut c, &mut clock, 2, accepted(Some(40.0))), [9, 10]);
    }

    #[test]
    fn past_half_the_budget_the_limit_grows_once_every_half_second_at_most() {
        let mut clock = Instant::now();
        let mut c = Controller::new(adaptive(4, 50), clock);
        rounds(&mut c, &mut clock, 1, accepted(None));
        // Round trips of 100 ms, from 0.2 s on: a step at 0.5 s, the next at 1 s.
        let limits = rounds(&mut c, &mut clock, 11, accepted(Some(60.0)));
        assert_eq!(limits, [4, 4, 4, 5, 5, 5, 5, 5, 6, 6, 6]);
    }

    #[test]
    fn a_slower_round_trip_cuts_the_limit() {
        let mut clock = Instant::now();
        let mut c = Controller::new(adaptive(10, 50), clock);
        // Steady answers settle the mean at RTT.
        rounds(&mut c, &mut clock, 3, accepted(None));
        let before = c.limit();
        let slow = Attempt {
            rtt: RTT * 3,
            ..accepted(None)
        };
        let limits = rounds(&mut c, &mut clock, 1, slow);
        assert!(limits[0] < before, "{before} -> {limits:?}");
    }

    #[test]
    fn a_fixed_limit_never_moves_but_metas_wait_is_honoured() {
        let mut clock = Instant::now();
        let mut c = Controller::new(Concurrency::Fixed(3), clock);
        let throttled = Attempt {
            outcome: Outcome::BackPressure,
            usage_percent: Some(100.0),
            wait: Some(Duration::from_secs(60)),
            ..accepted(None)
        };
        assert_eq!(rounds(&mut c, &mut clock, 3, throttled), [3, 3, 3]);
        let until = c.paused_until(clock).expect("paused");
        assert_eq!(c.try_start(clock), Err(Wait::Paused(until)));
        clock = until;
        assert_eq!(c.paused_until(clock), None);
        assert_eq!(c.try_start(clock), Ok(()));
    }

    #[test]
    fn metas_wait_holds_every_request_until_it_is_over() {
        let mut clock = Instant::now();
        let mut c = Controller::new(adaptive(4, 10), clock);
        c.try_start(clock).unwrap();
        c.finish();
        c.observe(
            clock,
            Attempt {
                wait: Some(Duration::from_secs(19 * 60)),
                ..accepted(Some(100.0))
            },
        );
        clock += Duration::from_secs(19 * 60 - 1);
        assert!(matches!(c.try_start(clock), Err(Wait::Paused(_))));
        clock += Duration::from_secs(1);
        assert_eq!(c.try_start(clock), Ok(()));
    }

    #[test]
    fn the_limit_bounds_requests_in_flight() {
        let clock = Instant::now();
        let mut c = Controller::new(Concurrency::Fixed(2), clock);
        assert_eq!(c.try_start(clock), Ok(()));
        assert_eq!(c.try_start(clock), Ok(()));
        assert_eq!(c.try_start(clock), Err(Wait::Full));
        c.finish();
        assert_eq!(c.in_flight(), 1);
        assert_eq!(c.try_start(clock), Ok(()));
    }

    #[test]
    fn peers_share_growth_the_maximum_pauses_and_pushback() {
        let mut clock = Instant::now();
        let mut c = Controller::new(adaptive(1, 9), clock);
        let two = Peers {
            live: 2,
            ..Peers::default()
        };
        c.set_peers(clock, two);
        let limits = rounds(&mut c, &mut clock, 9, accepted(None));
        // One step every other round trip, up to ceil(9 / 2).
        assert_eq!(limits, [1, 1, 2, 2, 3, 3, 4, 4, 5]);
        assert_eq!(rounds(&mut c, &mut clock, 2, accepted(None)), [5, 5]);
        // A third instance: the share shrinks at once.
        c.set_peers(
            clock,
            Peers {
                live: 3,
                ..Peers::default()
            },
        );
        assert_eq!(c.limit(), 3);
        // A peer's pushback and its usage count as this instance's own.
        clock += RTT;
        c.set_peers(
            clock,
            Peers {
                live: 3,
                back_pressure: true,
                ..Peers::default()
            },
        );
        assert_eq!(c.limit(), 2);
        c.set_peers(
            clock,
            Peers {
                live: 3,
                usage_percent: Some(97.0),
                paused_until: Some(clock + Duration::from_secs(5)),
                back_pressure: false,
            },
        );
        assert_eq!(c.usage_percent(), Some(97.0));
        assert!(matches!(c.try_start(clock), Err(Wait::Paused(_))));
    }
}
