{{ config(materialized='view', schema='staging') }}

-- stg_segment__received creates the received/ledger tables when missing (one pre-hook: two
-- threads creating the same schemas at once conflict in DuckDB).
-- depends_on: {{ ref('stg_segment__received') }}

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
