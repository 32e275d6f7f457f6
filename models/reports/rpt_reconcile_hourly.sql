{{ config(materialized='table', schema='reports') }}

-- Counts per Segment workspace and source, Braze workspace, event and hour (time basis: see
-- rpt_reconcile_settings). missing = expected, sendable and never received; unexpected = received
-- where nothing was sent or expected; duplicates = received copies beyond the first.

with deliveries as (
    select * from {{ ref('rpt_reconcile_deliveries') }}
),

-- Types outside the catalogue are landed and counted, never sent: they are "skipped: unsupported"
-- for every configured destination of their Braze workspace (unrouted otherwise). No event time
-- is known for them here, so their hour is the date= folder hour (of an event's earliest copy)
-- under either basis. Counted once per event, as exported events are: re-delivered copies of
-- them are in int_currents__unsupported_events.event_count.
unsupported as (
    select
        app_group_id,
        currents_event_type,
        date_hour as period_hour,
        cast(sum(distinct_event_count) as bigint) as skipped_unsupported
    from {{ ref('int_currents__unsupported_events') }}
    group by app_group_id, currents_event_type, date_hour
),

unsupported_routes as (
    select distinct
        app_group_id,
        segment_workspace,
        segment_source
    from {{ ref('stg_segment__routes') }}
    where currents_event_type is null and family is null
),

unsupported_routed as (
    select
        unsupported_routes.segment_workspace,
        unsupported_routes.segment_source,
        unsupported.app_group_id,
        unsupported.currents_event_type,
        unsupported.period_hour,
        unsupported.skipped_unsupported
    from unsupported
    left join unsupported_routes
        on
            unsupported.app_group_id = unsupported_routes.app_group_id
            or unsupported_routes.app_group_id is null
),

counted as (
    select
        segment_workspace,
        segment_source,
        app_group_id,
        currents_event_type,
        event,
        period_hour,
        sum(messages) filter (where delivery_status != 'unexpected' and is_exported) as exported,
        sum(messages) filter (where not_sendable_reason = 'no_external_user_id')
            as skipped_no_external_id,
        sum(messages) filter (where not_sendable_reason = 'test_event') as skipped_test_event,
        sum(messages) filter (where not_sendable_reason = 'oversize') as skipped_oversize,
        sum(messages) filter (where not_sendable_reason = 'not_routed') as skipped_not_routed,
        sum(messages) filter (where ledger_status = 'acknowledged') as sent,
        sum(received) as received,
        sum(messages) filter (where delivery_status in ('delivered', 'unexpected'))
            as received_distinct,
        sum(messages) filter (where delivery_status = 'missing') as missing,
        sum(messages) filter (where missing_reason = 'lost_after_ack') as missing_after_ack,
        sum(messages) filter (where missing_reason = 'not_sent') as missing_not_sent,
        sum(messages) filter (where missing_reason = 'unrouted') as missing_unrouted,
        sum(messages) filter (where delivery_status = 'unexpected') as unexpected,
        sum(duplicates) as duplicates
    from deliveries
    group by all
),

combined as (
    select
        coalesce(counted.segment_workspace, unsupported_routed.segment_workspace)
            as segment_workspace,
        coalesce(counted.segment_source, unsupported_routed.segment_source) as segment_source,
        coalesce(counted.app_group_id, unsupported_routed.app_group_id) as app_group_id,
        coalesce(counted.currents_event_type, unsupported_routed.currents_event_type)
            as currents_event_type,
        counted.event,
        coalesce(counted.period_hour, unsupported_routed.period_hour) as period_hour,
        coalesce(counted.exported, 0) as exported,
        coalesce(counted.skipped_no_external_id, 0) as skipped_no_external_id,
        coalesce(counted.skipped_test_event, 0) as skipped_test_event,
        coalesce(counted.skipped_oversize, 0) as skipped_oversize,
        coalesce(counted.skipped_not_routed, 0) as skipped_not_routed,
        coalesce(unsupported_routed.skipped_unsupported, 0) as skipped_unsupported,
        coalesce(counted.sent, 0) as sent,
        coalesce(counted.received, 0) as received,
        coalesce(counted.received_distinct, 0) as received_distinct,
        coalesce(counted.missing, 0) as missing,
        coalesce(counted.missing_after_ack, 0) as missing_after_ack,
        coalesce(counted.missing_not_sent, 0) as missing_not_sent,
        coalesce(counted.missing_unrouted, 0) as missing_unrouted,
        coalesce(counted.unexpected, 0) as unexpected,
        coalesce(counted.duplicates, 0) as duplicates
    from counted
    full outer join unsupported_routed
        on
            counted.segment_workspace is not distinct from unsupported_routed.segment_workspace
            and counted.segment_source is not distinct from unsupported_routed.segment_source
            and counted.app_group_id is not distinct from unsupported_routed.app_group_id
            and counted.currents_event_type = unsupported_routed.currents_event_type
            and counted.period_hour = unsupported_routed.period_hour
)

select
    segment_workspace,
    segment_source,
    app_group_id,
    currents_event_type,
    event,
    period_hour,
    cast(period_hour as date) as period_day,
    cast(exported as bigint) as exported,
    cast(skipped_no_external_id as bigint) as skipped_no_external_id,
    cast(skipped_test_event as bigint) as skipped_test_event,
    cast(skipped_oversize as bigint) as skipped_oversize,
    cast(skipped_not_routed as bigint) as skipped_not_routed,
    cast(skipped_unsupported as bigint) as skipped_unsupported,
    cast(
        exported - skipped_no_external_id - skipped_test_event - skipped_oversize
        - skipped_not_routed as bigint
    ) as sendable,
    cast(sent as bigint) as sent,
    cast(received as bigint) as received,
    cast(received_distinct as bigint) as received_distinct,
    cast(missing as bigint) as missing,
    cast(missing_after_ack as bigint) as missing_after_ack,
    cast(missing_not_sent as bigint) as missing_not_sent,
    cast(missing_unrouted as bigint) as missing_unrouted,
    cast(unexpected as bigint) as unexpected,
    cast(duplicates as bigint) as duplicates
from combined
