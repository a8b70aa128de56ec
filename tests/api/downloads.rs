//! Serving many concurrent downloads keeps the server's memory bounded:
//! each connection holds a small piece of a chunk at a time, with the
//! socket's backpressure deciding when the next piece is read, never whole
//! chunks or files. Measured on the real server binary's resident set
//! (`scaidrive-bench --downloads` runs the same with 1 000 × 100 MiB).

use std::path::Path;

use scaidrive::bench::downloads::measure;

const DOWNLOADS: usize = 200;
const SIZE: u64 = 20 * 1024 * 1024;
/// Generous: what a buffered file or chunk per connection would blow
/// through many times over (200 × 4 MiB chunks alone is 800 MiB).
const BOUND_KIB: u64 = 256 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_20_mib_downloads_keep_server_rss_within_256_mib_of_its_baseline() {
    let r = measure(Path::new(env!("CARGO_BIN_EXE_scaidrive")), DOWNLOADS, SIZE)
        .await
        .expect("downloads");
    println!(
        "{} downloads of {} MiB: baseline {} KiB, peak {} KiB, VmHWM {} KiB, {:.1} s",
        r.downloads,
        r.bytes_each >> 20,
        r.baseline_rss_kib,
        r.peak_rss_kib,
        r.hwm_kib,
        r.seconds
    );
    assert!(
        r.peak_rss_kib <= r.baseline_rss_kib + BOUND_KIB,
        "server RSS grew from {} KiB to {} KiB serving {DOWNLOADS} downloads",
        r.baseline_rss_kib,
        r.peak_rss_kib
    );
}
