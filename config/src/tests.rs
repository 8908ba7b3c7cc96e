//! Validation tests: the shipped default is valid, and each kind of mistake is
//! reported against its key.

use super::*;

const DEFAULT: &str = include_str!("../default.toml");

fn errors_of(edit: impl Fn(&str) -> String) -> Vec<ConfigError> {
    Config::parse(&edit(DEFAULT)).expect_err("the edited config should be refused").0
}

fn keys_of(edit: impl Fn(&str) -> String) -> Vec<String> {
    errors_of(edit).into_iter().map(|e| e.key).collect()
}

#[test]
fn default_config_is_valid_and_realistic() {
    let cfg = Config::parse(DEFAULT).unwrap();
    assert_eq!(cfg.engine.types.len(), 6);
    assert_eq!(cfg.engine.market_keys().len(), 6 * 3 * 3);
    assert_eq!(cfg.engine.types[0].segment_type.as_str(), "JOB_SEARCH"); // sorted by name
    assert_eq!(cfg.engine.quoting.tick_ms, 100);
    assert_eq!(cfg.engine.quoting.reprice_interval_ms, 1_000);
    assert_eq!(cfg.engine.risk.market_hard, 5_000 * pat_engine::money::ONE_PAT);
    assert!(cfg.engine.types.iter().all(|t| t.access_secs == pat_engine::params::ACCESS_DEFAULT_SECS));
    let own = Config::parse(&DEFAULT.replacen("tick = \"0.0005\"", "tick = \"0.0005\"\naccess_days = 7", 1)).unwrap();
    let local = own.engine.types.iter().find(|t| t.segment_type.as_str() == "LOCAL_SERVICES").unwrap();
    assert_eq!(local.access_secs, 7 * 86_400, "a type's own access period");
    assert_eq!(cfg.feed, crate::FeedParams::default(), "the file spells out the defaults");
    assert_eq!(cfg.http, crate::HttpParams::default(), "the file spells out the defaults");
    assert_eq!(cfg.storage, crate::StorageParams::default(), "the file spells out the defaults");
    assert_eq!(cfg.limits, crate::LimitParams::default(), "the file spells out the defaults");
    assert_eq!(cfg.escrow, crate::EscrowParams::default(), "the file spells out the defaults");
    assert!(cfg.escrow.required, "orders are held to escrow unless a config says otherwise");
    let without = DEFAULT.split("[escrow]").next().unwrap();
    assert!(Config::parse(without).unwrap().escrow.required, "a file with no [escrow] requires it too");
    let payout = crate::PayoutParams {
        enabled: true,
        interval_ms: 3_600_000,
        threshold: pat_engine::money::ONE_PAT,
        providers_per_tx_max: 200,
    };
    assert_eq!(cfg.payout, payout, "the file spells out the defaults");
    assert_eq!(Config::parse(without).unwrap().payout, payout, "and a file with no [payout] gets them");
    let any = Config::parse(&DEFAULT.replacen("threshold = \"1\"", "threshold = \"0\"", 1)).unwrap();
    assert_eq!(any.payout.threshold, 0, "a zero threshold pays any amount owed");
}

#[test]
fn each_mistake_names_its_key() {
    let cases: Vec<(&str, &str, &str)> = vec![
        ("broker_margin_cap_bps = 3000", "broker_margin_cap_bps = 6000", "chain.broker_margin_cap_bps"),
        ("chain_id = 31337", "chain_id = 0", "chain.chain_id"),
        (r#"windows = ["1D", "7D", "30D"]"#, r#"windows = ["1D", "7W"]"#, "catalogue.windows[1]"),
        (r#"windows = ["1D", "7D", "30D"]"#, r#"windows = ["1D", "1D"]"#, "catalogue.windows[1]"),
        (r#"windows = ["1D", "7D", "30D"]"#, "windows = []", "catalogue.windows"),
        (r#""0.70-0.85", "0.85-1.00""#, r#""0.65-0.85", "0.85-1.00""#, "catalogue.bands"),
        ("[catalogue.types.JOB_SEARCH]", "[catalogue.types.job_search]", "catalogue.types.job_search"),
        (r#"base_value = "0.9""#, r#"base_value = "-1""#, "catalogue.types.JOB_SEARCH.base_value"),
        ("access_days = 30", "access_days = 0", "catalogue.access_days"),
        (r#"base_value = "0.9""#, "base_value = \"0.9\"\naccess_days = 4000", "catalogue.types.JOB_SEARCH.access_days"),
        (r#"base_value = "0.9""#, r#"base_value = "0""#, "catalogue.types.JOB_SEARCH.base_value"),
        (r#"base_value = "0.6""#, r#"base_value = "0.001""#, "catalogue.types.LOCAL_SERVICES.tick"),
        (r#"base_value = "0.9""#, r#"base_value = "0.9001""#, "catalogue.types.JOB_SEARCH.base_value"),
        (r#"tick = "0.0005""#, r#"tick = "0.000000000000000001""#, "catalogue.types.LOCAL_SERVICES.tick"),
        ("scarcity = { min = 0.5, max = 2.5 }", "scarcity = { min = 0.5, max = 50 }", "pricing.scarcity"),
        (r#"freshness_curve = "linear""#, r#"freshness_curve = "cubic""#, "pricing.freshness_curve"),
        ("freshness_floor = 0.1", "freshness_floor = 0", "pricing.freshness_floor"),
        ("rate_half_life_secs = 3600", "rate_half_life_secs = -5", "pricing.rate_half_life_secs"),
        (
            "demand_pressure = { min = 0.5, max = 3.0 }",
            "demand_pressure = { min = 2, max = 3.0 }",
            "pricing.demand_pressure",
        ),
        ("substitute_discount = 0.5", "substitute_discount = 1.5", "pricing.substitute_discount"),
        ("min_bps = 50", "min_bps = 5000", "spread.min_bps"),
        ("max_bps = 1500", "max_bps = 2500", "spread.max_bps"),
        ("volatility_alpha = 0.1", "volatility_alpha = 0", "spread.volatility_alpha"),
        (r#"market_exposure_soft = "2000""#, r#"market_exposure_soft = "9000""#, "risk.market_exposure_soft"),
        (r#"group_exposure_hard = "12000""#, r#"group_exposure_hard = "3000""#, "risk.market_exposure_hard"),
        ("tick_ms = 100", "tick_ms = 5", "quoting.tick_ms"),
        ("reprice_interval_ms = 1000", "reprice_interval_ms = 50", "quoting.reprice_interval_ms"),
        ("quote_ttl_ms = 1000", "quote_ttl_ms = 50", "orders.quote_ttl_ms"),
        ("payload_bytes_max = 262144", "payload_bytes_max = 0", "ingest.payload_bytes_max"),
        ("heartbeat_ms = 5000", "heartbeat_ms = 10", "feed.heartbeat_ms"),
        ("client_timeout_ms = 30000", "client_timeout_ms = 4000", "feed.client_timeout_ms"),
        ("queue_capacity = 4096", "queue_capacity = 0", "feed.queue_capacity"),
        ("lag_limit_ms = 10000", "lag_limit_ms = 0", "feed.lag_limit_ms"),
        ("subscriptions_max = 1024", "subscriptions_max = 0", "feed.subscriptions_max"),
        ("connections_per_ip_max = 64", "connections_per_ip_max = 0", "feed.connections_per_ip_max"),
        ("message_bytes_max = 4096", "message_bytes_max = 100000", "feed.message_bytes_max"),
        ("body_bytes_max = 524288", "body_bytes_max = 10", "http.body_bytes_max"),
        ("header_read_timeout_ms = 5000", "header_read_timeout_ms = 0", "http.header_read_timeout_ms"),
        ("body_read_timeout_ms = 10000", "body_read_timeout_ms = 0", "http.body_read_timeout_ms"),
        ("bodies_held_bytes_max = 67108864", "bodies_held_bytes_max = 1024", "http.bodies_held_bytes_max"),
        (r#"# url = "s3://bucket/prefix""#, r#"url = "ftp://bucket/prefix""#, "storage.url"),
        ("orphan_grace_secs = 600", "orphan_grace_secs = 0", "storage.orphan_grace_secs"),
        ("sweep_interval_secs = 600", "sweep_interval_secs = 0", "storage.sweep_interval_secs"),
        ("sweep_interval_secs = 600", "sweep_interval_secs = 600\noptions = { region = \"eu\" }", "storage.options"),
        ("orders_per_consumer_burst = 1000", "orders_per_consumer_burst = 0", "limits.orders_per_consumer_burst"),
        (
            "submissions_per_provider_burst = 400",
            "submissions_per_provider_burst = 0",
            "limits.submissions_per_provider_burst",
        ),
        ("poll_ms = 500", "poll_ms = 5", "escrow.poll_ms"),
        ("poll_ms = 500", "poll_ms = 600000", "escrow.poll_ms"),
        ("stale_after_ms = 10000", "stale_after_ms = 900", "escrow.stale_after_ms"),
        ("interval_ms = 3600000", "interval_ms = 10", "payout.interval_ms"),
        ("threshold = \"1\"", "threshold = \"-1\"", "payout.threshold"),
        ("threshold = \"1\"", "threshold = \"0.0000000000000000001\"", "payout.threshold"),
        ("providers_per_tx_max = 200", "providers_per_tx_max = 0", "payout.providers_per_tx_max"),
        ("providers_per_tx_max = 200", "providers_per_tx_max = 1001", "payout.providers_per_tx_max"),
    ];
    for (from, to, key) in cases {
        assert!(DEFAULT.contains(from), "fixture lost: {from}");
        let keys = keys_of(|d| d.replacen(from, to, 1));
        assert!(keys.iter().any(|k| k == key), "{to}: expected {key}, got {keys:?}");
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let errors = errors_of(|d| d.replace("chain_id = 31337", "chain_id = 0").replace("tick_ms = 100", "tick_ms = 1"));
    assert!(errors.len() >= 2, "{errors:?}");
}

#[test]
fn syntax_errors_and_unknown_keys_say_where() {
    let errors = errors_of(|d| d.replace("[pricing]", "[pricing]\nfreshnes_floor = 0.2"));
    assert!(errors[0].reason.contains("freshnes_floor"), "{errors:?}");
    assert!(errors[0].reason.contains("line"), "{errors:?}");
    let errors = errors_of(|d| d.replace("chain_id = 31337", "chain_id = = 31337"));
    assert!(errors[0].reason.contains("line 9"), "{errors:?}");
    let errors = errors_of(|d| d.replace("0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0", "0x1234"));
    assert!(errors[0].reason.contains("line"), "{errors:?}");
    let missing = Config::load(Path::new("/nonexistent/pat.toml")).unwrap_err();
    assert!(missing.to_string().contains("cannot read /nonexistent/pat.toml"));
}

#[test]
fn renamed_keys_are_still_read_and_warned_about() {
    let old = DEFAULT.replacen("subscriptions_max = 1024", "max_subscriptions = 7", 1);
    let cfg = Config::parse(&old).unwrap();
    assert_eq!(cfg.feed.subscriptions_max, 7);
    assert_eq!(cfg.warnings.len(), 1);
    assert_eq!(cfg.warnings[0].key, "feed.max_subscriptions");
    assert!(cfg.warnings[0].reason.contains("feed.subscriptions_max"), "{}", cfg.warnings[0]);
    assert!(Config::parse(DEFAULT).unwrap().warnings.is_empty());
    // Both names at once is a mistake, not a choice.
    let both = DEFAULT.replacen("subscriptions_max = 1024", "subscriptions_max = 1024\nmax_subscriptions = 7", 1);
    let errors = Config::parse(&both).unwrap_err();
    assert!(errors.to_string().contains("duplicate field"), "{errors}");
}
