//! The HTTP API against a real engine (actor, journal on disk) and a real
//! server on a loopback port: a purchase end to end, every bad input with its
//! code and no change of state, admin auth, live reload, a Prometheus scrape
//! checked by `promtool`, and quotes served while the engine is down.

mod common;

use std::path::Path;

use common::{Api, MARKET, TOKEN, now_secs, signer};
use pat_actors::messages::{RecordOutcomes, Settlement};
use pat_engine::Code;
use pat_engine::code::Source;
use serde_json::{Value, json};

#[actix_rt::test]
async fn a_purchase_end_to_end_moves_money_exactly() {
    let api = Api::start().await;
    assert_eq!(api.get("/healthz").await.0, 200);
    for p in 0..3 {
        let (status, body) = api.post("/v1/segments", api.segment(p, 10, u64::from(p))).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["market"], MARKET);
    }
    let (_, found) = api.get("/v1/segments?type=PURCHASE_INTENT&window=7D&min_quality=0.5").await;
    assert_eq!(found.as_array().unwrap().len(), 3);
    assert_eq!(api.get("/v1/segments/0").await.1["units"], 10);
    let ask = api.ask().await;
    let (status, fill) = api.post("/v1/orders", api.order(50, 3, ask, 1, now_secs() + 60)).await;
    assert_eq!(status, 201, "{fill}");
    let paid: u128 = fill["ask_paid"].as_str().unwrap().parse().unwrap();
    let credited: u128 = fill["bid_credited"].as_str().unwrap().parse().unwrap();
    let spread: u128 = fill["broker_spread"].as_str().unwrap().parse().unwrap();
    assert_eq!((paid, paid), (3 * ask, credited + spread));
    let units: Vec<u64> =
        fill["allocations"].as_array().unwrap().iter().map(|a| a["units"].as_u64().unwrap()).collect();
    assert_eq!(units, [1, 1, 1], "one unit of each of three segments");
    let id = fill["fill_id"].as_str().unwrap();
    let (status, again) = api.get(&format!("/v1/fills/{id}")).await;
    assert_eq!((status, again["status"].as_str()), (200, Some("accepted")));
    let consumer = signer(50).address();
    let (_, mine) = api.get(&format!("/v1/consumers/{consumer}/fills")).await;
    assert_eq!(mine.as_array().unwrap().len(), 1);
    // Without a chain to follow (this server's engine does not require escrow) the open fill
    // still holds its ask against the consumer's escrow, which no sync has shown.
    let (status, escrow) = api.get(&format!("/v1/consumers/{consumer}/escrow")).await;
    assert_eq!(status, 200, "{escrow}");
    let held = paid.to_string();
    assert_eq!(
        (
            escrow["held"].as_str(),
            escrow["free"].as_str(),
            escrow["synced_block"].as_u64(),
            escrow["required"].as_bool()
        ),
        (Some(held.as_str()), Some("0"), Some(0), Some(false))
    );
    assert_eq!(api.state().await, json!([27, paid.to_string(), 3, 30]));
    // Earnings count settled fills only: this one is pending until it settles.
    let earnings = |field: &'static str| {
        let providers: Vec<String> = fill["allocations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["provider"].as_str().unwrap().to_owned())
            .collect();
        let api = &api;
        async move {
            let mut sum = 0u128;
            for p in providers {
                let (_, e) = api.get(&format!("/v1/providers/{p}/earnings")).await;
                sum += e[field].as_str().unwrap().parse::<u128>().unwrap();
            }
            sum
        }
    };
    assert_eq!((earnings("settled").await, earnings("pending").await), (0, credited), "pending until it settles");
    let fill_id: alloy_primitives::B256 = id.parse().unwrap();
    api.engine.send(RecordOutcomes(vec![(fill_id, Settlement::Settled)])).await.unwrap().unwrap();
    assert_eq!((earnings("settled").await, earnings("pending").await), (credited, 0), "earned once settled");
}

#[actix_rt::test]
async fn every_bad_input_gets_its_code_and_changes_nothing() {
    let api = Api::start().await;
    // The same body again later is a duplicate (a body made later could carry a later timestamp).
    let listings: Vec<Value> = (0..2).map(|p| api.segment(p, 10, u64::from(p))).collect();
    for listing in &listings {
        assert_eq!(api.post("/v1/segments", listing.clone()).await.0, 201);
    }
    let ask = api.ask().await;
    let deadline = now_secs() + 60;
    assert_eq!(api.post("/v1/orders", api.order(50, 1, ask, 1, deadline)).await.0, 201);
    let before = api.state().await;

    let mut tampered = api.order(50, 1, ask, 2, deadline);
    tampered["order"]["qty"] = json!(2);
    let mut unknown_field = api.order(50, 1, ask, 3, deadline);
    unknown_field["order"]["colour"] = json!("red");
    let mut missing = api.order(50, 1, ask, 3, deadline);
    missing["order"].as_object_mut().unwrap().remove("nonce");
    let mut bad_hex = api.order(50, 1, ask, 3, deadline);
    bad_hex["signature"] = json!("0xnothex");
    let unknown_market = api.order_in("NO_SUCH_TYPE|7D|0.70-0.85", 50, 1, ask, 3, deadline);
    let mut bad_key = api.order(50, 1, ask, 3, deadline);
    bad_key["order"]["market"] = json!("not a market");
    let mut bad_amount = api.order(50, 1, ask, 3, deadline);
    bad_amount["order"]["max_price"] = json!("1.5");
    let mut bad_segment_sig = api.segment(5, 10, 99);
    bad_segment_sig["submission"]["units"] = json!(11);
    // The contract takes v = 27 or 28 only: every other v is refused, though it recovers the signer.
    let with_v = |mut body: Value, v: u8| {
        let sig = body["signature"].as_str().unwrap().to_owned();
        body["signature"] = json!(format!("{}{v:02x}", &sig[..sig.len() - 2]));
        body
    };
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("/v1/orders", tampered, 401, "bad_signature"),
        ("/v1/orders", with_v(api.order(50, 1, ask, 9, deadline), 0), 401, "bad_signature"),
        ("/v1/orders", with_v(api.order(50, 1, ask, 9, deadline), 1), 401, "bad_signature"),
        ("/v1/orders", with_v(api.order(50, 1, ask, 9, deadline), 36), 401, "bad_signature"),
        ("/v1/orders", with_v(api.order(50, 1, ask, 9, deadline), 255), 401, "bad_signature"),
        ("/v1/segments", with_v(api.segment(7, 10, 98), 0), 401, "bad_signature"),
        ("/v1/orders", api.order(50, 1, ask, 1, deadline), 409, "nonce_used"),
        ("/v1/orders", api.order(50, 1, ask, 4, now_secs() - 10), 422, "expired"),
        ("/v1/orders", api.order(50, 1, ask / 2, 5, deadline), 422, "price_above_max"),
        ("/v1/orders", api.order(50, 100, ask, 6, deadline), 422, "insufficient_supply"),
        ("/v1/orders", api.order(50, 0, ask, 7, deadline), 422, "invalid_quantity"),
        ("/v1/orders", unknown_field, 400, "malformed_json"),
        ("/v1/orders", missing, 400, "malformed_json"),
        ("/v1/orders", bad_hex, 400, "invalid_request"),
        ("/v1/orders", bad_key, 400, "invalid_request"),
        ("/v1/orders", bad_amount, 400, "invalid_request"),
        ("/v1/orders", unknown_market, 404, "unknown_market"),
        ("/v1/segments", bad_segment_sig, 401, "bad_signature"),
        ("/v1/segments", listings[0].clone(), 409, "duplicate_payload"),
        ("/v1/segments", api.segment(6, 0, 7), 422, "units_out_of_range"),
    ];
    for (path, body, status, code) in cases {
        let (got, err) = api.post(path, body).await;
        assert_eq!((got, err["code"].as_str()), (status, Some(code)), "{err}");
        assert_documented("post", path, code);
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(api.state().await, before, "{code} changed the market");
    }
    let (status, err) = api.raw_post("/v1/orders", "{not json").await;
    assert_eq!((status, err["code"].as_str()), (400, Some("malformed_json")));
    let huge = json!({"order": {"market": "x".repeat(70_000)}, "signature": "0x"});
    let (status, err) = api.post("/v1/orders", huge).await;
    assert_eq!((status, err["code"].as_str()), (413, Some("body_too_large")));
    let one = "0x0000000000000000000000000000000000000000000000000000000000000001";
    for (path, route, status, code) in [
        ("/v1/fills/0x12", "/v1/fills/{id}", 400, "invalid_request"),
        (&format!("/v1/fills/{one}"), "/v1/fills/{id}", 404, "unknown_fill"),
        ("/v1/markets/NOPE%7C7D%7C0.70-0.85", "/v1/markets/{key}", 404, "unknown_market"),
        ("/v1/segments/999", "/v1/segments/{id}", 404, "unknown_segment"),
        ("/v1/segments?min_quality=2", "/v1/segments", 400, "invalid_request"),
        ("/v1/providers/0x12/earnings", "/v1/providers/{address}/earnings", 400, "invalid_request"),
    ] {
        let (got, err) = api.get(path).await;
        assert_eq!((got, err["code"].as_str()), (status, Some(code)), "{path}: {err}");
        assert_documented("get", route, code);
    }
    let (got, err) = api.get("/v1/nowhere").await;
    assert_eq!((got, err["code"].as_str()), (404, Some("not_found")), "{err}");
    // Admin routes: no token, a wrong token, then the right one.
    let (status, err) = api.call(reqwest::Method::POST, "/v1/admin/pause", None, None).await;
    assert_eq!((status, err["code"].as_str()), (401, Some("unauthorized")));
    let (status, err) = api.call(reqwest::Method::POST, "/v1/admin/pause", None, Some("guess")).await;
    assert_eq!((status, err["code"].as_str()), (403, Some("forbidden")));
    assert_eq!(api.post("/v1/orders", api.order(50, 1, ask, 8, deadline)).await.0, 201, "not paused by a bad token");
    let (status, _) = api.call(reqwest::Method::POST, "/v1/admin/pause", None, Some(TOKEN)).await;
    assert_eq!(status, 200);
    let (status, err) = api.post("/v1/orders", api.order(50, 1, ask, 9, deadline)).await;
    assert_eq!((status, err["code"].as_str()), (503, Some("paused")));
    let phase = api.call(reqwest::Method::POST, "/v1/admin/phase", Some(json!({"phase": 1})), Some(TOKEN)).await;
    assert_eq!((phase.0, phase.1["code"].as_str()), (422, Some("invalid_phase")));
}

fn edit_config(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from}");
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[actix_rt::test]
async fn reload_applies_a_valid_config_and_refuses_an_invalid_one() {
    let api = Api::start().await;
    assert_eq!(api.post("/v1/segments", api.segment(0, 10, 0)).await.0, 201);
    let path = format!("/v1/markets/{}", MARKET.replace('|', "%7C"));
    let spread = async || api.get(&path).await.1["quote"]["spread_bps"].as_u64().unwrap();
    api.ask().await;
    let before = spread().await;
    // Pinning min = base = max fixes the spread whatever the volatility and liquidity terms say.
    assert_ne!(before, 700, "the test needs a spread that the reload changes");
    let pinned = "base_bps = 700\nmin_bps = 700\nmax_bps = 700";
    edit_config(&api.config_path, "base_bps = 150\nmin_bps = 50\nmax_bps = 1500", pinned);
    let (status, body) = api.call(reqwest::Method::POST, "/v1/admin/reload", None, Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    // The quoting actor takes the new config on its next tick.
    let mut after = before;
    for _ in 0..50 {
        after = spread().await;
        if after == 700 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(after, 700, "the reload pinned the spread (it was {before})");
    edit_config(&api.config_path, "max_bps = 700", "max_bps = 9000");
    let (status, body) = api.call(reqwest::Method::POST, "/v1/admin/reload", None, Some(TOKEN)).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_config")), "{body}");
    assert!(body["errors"].as_array().unwrap().iter().any(|e| e["key"] == "spread.max_bps"), "{body}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(spread().await, 700, "the running config stays");
}

#[actix_rt::test]
async fn metrics_pass_promtool() {
    let api = Api::start().await;
    assert_eq!(api.post("/v1/segments", api.segment(0, 10, 0)).await.0, 201);
    let ask = api.ask().await;
    assert_eq!(api.post("/v1/orders", api.order(50, 1, ask, 1, now_secs() + 60)).await.0, 201);
    assert_eq!(api.post("/v1/orders", api.order(50, 1, ask, 1, now_secs() + 60)).await.0, 409);
    // A feed client, so that the feed's metrics are in the scrape too.
    let feed = format!("ws://{}/v1/feed", api.base.trim_start_matches("http://"));
    let (_client, _) = tokio_tungstenite::connect_async(feed).await.unwrap();
    // The gauges are flushed every second: scrape until the fill's exposure shows.
    let exposure = format!(r#"pat_market_exposure_pat{{market="{MARKET}"}} "#);
    let mut text = String::new();
    for _ in 0..60 {
        text = api.http.get(format!("{}/metrics", api.base)).send().await.unwrap().text().await.unwrap();
        let shown = text.lines().find_map(|l| l.strip_prefix(&exposure)).and_then(|v| v.parse::<f64>().ok());
        if shown.is_some_and(|v| v > 0.0) && text.contains("pat_feed_clients 1") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for name in [
        "pat_fills_total",
        "pat_orders_refused_total",
        "pat_journal_append_seconds",
        "pat_quote_tick_seconds",
        "pat_quote_ask_pat{market=",
        "pat_quote_spread_bps{market=",
        "pat_market_supply_units{market=",
        "pat_market_exposure_limit_pat{level=\"hard\"}",
        "pat_group_exposure_pat{type=\"PURCHASE_INTENT\",window=\"7D\"}",
        "pat_feed_clients 1",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(text.contains(&exposure), "the fill's exposure shows");
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) runs; scripts/test.sh installs it");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[actix_rt::test]
async fn the_openapi_document_describes_every_route() {
    let api = Api::start().await;
    let (status, doc) = api.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |m| (m.to_uppercase(), path.clone())))
        .collect();
    let expected = [
        "GET /healthz",
        "GET /metrics",
        "GET /openapi.json",
        "POST /v1/segments",
        "GET /v1/segments",
        "GET /v1/segments/{id}",
        "GET /v1/markets",
        "GET /v1/markets/{key}",
        "GET /v1/quotes",
        "GET /v1/feed",
        "POST /v1/orders",
        "GET /v1/fills/{id}",
        "GET /v1/fills/{id}/data",
        "GET /v1/segments/{id}/data",
        "GET /v1/providers/{address}/earnings",
        "GET /v1/consumers/{address}/escrow",
        "GET /v1/consumers/{address}/fills",
        "POST /v1/admin/pause",
        "POST /v1/admin/resume",
        "POST /v1/admin/reload",
        "POST /v1/admin/phase",
    ];
    let mut got: Vec<String> = documented.iter().map(|(m, p)| format!("{m} {p}")).collect();
    got.sort();
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want);
    // Every documented route is served: none answers the router's `not_found`.
    for (method, path) in &documented {
        let path = path.replace("{id}", "0").replace("{key}", "X").replace("{address}", "0x0");
        let req = api.http.request(method.parse().unwrap(), format!("{}{path}", api.base));
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(body["code"] != "not_found", "{method} {path} is documented but not routed: {status} {body}");
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in ["FillBody", "OrderRequest", "SegmentRequest", "MarketBody", "QuoteBody", "ErrorBody"] {
        assert!(schemas.contains_key(name), "{name} missing");
    }
    assert_eq!(doc["components"]["securitySchemes"]["operator"]["scheme"], "bearer");
    assert_eq!(schemas["FillBody"]["properties"]["fill_id"]["type"], "string");

    // Each route lists its error codes under the status each code carries.
    let mut listed = std::collections::BTreeSet::new();
    for (method, path) in &documented {
        let responses = doc["paths"][path][method.to_lowercase()]["responses"].as_object().unwrap();
        for (status, response) in responses.iter().filter(|(s, _)| s.starts_with(['4', '5'])) {
            let text = response["description"].as_str().unwrap();
            for code in Code::ALL.iter().filter(|c| text.contains(&format!("`{c}`"))) {
                assert_eq!(code.status().to_string(), *status, "{method} {path}: {code}");
                listed.insert(*code);
            }
        }
    }
    let orders = doc["paths"]["/v1/orders"]["post"]["responses"]["409"]["description"].as_str().unwrap();
    assert!(orders.contains("`nonce_used`"), "{orders}");
    let reload = &doc["paths"]["/v1/admin/reload"]["post"]["responses"]["422"];
    assert!(reload["content"]["application/json"]["schema"]["$ref"].as_str().unwrap().ends_with("InvalidConfigBody"));
    // Every code a client can meet over HTTP is listed by some route, but
    // `not_found`, which any unrouted path answers (feed-only and start-up
    // codes reach no HTTP client).
    let unrouted = |c: &Code| {
        [[Source::Feed], [Source::Boot]].iter().any(|s| c.sources() == s)
            || [Code::NotFound, Code::MethodNotAllowed].contains(c)
    };
    for code in Code::ALL.iter().filter(|c| !unrouted(c)) {
        assert!(listed.contains(code), "no route lists {code}");
    }
}

/// A code a route answered with is one its OpenAPI entry lists.
fn assert_documented(method: &str, route: &str, code: &str) {
    let listed = pat_server::error::route_codes(method, route);
    assert!(listed.iter().any(|c| c.as_str() == code), "{method} {route} answered {code}, which it does not document");
}

/// `docs/protocol.md` lists every code in the row of its status (HTTP) or
/// in the feed's table (feed-only codes).
#[test]
fn the_protocol_document_lists_every_code() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md")).unwrap();
    for code in Code::ALL {
        let name = format!("`{code}`");
        let in_row = if code.sources() == [Source::Feed] {
            doc.lines().any(|l| l.starts_with(&format!("| {name} |")))
        } else {
            doc.lines().any(|l| l.starts_with(&format!("| {} |", code.status())) && l.contains(&name))
        };
        assert!(in_row, "docs/protocol.md does not list {name} where its status ({}) says", code.status());
    }
}

/// Quotes come from the quote table, not the engine: with the engine stopped
/// (a planned stop, so nothing restarts it), `/v1/quotes` still answers and
/// routes that need the engine say `unavailable`.
#[actix_rt::test]
async fn quotes_are_served_while_the_engine_is_down() {
    let api = Api::start().await;
    api.post("/v1/segments", api.segment(0, 10, 0)).await;
    let ask = api.ask().await;
    api.engine.send(pat_actors::messages::Shutdown { snapshot: false }).await.unwrap().unwrap();
    let (status, quotes) = api.get("/v1/quotes").await;
    assert_eq!(status, 200, "{quotes}");
    let quote = quotes.as_array().unwrap().iter().find(|q| q["market"] == MARKET).unwrap().clone();
    assert_eq!(quote["ask"].as_str().unwrap().parse::<u128>().unwrap(), ask);
    let (status, body) = api.get("/v1/markets").await;
    assert_eq!((status, body["code"].as_str()), (503, Some("unavailable")), "{body}");
}

/// Past its limit an identity gets `429 rate_limited` with `Retry-After`,
/// and nothing changes; another identity is not held back; a reload of the
/// file applies its limits at once.
#[actix_rt::test]
async fn rate_limits_answer_429_change_nothing_and_reload_live() {
    use pat_server::limits::RateLimits;
    let tight = pat_config::LimitParams {
        orders_per_consumer_per_sec: 1,
        orders_per_consumer_burst: 2,
        submissions_per_provider_per_sec: 1,
        submissions_per_provider_burst: 1,
    };
    let api = Api::start_with(|s| s.limits = std::sync::Arc::new(RateLimits::new(tight))).await;
    assert_eq!(api.post("/v1/segments", api.segment(1, 10, 1)).await.0, 201);
    let before = api.state().await;
    let resp = api.http.post(format!("{}/v1/segments", api.base)).json(&api.segment(1, 10, 2)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "rate_limited");
    assert_eq!(api.state().await, before, "a limited submission lists nothing");
    for p in 2..=3 {
        assert_eq!(api.post("/v1/segments", api.segment(p, 10, p.into())).await.0, 201, "provider {p}'s own bucket");
    }
    let ask = api.ask().await;
    let deadline = now_secs() + 60;
    for nonce in 1..=2 {
        assert_eq!(api.post("/v1/orders", api.order(50, 1, ask * 2, nonce, deadline)).await.0, 201);
    }
    let before = api.state().await;
    let (status, body) = api.post("/v1/orders", api.order(50, 1, ask * 2, 3, deadline)).await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")), "{body}");
    assert_eq!(api.state().await, before, "a limited order fills nothing");
    assert_eq!(api.post("/v1/orders", api.order(51, 1, ask * 2, 1, deadline)).await.0, 201, "another consumer");
    assert_documented("post", "/v1/orders", "rate_limited");
    assert_documented("post", "/v1/segments", "rate_limited");

    // The file's limits (the defaults) apply on reload: the same order now fills.
    let (status, _) = api.call(reqwest::Method::POST, "/v1/admin/reload", None, Some(TOKEN)).await;
    assert_eq!(status, 200);
    let (status, fill) = api.post("/v1/orders", api.order(50, 1, ask * 2, 3, deadline)).await;
    assert_eq!(status, 201, "{fill}");
}
