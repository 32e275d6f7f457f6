{{ config(materialized='view', schema='staging') }}

-- stg_segment__received creates the received/ledger tables when missing (one pre-hook: two
-- threads creating the same schemas at once conflict in DuckDB).
-- depends_on: {{ ref('stg_segment__received') }}

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
