//! `eggroll bench --federation`: object and table transfers between two local roll-sites,
//! beside a raw loopback TCP stream and a raw tonic stream of the same bytes, in one run.

use eggroll_core::codec::Bytes;
use eggroll_core::config::EggrollConfig;
use eggroll_federation::{Federation, FederationOptions, Party};
use eggroll_proto::proxy::data_transfer_service_client::DataTransferServiceClient;
use eggroll_proto::proxy::data_transfer_service_server::{
    DataTransferService, DataTransferServiceServer,
};
use eggroll_proto::proxy::{Data, Metadata, Packet, PollingFrame};
use eggroll_rollpair::{Options, RollPair, RollPairContext};
use std::error::Error;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

type Res<T> = Result<T, Box<dyn Error>>;

/// Runs of each object measure: this machine is shared, one run can land on a busy moment.
const OBJECT_RUNS: usize = 3;
/// Table transfers measured per mode.
const TABLE_RUNS: usize = 5;

/// A gRPC service that counts the bytes pushed to it: the raw tonic baseline.
struct Sink;

#[tonic::async_trait]
impl DataTransferService for Sink {
    async fn push(&self, req: Request<Streaming<Packet>>) -> Result<Response<Metadata>, Status> {
        let mut s = req.into_inner();
        let mut n = 0i64;
        while let Some(p) = s.message().await? {
            n += p.body.map(|b| b.value.len() as i64).unwrap_or(0);
        }
        Ok(Response::new(Metadata {
            ack: n,
            ..Default::default()
        }))
    }
    type pullStream = ReceiverStream<Result<Packet, Status>>;
    async fn pull(&self, _: Request<Metadata>) -> Result<Response<Self::pullStream>, Status> {
        Err(Status::unimplemented("sink"))
    }
    async fn unary_call(&self, _: Request<Packet>) -> Result<Response<Packet>, Status> {
        Err(Status::unimplemented("sink"))
    }
    type pollingStream = ReceiverStream<Result<PollingFrame, Status>>;
    async fn polling(
        &self,
        _: Request<Streaming<PollingFrame>>,
    ) -> Result<Response<Self::pollingStream>, Status> {
        Err(Status::unimplemented("sink"))
    }
}

/// CPU time (user and system) this process used so far: the roll-sites, clients and
/// baselines all run in it, so the difference over a measure is what that measure cost.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn mbs(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64().max(1e-9)
}

async fn raw_tcp(data: &bytes::Bytes) -> Res<Duration> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let len = data.len();
    let reader = tokio::spawn(async move {
        let (mut s, _) = l.accept().await?;
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0;
        while n < len {
            let r = s.read(&mut buf).await?;
            if r == 0 {
                break;
            }
            n += r;
        }
        Ok::<usize, std::io::Error>(n)
    });
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    for chunk in data.chunks(1 << 20) {
        s.write_all(chunk).await?;
    }
    s.shutdown().await?;
    let n = reader.await??;
    if n != len {
        return Err(format!("raw TCP moved {n} of {len} bytes").into());
    }
    Ok(started.elapsed())
}

async fn raw_tonic(data: &bytes::Bytes, chunk: usize, max: usize) -> Res<Duration> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .initial_stream_window_size(eggroll_rollsite::forward::STREAM_WINDOW)
            .initial_connection_window_size(eggroll_rollsite::forward::CONNECTION_WINDOW)
            .max_frame_size(eggroll_rollsite::forward::MAX_FRAME)
            .add_service(
                DataTransferServiceServer::new(Sink)
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .serve_with_incoming(TcpListenerStream::new(l)),
    );
    let ch = eggroll_rollsite::forward::channel(&addr.to_string(), None, Duration::from_secs(5))?;
    let mut client = DataTransferServiceClient::new(ch)
        .max_encoding_message_size(max)
        .max_decoding_message_size(max);
    let started = Instant::now();
    let d = data.clone();
    // Packets carry slices of one buffer, as the federation client's do.
    let packets = tokio_stream::iter(0..data.len().div_ceil(chunk)).map(move |i| Packet {
        header: Some(Metadata::default()),
        body: Some(Data {
            key: String::new(),
            value: d.slice(i * chunk..((i + 1) * chunk).min(d.len())),
        }),
    });
    let ack = client.push(packets).await?.into_inner();
    let took = started.elapsed();
    server.abort();
    if ack.ack as usize != data.len() {
        return Err(format!("raw tonic moved {} of {} bytes", ack.ack, data.len()).into());
    }
    Ok(took)
}

use tokio_stream::StreamExt;

/// Runs the federation bench: `(object MiB, table rows, value bytes, partitions)`.
pub fn run(sizes: (u64, u64, usize, u32), mut config: EggrollConfig) -> Res<()> {
    let (object_mib, rows, value_bytes, partitions) = sizes;
    // As `eggroll rollsite` does: the roll-sites run in this process.
    crate::allocator::tune_for_packets();
    let dir = tempfile::tempdir()?;
    config.data_dir = dir.path().join("eggroll");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let len = (object_mib << 20) as usize;
        println!(
            "eggroll bench --federation: {object_mib} MiB object; table of {rows} pairs with \
             {value_bytes}-byte values in {partitions} partitions; {} cores; data in {}",
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            dir.path().display()
        );
        let mut blob = vec![0u8; len];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for c in blob.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.to_le_bytes();
            c.copy_from_slice(&b[..c.len()]);
        }
        let blob = bytes::Bytes::from(blob);
        let rs = config.rollsite.clone();
        let chunk = rs.batch_body_bytes as usize;
        let max = rs.max_message_bytes as usize;

        // Two parties on this machine, each with its own roll-site and buffer.
        let mut sites = Vec::new();
        for (party, other) in [("9999", "10000"), ("10000", "9999")] {
            let mut c = config.clone();
            c.data_dir = dir.path().join(format!("party-{party}"));
            c.rollsite.party_id = party.into();
            c.rollsite.port = 0;
            c.rollsite.route_table = dir.path().join(format!("routes-{party}.json"));
            std::fs::write(&c.rollsite.route_table, r#"{"route_table": {}}"#)?;
            let s = eggroll_rollsite::start(&c).await?;
            sites.push((party, other, c, s));
        }
        let addrs: Vec<_> = sites.iter().map(|s| s.3.addr()).collect();
        for (i, (_, other, c, s)) in sites.iter().enumerate() {
            let to = addrs[1 - i];
            let table = format!(
                r#"{{"route_table": {{"{other}": {{"default": [{{"ip": "127.0.0.1", "port": {}}}]}}}}}}"#,
                to.port()
            );
            std::fs::write(&c.rollsite.route_table, table)?;
            s.site().routes.reload_if_changed();
        }
        let opts = FederationOptions::from_config(&rs);
        let (guest, host) = (Party::new("guest", "9999"), Party::new("host", "10000"));
        let grpc = (
            Federation::connect(&addrs[0].to_string(), "bench", guest.clone(), opts.clone())?,
            Federation::connect(&addrs[1].to_string(), "bench", host.clone(), opts.clone())?,
        );
        let in_process = (
            Federation::in_process(sites[0].3.site(), "bench", guest.clone(), opts.clone())?,
            Federation::in_process(sites[1].3.site(), "bench", host.clone(), opts)?,
        );

        // Baselines, measured in the same run.
        let c0 = cpu_time();
        let tcp = raw_tcp(&blob).await?;
        let (c1, tonic) = (cpu_time(), raw_tonic(&blob, chunk, max).await?);
        let (tcp_cpu, tonic_cpu) = (c1 - c0, cpu_time() - c1);
        let n = blob.len() as u64;
        println!("{:<58} {:>8} {:>9}", "measure", "MiB/s", "vs tonic");
        // Each ratio is against the raw tonic stream measured just before it: this machine is
        // shared, and its load drifts within a run.
        let line = |what: &str, tonic: Duration, bytes: u64, d: Duration, extra: String| {
            let base = tonic.as_secs_f64() * bytes as f64 / n as f64;
            println!(
                "{:<58} {:>8.0} {:>9.2}{extra}",
                what,
                mbs(bytes, d),
                base / d.as_secs_f64()
            )
        };
        // CPU seconds per GiB moved and cores kept busy: on a shared machine, the cost of a
        // path is steadier than its wall time.
        let cpu = |c: Duration, bytes: u64, wall: Duration| {
            format!(
                "   CPU {:.2} s/GiB, {:.1} cores",
                c.as_secs_f64() / (bytes as f64 / (1u64 << 30) as f64),
                c.as_secs_f64() / wall.as_secs_f64().max(1e-9)
            )
        };
        line("raw loopback TCP stream", tonic, n, tcp, cpu(tcp_cpu, n, tcp));
        let label = format!("raw tonic stream (one push, {} KiB packets)", chunk >> 10);
        line(&label, tonic, n, tonic, cpu(tonic_cpu, n, tonic));

        let mut end_to_end = Vec::new();
        let modes = [
            ("via each party's roll-site process (3 gRPC hops)", &grpc),
            ("roll-sites in the parties' processes (1 gRPC hop)", &in_process),
        ];
        for (mode, (fa, fb)) in modes {
            println!("{mode}:");
            // Several runs, each against a raw tonic stream measured just before it; the
            // median run is printed, and every run's ratio beside it.
            // One run more than measured: the first object a roll-site receives has no
            // spare file to be written over (see rollsite::spares), a cost a long-running
            // roll-site pays once; it is printed on its own.
            let mut runs = Vec::new();
            for r in 0..=OBJECT_RUNS {
                let c0 = cpu_time();
                let tonic = raw_tonic(&blob, chunk, max).await?;
                let tonic_cpu = cpu_time() - c0;
                let c0 = cpu_time();
                let started = Instant::now();
                let (fb2, g) = (fb.clone(), guest.clone());
                let name = format!("object-{}-{r}", end_to_end.len());
                let name2 = name.clone();
                let getting = tokio::spawn(async move { fb2.get_bytes(&name2, "0", &[g]).await });
                fa.remote_bytes(blob.clone(), &name, "0", std::slice::from_ref(&host))
                    .await?;
                let pushed = started.elapsed();
                let got = getting.await??;
                let object = started.elapsed();
                let object_cpu = cpu_time() - c0;
                if got.first().map(|g| &g[..]) != Some(&blob[..]) {
                    return Err("the object arrived changed".into());
                }
                drop(got);
                runs.push((tonic, tonic_cpu, pushed, object, object_cpu));
            }
            let ratio = |r: &(Duration, Duration, Duration, Duration, Duration)| {
                r.0.as_secs_f64() / r.3.as_secs_f64()
            };
            let first = runs.remove(0);
            runs.sort_by(|x, y| ratio(x).total_cmp(&ratio(y)));
            let all: Vec<String> = runs.iter().map(|r| format!("{:.2}", ratio(r))).collect();
            let (tonic, tonic_cpu, pushed, object, object_cpu) = runs[runs.len() / 2];
            end_to_end.push(ratio(&runs[runs.len() / 2]));
            let c = cpu(tonic_cpu, n, tonic);
            line("  raw tonic stream, measured just before", tonic, n, tonic, c);
            line("  object: remote (acknowledged, stored)", tonic, n, pushed, String::new());
            let c = cpu(object_cpu, n, object);
            line("  object: remote + get (end to end)", tonic, n, object, c);
            println!("  (median of {OBJECT_RUNS} runs; every run: {})", all.join(" "));
            let c = cpu(first.4, n, first.3);
            line("  first object of the run (no spare file yet)", first.0, n, first.3, c);
        }

        // Tables last: the RocksDB flushes and compactions they leave behind would otherwise
        // run during the object measures.
        let ctx_a = RollPairContext::standalone(dir.path().join("session-a"))?;
        let ctx_b = RollPairContext::standalone(dir.path().join("session-b"))?;
        let value = vec![7u8; value_bytes];
        let table: RollPair<u64, Bytes> = tokio::task::block_in_place(|| {
            ctx_a.parallelize(
                (0..rows).map(|i| (i, Bytes(value.clone()))),
                Options::partitions(partitions),
            )
        })?;
        let pair_bytes = rows * (value_bytes as u64 + 10);
        // The table baseline: one RocksDB scanned and copied into another on this machine,
        // the same pairs, no network; what any table transfer must at least do.
        let encoded: Vec<(Vec<u8>, Vec<u8>)> = (0..rows)
            .map(|i| {
                Ok((
                    eggroll_core::codec::encode(&i)?,
                    eggroll_core::codec::encode(&Bytes(value.clone()))?,
                ))
            })
            .collect::<Result<_, eggroll_core::CoreError>>()?;
        let (src, dst) = (dir.path().join("raw-src"), dir.path().join("raw-copy"));
        let copy = tokio::task::block_in_place(|| -> Res<Duration> {
            eggroll_eggpair::baseline::write(&src, &encoded, 40_000)?;
            Ok(eggroll_eggpair::baseline::scan_write(
                &src,
                &dst,
                40_000,
                <[u8]>::to_vec,
            )?)
        })?;
        drop(encoded);
        println!(
            "{:<58} {:>8.0}   ({:.0} pairs/s; table ratios below are against this)",
            "raw RocksDB copy of the table's pairs (one thread)",
            mbs(pair_bytes, copy),
            rows as f64 / copy.as_secs_f64()
        );
        // Several runs of each mode, alternating, so that drift and the flushes one run leaves
        // behind fall on both modes alike; the median is printed, and every run beside it.
        let mut took: Vec<Vec<Duration>> = vec![Vec::new(); modes.len()];
        for r in 0..TABLE_RUNS {
            for (i, (_, (fa, fb))) in modes.iter().enumerate() {
                let started = Instant::now();
                let (fb2, ctx2, g) = (fb.clone(), ctx_b.clone(), guest.clone());
                let tname = format!("table-{i}-{r}");
                let tname2 = tname.clone();
                let getting = tokio::spawn(async move {
                    fb2.get_table::<u64, Bytes>(&ctx2, &tname2, "0", &[g]).await
                });
                fa.remote_table(&table, &tname, "0", std::slice::from_ref(&host)).await?;
                let got = getting.await??;
                took[i].push(started.elapsed());
                let count = tokio::task::block_in_place(|| got[0].count())?;
                if count != rows || got[0].partitions() != partitions {
                    return Err(format!("the table arrived with {count} pairs").into());
                }
                let received = got.into_iter().next();
                tokio::task::block_in_place(|| received.map(RollPair::destroy).transpose())?;
            }
        }
        for ((mode, _), runs) in modes.iter().zip(took) {
            let mut sorted = runs.clone();
            sorted.sort();
            let median = sorted[sorted.len() / 2];
            let all: Vec<String> = runs
                .iter()
                .map(|d| format!("{:.2}", copy.as_secs_f64() / d.as_secs_f64()))
                .collect();
            println!("{mode}:");
            println!(
                "{:<58} {:>8.0} {:>9.2}   ({:.0} pairs/s; ratio vs the RocksDB copy)",
                "  table: remote_table + get_table",
                mbs(pair_bytes, median),
                copy.as_secs_f64() / median.as_secs_f64(),
                rows as f64 / median.as_secs_f64()
            );
            println!("  (median of {TABLE_RUNS} runs; every run, in order: {})", all.join(" "));
        }
        println!(
            "target: 1 GiB object end to end >= 0.50 of raw tonic; measured (medians) {:.2} \
             (3 hops), {:.2} (1 hop)",
            end_to_end[0], end_to_end[1]
        );
        for s in sites {
            s.3.shutdown().await;
        }
        Ok(())
    })
}
