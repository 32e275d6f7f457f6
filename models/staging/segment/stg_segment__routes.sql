{{ config(materialized='view', schema='staging') }}

-- stg_segment__received creates the received/ledger tables when missing (one pre-hook: two
-- threads creating the same schemas at once conflict in DuckDB).
-- depends_on: {{ ref('stg_segment__received') }}

select distinct
    connector,
    connector_kind,
    app_group_id,
    family,
    currents_event_type,
    segment_workspace,
    segment_source
from {{ source('received', 'routes') }}
