{{ config(materialized='view', schema='staging', pre_hook="{{ rpt_ensure_received_tables() }}") }}

select
    segment_workspace,
    segment_source,
    message_id,
    event,
    currents_event_type,
    event_text,
    user_id,
    anonymous_id,
    event_timestamp,
    received_at,
    origin,
    part,
    loaded_at
from {{ source('received', 'tracks') }}
