//! The appliances: what each kind draws and the transitions of its state machine (a
//! random start, then scheduled ticks until it is idle again).
//!
//! Separate from the household because a transition touches one appliance and a few
//! shared things (the dynamics' random stream, the inrush spikes) passed in as [`Env`],
//! never the household itself.

use crate::simulate::rng::Rng;

/// `next` of an appliance that waits for a random start rather than a scheduled tick.
pub(super) const NEVER: u64 = u64::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// Compressor cycling day and night.
    Fridge,
    /// Lights, TV, computer: on for a while when people are around.
    Device,
    /// Short resistive burst of about 2 kW.
    Kettle,
    /// Short burst of about 1 kW with a poorer power factor.
    Microwave,
    /// Oven or hob: a session of thermostat cycling.
    Cooking,
    /// Washing machine or dishwasher: heating, then motor tumbling, then spin.
    Washer,
    /// Three-phase compressor, soft start, duty cycle following the cold of the night.
    HeatPump,
    /// Car charging for hours in the evening and night, tapering at the end.
    Ev,
}

#[derive(Clone, Debug)]
pub(super) struct Appliance {
    pub(super) kind: Kind,
    /// Share of the load on each phase (sums to 1).
    pub(super) split: [f64; 3],
    /// Rated power, W.
    pub(super) rated: f64,
    /// q/p at rated operation.
    pub(super) tan_phi: f64,
    /// Power drawn now (before the voltage factor), W; 0 when off.
    pub(super) p: f64,
    /// q/p now.
    pub(super) tan_now: f64,
    /// Draws power proportional to the voltage squared (heating elements).
    pub(super) resistive: bool,
    /// Program stage (washer).
    stage: u8,
    /// Tick of the next scheduled transition, or [`NEVER`] while idle.
    pub(super) next: u64,
    /// End of the current session (cooking, washer, car), or for an idle car the tick
    /// before which it does not come back.
    pub(super) until: u64,
    /// Tick the current run began.
    pub(super) since: u64,
    /// Kind-specific durations in seconds (on/off means, or min/max of a burst).
    pub(super) a: f64,
    pub(super) b: f64,
    /// Start probability per second at full activity (event-driven kinds).
    pub(super) start_rate: f64,
    /// Slow modulation of a heat pump's output, around 1.
    pub(super) level: f64,
    /// Soft-start progress of a heat pump, `[0.1, 1]`.
    pub(super) ramp: f64,
}

impl Appliance {
    pub(super) fn new(kind: Kind, split: [f64; 3], rated: f64, tan_phi: f64) -> Self {
        Appliance {
            kind,
            split,
            rated,
            tan_phi,
            p: 0.0,
            tan_now: tan_phi,
            resistive: matches!(kind, Kind::Kettle | Kind::Cooking | Kind::Washer),
            stage: 0,
            next: NEVER,
            until: 0,
            since: 0,
            a: 0.0,
            b: 0.0,
            start_rate: 0.0,
            level: 1.0,
            ramp: 1.0,
        }
    }

    pub(super) fn on(&self) -> bool {
        self.p != 0.0
    }

    pub(super) fn set(&mut self, p: f64, tan: f64) {
        self.p = p;
        self.tan_now = tan;
    }
}

/// What an appliance transition may touch besides the appliance.
pub(super) struct Env<'a> {
    pub(super) rng: &'a mut Rng,
    pub(super) rate: f64,
    pub(super) cold: f64,
    pub(super) inrush_p: &'a mut [f64; 3],
    pub(super) inrush_q: &'a mut [f64; 3],
}

/// Ticks in `secs` seconds at `rate`, at least one.
fn ticks(rate: f64, secs: f64) -> u64 {
    (secs * rate).round().max(1.0) as u64
}

impl Env<'_> {
    /// A motor's starting current: a spike of `p` W that decays within half a second.
    fn inrush(&mut self, split: &[f64; 3], p: f64, tan: f64) {
        for (ph, share) in split.iter().enumerate() {
            self.inrush_p[ph] += p * share;
            self.inrush_q[ph] += p * tan * share;
        }
    }
}

/// An idle appliance starts (a random start was drawn for this second).
pub(super) fn start(app: &mut Appliance, k: u64, env: &mut Env<'_>) {
    app.since = k;
    match app.kind {
        Kind::Device => {
            app.set(app.rated, app.tan_phi);
            app.next = k + ticks(env.rate, (app.a * env.rng.skewed()).max(60.0));
        }
        Kind::Kettle | Kind::Microwave => {
            app.set(app.rated, app.tan_phi);
            app.next = k + ticks(env.rate, env.rng.range(app.a, app.b));
        }
        Kind::Cooking => {
            app.until = k + ticks(env.rate, env.rng.range(900.0, 3600.0));
            app.set(app.rated, app.tan_phi);
            // Preheating: the element stays on for minutes before it starts cycling.
            app.next = (k + ticks(env.rate, env.rng.range(240.0, 600.0))).min(app.until);
        }
        Kind::Washer => {
            app.stage = 0;
            app.set(app.rated, app.tan_phi);
            app.next = k + ticks(env.rate, env.rng.range(600.0, 1200.0));
        }
        Kind::Ev => {
            app.set(app.rated, app.tan_phi);
            app.until = k + ticks(env.rate, env.rng.range(3600.0, 5.0 * 3600.0));
            app.next = app.until;
        }
        Kind::Fridge | Kind::HeatPump => fire(app, k, env),
    }
}

/// A scheduled transition of `app` at tick `k`.
pub(super) fn fire(app: &mut Appliance, k: u64, env: &mut Env<'_>) {
    match app.kind {
        Kind::Fridge => {
            if app.on() {
                app.set(0.0, app.tan_phi);
                app.next = k + ticks(env.rate, app.b * env.rng.range(0.75, 1.25));
            } else {
                app.since = k;
                app.set(app.rated * 1.12, app.tan_phi);
                app.next = k + ticks(env.rate, app.a * env.rng.range(0.75, 1.25));
                let surge = app.rated * env.rng.range(2.0, 4.0);
                env.inrush(&app.split, surge, 2.0);
            }
        }
        Kind::HeatPump => {
            if app.on() {
                app.set(0.0, app.tan_phi);
                app.next = k + ticks(env.rate, app.b * env.rng.range(0.7, 1.3) * (1.6 - env.cold));
            } else {
                app.since = k;
                // Soft start: the inverter ramps up over a minute and a half.
                app.ramp = 0.1;
                app.set(app.rated * 0.1, app.tan_phi);
                app.next = k + ticks(
                    env.rate,
                    app.a * env.rng.range(0.7, 1.3) * (0.6 + 0.8 * env.cold),
                );
            }
        }
        Kind::Device | Kind::Kettle | Kind::Microwave => {
            app.set(0.0, app.tan_phi);
            app.next = NEVER;
        }
        Kind::Cooking => {
            if k >= app.until {
                app.set(0.0, app.tan_phi);
                app.next = NEVER;
            } else if app.on() {
                app.set(0.0, app.tan_phi);
                app.next = (k + ticks(env.rate, env.rng.range(15.0, 60.0))).min(app.until);
            } else {
                app.set(app.rated, app.tan_phi);
                app.next = (k + ticks(env.rate, env.rng.range(20.0, 90.0))).min(app.until);
            }
        }
        Kind::Washer => match app.stage {
            0 => {
                // Heating done: the drum turns in bursts with pauses.
                app.stage = 1;
                app.until = k + ticks(env.rate, env.rng.range(1800.0, 4200.0));
                app.set(app.b, 1.2);
                app.next = k + ticks(env.rate, env.rng.range(8.0, 20.0));
                env.inrush(&app.split, app.b * 1.5, 1.5);
            }
            1 if k >= app.until => {
                app.stage = 2;
                app.set(app.b * 2.2, 0.9);
                app.next = k + ticks(env.rate, env.rng.range(300.0, 600.0));
            }
            1 if app.on() => {
                app.set(0.0, 1.2);
                app.next = (k + ticks(env.rate, env.rng.range(3.0, 8.0))).min(app.until);
            }
            1 => {
                app.set(app.b, 1.2);
                app.next = (k + ticks(env.rate, env.rng.range(8.0, 20.0))).min(app.until);
            }
            _ => {
                app.stage = 0;
                app.set(0.0, app.tan_phi);
                app.next = NEVER;
            }
        },
        Kind::Ev => {
            app.set(0.0, app.tan_phi);
            app.next = NEVER;
            app.until = k + ticks(env.rate, app.b * env.rng.range(0.8, 1.2));
        }
    }
}
