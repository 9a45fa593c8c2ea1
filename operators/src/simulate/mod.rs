//! `simulate`: a deterministic, realistic load simulator for Clemap three-phase monitors.
//!
//! The [`Simulator`] produces what a fleet of Clemap monitors would publish: one
//! [`TenSecData`] reading (active power `p` and reactive power `q` per phase) per sensor
//! per tick, `rate` ticks per second (12 Hz like the real devices), with event time
//! `start + k / rate` for tick `k`. It is pure: no I/O, no clock reads (except
//! [`Simulator::new`] when no `start` is set), no threads. A driver paces it with
//! [`Simulator::next_due`] when `realtime` is on, and sends its [`Payload`]s on.
//!
//! # Determinism
//!
//! Every sensor owns its state and its random stream, both derived from `(seed, sensor
//! index)` only. A worker that simulates a subset of the sensors therefore produces exactly
//! the readings that one worker simulating all of them produces for that subset, whatever
//! the split and order ([`SimulatorConfig::worker_sensors`] gives a split). Randomness is
//! SplitMix64 and the model uses only integer arithmetic and IEEE `+ − × ÷ √` (no `exp`,
//! `ln` or `sin`, whose last bit may vary between C libraries), so the same seed gives
//! byte-identical payloads on every platform and with every `rand` release. Workers must
//! agree on the start time: when `start` is not set, resolve it once
//! ([`SimulatorConfig::start_ms`]) and give every worker the same "now"
//! ([`Simulator::with_now`]).
//!
//! The state is advanced tick by tick, so tick `k` is computed after ticks `0..k` of the
//! same sensor. That costs little: between appliance events a tick is a few additions
//! and nine noise draws (under 100 ns per reading, encoding included, in a release
//! build), nothing is allocated after construction, and a household is under 2 KB of
//! state, so 1000 sensors at 12 Hz take a few MB and a small fraction of one core.
//!
//! # The model, and why each part is there
//!
//! Each sensor is a household whose parameters (size, routine, which appliances, their
//! ratings, phases and power factors) are drawn once from its seed. Its power at a tick is
//! the sum of:
//!
//! - **Base load** (standby, router, ventilation) on all three phases, scaled by a
//!   household size factor, with a slow ±5 % drift (10-minute memory) and a mild rise
//!   with activity. It is the floor the night load sits on.
//! - **A daily routine**: an activity level by hour of day of the event time (UTC; there
//!   is no time-zone setting, and no weekdays or seasons): a night floor plus morning,
//!   midday and evening peaks whose heights and timing (±1 h) vary per household.
//!   Activity adds little power by itself; it sets how often people switch things on,
//!   which is what makes evenings heavier than nights in reality.
//! - **Appliances as on/off processes** with persistent states, so that consecutive
//!   10-second means are strongly correlated, while switching events keep them from
//!   being trivially predictable:
//!   - fridge (and often a freezer): a compressor cycling day and night (on 8–15 min,
//!     off 15–35 min), drawing most right after it starts, with a starting-current spike
//!     visible at 12 Hz;
//!   - lights, TV, computers: 3–6 devices of 20–300 W that come on at random with a rate
//!     following activity and stay on for minutes to hours;
//!   - kettle (≈2 kW, 1.5–4 min) and microwave (≈1 kW), started mostly at peak hours;
//!   - oven and hob: sessions of 15–60 min, preheating then thermostat cycling (on
//!     20–90 s, off 15–60 s) of 1.2–2.5 kW;
//!   - washing machine and dishwasher: a heating phase of ≈2 kW, then motor bursts with
//!     pauses, then a spin;
//!   - in a quarter of the households a three-phase heat pump (1–3 kW) with soft start
//!     and a duty cycle following the cold of the night; in about one in seven an
//!     electric car charging at 3.7, 7.4 or 11 kW for hours after coming home, tapering
//!     at the end of the charge. These are the large, long-lived loads that dominate a
//!     household when present;
//!   - in about one in seven rooftop solar: negative active power under a clear-sky
//!     curve (06:30–19:30, no seasons) times a mean-reverting cloudiness (minutes of
//!     memory), which is what makes a 10-second mean at noon hard to predict.
//! - **Per-phase imbalance**: single-phase appliances sit on one phase drawn per
//!   appliance; heat pumps, large car chargers and large solar inverters are balanced.
//! - **Reactive power** from a plausible power factor per load: resistive heating
//!   ≈1, motors and compressors 0.6–0.75 inductive, heat pumps ≈0.92, electronics
//!   slightly capacitive or inductive, car chargers and inverters ≈1.
//! - **Supply voltage** wandering ±0.75 %: heating elements follow its square, other loads
//!   follow it linearly, so every load breathes a little together.
//! - **Fast fluctuation and measurement noise at 12 Hz**: per phase an AR(1) ripple with
//!   half a second of memory (load ripple) plus white noise, both proportional to the
//!   load with a floor of a few watts.
//!
//! # Fault injection
//!
//! With `faults > 0`, that fraction of the payloads is damaged on purpose, chosen by a hash
//! of (seed, sensor, tick) so it is deterministic and does not change the readings of the
//! other payloads: truncated (1–69 bytes), extended (1–8 extra bytes) or an unknown feature
//! type byte. [`FaultKind::reason`] is the reason the decoder reports for each.

mod model;
mod node;
mod rng;
mod time;

#[cfg(test)]
mod tests;

use smartgrid_runtime::clock::now_ms;

use serde::Deserialize;
use smartgrid_runtime::spec::Duration;

use crate::formats::clemap::{TEN_SEC_LEN, TenSecData, encode_ten_sec};

use model::{SensorModel, TickCtx};
use rng::{GOLDEN, mix64, unit};

pub use node::{
    PublishConfig, PublishError, PublishGroup, PublishPlan, SimulateNode, SimulateState,
    publish_loop, publish_to_broker,
};
pub use time::{BadStartTime, StartTime};

/// The most sensors one seed can name with distinct ObjectIds (a 24-bit counter).
pub const MAX_SENSORS: u32 = 1 << 24;
/// The highest supported `rate`, Hz.
pub const MAX_RATE: u32 = 1000;
/// The longest payload the simulator produces (a type-16 payload with 8 extra bytes).
pub const MAX_PAYLOAD_LEN: usize = TEN_SEC_LEN + 8;

const DAY_MS: i64 = 86_400_000;

/// Settings of a `simulate` source.
#[derive(Clone, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulatorConfig {
    /// How many sensors to simulate. Each is a household with its own appliances and
    /// routine, and its own ObjectId derived from the seed. Default 5.
    #[serde(default = "default_sensors")]
    pub sensors: u32,
    /// Readings per second per sensor, in Hz (1 to 1000). Default 12, the rate of a Clemap
    /// monitor.
    #[serde(default = "default_rate")]
    pub rate: u32,
    /// Random seed. The same seed gives the same sensor ids and byte-identical payloads,
    /// however many workers share the sensors. Default 42.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Event time of the first reading: an RFC 3339 time such as `2024-06-01T18:00:00Z`,
    /// or milliseconds since the Unix epoch. Default: the current time, rounded down to
    /// the second.
    #[serde(default)]
    pub start: Option<StartTime>,
    /// Pace the readings to the wall clock, each sent at its event time (`true`), or
    /// produce them as fast as possible (`false`). Default `true`.
    #[serde(default = "default_realtime")]
    pub realtime: bool,
    /// How much simulated time to produce, such as `10s`, `1m` or `24h`. Default: no end.
    #[serde(default)]
    pub duration: Option<Duration>,
    /// Fraction of payloads (0 to 1) to damage on purpose, to exercise dead-lettering:
    /// truncated, with extra bytes, or with an unknown feature type. Which payloads are
    /// damaged is fixed by the seed. Default 0.
    #[serde(default)]
    pub faults: f64,
}

fn default_sensors() -> u32 {
    5
}
fn default_rate() -> u32 {
    12
}
fn default_seed() -> u64 {
    42
}
fn default_realtime() -> bool {
    true
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            sensors: default_sensors(),
            rate: default_rate(),
            seed: default_seed(),
            start: None,
            realtime: default_realtime(),
            duration: None,
            faults: 0.0,
        }
    }
}

/// A setting the simulator cannot work with.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SimulateError {
    /// A setting out of range; `field` is its key.
    #[error("`{field}` {message}")]
    InvalidSetting {
        /// The key of the setting.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A worker was given a sensor index not below `sensors`.
    #[error("sensor index {index} is out of range: there are {sensors} sensors")]
    SensorOutOfRange {
        /// The index given.
        index: u32,
        /// The configured number of sensors.
        sensors: u32,
    },
}

impl SimulatorConfig {
    /// Check the ranges `Deserialize` cannot express.
    pub fn validate(&self) -> Result<(), SimulateError> {
        let bad = |field, message: String| Err(SimulateError::InvalidSetting { field, message });
        if self.sensors == 0 || self.sensors > MAX_SENSORS {
            return bad(
                "sensors",
                format!(
                    "is {}; it must be between 1 and {MAX_SENSORS}",
                    self.sensors
                ),
            );
        }
        if self.rate == 0 || self.rate > MAX_RATE {
            return bad(
                "rate",
                format!(
                    "is {} Hz; it must be between 1 and {MAX_RATE} Hz",
                    self.rate
                ),
            );
        }
        if !(0.0..=1.0).contains(&self.faults) {
            return bad(
                "faults",
                format!("is {}; it must be a fraction between 0 and 1", self.faults),
            );
        }
        Ok(())
    }

    /// The event time of the first reading, ms since the epoch: `start`, or else `now_ms`
    /// rounded down to the second.
    pub fn start_ms(&self, now_ms: i64) -> i64 {
        match self.start {
            Some(StartTime(ms)) => ms,
            None => now_ms - now_ms.rem_euclid(1000),
        }
    }

    /// How many ticks `duration` covers (`None`: no end): the ticks whose event time is
    /// before `start + duration`.
    pub fn ticks(&self) -> Option<u64> {
        self.duration.map(|d| {
            let ticks = (d.0.as_nanos() * u128::from(self.rate)).div_ceil(1_000_000_000);
            u64::try_from(ticks).unwrap_or(u64::MAX)
        })
    }

    /// The sensor indices worker `worker` of `peers` simulates: those whose sensor id
    /// routes to that worker. The workers together cover `0..sensors` exactly once.
    pub fn worker_sensors(&self, worker: usize, peers: usize) -> impl Iterator<Item = u32> + use<> {
        let peers = peers.max(1) as u64;
        let seed = self.seed;
        // The same split the keyed operators' exchange uses (`route_hash % peers`), so
        // a simulated reading is already on the worker that owns its sensor and crosses
        // no thread.
        (0..self.sensors).filter(move |&i| {
            smartgrid_runtime::SensorId::from_object_id(&sensor_id(seed, i)).route_hash() % peers
                == worker as u64
        })
    }
}

/// The 12-byte ObjectId of sensor `index` under `seed`, laid out like a MongoDB ObjectId:
/// a 4-byte creation time, 5 bytes fixed per seed, and a 3-byte counter that grows with
/// the index, so the ids of one seed are distinct for up to [`MAX_SENSORS`] sensors.
pub fn sensor_id(seed: u64, index: u32) -> [u8; 12] {
    let h = mix64(seed ^ 0x4f42_4a45_4354_4944);
    // Creation time between 2020 and 2025.
    let created = 1_577_836_800 + (h % (5 * 365 * 86_400)) as u32;
    let fixed = mix64(h ^ 1).to_be_bytes();
    let counter = (mix64(h ^ 2) as u32).wrapping_add(index) & 0x00ff_ffff;
    let mut id = [0u8; 12];
    id[..4].copy_from_slice(&created.to_be_bytes());
    id[4..9].copy_from_slice(&fixed[..5]);
    id[9..].copy_from_slice(&counter.to_be_bytes()[1..]);
    id
}

/// The random key of one sensor, the root of all its streams.
fn sensor_key(seed: u64, index: u32) -> u64 {
    mix64(mix64(seed ^ 0x5345_4e53_4f52) ^ u64::from(index).wrapping_mul(GOLDEN))
}

/// How an injected fault damages a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// Cut to 1–69 bytes.
    Truncated,
    /// 1–8 bytes appended.
    Extra,
    /// The feature-type byte replaced by one with no layout (neither 16 nor 17).
    UnknownType,
}

impl FaultKind {
    /// The reason a decoder reports for this damage (`DecodeError::reason`).
    pub fn reason(self) -> &'static str {
        match self {
            FaultKind::Truncated => "truncated",
            FaultKind::Extra => "extra",
            FaultKind::UnknownType => "unknown_type",
        }
    }
}

/// One encoded reading as a sensor would publish it: a 70-byte type-16 payload, or a
/// damaged one when fault injection picked it. Stored inline, so producing payloads does
/// not allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payload {
    /// The sensor that sent it.
    pub sensor_id: [u8; 12],
    /// Event time of the reading, ms since the epoch (rounded down).
    pub time_ms: i64,
    /// The damage done, if fault injection picked this payload.
    pub fault: Option<FaultKind>,
    len: u8,
    bytes: [u8; MAX_PAYLOAD_LEN],
}

impl Payload {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The 70 bytes of an undamaged payload.
    pub fn valid(&self) -> Option<&[u8; TEN_SEC_LEN]> {
        match self.fault {
            None => self.bytes[..TEN_SEC_LEN].try_into().ok(),
            Some(_) => None,
        }
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// One simulated sensor and its household.
#[derive(Clone, Debug)]
struct Slot {
    index: u32,
    id: [u8; 12],
    fault_key: u64,
    model: SensorModel,
}

/// A simulated fleet, or the part of it one worker owns.
///
/// Readings come out in time order: every owned sensor's reading for tick `k` (in
/// ascending sensor index), then tick `k + 1`, and so on, until `duration` is used up.
#[derive(Clone, Debug)]
pub struct Simulator {
    rate: u32,
    start_ms: i64,
    end: Option<u64>,
    realtime: bool,
    faults: f64,
    sensors: Vec<Slot>,
    /// The tick of the next reading, and the position of its sensor in `sensors`.
    tick: u64,
    pos: usize,
    ctx: TickCtx,
    timestamp: f64,
    time_ms: i64,
}

impl Simulator {
    /// A simulator for the sensors with the given indices (each below `cfg.sensors`;
    /// duplicates are ignored). Without a `start` setting the stream starts now, rounded
    /// down to the second; workers that must agree should use [`Simulator::with_now`].
    pub fn new(
        cfg: &SimulatorConfig,
        sensors: impl IntoIterator<Item = u32>,
    ) -> Result<Self, SimulateError> {
        Self::with_now(cfg, sensors, now_ms())
    }

    /// Like [`Simulator::new`], with "now" given (ms since the epoch): it is the start
    /// time, rounded down to the second, when `cfg.start` is not set.
    pub fn with_now(
        cfg: &SimulatorConfig,
        sensors: impl IntoIterator<Item = u32>,
        now_ms: i64,
    ) -> Result<Self, SimulateError> {
        cfg.validate()?;
        let mut indices: Vec<u32> = sensors.into_iter().collect();
        indices.sort_unstable();
        indices.dedup();
        if let Some(&index) = indices.iter().find(|&&i| i >= cfg.sensors) {
            return Err(SimulateError::SensorOutOfRange {
                index,
                sensors: cfg.sensors,
            });
        }
        let mut sim = Simulator {
            rate: cfg.rate,
            start_ms: cfg.start_ms(now_ms),
            end: cfg.ticks(),
            realtime: cfg.realtime,
            faults: cfg.faults,
            sensors: Vec::new(),
            tick: 0,
            pos: 0,
            ctx: TickCtx {
                k: 0,
                hour: 0.0,
                second: true,
            },
            timestamp: 0.0,
            time_ms: 0,
        };
        sim.enter_tick(0);
        let first = sim.ctx;
        sim.sensors = indices
            .into_iter()
            .map(|index| {
                let key = sensor_key(cfg.seed, index);
                Slot {
                    index,
                    id: sensor_id(cfg.seed, index),
                    fault_key: mix64(key ^ 0x4641_554c_5453),
                    model: SensorModel::new(key, cfg.rate, &first),
                }
            })
            .collect();
        Ok(sim)
    }

    /// The ObjectIds of the simulated sensors, in the order their readings come out.
    pub fn sensor_ids(&self) -> impl ExactSizeIterator<Item = [u8; 12]> + '_ {
        self.sensors.iter().map(|s| s.id)
    }

    /// The indices of the simulated sensors, ascending, in the same order.
    pub fn sensor_indices(&self) -> impl ExactSizeIterator<Item = u32> + '_ {
        self.sensors.iter().map(|s| s.index)
    }

    /// Ticks per second.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Event time of tick 0, ms since the epoch.
    pub fn start_ms(&self) -> i64 {
        self.start_ms
    }

    /// Whether the configuration asks to pace the readings to the wall clock.
    pub fn realtime(&self) -> bool {
        self.realtime
    }

    /// The tick of the next reading.
    pub fn tick(&self) -> u64 {
        self.tick
    }

    /// The number of ticks `duration` allows, if it is set.
    pub fn end_tick(&self) -> Option<u64> {
        self.end
    }

    /// Whether `duration` is used up.
    pub fn is_done(&self) -> bool {
        self.end.is_some_and(|end| self.tick >= end)
    }

    /// Event time of tick `k`, ms since the epoch, rounded down: `start + ⌊1000 k / rate⌋`.
    pub fn time_ms(&self, k: u64) -> i64 {
        let ms = i128::from(self.start_ms) + i128::from(k) * 1000 / i128::from(self.rate);
        i64::try_from(ms).unwrap_or(i64::MAX)
    }

    /// Event time of tick `k`, float seconds since the epoch as in the payload: the `f64`
    /// nearest to `start + k / rate` (exact rational arithmetic, one rounding).
    pub fn timestamp(&self, k: u64) -> f64 {
        let rate = i128::from(self.rate);
        let num = i128::from(self.start_ms) * rate + i128::from(k) * 1000;
        num as f64 / (1000 * rate) as f64
    }

    /// Event time (ms since the epoch) of the next reading, or `None` when `duration` is
    /// used up. A realtime driver sleeps until then.
    pub fn next_due(&self) -> Option<i64> {
        (!self.is_done()).then_some(self.time_ms)
    }

    fn enter_tick(&mut self, k: u64) {
        self.tick = k;
        self.pos = 0;
        self.time_ms = self.time_ms(k);
        self.timestamp = self.timestamp(k);
        self.ctx = TickCtx {
            k,
            hour: self.time_ms.rem_euclid(DAY_MS) as f64 / 3_600_000.0,
            second: k.is_multiple_of(u64::from(self.rate)),
        };
    }

    /// The next reading and the position of its sensor, advancing the cursor.
    #[inline]
    fn advance(&mut self) -> Option<(TenSecData, usize)> {
        if self.sensors.is_empty() {
            // A worker's share without sensors has no reading to give: jump to the end
            // so a reader driven by `next_payload` sees it done (its ticks would never
            // advance otherwise, and a pipeline with a `duration` would never finish).
            if let Some(end) = self.end.filter(|&end| self.tick < end) {
                self.enter_tick(end);
            }
            return None;
        }
        if self.is_done() {
            return None;
        }
        let at = self.pos;
        let slot = &mut self.sensors[at];
        let (p, q) = slot.model.step(&self.ctx);
        let reading = TenSecData {
            timestamp: self.timestamp,
            sensor_id: slot.id,
            phase: 0,
            p,
            q,
        };
        self.pos += 1;
        if self.pos == self.sensors.len() {
            self.enter_tick(self.tick + 1);
        }
        Some((reading, at))
    }

    /// The next reading in time order, or `None` when `duration` is used up (or no sensor
    /// is owned).
    #[inline]
    pub fn next_reading(&mut self) -> Option<TenSecData> {
        self.advance().map(|(r, _)| r)
    }

    /// Append the readings of the current tick (all owned sensors, or those not yet
    /// taken if the tick was started with [`Simulator::next_reading`]) to `out`. Returns
    /// `false`, appending nothing, when `duration` is used up. With no owned sensors it
    /// still moves on to the next tick.
    pub fn next_tick(&mut self, out: &mut Vec<TenSecData>) -> bool {
        if self.is_done() {
            return false;
        }
        if self.sensors.is_empty() {
            self.enter_tick(self.tick + 1);
            return true;
        }
        let k = self.tick;
        while self.tick == k {
            match self.next_reading() {
                Some(r) => out.push(r),
                None => break,
            }
        }
        true
    }

    /// The next reading encoded as its sensor would publish it (damaged if fault
    /// injection picks it), or `None` when `duration` is used up.
    #[inline]
    pub fn next_payload(&mut self) -> Option<Payload> {
        let k = self.tick;
        let time_ms = self.time_ms;
        let (reading, at) = self.advance()?;
        let mut payload = Payload {
            sensor_id: reading.sensor_id,
            time_ms,
            fault: None,
            len: TEN_SEC_LEN as u8,
            bytes: [0; MAX_PAYLOAD_LEN],
        };
        payload.bytes[..TEN_SEC_LEN].copy_from_slice(&encode_ten_sec(&reading));
        if self.faults > 0.0 {
            let h = mix64(
                self.sensors[at]
                    .fault_key
                    .wrapping_add(k.wrapping_mul(GOLDEN)),
            );
            if unit(h) < self.faults {
                damage(&mut payload, mix64(h ^ 0xdead_beef));
            }
        }
        Some(payload)
    }

    /// Like [`Simulator::next_tick`], with payloads.
    pub fn next_tick_payloads(&mut self, out: &mut Vec<Payload>) -> bool {
        if self.is_done() {
            return false;
        }
        if self.sensors.is_empty() {
            self.enter_tick(self.tick + 1);
            return true;
        }
        let k = self.tick;
        while self.tick == k {
            match self.next_payload() {
                Some(p) => out.push(p),
                None => break,
            }
        }
        true
    }

    /// The payloads in time order, until `duration` is used up.
    pub fn payloads(&mut self) -> Payloads<'_> {
        Payloads(self)
    }
}

/// Apply an injected fault, its kind and details drawn from `h`.
fn damage(payload: &mut Payload, h: u64) {
    let detail = h >> 8;
    let kind = match h % 3 {
        0 => FaultKind::Truncated,
        1 => FaultKind::Extra,
        _ => FaultKind::UnknownType,
    };
    match kind {
        FaultKind::Truncated => payload.len = 1 + (detail % (TEN_SEC_LEN as u64 - 1)) as u8,
        FaultKind::Extra => {
            let extra = 1 + (detail % 8) as usize;
            let junk = mix64(h).to_le_bytes();
            payload.bytes[TEN_SEC_LEN..TEN_SEC_LEN + extra].copy_from_slice(&junk[..extra]);
            payload.len = (TEN_SEC_LEN + extra) as u8;
        }
        FaultKind::UnknownType => {
            // Any byte but 16 and 17, the two types with a layout.
            let b = (detail % 254) as u8;
            payload.bytes[0] = if b >= 16 { b + 2 } else { b };
        }
    }
    payload.fault = Some(kind);
}

impl Iterator for Simulator {
    type Item = TenSecData;

    #[inline]
    fn next(&mut self) -> Option<TenSecData> {
        self.next_reading()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.end {
            _ if self.sensors.is_empty() => (0, Some(0)),
            None => (usize::MAX, None),
            Some(end) => {
                let left = u128::from(end.saturating_sub(self.tick)) * self.sensors.len() as u128;
                let left = left.saturating_sub(self.pos as u128);
                let left = usize::try_from(left).unwrap_or(usize::MAX);
                (left, Some(left))
            }
        }
    }
}

/// Payloads in time order; see [`Simulator::payloads`].
#[derive(Debug)]
pub struct Payloads<'a>(&'a mut Simulator);

impl Iterator for Payloads<'_> {
    type Item = Payload;

    #[inline]
    fn next(&mut self) -> Option<Payload> {
        self.0.next_payload()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}
