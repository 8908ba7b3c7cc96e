//! The consumer's terminal client, on the engine's own EIP-712 code:
//! `pat-market buy` (read the quote, sign, post, wait for `settled`),
//! `pat-market download` (sign an access, stream the fill's data to a
//! directory, resuming a broken download with `Range`) and `pat-market
//! verify` (each payload's hash and its provider's signed listing). The
//! consumer's key comes from `--key-file` or `PAT_CONSUMER_KEY`, never an
//! argument (arguments show in `ps` and shell history).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy_primitives::B256;
use anyhow::{Context, bail, ensure};
use clap::Args as ClapArgs;
use pat_engine::MarketKey;
use pat_engine::money::{format_pat, parse_pat};
use pat_engine::signing::{LocalSigner, sign_access, sign_order_for};
use pat_server::bundle::{self, Manifest, Reader, SegmentHeader};
use pat_server::dto::OrderRequest;
use serde_json::Value;
use zeroize::Zeroizing;

/// The environment variable a consumer's key may come from.
pub const KEY_VAR: &str = "PAT_CONSUMER_KEY";
/// How long a download's access signature is valid: well under the server's hour.
const ACCESS_TTL_SECS: u64 = 600;
/// Tries of a download that breaks off.
const DOWNLOAD_TRIES: u32 = 5;

#[derive(ClapArgs, Debug)]
pub struct Connection {
    /// The engine's HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The engine's config, for the EIP-712 domain (devnet writes `data/devnet.toml`).
    #[arg(long, default_value = "data/devnet.toml")]
    config: PathBuf,
    /// A file holding the consumer's private key (hex); else `PAT_CONSUMER_KEY`.
    #[arg(long)]
    key_file: Option<PathBuf>,
}

#[derive(ClapArgs, Debug)]
pub struct BuyArgs {
    #[command(flatten)]
    connection: Connection,
    /// The market key, e.g. `PURCHASE_INTENT|7D|0.70-0.85`.
    #[arg(long)]
    market: String,
    /// Units to buy.
    #[arg(long)]
    qty: u64,
    /// The highest ask per unit to accept, in PAT (`2.5`); default: the current ask.
    #[arg(long)]
    max_price: Option<String>,
    /// Seconds to wait for the fill to settle on chain.
    #[arg(long, default_value_t = 120)]
    wait: u64,
}

#[derive(ClapArgs, Debug)]
pub struct DownloadArgs {
    #[command(flatten)]
    connection: Connection,
    /// The fill's id (`0x…`).
    fill_id: String,
    /// The directory to unpack the fill's segments into.
    #[arg(long)]
    out: PathBuf,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Connection {
    fn signer(&self) -> anyhow::Result<LocalSigner> {
        let text = Zeroizing::new(match &self.key_file {
            Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
            None => std::env::var(KEY_VAR).with_context(|| format!("no --key-file and no {KEY_VAR}"))?,
        });
        text.trim().parse().context("the consumer key is not a 32-byte hex private key")
    }

    fn domain(&self) -> anyhow::Result<alloy::sol_types::Eip712Domain> {
        let cfg = pat_config::Config::load(&self.config).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(cfg.engine.domain())
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

async fn get_json(http: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    let resp = http.get(url).send().await.with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    let body: Value = resp.json().await.with_context(|| format!("GET {url}: not JSON"))?;
    ensure!(status.is_success(), "GET {url}: {status} {body}");
    Ok(body)
}

pub fn buy(args: &BuyArgs) -> anyhow::Result<ExitCode> {
    let c = &args.connection;
    let (signer, domain) = (c.signer()?, c.domain()?);
    let market: MarketKey = args.market.parse().map_err(|e| anyhow::anyhow!("--market: {e}"))?;
    runtime()?.block_on(async {
        let http = reqwest::Client::new();
        let path = format!("{}/v1/markets/{}", c.url, market.to_string().replace('|', "%7C"));
        let m = get_json(&http, &path).await?;
        if let Some(halt) = m["quote"]["halted"].as_str() {
            bail!("{market} does not quote now: {halt}");
        }
        let ask: u128 = m["quote"]["ask"].as_str().context("the market has no ask")?.parse()?;
        let max_price = match &args.max_price {
            Some(p) => parse_pat(p).map_err(|e| anyhow::anyhow!("--max-price: {e}"))?,
            None => ask,
        };
        let nonce = rand::random::<u64>() >> 1;
        let signed = sign_order_for(&signer, &market, args.qty, max_price, nonce, now_secs() + 60, &domain);
        let body = OrderRequest::from_signed(&signed, &market);
        eprintln!("buying {} x {market} at up to {} PAT per unit", args.qty, format_pat(max_price));
        let resp = http.post(format!("{}/v1/orders", c.url)).json(&body).send().await?;
        let status = resp.status();
        let fill: Value = resp.json().await?;
        ensure!(status.as_u16() == 201, "the order was refused: {status} {fill}");
        let id = fill["fill_id"].as_str().context("a fill id")?.to_owned();
        eprintln!(
            "accepted: fill {id}, {} PAT; waiting for settlement on chain",
            format_pat(fill["ask_paid"].as_str().unwrap_or("0").parse()?)
        );
        let deadline = Instant::now() + Duration::from_secs(args.wait);
        loop {
            let f = get_json(&http, &format!("{}/v1/fills/{id}", c.url)).await?;
            match f["status"].as_str() {
                Some("settled") => {
                    println!("{}", serde_json::to_string_pretty(&f)?);
                    return Ok(ExitCode::SUCCESS);
                }
                Some("failed") => {
                    println!("{}", serde_json::to_string_pretty(&f)?);
                    eprintln!("the fill failed on chain: {}", f["reason"]);
                    return Ok(ExitCode::FAILURE);
                }
                _ if Instant::now() >= deadline => bail!("fill {id} did not settle within {} s: {f}", args.wait),
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    })
}

pub fn download(args: &DownloadArgs) -> anyhow::Result<ExitCode> {
    let c = &args.connection;
    let (signer, domain) = (c.signer()?, c.domain()?);
    let fill_id: B256 = args.fill_id.parse().context("the fill id is 0x and 64 hex digits")?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    if let Ok(bytes) = std::fs::read(args.out.join("manifest.json")) {
        let other: Manifest = serde_json::from_slice(&bytes).context("the --out directory's manifest.json")?;
        ensure!(
            other.fill_id == fill_id,
            "{} holds fill {}: download into another directory",
            args.out.display(),
            other.fill_id
        );
    }
    let partial = args.out.join(format!(".{fill_id}.partial"));
    runtime()?.block_on(async {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(30))
            .build()?;
        let url = format!("{}/v1/fills/{fill_id}/data", c.url);
        let mut stalled = 0;
        loop {
            let before = std::fs::metadata(&partial).map_or(0, |m| m.len());
            match fetch(&http, &url, &signer, fill_id, &domain, &partial).await {
                Ok(()) => break,
                Err(Fetch::Refused(e)) => return Err(e),
                Err(Fetch::Broken(e)) => {
                    // Tries count only while nothing arrives: a download that moves goes on.
                    let moved = std::fs::metadata(&partial).map_or(0, |m| m.len()) > before;
                    stalled = if moved { 0 } else { stalled + 1 };
                    ensure!(stalled < DOWNLOAD_TRIES, "{e:#} ({stalled} tries without progress)");
                    eprintln!("download broke off ({e:#}); resuming");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
        anyhow::Ok(())
    })?;
    let unpacked = unpack(&partial, &args.out).and_then(|manifest| {
        let expected = (fill_id, signer.address(), domain.chain_id.map(|c| c.to::<u64>()), domain.verifying_contract);
        let got = (manifest.fill_id, manifest.consumer, Some(manifest.chain_id), Some(manifest.marketplace));
        ensure!(
            got == expected,
            "the delivery is of {got:?}, not of {expected:?} (fill, consumer, chain, marketplace)"
        );
        Ok(manifest.segments)
    });
    // A body that does not unpack is not resumed again: the next run fetches it afresh.
    std::fs::remove_file(&partial)?;
    let count = unpacked?;
    eprintln!("fill {fill_id}: {count} segments in {}", args.out.display());
    verify_dir(&args.out)
}

enum Fetch {
    /// The server refused: retrying will not help.
    Refused(anyhow::Error),
    /// The connection or the body broke, or the store is down: resume.
    Broken(anyhow::Error),
}

/// Appends the rest of the body to `partial`, resuming where it stopped.
async fn fetch(
    http: &reqwest::Client,
    url: &str,
    signer: &LocalSigner,
    fill_id: B256,
    domain: &alloy::sol_types::Eip712Domain,
    partial: &Path,
) -> Result<(), Fetch> {
    let broken = |e: anyhow::Error| Fetch::Broken(e);
    let have = std::fs::metadata(partial).map_or(0, |m| m.len());
    let expires = now_secs() + ACCESS_TTL_SECS;
    let (access, signature) = sign_access(signer, fill_id, expires, domain);
    let mut req = http.get(url).header(
        "authorization",
        pat_server::access::authorization(pat_server::access::Party::Consumer, access.consumer, expires, &signature),
    );
    if have > 0 {
        // A resumption of this very body, or the whole body if it changed.
        req = req.header("range", format!("bytes={have}-")).header("if-range", bundle::etag(fill_id));
    }
    let mut resp = req.send().await.map_err(|e| broken(e.into()))?;
    let status = resp.status().as_u16();
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let append = match status {
        206 if header("content-range").is_some_and(|r| r.starts_with(&format!("bytes {have}-"))) => true,
        200 => false,
        // Past the end: complete if the body is exactly this long, else start again.
        416 if header("content-range") == Some(format!("bytes */{have}")) => return Ok(()),
        206 | 416 => {
            std::fs::remove_file(partial).map_err(|e| Fetch::Refused(e.into()))?;
            return Err(broken(anyhow::anyhow!("the partial download does not fit the body; starting again")));
        }
        503 => return Err(broken(anyhow::anyhow!("{}", resp.text().await.unwrap_or_default()))),
        _ => return Err(Fetch::Refused(anyhow::anyhow!("{status}: {}", resp.text().await.unwrap_or_default()))),
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(partial)
        .map_err(|e| Fetch::Refused(e.into()))?;
    let expected = resp.content_length();
    let mut got = 0u64;
    while let Some(chunk) = resp.chunk().await.map_err(|e| broken(e.into()))? {
        file.write_all(&chunk).map_err(|e| Fetch::Refused(e.into()))?;
        got += chunk.len() as u64;
    }
    file.sync_all().map_err(|e| Fetch::Refused(e.into()))?;
    match expected {
        Some(n) if n != got => Err(broken(anyhow::anyhow!("{got} of {n} bytes"))),
        _ => Ok(()),
    }
}

/// Writes `manifest.json`, and `segment-{id}.json` and `segment-{id}.payload`
/// for each segment of the body in `body`; the manifest.
fn unpack(body: &Path, out: &Path) -> anyhow::Result<Manifest> {
    let file = std::io::BufReader::new(std::fs::File::open(body)?);
    let (manifest, mut reader) = Reader::new(file)?;
    std::fs::write(out.join("manifest.json"), serde_json::to_vec_pretty(&manifest)?)?;
    while let Some((header, payload)) = reader.next_segment()? {
        std::fs::write(out.join(format!("segment-{}.json", header.segment_id)), serde_json::to_vec_pretty(&header)?)?;
        std::fs::write(out.join(format!("segment-{}.payload", header.segment_id)), &payload)?;
    }
    Ok(manifest)
}

/// `pat-market verify DIR`: every segment of an unpacked download hashes to
/// its signed `payloadHash`, and its listing is signed by its provider.
pub fn verify_dir(dir: &Path) -> anyhow::Result<ExitCode> {
    let read =
        |name: &str| std::fs::read(dir.join(name)).with_context(|| format!("reading {}", dir.join(name).display()));
    let manifest: Manifest = serde_json::from_slice(&read("manifest.json")?).context("manifest.json")?;
    let mut headers: Vec<SegmentHeader> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with("segment-") && name.ends_with(".json") {
            headers.push(serde_json::from_slice(&read(&name)?).with_context(|| name.clone())?);
        }
    }
    headers.sort_by_key(|h| h.segment_id);
    let mut bad = 0;
    for header in &headers {
        let payload = read(&format!("segment-{}.payload", header.segment_id))?;
        match bundle::verify_segment(&manifest, header, &payload) {
            Ok(()) => println!(
                "ok   segment {}: {} bytes, payload {}, signed by provider {}",
                header.segment_id, header.payload_bytes, header.submission.payloadHash, header.submission.provider
            ),
            Err(e) => {
                println!("FAIL {e}");
                bad += 1;
            }
        }
    }
    if headers.len() != manifest.segments as usize {
        println!("FAIL the manifest names {} segments, {} are here", manifest.segments, headers.len());
        bad += 1;
    }
    println!(
        "fill {} in {} (chain {}, marketplace {}): {} segments, {}",
        manifest.fill_id,
        manifest.market,
        manifest.chain_id,
        manifest.marketplace,
        headers.len(),
        if bad == 0 { "all verified".to_owned() } else { format!("{bad} failed") }
    );
    Ok(if bad == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
