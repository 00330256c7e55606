//! The calls of a load run, drawn in advance from a seed: when each caller arrives (a Poisson
//! process), how long the conversation lasts (lognormal, mean and coefficient of variation), and
//! what happens in it (the caller gives up while waiting, the operator holds or transfers the
//! call, or identifies the citizen and issues and prints a certificate).
//!
//! [`plan`] is pure: the same [`Shape`], duration and seed give the same calls, so two runs offer
//! the same load. The drivers ([`crate::run`]) only carry the plan out.

use std::time::Duration;

use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, LogNormal};
use serde::Serialize;

/// The shares of calls with each event (0–1, drawn independently).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Mix {
    /// Callers who give up after a patience time if nobody answered by then.
    pub abandon: f64,
    /// Calls the operator puts on hold once.
    pub hold: f64,
    /// Calls the operator transfers back to the service's queue once, halfway through.
    pub transfer: f64,
    /// Calls in which the operator identifies the citizen (document scan), issues a certificate
    /// and prints it on the kiosk's printer.
    pub certificate: f64,
}

/// The load's shape.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Shape {
    /// Mean arrivals per second over all kiosks.
    pub rate_per_s: f64,
    /// Mean conversation length (seconds).
    pub handle_mean_s: f64,
    /// Coefficient of variation of the conversation length.
    pub handle_cv: f64,
    /// Mean patience of the callers who abandon (exponential, seconds).
    pub patience_mean_s: f64,
    /// How long a held call stays on hold (seconds).
    pub hold_s: f64,
    /// What happens in the calls.
    pub mix: Mix,
}

impl Shape {
    /// Refuses shapes that cannot be drawn from.
    pub fn validate(&self) -> Result<()> {
        let finite_positive = |x: f64| x.is_finite() && x > 0.0;
        if !finite_positive(self.rate_per_s) {
            bail!("the arrival rate must be above 0 (got {})", self.rate_per_s);
        }
        if !finite_positive(self.handle_mean_s) {
            bail!("the mean handle time must be above 0 s");
        }
        if !(self.handle_cv.is_finite() && self.handle_cv >= 0.0) {
            bail!("the handle time's CV must be 0 or more");
        }
        if !finite_positive(self.patience_mean_s) {
            bail!("the mean patience must be above 0 s");
        }
        if !(self.hold_s.is_finite() && self.hold_s >= 0.0) {
            bail!("the hold time must be 0 or more");
        }
        let m = self.mix;
        for (name, share) in [
            ("abandon", m.abandon),
            ("hold", m.hold),
            ("transfer", m.transfer),
            ("certificate", m.certificate),
        ] {
            if !(0.0..=1.0).contains(&share) {
                bail!("the {name} share must be within 0–1 (got {share})");
            }
        }
        Ok(())
    }
}

/// One caller of the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedCall {
    /// 0-based, in arrival order.
    pub index: usize,
    /// When the caller arrives, from the start of the run.
    pub at: Duration,
    /// How long the conversation lasts once answered (summed over operators after a transfer).
    pub handle: Duration,
    /// Abandons if still unanswered after this long.
    pub patience: Option<Duration>,
    /// Put on hold once.
    pub hold: bool,
    /// Transferred once.
    pub transfer: bool,
    /// A certificate is issued and printed.
    pub certificate: bool,
}

/// The lognormal with this mean and coefficient of variation.
fn lognormal(mean: f64, cv: f64) -> Result<LogNormal<f64>> {
    let sigma2 = (1.0 + cv * cv).ln();
    let mu = mean.ln() - sigma2 / 2.0;
    LogNormal::new(mu, sigma2.sqrt()).map_err(|e| anyhow::anyhow!("lognormal({mean}, {cv}): {e}"))
}

/// The callers who arrive within `duration`, from `seed`.
pub fn plan(shape: &Shape, duration: Duration, seed: u64) -> Result<Vec<PlannedCall>> {
    shape.validate()?;
    let mut rng = StdRng::seed_from_u64(seed);
    let gaps = Exp::new(shape.rate_per_s).map_err(|e| anyhow::anyhow!("exp: {e}"))?;
    let patience =
        Exp::new(1.0 / shape.patience_mean_s).map_err(|e| anyhow::anyhow!("exp: {e}"))?;
    let handle = lognormal(shape.handle_mean_s, shape.handle_cv)?;
    let mut calls = Vec::new();
    let mut t = 0.0;
    loop {
        t += gaps.sample(&mut rng);
        if t >= duration.as_secs_f64() {
            break;
        }
        // Every draw happens for every call, so changing one share keeps the others' draws.
        let handle_s = handle.sample(&mut rng).max(0.5);
        let abandons = rng.gen_bool(shape.mix.abandon);
        let patience_s = patience.sample(&mut rng).max(0.2);
        let hold = rng.gen_bool(shape.mix.hold);
        let transfer = rng.gen_bool(shape.mix.transfer);
        let certificate = rng.gen_bool(shape.mix.certificate);
        calls.push(PlannedCall {
            index: calls.len(),
            at: Duration::from_secs_f64(t),
            handle: Duration::from_secs_f64(handle_s),
            patience: abandons.then(|| Duration::from_secs_f64(patience_s)),
            hold,
            transfer,
            certificate,
        });
    }
    Ok(calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Shape {
        Shape {
            rate_per_s: 2.0,
            handle_mean_s: 10.0,
            handle_cv: 0.5,
            patience_mean_s: 5.0,
            hold_s: 1.0,
            mix: Mix {
                abandon: 0.1,
                hold: 0.2,
                transfer: 0.05,
                certificate: 0.3,
            },
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_plan() {
        let a = plan(&shape(), Duration::from_secs(600), 7).unwrap();
        let b = plan(&shape(), Duration::from_secs(600), 7).unwrap();
        let c = plan(&shape(), Duration::from_secs(600), 8).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn draws_follow_the_shape() {
        let calls = plan(&shape(), Duration::from_secs(5000), 1).unwrap();
        // Poisson: about rate × duration arrivals, in order, within the run.
        let n = calls.len() as f64;
        assert!((n - 10_000.0).abs() < 400.0, "{n} arrivals");
        assert!(calls.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(calls.last().unwrap().at < Duration::from_secs(5000));
        // Lognormal: mean 10 s, CV 0.5.
        let hs: Vec<f64> = calls.iter().map(|c| c.handle.as_secs_f64()).collect();
        let mean = hs.iter().sum::<f64>() / n;
        let sd = (hs.iter().map(|h| (h - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!((mean - 10.0).abs() < 0.3, "mean {mean}");
        assert!((sd / mean - 0.5).abs() < 0.05, "cv {}", sd / mean);
        // Shares.
        let share = |f: fn(&PlannedCall) -> bool| calls.iter().filter(|c| f(c)).count() as f64 / n;
        assert!((share(|c| c.patience.is_some()) - 0.1).abs() < 0.02);
        assert!((share(|c| c.hold) - 0.2).abs() < 0.02);
        assert!((share(|c| c.transfer) - 0.05).abs() < 0.01);
        assert!((share(|c| c.certificate) - 0.3).abs() < 0.02);
    }

    #[test]
    fn bad_shapes_are_refused() {
        let mut s = shape();
        s.rate_per_s = 0.0;
        assert!(plan(&s, Duration::from_secs(1), 1).is_err());
        let mut s = shape();
        s.mix.hold = 1.5;
        assert!(plan(&s, Duration::from_secs(1), 1).is_err());
        let mut s = shape();
        s.handle_cv = f64::NAN;
        assert!(s.validate().is_err());
    }
}
