{{ config(materialized='view', schema='staging', pre_hook="{{ rpt_ensure_received_tables() }}") }}

select distinct
    connector,
    connector_kind,
    app_group_id,
    family,
    currents_event_type,
    segment_workspace,
    segment_source
from {{ source('received', 'routes') }}
