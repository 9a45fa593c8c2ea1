//! One simulated household: parameters drawn once from the sensor's seed, then a small
//! state machine advanced tick by tick. See the module documentation of `simulate` for
//! what each component models and why.
//!
//! The household (parameters, per-second update, summing the loads) is here; the time
//! of day's curves are in `day` and the appliances' state machines in `appliance`.

mod appliance;
mod day;

use super::rng::{Rng, mix64};
use appliance::{Appliance, Env, Kind, NEVER, fire, start};
use day::{Profile, bump, cold, sun};

/// What a sensor needs to know about the tick it computes.
#[derive(Clone, Copy, Debug)]
pub(super) struct TickCtx {
    /// Tick index since the start.
    pub k: u64,
    /// Hour of day of the tick's event time, `[0, 24)`.
    pub hour: f64,
    /// Whether the tick starts a new simulated second (slow processes update then).
    pub second: bool,
}

/// Rooftop solar: negative active power under a clear-sky curve times cloudiness.
#[derive(Clone, Debug)]
struct Pv {
    peak: f64,
    split: [f64; 3],
    tan: f64,
    /// Mean clearness of this site's sky.
    mu: f64,
    /// Current clearness, `[0.05, 1]`, mean-reverting with minutes-scale memory.
    clear: f64,
    /// Output now, W (positive; subtracted from the load).
    out: f64,
}

/// One sensor's household.
#[derive(Clone, Debug)]
pub(super) struct SensorModel {
    rng: Rng,
    rate: f64,
    profile: Profile,
    activity: f64,
    cold: f64,
    /// Supply voltage relative to nominal, and its square.
    volt: f64,
    volt2: f64,
    /// Always-on load per phase at nominal, W, and its q/p.
    base_p: [f64; 3],
    base_tan: [f64; 3],
    /// Slow multiplicative drift of the base load, around 1.
    base_drift: f64,
    apps: Vec<Appliance>,
    pv: Option<Pv>,
    /// Sum of the loads that hold still between events, per phase.
    steady_p: [f64; 3],
    steady_q: [f64; 3],
    inrush_p: [f64; 3],
    inrush_q: [f64; 3],
    /// Fast AR(1) fluctuation per phase (load ripple), and its stationary std.
    ripple: [f64; 3],
    ripple_sd: [f64; 3],
    /// White measurement noise std per phase.
    noise_p: [f64; 3],
    noise_q: [f64; 3],
    /// Earliest `next` over the appliances.
    next_event: u64,
    ripple_phi: f64,
    ripple_innov: f64,
    inrush_decay: f64,
}

/// All on one phase.
fn single(ph: u32) -> [f64; 3] {
    let mut s = [0.0; 3];
    s[ph as usize] = 1.0;
    s
}

const BALANCED: [f64; 3] = [1.0 / 3.0; 3];

impl SensorModel {
    /// The household of sensor `key` (a hash of seed and index), at tick 0 = `first`.
    pub(super) fn new(key: u64, rate: u32, first: &TickCtx) -> Self {
        let mut prm = Rng::new(mix64(key ^ 0x5041_5241_4d53)); // parameters
        let rng = Rng::new(mix64(key ^ 0x4459_4e41_4d49_4353)); // dynamics
        let rate_f = f64::from(rate);

        // Household size: skewed, median ≈ 1.
        let u = prm.uniform();
        let scale = 0.5 + 2.3 * u * u;
        let profile = Profile {
            night: prm.range(0.05, 0.12),
            morning: prm.range(0.5, 1.0),
            midday: prm.range(0.2, 0.6),
            evening: prm.range(0.7, 1.0),
            shift: prm.range(-1.0, 1.0),
            ev_home: prm.range(17.0, 20.0),
        };
        let base_p = [0; 3].map(|_| scale * prm.range(50.0, 180.0));
        let base_tan = [0; 3].map(|_| prm.range(0.15, 0.45));

        let mut apps = Vec::with_capacity(16);
        let phase = |prm: &mut Rng| single(prm.below(3));

        for fridge in 0..2 {
            if fridge == 1 && !prm.chance(0.5) {
                break;
            }
            let split = phase(&mut prm);
            let mut f = Appliance::new(
                Kind::Fridge,
                split,
                prm.range(70.0, 150.0),
                prm.range(0.9, 1.2),
            );
            f.a = prm.range(480.0, 900.0);
            f.b = prm.range(900.0, 2100.0);
            apps.push(f);
        }
        for _ in 0..3 + prm.below(4) {
            let split = phase(&mut prm);
            let mut d = Appliance::new(
                Kind::Device,
                split,
                prm.range(20.0, 300.0),
                prm.range(-0.3, 0.35),
            );
            d.a = prm.range(600.0, 5400.0);
            let on_share = prm.range(0.15, 0.45);
            d.start_rate = on_share / (1.0 - on_share) / d.a;
            apps.push(d);
        }
        if prm.chance(0.85) {
            let split = phase(&mut prm);
            let mut k = Appliance::new(
                Kind::Kettle,
                split,
                prm.range(1800.0, 2400.0),
                prm.range(0.0, 0.03),
            );
            (k.a, k.b) = (90.0, 240.0);
            k.start_rate = prm.range(1.2e-4, 3e-4);
            apps.push(k);
        }
        if prm.chance(0.7) {
            let split = phase(&mut prm);
            let mut m = Appliance::new(
                Kind::Microwave,
                split,
                prm.range(900.0, 1300.0),
                prm.range(0.3, 0.5),
            );
            (m.a, m.b) = (45.0, 300.0);
            m.start_rate = prm.range(5e-5, 1.5e-4);
            apps.push(m);
        }
        for (share, _) in [(0.9, 0), (0.5, 1)] {
            if prm.chance(share) {
                let split = phase(&mut prm);
                let mut c = Appliance::new(Kind::Cooking, split, prm.range(1200.0, 2500.0), 0.01);
                c.start_rate = prm.range(4e-5, 1.2e-4);
                apps.push(c);
            }
        }
        for share in [0.8, 0.5] {
            if prm.chance(share) {
                let split = phase(&mut prm);
                let mut w = Appliance::new(Kind::Washer, split, prm.range(1800.0, 2300.0), 0.02);
                w.b = prm.range(150.0, 450.0); // motor power
                w.start_rate = prm.range(8e-6, 2.5e-5);
                apps.push(w);
            }
        }
        if prm.chance(0.25) {
            let mut h = Appliance::new(
                Kind::HeatPump,
                BALANCED,
                prm.range(1000.0, 3000.0),
                prm.range(0.25, 0.45),
            );
            h.a = prm.range(900.0, 1800.0);
            h.b = prm.range(900.0, 2400.0);
            apps.push(h);
        }
        if prm.chance(0.15) {
            let v = prm.uniform();
            let (split, rated) = if v < 0.5 {
                (BALANCED, 11_000.0)
            } else if v < 0.8 {
                (phase(&mut prm), 7_400.0)
            } else {
                (phase(&mut prm), 3_700.0)
            };
            let mut e = Appliance::new(Kind::Ev, split, rated, prm.range(0.03, 0.12));
            e.b = prm.range(8.0 * 3600.0, 20.0 * 3600.0); // shortest gap between sessions
            e.start_rate = prm.range(1.5e-4, 3e-4);
            apps.push(e);
        }
        let pv = prm.chance(0.15).then(|| {
            let peak = prm.range(2000.0, 8000.0);
            let split = if peak > 4600.0 {
                BALANCED
            } else {
                phase(&mut prm)
            };
            let mu = prm.range(0.45, 0.9);
            Pv {
                peak,
                split,
                tan: prm.range(0.0, 0.05),
                mu,
                clear: mu,
                out: 0.0,
            }
        });

        apps.shrink_to_fit();

        // Discretised time constants (no `exp`, so the bits are the same everywhere).
        let ripple_tau = 0.5 * rate_f;
        let ripple_phi = ripple_tau / (ripple_tau + 1.0);
        let inrush_tau = 0.12 * rate_f;
        let mut m = SensorModel {
            rng,
            rate: rate_f,
            activity: profile.activity(first.hour),
            cold: cold(first.hour),
            profile,
            volt: 1.0,
            volt2: 1.0,
            base_p,
            base_tan,
            base_drift: 1.0,
            apps,
            pv,
            steady_p: [0.0; 3],
            steady_q: [0.0; 3],
            inrush_p: [0.0; 3],
            inrush_q: [0.0; 3],
            ripple: [0.0; 3],
            ripple_sd: [0.0; 3],
            noise_p: [0.0; 3],
            noise_q: [0.0; 3],
            next_event: NEVER,
            ripple_phi,
            ripple_innov: (1.0 - ripple_phi * ripple_phi).sqrt(),
            inrush_decay: inrush_tau / (inrush_tau + 1.0),
        };
        m.init_state(first);
        m
    }

    /// Put the appliances in a plausible state for the first tick, so a stream started at
    /// any time of day does not begin with every fridge off at once.
    fn init_state(&mut self, t: &TickCtx) {
        let SensorModel {
            apps,
            rng,
            rate,
            activity,
            volt,
            profile,
            pv,
            ..
        } = self;
        let ticks = |s: f64| (s * *rate).round().max(1.0) as u64;
        *volt = 1.0 + 0.0075 * rng.normal();
        for app in apps.iter_mut() {
            match app.kind {
                Kind::Fridge | Kind::HeatPump => {
                    if rng.chance(app.a / (app.a + app.b)) {
                        app.set(app.rated, app.tan_phi);
                        app.next = ticks(app.a * rng.uniform());
                    } else {
                        app.next = ticks(app.b * rng.uniform());
                    }
                }
                Kind::Device => {
                    let x = app.start_rate * *activity * activity.sqrt() * app.a;
                    if rng.chance(x / (1.0 + x)) {
                        app.set(app.rated, app.tan_phi);
                        app.next = ticks(app.a * rng.skewed());
                    }
                }
                Kind::Ev => {
                    if rng.chance(0.4 * bump(t.hour, profile.ev_home + 3.0, 6.0)) {
                        app.set(app.rated, app.tan_phi);
                        app.until = ticks(rng.range(1800.0, 3.0 * 3600.0));
                        app.next = app.until;
                    }
                }
                Kind::Kettle | Kind::Microwave | Kind::Cooking | Kind::Washer => {}
            }
        }
        if let Some(pv) = pv {
            pv.clear = (pv.mu + 0.25 * rng.normal()).clamp(0.05, 1.0);
        }
        self.next_event = self.apps.iter().map(|a| a.next).min().unwrap_or(NEVER);
        self.recompute();
    }

    /// Active and reactive power per phase at tick `t.k`. Ticks must be asked in order.
    #[inline]
    pub(super) fn step(&mut self, t: &TickCtx) -> ([f64; 3], [f64; 3]) {
        let mut dirty = false;
        if t.k >= self.next_event {
            self.fire_due(t.k);
            dirty = true;
        }
        if t.second {
            self.each_second(t);
            dirty = true;
        }
        if dirty {
            self.next_event = self.apps.iter().map(|a| a.next).min().unwrap_or(NEVER);
            self.recompute();
        }
        let mut p = [0.0; 3];
        let mut q = [0.0; 3];
        for ph in 0..3 {
            let r = self.ripple_phi * self.ripple[ph]
                + self.ripple_innov * self.ripple_sd[ph] * self.rng.normal();
            self.ripple[ph] = r;
            p[ph] =
                self.steady_p[ph] + self.inrush_p[ph] + r + self.noise_p[ph] * self.rng.normal();
            q[ph] = self.steady_q[ph]
                + self.inrush_q[ph]
                + 0.3 * r
                + self.noise_q[ph] * self.rng.normal();
        }
        if self.inrush_p != [0.0; 3] {
            for ph in 0..3 {
                self.inrush_p[ph] *= self.inrush_decay;
                self.inrush_q[ph] *= self.inrush_decay;
            }
            if self.inrush_p.iter().all(|x| x.abs() < 0.5) {
                self.inrush_p = [0.0; 3];
                self.inrush_q = [0.0; 3];
            }
        }
        (p, q)
    }

    /// Scheduled transitions due at tick `k`.
    fn fire_due(&mut self, k: u64) {
        let SensorModel {
            apps,
            rng,
            rate,
            cold,
            inrush_p,
            inrush_q,
            ..
        } = self;
        let mut env = Env {
            rng,
            rate: *rate,
            cold: *cold,
            inrush_p,
            inrush_q,
        };
        for app in apps.iter_mut().filter(|a| a.next <= k) {
            fire(app, k, &mut env);
        }
    }

    /// Once per simulated second: time of day, slow drifts, random starts, modulation.
    fn each_second(&mut self, t: &TickCtx) {
        let k = t.k;
        self.activity = self.profile.activity(t.hour);
        self.cold = cold(t.hour);
        // Supply voltage: ±0.75 % around nominal, about a minute of memory.
        self.volt += (1.0 - self.volt) * 0.02 + 0.0015 * self.rng.normal();
        self.volt2 = self.volt * self.volt;
        // Base load: ±5 %, ten minutes of memory.
        self.base_drift +=
            (1.0 - self.base_drift) * (1.0 / 600.0) + 0.05 * 0.057_7 * self.rng.normal();

        let act = self.activity;
        let ev_arrival = 0.05 + bump(t.hour, self.profile.ev_home, 3.0);
        let SensorModel {
            apps,
            rng,
            rate,
            cold,
            inrush_p,
            inrush_q,
            ..
        } = self;
        let mut env = Env {
            rng,
            rate: *rate,
            cold: *cold,
            inrush_p,
            inrush_q,
        };
        for app in apps.iter_mut() {
            if app.next == NEVER {
                let pr = match app.kind {
                    Kind::Device => act * act.sqrt(),
                    Kind::Kettle | Kind::Microwave => act * act,
                    Kind::Cooking => act * act * act,
                    Kind::Washer => act,
                    Kind::Ev if k >= app.until => ev_arrival,
                    _ => 0.0,
                };
                if pr > 0.0 && env.rng.chance(app.start_rate * pr) {
                    start(app, k, &mut env);
                }
                continue;
            }
            if !app.on() {
                continue;
            }
            match app.kind {
                // A compressor draws most right after starting, less as the box cools.
                Kind::Fridge => {
                    let span = app.next.saturating_sub(app.since).max(1) as f64;
                    let progress = (k.saturating_sub(app.since) as f64 / span).min(1.0);
                    app.p = app.rated * (1.12 - 0.24 * progress);
                }
                Kind::HeatPump => {
                    app.ramp = (app.ramp + 1.0 / 90.0).min(1.0);
                    app.level +=
                        (1.0 - app.level) * (1.0 / 300.0) + 0.03 * 0.0816 * env.rng.normal();
                    app.p = app.rated * (0.75 + 0.35 * env.cold) * app.ramp * app.level;
                }
                // Constant current, then the battery's absorption phase tapers the power.
                Kind::Ev => {
                    let left = app.until.saturating_sub(k) as f64 / env.rate;
                    app.p = app.rated * (left / 1200.0).clamp(0.1, 1.0);
                }
                _ => {}
            }
        }
        if let Some(pv) = &mut self.pv {
            pv.clear = (pv.clear + (pv.mu - pv.clear) * (1.0 / 240.0) + 0.022 * self.rng.normal())
                .clamp(0.05, 1.0);
            pv.out = pv.peak * 0.85 * sun(t.hour) * pv.clear;
        }
    }

    /// Sum the slow-moving loads per phase and derive the noise levels from them.
    fn recompute(&mut self) {
        let base = self.base_drift * (0.85 + 0.3 * self.activity) * self.volt2;
        let mut sp = [0.0; 3];
        let mut sq = [0.0; 3];
        for ph in 0..3 {
            sp[ph] = self.base_p[ph] * base;
            sq[ph] = sp[ph] * self.base_tan[ph];
        }
        for app in self.apps.iter().filter(|a| a.on()) {
            let p = if app.resistive {
                app.p * self.volt2
            } else {
                app.p * self.volt
            };
            for ph in 0..3 {
                sp[ph] += p * app.split[ph];
                sq[ph] += p * app.tan_now * app.split[ph];
            }
        }
        if let Some(pv) = &self.pv {
            for ph in 0..3 {
                sp[ph] -= pv.out * pv.split[ph];
                sq[ph] += pv.out * pv.tan * pv.split[ph];
            }
        }
        for ph in 0..3 {
            self.ripple_sd[ph] = 1.0 + 0.004 * sp[ph].abs();
            self.noise_p[ph] = 1.5 + 0.002 * sp[ph].abs();
            self.noise_q[ph] = 1.0 + 0.003 * sq[ph].abs();
        }
        self.steady_p = sp;
        self.steady_q = sq;
    }
}
