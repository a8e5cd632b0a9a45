//! The conformance suite: each behaviour is an async function taking a `&Store`, run against
//! every backend by the `behaviours!` macro. Test each behaviour once, here.

mod collections;
mod dedup;
mod errors;
mod expiry;
mod feed;
mod keys;
mod transact;
mod transactions;
mod values;

/// Generates one test per behaviour per backend.
macro_rules! behaviours {
    ($($module:ident :: $name:ident),* $(,)?) => {
        behaviours!(@backend sqlite, $($module::$name),*);
        behaviours!(@backend postgres, $($module::$name),*);
    };
    (@backend $backend:ident, $($module:ident :: $name:ident),*) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(harness) = crate::common::available::$backend().await else {
                        return;
                    };
                    crate::behaviour::$module::$name(&harness.store).await;
                    harness.finish().await;
                }
            )*
        }
    };
}

behaviours!(
    values::round_trips_of_many_value_types,
    values::overwrite_bumps_the_version_and_keeps_created_at,
    values::a_value_of_another_type_is_a_serialization_error,
    values::compression_is_kept_only_when_smaller,
    keys::list_is_in_byte_order_with_prefix_cursor_and_limit,
    keys::count_collections_exists_and_delete,
    keys::names_with_sql_metacharacters_and_unicode_are_plain_data,
    collections::a_typed_collection_puts_gets_updates_and_deletes,
    collections::scans_honour_bounds_prefixes_order_and_limits,
    collections::scans_page_through_large_collections_and_concurrent_deletes,
    collections::prefixes_collections_and_whole_stores_are_deleted_with_exact_counts,
    transact::concurrent_increments_are_exact,
    transact::reads_see_own_writes_and_errors_write_nothing,
    transact::transfers_keep_the_total,
    transact::scans_in_a_transaction_see_own_writes,
    transact::a_scanned_range_conflicts_on_phantoms_changes_and_deletes,
    transact::a_range_condition_holds_under_concurrent_inserts,
    transact::a_key_created_again_at_the_version_read_conflicts,
    transactions::a_transaction_commits_across_collections,
    transactions::a_failed_condition_in_the_middle_leaves_nothing,
    transactions::conditional_stores_and_deletes_check_versions,
    transactions::writes_in_one_transaction_see_each_other,
    dedup::two_keys_share_one_blob_until_both_are_gone,
    dedup::rewriting_the_same_value_changes_no_count,
    dedup::stats_separate_compression_and_dedup_savings,
    errors::invalid_names_are_rejected,
    errors::oversized_values_are_rejected,
    errors::nan_and_infinite_floats_are_refused_and_nothing_is_written,
    feed::committed_writes_are_numbered_in_commit_order,
    feed::a_subscriber_catches_up_then_sees_every_concurrent_write_once,
    feed::a_subscriber_hears_another_store_on_the_same_database,
    feed::trimmed_changes_are_an_error_naming_the_oldest_held,
    expiry::an_expired_record_is_absent_from_every_read_and_swept,
    expiry::a_transaction_that_read_before_expiry_conflicts,
    feed::a_change_keeps_its_value_until_it_is_trimmed,
    feed::a_store_with_the_feed_off_records_no_change_and_reads_none,
);
