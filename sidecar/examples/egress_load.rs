//! A small keep-alive HTTP load client for the egress benchmark (`bench/egress/run.sh`).
//!
//! `wrk` drives plain-HTTP proxying; this client covers what wrk cannot: CONNECT tunnels with
//! keep-alive requests inside, and a fixed request rate for latency at 1k req/s.
//!
//! Usage: `egress_load --target 127.0.0.1:18080 [--proxy 127.0.0.1:15001 --mode connect|absolute]
//!         [--conns 32] [--secs 10] [--rate 1000]`. Prints one JSON object.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

#[derive(Clone)]
struct Args {
    target: String,
    proxy: Option<SocketAddr>,
    mode: String,
    conns: usize,
    secs: u64,
    rate: Option<f64>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        target: "127.0.0.1:18080".into(),
        proxy: None,
        mode: "direct".into(),
        conns: 32,
        secs: 10,
        rate: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it
            .next()
            .ok_or_else(|| anyhow::anyhow!("{k} needs a value"))?;
        match k.as_str() {
            "--target" => a.target = v,
            "--proxy" => a.proxy = Some(v.parse()?),
            "--mode" => a.mode = v,
            "--conns" => a.conns = v.parse()?,
            "--secs" => a.secs = v.parse()?,
            "--rate" => a.rate = Some(v.parse()?),
            _ => anyhow::bail!("unknown argument {k}"),
        }
    }
    Ok(a)
}

async fn open(a: &Args) -> anyhow::Result<TcpStream> {
    let addr = a.proxy.map_or_else(|| a.target.clone(), |p| p.to_string());
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    if a.mode == "connect" {
        let req = format!("CONNECT {t} HTTP/1.1\r\nHost: {t}\r\n\r\n", t = a.target);
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        let mut tmp = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut tmp).await?;
            anyhow::ensure!(n > 0, "proxy closed during CONNECT");
            buf.extend_from_slice(&tmp[..n]);
        }
        anyhow::ensure!(
            buf.starts_with(b"HTTP/1.1 200") || buf.starts_with(b"HTTP/1.0 200"),
            "CONNECT refused: {}",
            String::from_utf8_lossy(&buf)
        );
    }
    Ok(s)
}

/// Reads one response with a Content-Length body; `buf` keeps leftovers.
async fn response(s: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    let mut tmp = [0u8; 16 * 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(n) = r.parse(buf)? {
            anyhow::ensure!(r.code == Some(200), "status {:?}", r.code);
            let len: usize = r
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < n + len {
                let k = s.read(&mut tmp).await?;
                anyhow::ensure!(k > 0, "closed mid-body");
                buf.extend_from_slice(&tmp[..k]);
            }
            buf.drain(..n + len);
            return Ok(());
        }
        let k = s.read(&mut tmp).await?;
        anyhow::ensure!(k > 0, "closed");
        buf.extend_from_slice(&tmp[..k]);
    }
}

async fn worker(a: Args, until: Instant, interval: Option<Duration>) -> (Vec<u32>, u64) {
    let mut lat = Vec::with_capacity(1 << 16);
    let mut errors = 0u64;
    let path = if a.mode == "absolute" {
        format!("http://{}/", a.target)
    } else {
        "/".to_string()
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", a.target).into_bytes();
    let mut tick = interval.map(|i| {
        let mut t = tokio::time::interval(i);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    'outer: while Instant::now() < until {
        let Ok(mut s) = open(&a).await else {
            errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let mut buf = Vec::with_capacity(16 * 1024);
        while Instant::now() < until {
            if let Some(t) = tick.as_mut() {
                t.tick().await;
            }
            let t0 = Instant::now();
            if s.write_all(&req).await.is_err() || response(&mut s, &mut buf).await.is_err() {
                errors += 1;
                continue 'outer;
            }
            lat.push(t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        }
    }
    (lat, errors)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let start = Instant::now();
    let until = start + Duration::from_secs(a.secs);
    let interval = a
        .rate
        .map(|r| Duration::from_secs_f64(a.conns as f64 / r.max(1.0)));
    let tasks: Vec<_> = (0..a.conns)
        .map(|_| tokio::spawn(worker(a.clone(), until, interval)))
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |&us| f64::from(us) / 1000.0)
    };
    println!(
        "{{\"requests\":{},\"errors\":{},\"rps\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
        all.len(),
        errors,
        all.len() as f64 / secs,
        pct(0.50),
        pct(0.99)
    );
    Ok(())
}
