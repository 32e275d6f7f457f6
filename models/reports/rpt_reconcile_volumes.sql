{{ config(materialized='table', schema='reports') }}

-- Counts without ids: Segment's Public API volumes (GET /events/volume) beside the track calls
-- held and what was expected, per Segment workspace, source and event over the whole window.
-- Segment counts volumes by arrival, the other columns by the report's time basis, so compare
-- totals, not hours.

with volumes as (
    select
        segment_workspace,
        segment_source,
        coalesce(event, event_text) as event,
        cast(sum(event_count) as bigint) as api_events,
        min(period_start) as api_first_period,
        max(period_start) as api_last_period
    from {{ ref('stg_segment__event_volumes') }}
    group by all
),

expected as (
    select
        segment_workspace,
        segment_source,
        event,
        cast(sum(sendable) as bigint) as sendable,
        cast(sum(sent) as bigint) as sent,
        cast(sum(received) as bigint) as held_events
    from {{ ref('rpt_reconcile_hourly') }}
    where segment_workspace is not null and event is not null
    group by all
)

select
    volumes.segment_workspace,
    volumes.segment_source,
    volumes.event,
    volumes.api_events,
    volumes.api_first_period,
    volumes.api_last_period,
    coalesce(expected.sendable, 0) as sendable,
    coalesce(expected.sent, 0) as sent,
    coalesce(expected.held_events, 0) as held_events,
    volumes.api_events - coalesce(expected.sendable, 0) as api_minus_sendable
from volumes
left join expected
    on
        volumes.segment_workspace = expected.segment_workspace
        and volumes.segment_source = expected.segment_source
        and volumes.event = expected.event
