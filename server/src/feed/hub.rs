//! The feed's hub: the latest quote of every market, serialized once per
//! change, and every connection's outbox. Publishing pushes the same bytes
//! (a reference-counted, pre-encoded WebSocket frame) into each subscribed outbox and wakes
//! its connection; it never waits on a socket, so a slow client cannot delay
//! the engine or the other clients.
//!
//! An outbox holds at most `queue_capacity` quotes. When it is full, further
//! quotes are conflated: only the newest per market is kept, and the
//! connection announces how many it dropped before it sends them. A client
//! that stays behind (conflating) past `lag_limit` is disconnected.
//! Memory per connection is therefore bounded by the queue, the markets, and
//! `queue_capacity` pending fill updates.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use actix_http::ws::{OpCode, Parser};
use actix_web::web::{Bytes, BytesMut};
use alloy_primitives::Address;
use pat_actors::messages::FillUpdate;
use pat_engine::{Code, MarketKey, Quote};
use tokio::sync::Notify;

use super::FeedSettings;
use super::protocol::{FeedError, QuoteMessage, now_us, resolve};
use crate::dto::{QuoteBody, status_parts};

/// One message as the WebSocket frame a server sends (unmasked, so the same
/// bytes for every client), shared by every connection it goes to.
#[derive(Debug, Clone)]
pub struct Frame {
    pub wire: Bytes,
    pub published: Instant,
    /// The market a quote is for; `u32::MAX` for other messages.
    market: u32,
}

impl Frame {
    fn new(text: &str, market: u32, published: Instant) -> Self {
        Self { wire: text_frame(text), published, market }
    }

    fn other(text: String) -> Self {
        Self::new(&text, u32::MAX, Instant::now())
    }
}

/// `text` as one final, unmasked WebSocket text frame.
pub fn text_frame(text: &str) -> Bytes {
    let mut wire = BytesMut::with_capacity(text.len() + 10);
    Parser::write_message(&mut wire, text, OpCode::Text, true, false);
    wire.freeze()
}

/// Why the server ends a connection (the `reason` label of
/// `pat_feed_disconnects_total`, and the close frame's description).
pub mod reason {
    pub const CLIENT_CLOSED: &str = "client_closed";
    pub const SLOW_CONSUMER: &str = "slow_consumer";
    pub const CLIENT_TIMEOUT: &str = "client_timeout";
    pub const PROTOCOL_ERROR: &str = "protocol_error";
    pub const TOO_MANY_CONNECTIONS: &str = "too_many_connections";
}

impl Outbox {
    /// Queues a market's frame, or conflates it once the queue is full.
    fn enqueue(&mut self, frame: Frame, capacity: usize, now: Instant) {
        if self.queue.len() < capacity && self.conflated_updates == 0 {
            self.queue.push_back(frame);
            return;
        }
        if self.conflated.is_empty() {
            self.conflated = vec![None; self.subscribed.len()];
        }
        let market = frame.market as usize;
        self.conflated[market] = Some(frame);
        self.conflated_updates += 1;
        self.behind_since.get_or_insert(now);
        metrics::counter!("pat_feed_conflated_total").increment(1);
    }
}

struct Outbox {
    subscribed: Vec<bool>,
    subscriptions: usize,
    queue: VecDeque<Frame>,
    fills: VecDeque<Frame>,
    /// Newest quote per market while the queue is full (empty until needed).
    conflated: Vec<Option<Frame>>,
    /// Quotes dropped by conflation since the last notice.
    conflated_updates: u64,
    behind_since: Option<Instant>,
    closing: Option<&'static str>,
    consumer: Option<Address>,
}

/// One WebSocket connection's outbox and wake-up signal.
pub struct Conn {
    id: u64,
    ip: IpAddr,
    outbox: Mutex<Outbox>,
    /// Notified when the outbox has something to send or the connection must close.
    pub wake: Notify,
}

/// What a connection takes from its outbox to send, oldest first.
#[derive(Debug, Default)]
pub struct Drained {
    pub frames: Vec<Frame>,
    /// Set when the server decided to close the connection.
    pub closing: Option<&'static str>,
}

impl Conn {
    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues the quotes this connection subscribes to; true if it must wake.
    fn offer(&self, frames: &[Frame], settings: &FeedSettings, now: Instant) -> bool {
        let mut out = self.outbox();
        if out.closing.is_some() {
            return false;
        }
        let mut queued = false;
        for frame in frames {
            if out.subscribed[frame.market as usize] {
                out.enqueue(frame.clone(), settings.queue_capacity, now);
                queued = true;
            }
        }
        if out.behind_since.is_some_and(|t| now.duration_since(t) > settings.lag_limit) {
            out.closing = Some(reason::SLOW_CONSUMER);
        }
        queued || out.closing.is_some()
    }

    fn offer_fill(&self, frame: &Frame, settings: &FeedSettings) {
        let mut out = self.outbox();
        if out.fills.len() >= settings.queue_capacity {
            out.closing = Some(reason::SLOW_CONSUMER);
        } else {
            out.fills.push_back(frame.clone());
        }
        drop(out);
        self.wake.notify_one();
    }

    /// Takes everything pending, in the order to send it: fill updates,
    /// queued quotes, then (after a conflation notice) the newest quote of
    /// every market that overflowed.
    pub fn drain(&self, into: &mut Drained) {
        let mut out = self.outbox();
        into.closing = out.closing;
        into.frames.extend(out.fills.drain(..));
        into.frames.extend(out.queue.drain(..));
        if out.conflated_updates == 0 {
            // Not conflating since the last drain: the client keeps up.
            out.behind_since = None;
            return;
        }
        let markets: Vec<Frame> = out.conflated.iter_mut().filter_map(Option::take).collect();
        let notice = serde_json::json!({
            "type": "conflated",
            "dropped": out.conflated_updates - markets.len() as u64,
            "markets": markets.len(),
        });
        into.frames.push(Frame::other(notice.to_string()));
        into.frames.extend(markets);
        out.conflated_updates = 0;
    }
}

struct Latest {
    seq: u64,
    body: QuoteBody,
}

/// The quote table's current validity (it moves every tick, while a quiet
/// market's latest quote stays as it was published).
pub type Validity = Arc<dyn Fn() -> u64 + Send + Sync>;

#[derive(Default)]
struct Conns {
    all: HashMap<u64, Arc<Conn>>,
    by_consumer: HashMap<Address, Vec<Arc<Conn>>>,
    per_ip: HashMap<IpAddr, usize>,
}

/// The quote table the feed serves and the connections it serves it to.
pub struct Hub {
    pub settings: FeedSettings,
    /// Market keys by market index, with their three parts as text for patterns.
    markets: Vec<(MarketKey, [String; 3])>,
    latest: Mutex<Vec<Latest>>,
    valid_until_ms: Validity,
    conns: Mutex<Conns>,
    next_id: AtomicU64,
}

impl Hub {
    /// A hub for `markets` (in market-index order) with their current quotes;
    /// `valid_until_ms` gives the quote table's validity for snapshots.
    pub fn new(settings: FeedSettings, markets: Vec<(MarketKey, Quote)>, valid_until_ms: Validity) -> Self {
        let latest =
            markets.iter().map(|(key, quote)| Latest { seq: quote.seq, body: QuoteBody::new(key, quote) }).collect();
        let markets = markets
            .into_iter()
            .map(|(key, _)| {
                let parts = [key.segment_type.to_string(), key.window.to_string(), key.band.to_string()];
                (key, parts)
            })
            .collect();
        let (latest, next_id) = (Mutex::new(latest), AtomicU64::new(1));
        Self { settings, markets, latest, valid_until_ms, conns: Mutex::default(), next_id }
    }

    fn latest(&self) -> MutexGuard<'_, Vec<Latest>> {
        self.latest.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn conns(&self) -> MutexGuard<'_, Conns> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serializes the quotes newer than the table's and sends them to every
    /// subscriber. Quotes at or below the table's `seq` are ignored, so a
    /// resync may offer the whole table.
    pub fn publish_quotes(&self, quotes: &[Quote]) {
        let (ts, now) = (now_us(), Instant::now());
        let mut latest = self.latest();
        let mut frames = Vec::with_capacity(quotes.len());
        for quote in quotes {
            let i = quote.market.0 as usize;
            let Some(entry) = latest.get_mut(i) else { continue };
            if quote.seq <= entry.seq {
                continue;
            }
            let body = QuoteBody::new(&self.markets[i].0, quote);
            let text =
                serde_json::to_string(&QuoteMessage { kind: "quote", quote: &body, ts }).expect("a quote serializes");
            *entry = Latest { seq: quote.seq, body };
            frames.push(Frame::new(&text, i as u32, now));
        }
        if frames.is_empty() {
            return;
        }
        metrics::counter!("pat_feed_quotes_published_total").increment(frames.len() as u64);
        // Connections are offered the frames while the table is locked, so a
        // subscription's snapshot and the quotes after it cannot interleave.
        let conns = self.conns();
        for conn in conns.all.values() {
            if conn.offer(&frames, &self.settings, now) {
                conn.wake.notify_one();
            }
        }
    }

    /// Sends a fill's new status to the connections authenticated as its consumer.
    pub fn publish_fill(&self, update: &FillUpdate) {
        let conns = self.conns();
        let Some(owners) = conns.by_consumer.get(&update.consumer) else { return };
        let (status, tx_hash, reason) = status_parts(&update.status);
        let market = self.markets.get(update.market.0 as usize).map(|(k, _)| k.to_string());
        let text = serde_json::json!({
            "type": "fill",
            "fill_id": update.fill_id,
            "market": market,
            "consumer": update.consumer,
            "status": status,
            "tx_hash": tx_hash,
            "reason": reason,
            "ts": now_us(),
        });
        let frame = Frame::other(text.to_string());
        for conn in owners {
            conn.offer_fill(&frame, &self.settings);
        }
    }

    /// Registers a connection from `ip`, refused past the per-IP limit.
    pub fn connect(&self, ip: IpAddr) -> Result<Arc<Conn>, FeedError> {
        let mut conns = self.conns();
        let count = conns.per_ip.entry(ip).or_default();
        if *count >= self.settings.connections_per_ip_max {
            return Err(FeedError::new(
                Code::TooManyConnections,
                format!("at most {} connections per IP address", self.settings.connections_per_ip_max),
            ));
        }
        *count += 1;
        let conn = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            ip,
            outbox: Mutex::new(Outbox {
                subscribed: vec![false; self.markets.len()],
                subscriptions: 0,
                queue: VecDeque::new(),
                fills: VecDeque::new(),
                conflated: Vec::new(),
                conflated_updates: 0,
                behind_since: None,
                closing: None,
                consumer: None,
            }),
            wake: Notify::new(),
        });
        conns.all.insert(conn.id, conn.clone());
        metrics::gauge!("pat_feed_clients").set(conns.all.len() as f64);
        Ok(conn)
    }

    /// Forgets a connection (it closed).
    pub fn disconnect(&self, conn: &Conn) {
        let mut conns = self.conns();
        if conns.all.remove(&conn.id).is_none() {
            return;
        }
        if let Some(count) = conns.per_ip.get_mut(&conn.ip) {
            *count -= 1;
            if *count == 0 {
                conns.per_ip.remove(&conn.ip);
            }
        }
        if let Some(consumer) = conn.outbox().consumer {
            remove_owner(&mut conns, consumer, conn.id);
        }
        metrics::gauge!("pat_feed_clients").set(conns.all.len() as f64);
    }

    /// Subscribes `conn` to every market the entries name and queues a
    /// snapshot of each; all or nothing. Returns the markets' keys.
    pub fn subscribe(&self, conn: &Conn, entries: &[String]) -> Result<Vec<String>, FeedError> {
        let markets = self.resolve_all(entries)?;
        let latest = self.latest();
        let mut out = conn.outbox();
        let added = markets.iter().filter(|&&m| !out.subscribed[m as usize]).count();
        if out.subscriptions + added > self.settings.subscriptions_max {
            return Err(FeedError::new(
                Code::TooManySubscriptions,
                format!(
                    "{} subscriptions plus {added} new would pass the limit of {}",
                    out.subscriptions, self.settings.subscriptions_max
                ),
            ));
        }
        out.subscriptions += added;
        let now = Instant::now();
        // As of now: the validity the quote table gives, and the time it is sent.
        let (valid_until_ms, ts) = ((self.valid_until_ms)(), now_us());
        for &m in &markets {
            let frame = snapshot(&latest[m as usize], m, valid_until_ms, ts);
            out.subscribed[m as usize] = true;
            // Queued or conflated like a quote: a conflated quote is older than
            // the snapshot and a queued one is sent before it.
            out.enqueue(frame, self.settings.queue_capacity, now);
        }
        drop(out);
        drop(latest);
        conn.wake.notify_one();
        Ok(markets.iter().map(|&m| self.markets[m as usize].0.to_string()).collect())
    }

    /// Ends `conn`'s subscriptions to the markets the entries name, dropping
    /// their quotes still queued. Returns the keys it was subscribed to.
    pub fn unsubscribe(&self, conn: &Conn, entries: &[String]) -> Result<Vec<String>, FeedError> {
        let markets = self.resolve_all(entries)?;
        let mut out = conn.outbox();
        let mut removed = Vec::new();
        for &m in &markets {
            let m = m as usize;
            if std::mem::replace(&mut out.subscribed[m], false) {
                out.subscriptions -= 1;
                removed.push(self.markets[m].0.to_string());
            }
            if let Some(slot) = out.conflated.get_mut(m) {
                *slot = None;
            }
        }
        let out = &mut *out;
        out.queue.retain(|f| f.market == u32::MAX || out.subscribed[f.market as usize]);
        Ok(removed)
    }

    /// Marks `conn` as `consumer`'s: its fills' status changes go to it.
    pub fn authenticate(&self, conn: &Arc<Conn>, consumer: Address) {
        let mut conns = self.conns();
        let previous = conn.outbox().consumer.replace(consumer);
        if let Some(previous) = previous {
            remove_owner(&mut conns, previous, conn.id);
        }
        conns.by_consumer.entry(consumer).or_default().push(conn.clone());
    }

    fn resolve_all(&self, entries: &[String]) -> Result<Vec<u32>, FeedError> {
        let mut markets = Vec::new();
        for entry in entries {
            markets.extend(resolve(entry, &self.markets)?);
        }
        markets.sort_unstable();
        markets.dedup();
        Ok(markets)
    }
}

/// A market's snapshot: its latest quote, with the table's current validity
/// and the time it is sent. Serialized per subscribe: a cached one would
/// carry the validity and time of the first subscriber.
fn snapshot(latest: &Latest, market: u32, valid_until_ms: u64, ts: u64) -> Frame {
    let body = QuoteBody { valid_until_ms, ..latest.body.clone() };
    let text = serde_json::to_string(&QuoteMessage { kind: "snapshot", quote: &body, ts }).expect("a quote serializes");
    Frame { wire: text_frame(&text), published: Instant::now(), market }
}

fn remove_owner(conns: &mut Conns, consumer: Address, id: u64) {
    if let Some(list) = conns.by_consumer.get_mut(&consumer) {
        list.retain(|c| c.id != id);
        if list.is_empty() {
            conns.by_consumer.remove(&consumer);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use pat_engine::MarketId;

    use super::*;

    const KEYS: [&str; 3] = ["PURCHASE_INTENT|1D|0.50-0.70", "PURCHASE_INTENT|7D|0.50-0.70", "JOB_SEARCH|1D|0.50-0.70"];

    fn hub(queue_capacity: usize, lag_limit: Duration) -> Hub {
        let settings = FeedSettings { queue_capacity, lag_limit, ..FeedSettings::default() };
        let markets = KEYS.iter().enumerate().map(|(i, k)| (k.parse().unwrap(), quote(i, 1))).collect();
        Hub::new(settings, markets, Arc::new(|| 5_000))
    }

    fn quote(market: usize, seq: u64) -> Quote {
        Quote { bid: 90 + seq as u128, ask: 110 + seq as u128, seq, ..Quote::unquoted(MarketId(market as u32)) }
    }

    fn texts(conn: &Conn) -> Vec<Value> {
        let mut drained = Drained::default();
        conn.drain(&mut drained);
        drained.frames.iter().map(|f| serde_json::from_slice(payload(&f.wire)).unwrap()).collect()
    }

    /// The message inside a server frame.
    fn payload(wire: &[u8]) -> &[u8] {
        let header = match wire[1] & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        &wire[header..]
    }

    use serde_json::Value;

    #[test]
    fn a_full_outbox_keeps_the_newest_quote_per_market_and_says_how_many_it_dropped() {
        let hub = hub(2, Duration::from_secs(60));
        let conn = hub.connect(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
        assert_eq!(hub.subscribe(&conn, &["PURCHASE_INTENT|*|*".into()]).unwrap().len(), 2);
        assert_eq!(texts(&conn).len(), 2, "two snapshots");
        for seq in 2..1_000 {
            hub.publish_quotes(&[quote(0, seq), quote(1, seq), quote(2, seq)]);
        }
        let out = conn.outbox();
        assert_eq!((out.queue.len(), out.conflated.iter().flatten().count()), (2, 2), "memory stays bounded");
        drop(out);
        let sent = texts(&conn);
        let kinds: Vec<&str> = sent.iter().map(|m| m["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["quote", "quote", "conflated", "quote", "quote"]);
        assert_eq!(sent[2]["dropped"], 2 * 998 - 2 - 2);
        assert_eq!((sent[3]["seq"].as_u64(), sent[4]["seq"].as_u64()), (Some(999), Some(999)), "the newest survive");
        assert!(sent.iter().all(|m| m["market"] != KEYS[2]), "not subscribed");
    }

    #[test]
    fn a_client_behind_past_the_lag_limit_is_closed() {
        let hub = hub(1, Duration::from_millis(20));
        let conn = hub.connect(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
        hub.subscribe(&conn, &[KEYS[0].into()]).unwrap();
        texts(&conn);
        hub.publish_quotes(&[quote(0, 2)]);
        hub.publish_quotes(&[quote(0, 3)]);
        assert_eq!(texts(&conn).len(), 3, "behind briefly: a quote, the notice, the newest quote");
        hub.publish_quotes(&[quote(0, 4)]);
        assert_eq!(texts(&conn).len(), 1, "caught up");
        std::thread::sleep(Duration::from_millis(30));
        hub.publish_quotes(&[quote(0, 5)]);
        hub.publish_quotes(&[quote(0, 6)]);
        std::thread::sleep(Duration::from_millis(30));
        hub.publish_quotes(&[quote(0, 7)]);
        let mut drained = Drained::default();
        conn.drain(&mut drained);
        assert_eq!(drained.closing, Some(reason::SLOW_CONSUMER), "behind since seq 6, past the limit");
    }

    #[test]
    fn a_snapshot_replaces_a_conflated_quote_and_stale_quotes_are_ignored() {
        let hub = hub(1, Duration::from_secs(60));
        let conn = hub.connect(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
        hub.subscribe(&conn, &[KEYS[0].into()]).unwrap();
        hub.publish_quotes(&[quote(0, 2)]);
        hub.publish_quotes(&[quote(0, 1)]);
        hub.subscribe(&conn, &[KEYS[0].into()]).unwrap();
        let seqs: Vec<(String, u64)> = texts(&conn)
            .iter()
            .map(|m| (m["type"].as_str().unwrap().to_owned(), m["seq"].as_u64().unwrap_or(0)))
            .collect();
        let expected = [("snapshot", 1), ("conflated", 0), ("snapshot", 2)];
        assert_eq!(seqs, expected.map(|(t, s)| (t.to_owned(), s)));
    }

    #[test]
    fn connections_per_ip_are_limited_and_released() {
        let hub =
            Hub::new(FeedSettings { connections_per_ip_max: 1, ..FeedSettings::default() }, Vec::new(), Arc::new(|| 0));
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let first = hub.connect(ip).unwrap();
        assert_eq!(hub.connect(ip).err().unwrap().code, Code::TooManyConnections);
        hub.connect(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))).unwrap();
        hub.disconnect(&first);
        hub.connect(ip).unwrap();
    }
}
