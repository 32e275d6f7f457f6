{{ config(materialized='view', schema='staging', pre_hook="{{ rpt_ensure_received_tables() }}") }}

select
    segment_workspace,
    segment_source,
    source_id,
    event,
    currents_event_type,
    event_text,
    period_start,
    granularity,
    event_count,
    origin
from {{ source('received', 'event_volumes') }}
