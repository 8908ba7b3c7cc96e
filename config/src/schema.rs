//! The TOML file as written by operators: field names, defaults and types,
//! before validation. Unknown keys are refused so that a typo never passes
//! silently.

use std::collections::BTreeMap;

use alloy_primitives::Address;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub chain: Chain,
    pub catalogue: Catalogue,
    pub pricing: Pricing,
    pub spread: Spread,
    pub risk: Risk,
    #[serde(default)]
    pub ingest: Ingest,
    #[serde(default)]
    pub orders: Orders,
    #[serde(default)]
    pub quoting: Quoting,
    #[serde(default)]
    pub feed: Feed,
    #[serde(default)]
    pub http: Http,
    #[serde(default)]
    pub storage: Storage,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub escrow: Escrow,
    #[serde(default)]
    pub payout: Payout,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chain {
    pub chain_id: u64,
    /// JSON-RPC endpoint of the chain (anvil locally, a ZKsync Era node in production).
    #[serde(default = "default_rpc_url")]
    pub rpc_url: String,
    /// The `DataMarketplace` proxy, the EIP-712 verifying contract.
    pub marketplace: Address,
    pub broker_margin_cap_bps: u16,
    #[serde(default = "default_confirmations")]
    pub confirmations: u64,
}

fn default_rpc_url() -> String {
    "http://127.0.0.1:8545".to_owned()
}

fn default_confirmations() -> u64 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    pub windows: Vec<String>,
    pub bands: Vec<String>,
    /// Days a consumer may download a settled fill, for every type that names none.
    #[serde(default = "default_access_days")]
    pub access_days: u64,
    /// Segment types by name.
    pub types: BTreeMap<String, SegmentTypeEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentTypeEntry {
    /// BaseValue of one unit, decimal PAT.
    pub base_value: String,
    /// Price increment, decimal PAT.
    pub tick: String,
    /// Days a consumer may download a settled fill of this type (else `catalogue.access_days`).
    pub access_days: Option<u64>,
}

fn default_access_days() -> u64 {
    pat_engine::params::ACCESS_DEFAULT_SECS / 86_400
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub min: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    /// `linear` or `exponential`.
    pub freshness_curve: String,
    pub freshness_floor: f64,
    pub rate_half_life_secs: f64,
    pub demand_pressure: Range,
    pub scarcity: Range,
    pub substitute_discount: f64,
}

/// The `[spread]` table has the engine's own shape: plain numbers, no amounts.
pub type Spread = pat_engine::params::SpreadParams;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Risk {
    /// Decimal PAT.
    pub market_exposure_soft: String,
    pub market_exposure_hard: String,
    pub group_exposure_soft: String,
    pub group_exposure_hard: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ingest {
    pub payload_bytes_max: usize,
    pub signals_max: usize,
    pub units_max: u32,
    pub clock_skew_secs: u64,
}

impl Default for Ingest {
    fn default() -> Self {
        Self { payload_bytes_max: 256 * 1024, signals_max: 10_000, units_max: 100_000, clock_skew_secs: 60 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Orders {
    pub qty_max: u64,
    pub quote_ttl_ms: u64,
}

impl Default for Orders {
    fn default() -> Self {
        Self { qty_max: 10_000, quote_ttl_ms: 1_000 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quoting {
    pub tick_ms: u64,
    pub reprice_interval_ms: u64,
}

/// The WebSocket feed's limits and timers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Feed {
    pub heartbeat_ms: u64,
    pub client_timeout_ms: u64,
    pub queue_capacity: usize,
    pub lag_limit_ms: u64,
    #[serde(alias = "max_subscriptions")]
    pub subscriptions_max: usize,
    #[serde(alias = "max_connections_per_ip")]
    pub connections_per_ip_max: usize,
    #[serde(alias = "max_message_bytes")]
    pub message_bytes_max: usize,
}

/// The HTTP server's limits and timers, against slow or oversized requests.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Largest request body, bytes.
    pub body_bytes_max: usize,
    /// A request's head must arrive within this.
    pub header_read_timeout_ms: u64,
    /// A request's body must arrive within this, counted from its head.
    pub body_read_timeout_ms: u64,
    /// Bytes all unfinished request bodies may hold together.
    pub bodies_held_bytes_max: usize,
}

impl Default for Http {
    fn default() -> Self {
        Self {
            body_bytes_max: 512 * 1024,
            header_read_timeout_ms: 5_000,
            body_read_timeout_ms: 10_000,
            bodies_held_bytes_max: 64 * 1024 * 1024,
        }
    }
}

/// Where listed payloads are kept (the payload store) and its upkeep.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// `s3://bucket/prefix` or `gs://bucket/prefix`; absent: `store/` in the data directory.
    pub url: Option<String>,
    /// Options of the S3 or GCS client over its environment variables
    /// (`endpoint`, `region`, `allow_http`, ...). Credentials belong in the
    /// environment (`AWS_ACCESS_KEY_ID`, ...), not here.
    pub options: std::collections::BTreeMap<String, String>,
    /// File holding the master keyring (`kid:hex64,...`, current first), mode
    /// 0600; relative to the data directory. `PAT_STORAGE_KEY` overrides it.
    pub key_file: Option<std::path::PathBuf>,
    /// Unlisted objects younger than this are kept by the orphan sweep.
    pub orphan_grace_secs: u64,
    /// Time between two orphan sweeps.
    pub sweep_interval_secs: u64,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            url: None,
            options: Default::default(),
            key_file: None,
            orphan_grace_secs: 600,
            sweep_interval_secs: 600,
        }
    }
}

/// Per-identity admission limits (token buckets), checked after a request's
/// signature: each consumer's orders, each provider's submissions. A rate of
/// 0 turns that limit off. Reloads live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub orders_per_consumer_per_sec: u32,
    pub orders_per_consumer_burst: u32,
    pub submissions_per_provider_per_sec: u32,
    pub submissions_per_provider_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            orders_per_consumer_per_sec: 500,
            orders_per_consumer_burst: 1_000,
            submissions_per_provider_per_sec: 200,
            submissions_per_provider_burst: 400,
        }
    }
}

/// How orders are held to their consumers' escrow on chain. Read at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Escrow {
    /// An order must be covered by the consumer's free escrow (escrow on chain at the
    /// synced block, less its requested withdrawal and its unsettled fills), else
    /// `422 insufficient_escrow`. Off only for a market with no chain (tests).
    pub required: bool,
    /// How often the escrow follower reads the chain (`chain.confirmations` deep).
    pub poll_ms: u64,
    /// Orders are refused (`503 escrow_unavailable`) once the follower last read the chain
    /// to its head longer ago than this: a view gone stale misses withdrawals.
    pub stale_after_ms: u64,
}

impl Default for Escrow {
    fn default() -> Self {
        Self { required: true, poll_ms: 500, stale_after_ms: 10_000 }
    }
}

/// How providers' settled credits are paid into their wallets. Read at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Payout {
    /// The broker pays settled credits out at its own gas (`payout`); off, they stay owed and
    /// each provider can claim its own with `pat-market claim`.
    pub enabled: bool,
    /// Time between payout rounds.
    pub interval_ms: u64,
    /// Least owed amount a provider is paid at, decimal PAT ("0" pays any amount owed).
    pub threshold: String,
    /// Most providers in one payout transaction (the contract takes at most 1000).
    pub providers_per_tx_max: usize,
}

impl Default for Payout {
    fn default() -> Self {
        Self { enabled: true, interval_ms: 3_600_000, threshold: "1".to_owned(), providers_per_tx_max: 200 }
    }
}

/// Keys renamed so that units go last, as `(section, old, new)`: the old
/// name is still read (a serde alias above), and [`crate::Config::parse`]
/// warns about it.
pub const RENAMED: &[(&str, &str, &str)] = &[
    ("feed", "max_subscriptions", "subscriptions_max"),
    ("feed", "max_connections_per_ip", "connections_per_ip_max"),
    ("feed", "max_message_bytes", "message_bytes_max"),
];

impl Default for Feed {
    fn default() -> Self {
        Self {
            heartbeat_ms: 5_000,
            client_timeout_ms: 30_000,
            queue_capacity: 4_096,
            lag_limit_ms: 10_000,
            subscriptions_max: 1_024,
            connections_per_ip_max: 64,
            message_bytes_max: 4_096,
        }
    }
}

impl Default for Quoting {
    fn default() -> Self {
        Self { tick_ms: 100, reprice_interval_ms: 1_000 }
    }
}
