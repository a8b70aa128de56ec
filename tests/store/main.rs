//! The event-store conformance suite: every guarantee of ARCHITECTURE.md "The
//! event store", written once and run against every backend.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed expectation is the test failing

mod commands;
mod harness;
mod suite;

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let h = crate::harness::Harness::sqlite().await;
                    crate::suite::$name(&h).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                #[ignore = "needs SCAIDRIVE_TEST_DATABASE_URL (run by scripts/test)"]
                async fn $name() {
                    let h = crate::harness::Harness::postgres().await;
                    crate::suite::$name(&h).await;
                }
            )*
        }
    };
}

conformance!(
    expected_version_rules_hold,
    racing_appends_to_one_stream_have_one_winner,
    multi_stream_appends_are_all_or_nothing,
    a_stream_without_events_is_a_version_check,
    claims_are_set_constraints_in_the_append_transaction,
    fifty_racing_claims_of_one_key_have_one_winner,
    idempotency_keys_return_the_stored_outcome,
    racing_duplicates_of_one_idempotency_key_commit_once,
    streams_and_the_log_read_back_in_order,
    subscribers_are_woken_by_new_commits,
    hash_chains_verify_and_expose_tampering,
    hash_chain_verification_checks_only_its_range,
    concurrent_writers_with_slow_commits_are_seen_exactly_once,
    two_stores_on_one_database_keep_versions_and_chains,
    concurrent_appends_succeed_or_fail_alone,
    concurrent_unclaimed_appends_succeed_or_fail_alone,
);

/// Only meaningful where positions can commit out of order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs SCAIDRIVE_TEST_DATABASE_URL (run by scripts/test)"]
async fn postgres_without_the_watermark_readers_skip_late_commits() {
    let h = harness::Harness::postgres().await;
    suite::without_the_watermark_readers_skip_late_commits(&h).await;
}

macro_rules! command_bus {
    ($($name:ident),* $(,)?) => {
        mod bus_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let h = crate::harness::Harness::sqlite().await;
                    crate::commands::$name(&h).await;
                }
            )*
        }
        mod bus_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                #[ignore = "needs SCAIDRIVE_TEST_DATABASE_URL (run by scripts/test)"]
                async fn $name() {
                    let h = crate::harness::Harness::postgres().await;
                    crate::commands::$name(&h).await;
                }
            )*
        }
    };
}

command_bus!(
    hot_stream_commands_share_appends_and_keep_caps,
    hot_stream_commands_of_two_processes_keep_caps,
);
