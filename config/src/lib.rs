//! # pat-config: the operator's TOML file
//!
//! Owns the config schema ([`schema`]), its validation, and its conversion to
//! the engine's typed parameters. A file either becomes a [`Config`] or yields
//! every problem at once as [`ConfigErrors`], each naming the key and the
//! reason; nothing half-valid escapes. Reloading is the runtime's job: it
//! calls [`Config::load`] and keeps the running config when that fails.

pub mod schema;

use std::fmt;
use std::path::Path;

use pat_engine::market_key::{ConfidenceBand, SegmentType, Window};
use pat_engine::money::{Amount, parse_pat};
use pat_engine::params::{
    EngineConfig, FreshnessCurve, IngestParams, OrderParams, PricingParams, QuotingParams, RiskParams, TypeParams,
};
use thiserror::Error;

/// The longest access period a type may grant: ten years.
pub const ACCESS_DAYS_MAX: u64 = 3_650;

/// The largest margin cap the contract accepts (50%).
pub const MARGIN_CAP_MAX_BPS: u16 = 5_000;

/// Bounds that keep every step of quoting inside a `u64` of subticks
/// (`pat_engine::pricing::mid_subticks`): BaseValue in ticks and the largest
/// product of the price factors.
pub const BASE_TICKS_MAX: u128 = 100_000_000;
pub const FACTOR_PRODUCT_MAX: f64 = 100.0;

/// One problem with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the key, such as `spread.max_bps`; empty for the whole file.
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() { f.write_str(&self.reason) } else { write!(f, "{}: {}", self.key, self.reason) }
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    fn one(key: &str, reason: impl Into<String>) -> Self {
        Self(vec![ConfigError { key: key.to_owned(), reason: reason.into() }])
    }
}

/// Chain settings beyond the EIP-712 domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSettings {
    pub rpc_url: String,
    pub confirmations: u64,
}

/// The WebSocket feed's settings, as written (validated by [`Config::parse`]).
/// They apply at start-up; a reload does not change them.
pub type FeedParams = schema::Feed;

/// The HTTP server's limits and timers, as written (validated by
/// [`Config::parse`]). They apply at start-up; a reload does not change them.
pub type HttpParams = schema::Http;

/// The payload store's settings, as written (validated by [`Config::parse`]).
/// They apply at start-up; a reload does not change them.
pub type StorageParams = schema::Storage;

/// How orders are held to escrow on chain, as written (validated by [`Config::parse`]).
pub type EscrowParams = schema::Escrow;

/// How providers' settled credits are paid into their wallets (validated by [`Config::parse`]).
/// They apply at start-up; a reload does not change them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutParams {
    pub enabled: bool,
    pub interval_ms: u64,
    /// Base units.
    pub threshold: Amount,
    pub providers_per_tx_max: usize,
}
pub type LimitParams = schema::Limits;

/// A validated config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub engine: EngineConfig,
    pub chain: ChainSettings,
    pub feed: FeedParams,
    pub http: HttpParams,
    pub storage: StorageParams,
    pub limits: LimitParams,
    pub escrow: EscrowParams,
    pub payout: PayoutParams,
    /// Old key names the file still uses, each with its new name; they are
    /// read as before, and whoever loads the file says so to the operator.
    pub warnings: Vec<ConfigError>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors::one("", format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Self, ConfigErrors> {
        let file: schema::File = toml::from_str(text).map_err(|e| {
            let reason = e.message().to_owned();
            let at = e.span().map(|s| line_of(text, s.start)).map_or(String::new(), |l| format!(" (line {l})"));
            ConfigErrors::one("", format!("{reason}{at}"))
        })?;
        let mut cfg = validate(&file)?;
        cfg.warnings = renamed_keys(text);
        Ok(cfg)
    }
}

/// The old names of renamed keys that `text` (already parsed once) uses.
fn renamed_keys(text: &str) -> Vec<ConfigError> {
    let Ok(table) = text.parse::<toml::Table>() else { return Vec::new() };
    schema::RENAMED
        .iter()
        .filter(|(section, old, _)| table.get(*section).and_then(|s| s.get(*old)).is_some())
        .map(|(section, old, new)| ConfigError {
            key: format!("{section}.{old}"),
            reason: format!("renamed to {section}.{new}; the old name still works for now"),
        })
        .collect()
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// Collects problems as validation walks the file.
#[derive(Default)]
struct Problems(Vec<ConfigError>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigError { key: key.into(), reason: reason.into() });
    }

    fn check(&mut self, ok: bool, key: &str, reason: &str) {
        if !ok {
            self.add(key, reason);
        }
    }

    fn amount(&mut self, key: &str, text: &str) -> Amount {
        match parse_pat(text) {
            Ok(0) => {
                self.add(key, "must be more than zero");
                0
            }
            Ok(v) => v,
            Err(e) => {
                self.add(key, format!("{e}; write decimal PAT such as \"2.5\""));
                0
            }
        }
    }

    fn unit_interval(&mut self, key: &str, v: f64, open_at_zero: bool) {
        let ok = v.is_finite() && v <= 1.0 && if open_at_zero { v > 0.0 } else { v >= 0.0 };
        let range = if open_at_zero { "(0, 1]" } else { "[0, 1]" };
        self.check(ok, key, &format!("must be in {range}, got {v}"));
    }

    fn positive(&mut self, key: &str, v: f64) {
        self.check(v.is_finite() && v > 0.0, key, &format!("must be a positive number, got {v}"));
    }

    fn range(&mut self, key: &str, r: &schema::Range) {
        self.check(
            r.min.is_finite() && r.max.is_finite() && r.min > 0.0 && r.min <= 1.0 && r.max >= 1.0,
            key,
            &format!("needs 0 < min <= 1 <= max, got min {} max {}", r.min, r.max),
        );
    }
}

fn validate(f: &schema::File) -> Result<Config, ConfigErrors> {
    let mut p = Problems::default();
    p.check(f.chain.chain_id > 0, "chain.chain_id", "must be positive");
    p.check(
        (1..=MARGIN_CAP_MAX_BPS).contains(&f.chain.broker_margin_cap_bps),
        "chain.broker_margin_cap_bps",
        "must be between 1 and 5000 (the contract's 50% cap)",
    );
    p.check(!f.chain.rpc_url.is_empty(), "chain.rpc_url", "must not be empty");

    let windows = catalogue_list::<Window>(&mut p, "catalogue.windows", &f.catalogue.windows);
    let mut bands = catalogue_list::<ConfidenceBand>(&mut p, "catalogue.bands", &f.catalogue.bands);
    bands.sort();
    for pair in bands.windows(2) {
        if pair[0].overlaps(pair[1]) {
            p.add("catalogue.bands", format!("bands {} and {} overlap", pair[0], pair[1]));
        }
    }
    p.check(!f.catalogue.types.is_empty(), "catalogue.types", "must name at least one segment type");
    let mut types = Vec::new();
    for (name, entry) in &f.catalogue.types {
        let key = format!("catalogue.types.{name}");
        let segment_type = name.parse::<SegmentType>();
        if let Err(e) = &segment_type {
            p.add(&key, e.to_string());
        }
        let base_value = p.amount(&format!("{key}.base_value"), &entry.base_value);
        let tick = p.amount(&format!("{key}.tick"), &entry.tick);
        if tick > 0 && base_value > 0 {
            if tick.saturating_mul(10) > base_value {
                p.add(format!("{key}.tick"), "must be at most a tenth of base_value, or quotes cannot move");
            } else if base_value % tick != 0 {
                p.add(format!("{key}.base_value"), "must be a whole number of ticks");
            } else if base_value / tick > BASE_TICKS_MAX {
                p.add(format!("{key}.tick"), format!("base_value / tick must be at most {BASE_TICKS_MAX}"));
            }
        }
        let access_days = entry.access_days.unwrap_or(f.catalogue.access_days);
        let access_key =
            if entry.access_days.is_some() { format!("{key}.access_days") } else { "catalogue.access_days".into() };
        p.check(
            (1..=ACCESS_DAYS_MAX).contains(&access_days),
            &access_key,
            &format!("must be 1 to {ACCESS_DAYS_MAX} days"),
        );
        if let Ok(segment_type) = segment_type {
            types.push(TypeParams { segment_type, base_value, tick, access_secs: access_days.saturating_mul(86_400) });
        }
    }

    let pr = &f.pricing;
    let freshness_curve = match pr.freshness_curve.as_str() {
        "linear" => FreshnessCurve::Linear,
        "exponential" => FreshnessCurve::Exponential,
        other => {
            p.add("pricing.freshness_curve", format!("must be \"linear\" or \"exponential\", got \"{other}\""));
            FreshnessCurve::Linear
        }
    };
    p.unit_interval("pricing.freshness_floor", pr.freshness_floor, true);
    p.positive("pricing.rate_half_life_secs", pr.rate_half_life_secs);
    p.range("pricing.demand_pressure", &pr.demand_pressure);
    p.range("pricing.scarcity", &pr.scarcity);
    if pr.demand_pressure.max * pr.scarcity.max > FACTOR_PRODUCT_MAX {
        p.add("pricing.scarcity", format!("demand_pressure.max x scarcity.max must be at most {FACTOR_PRODUCT_MAX}"));
    }
    p.unit_interval("pricing.substitute_discount", pr.substitute_discount, false);

    let sp = &f.spread;
    p.check(sp.min_bps <= sp.max_bps, "spread.min_bps", "must not exceed spread.max_bps");
    p.check(
        sp.min_bps <= sp.base_bps && sp.base_bps <= sp.max_bps,
        "spread.base_bps",
        "must lie within [spread.min_bps, spread.max_bps]",
    );
    // (ask - bid) / ask = 2s / (1 + s) must stay within the contract's margin cap.
    let cap = u64::from(f.chain.broker_margin_cap_bps);
    if 2 * u64::from(sp.max_bps) * 10_000 > cap * (10_000 + u64::from(sp.max_bps)) {
        p.add(
            "spread.max_bps",
            format!("a one-sided spread of {} bps exceeds chain.broker_margin_cap_bps {cap}: (ask - bid) / ask = 2s / (1 + s)", sp.max_bps),
        );
    }
    p.check(sp.volatility_bps.is_finite() && sp.volatility_bps >= 0.0, "spread.volatility_bps", "must be >= 0");
    p.unit_interval("spread.volatility_alpha", sp.volatility_alpha, true);
    p.positive("spread.depth_ref_units", sp.depth_ref_units);
    p.positive("spread.trades_ref", sp.trades_ref);

    let r = &f.risk;
    let risk = RiskParams {
        market_soft: p.amount("risk.market_exposure_soft", &r.market_exposure_soft),
        market_hard: p.amount("risk.market_exposure_hard", &r.market_exposure_hard),
        group_soft: p.amount("risk.group_exposure_soft", &r.group_exposure_soft),
        group_hard: p.amount("risk.group_exposure_hard", &r.group_exposure_hard),
    };
    p.check(risk.market_soft <= risk.market_hard, "risk.market_exposure_soft", "must not exceed market_exposure_hard");
    p.check(risk.group_soft <= risk.group_hard, "risk.group_exposure_soft", "must not exceed group_exposure_hard");
    p.check(risk.market_hard <= risk.group_hard, "risk.market_exposure_hard", "must not exceed group_exposure_hard");

    let ing = &f.ingest;
    p.check(
        (1..=16 * 1024 * 1024).contains(&ing.payload_bytes_max),
        "ingest.payload_bytes_max",
        "must be between 1 and 16 MiB",
    );
    p.check(ing.signals_max >= 1, "ingest.signals_max", "must be at least 1");
    p.check(ing.units_max >= 1, "ingest.units_max", "must be at least 1");
    p.check(f.orders.qty_max >= 1, "orders.qty_max", "must be at least 1");
    p.check(f.quoting.tick_ms >= 10, "quoting.tick_ms", "must be at least 10");
    p.check(
        f.quoting.reprice_interval_ms >= f.quoting.tick_ms,
        "quoting.reprice_interval_ms",
        "must be at least quoting.tick_ms",
    );
    p.check(f.orders.quote_ttl_ms >= f.quoting.tick_ms, "orders.quote_ttl_ms", "must be at least quoting.tick_ms");
    let feed = &f.feed;
    p.check(feed.heartbeat_ms >= 100, "feed.heartbeat_ms", "must be at least 100");
    p.check(
        feed.client_timeout_ms > feed.heartbeat_ms,
        "feed.client_timeout_ms",
        "must be longer than feed.heartbeat_ms",
    );
    p.check(feed.queue_capacity >= 1, "feed.queue_capacity", "must be at least 1");
    p.check(feed.lag_limit_ms >= 100, "feed.lag_limit_ms", "must be at least 100");
    p.check(feed.subscriptions_max >= 1, "feed.subscriptions_max", "must be at least 1");
    p.check(feed.connections_per_ip_max >= 1, "feed.connections_per_ip_max", "must be at least 1");
    p.check(
        (256..=65_536).contains(&feed.message_bytes_max),
        "feed.message_bytes_max",
        "must be between 256 and 65536",
    );
    let http = &f.http;
    p.check(http.body_bytes_max >= 1024, "http.body_bytes_max", "must be at least 1024");
    p.check(http.header_read_timeout_ms >= 100, "http.header_read_timeout_ms", "must be at least 100");
    p.check(http.body_read_timeout_ms >= 100, "http.body_read_timeout_ms", "must be at least 100");
    p.check(
        http.bodies_held_bytes_max >= http.body_bytes_max,
        "http.bodies_held_bytes_max",
        "must be at least http.body_bytes_max",
    );
    let st = &f.storage;
    if let Some(url) = &st.url {
        p.check(
            url.starts_with("s3://") || url.starts_with("gs://"),
            "storage.url",
            "must be s3://bucket/prefix or gs://bucket/prefix (leave it out for the data directory)",
        );
    }
    p.check(
        st.orphan_grace_secs >= 60,
        "storage.orphan_grace_secs",
        "must be at least 60, longer than any listing takes from store write to journal",
    );
    p.check(st.sweep_interval_secs >= 1, "storage.sweep_interval_secs", "must be at least 1");
    p.check(
        st.url.is_some() || st.options.is_empty(),
        "storage.options",
        "only apply to a remote store: set storage.url",
    );
    let lim = &f.limits;
    for (rate, burst, key) in [
        (lim.orders_per_consumer_per_sec, lim.orders_per_consumer_burst, "limits.orders_per_consumer_burst"),
        (
            lim.submissions_per_provider_per_sec,
            lim.submissions_per_provider_burst,
            "limits.submissions_per_provider_burst",
        ),
    ] {
        p.check(rate == 0 || burst >= 1, key, "must be at least 1 while its rate is on");
    }

    p.check((10..=60_000).contains(&f.escrow.poll_ms), "escrow.poll_ms", "must be between 10 and 60000");
    p.check(
        f.escrow.stale_after_ms >= 2 * f.escrow.poll_ms,
        "escrow.stale_after_ms",
        "must be at least twice escrow.poll_ms (else every slow read halts order intake)",
    );

    let po = &f.payout;
    p.check(
        (1_000..=7 * 86_400_000).contains(&po.interval_ms),
        "payout.interval_ms",
        "must be between 1000 (a second) and 604800000 (a week)",
    );
    p.check(
        (1..=1_000).contains(&po.providers_per_tx_max),
        "payout.providers_per_tx_max",
        "must be between 1 and 1000 (the contract's MAX_PAYOUT)",
    );
    let threshold = parse_pat(&po.threshold).unwrap_or_else(|e| {
        p.add("payout.threshold", format!("{e}; write decimal PAT such as \"1\" (\"0\" pays any amount owed)"));
        0
    });
    let payout = PayoutParams {
        enabled: po.enabled,
        interval_ms: po.interval_ms,
        threshold,
        providers_per_tx_max: po.providers_per_tx_max,
    };

    if !p.0.is_empty() {
        return Err(ConfigErrors(p.0));
    }
    Ok(Config {
        engine: EngineConfig {
            chain_id: f.chain.chain_id,
            marketplace: f.chain.marketplace,
            broker_margin_cap_bps: f.chain.broker_margin_cap_bps,
            types,
            windows,
            bands,
            pricing: PricingParams {
                freshness_curve,
                freshness_floor: pr.freshness_floor,
                rate_half_life_secs: pr.rate_half_life_secs,
                demand_pressure_min: pr.demand_pressure.min,
                demand_pressure_max: pr.demand_pressure.max,
                scarcity_min: pr.scarcity.min,
                scarcity_max: pr.scarcity.max,
                substitute_discount: pr.substitute_discount,
            },
            spread: sp.clone(),
            risk,
            ingest: IngestParams {
                payload_bytes_max: ing.payload_bytes_max,
                signals_max: ing.signals_max,
                units_max: ing.units_max,
                clock_skew_secs: ing.clock_skew_secs,
            },
            orders: OrderParams { qty_max: f.orders.qty_max, quote_ttl_ms: f.orders.quote_ttl_ms },
            quoting: QuotingParams { tick_ms: f.quoting.tick_ms, reprice_interval_ms: f.quoting.reprice_interval_ms },
        },
        chain: ChainSettings { rpc_url: f.chain.rpc_url.clone(), confirmations: f.chain.confirmations },
        feed: f.feed.clone(),
        http: f.http.clone(),
        storage: f.storage.clone(),
        limits: f.limits,
        escrow: f.escrow,
        payout,
        warnings: Vec::new(),
    })
}

/// Parses a non-empty list of distinct catalogue names, reporting each bad entry.
fn catalogue_list<T: std::str::FromStr + PartialEq>(p: &mut Problems, key: &str, items: &[String]) -> Vec<T>
where
    T::Err: fmt::Display,
{
    if items.is_empty() {
        p.add(key, "must not be empty");
    }
    let mut out: Vec<T> = Vec::new();
    for (i, text) in items.iter().enumerate() {
        match text.parse::<T>() {
            Ok(v) if out.contains(&v) => p.add(format!("{key}[{i}]"), format!("'{text}' is listed twice")),
            Ok(v) => out.push(v),
            Err(e) => p.add(format!("{key}[{i}]"), e.to_string()),
        }
    }
    out
}

#[cfg(test)]
mod tests;
