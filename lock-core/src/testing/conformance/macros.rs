//! The macro that runs the whole suite against one backend.

/// Runs every conformance case against a backend: one `#[tokio::test]` per case.
///
/// The argument is an expression evaluating to a future whose output implements
/// [`Backend`](crate::testing::conformance::Backend), such as `MyBackend::start()` or
/// `async { MyBackend::new() }`; it is evaluated afresh in every case, inside that case's
/// runtime, so a backend may start a server and stop it on drop. Each case gets a unique
/// election name from [`unique_name`](crate::testing::conformance::unique_name).
///
/// ```text
/// lock_core::conformance_suite!(async { MemoryBackend::default() });
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($make_backend:expr $(,)?) => {
        $crate::conformance_suite!(@cases ($make_backend)
            lock_cases::get_on_fresh_name_is_none,
            lock_cases::every_record_field_round_trips,
            lock_cases::concurrent_creates_have_one_winner,
            lock_cases::concurrent_updates_of_one_version_have_one_winner,
            lock_cases::stale_version_is_rejected,
            lock_cases::corrupt_value_is_reported_and_left_untouched,
            elector_cases::single_candidate_leads,
            elector_cases::three_candidates_never_lead_together,
            elector_cases::graceful_release_hands_over_within_a_second,
            elector_cases::killed_leader_is_replaced_after_the_lease,
            elector_cases::unavailable_backend_makes_the_leader_step_down_first,
            elector_cases::fencing_tokens_increase_over_handovers,
            elector_cases::notifications_arrive_in_order,
            elector_cases::idle_standby_waits_on_hints,
        );
    };
    (@cases ($make_backend:expr) $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let backend: ::std::sync::Arc<dyn $crate::testing::conformance::Backend> =
                    ::std::sync::Arc::new(($make_backend).await);
                let name = $crate::testing::conformance::unique_name(::std::stringify!($case));
                $crate::testing::conformance::within_case_limit(
                    ::std::stringify!($case),
                    $crate::testing::conformance::$module::$case(backend, &name),
                )
                .await;
            }
        )*
    };
}
