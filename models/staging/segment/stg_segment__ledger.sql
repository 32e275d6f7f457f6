{{ config(materialized='view', schema='staging', pre_hook="{{ rpt_ensure_received_tables() }}") }}

select
    connector,
    message_id,
    currents_id,
    currents_event_type,
    app_group_id,
    segment_workspace,
    segment_source,
    batch_id,
    status,
    attempts,
    last_http_status,
    reason,
    error,
    queued_at,
    sent_at,
    acked_at
from {{ source('ledger', 'events') }}
