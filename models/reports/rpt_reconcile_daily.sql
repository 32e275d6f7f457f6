{{ config(materialized='table', schema='reports') }}

-- rpt_reconcile_hourly summed per day.

select
    segment_workspace,
    segment_source,
    app_group_id,
    currents_event_type,
    event,
    period_day,
    cast(sum(exported) as bigint) as exported,
    cast(sum(skipped_no_external_id) as bigint) as skipped_no_external_id,
    cast(sum(skipped_test_event) as bigint) as skipped_test_event,
    cast(sum(skipped_oversize) as bigint) as skipped_oversize,
    cast(sum(skipped_not_routed) as bigint) as skipped_not_routed,
    cast(sum(skipped_unsupported) as bigint) as skipped_unsupported,
    cast(sum(sendable) as bigint) as sendable,
    cast(sum(sent) as bigint) as sent,
    cast(sum(received) as bigint) as received,
    cast(sum(received_distinct) as bigint) as received_distinct,
    cast(sum(missing) as bigint) as missing,
    cast(sum(missing_after_ack) as bigint) as missing_after_ack,
    cast(sum(missing_not_sent) as bigint) as missing_not_sent,
    cast(sum(missing_unrouted) as bigint) as missing_unrouted,
    cast(sum(unexpected) as bigint) as unexpected,
    cast(sum(duplicates) as bigint) as duplicates
from {{ ref('rpt_reconcile_hourly') }}
group by all
