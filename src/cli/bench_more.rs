//! Dispatches the loopback benchmarks added beside the command table:
//! `--http`, `--rebuild`, `--feed` and `--links` (each prints its own table).

use super::bench::BenchArgs;

pub async fn run(args: &BenchArgs) -> Result<(), String> {
    let pg = args.postgres_url.as_deref();
    if args.http {
        super::bench_http::run(pg, args.http_connections, args.seconds).await?;
    }
    if args.rebuild {
        super::bench_rebuild::run(pg, args.rebuild_events).await?;
    }
    if args.feed {
        super::bench_feed::run(pg, args.feed_changes).await?;
    }
    if args.links {
        super::bench_links::run(pg, args.seconds).await?;
    }
    Ok(())
}
