{{ config(materialized='table', schema='reports') }}

-- Row level, where ids exist: every missing, unexpected and duplicated message with its Currents
-- file (the CSV of gap rows and the report's drill-down).

with gaps as (
    select
        case
            when delivery_status in ('missing', 'unexpected') then delivery_status
            else 'duplicate'
        end as gap_kind,
        segment_workspace,
        segment_source,
        connector,
        app_group_id,
        currents_event_type,
        event,
        message_id,
        currents_id,
        period_hour,
        ledger_status,
        missing_reason,
        received as received_copies,
        duplicates as extra_copies
    from {{ ref('rpt_reconcile_deliveries') }}
    where coalesce(message_id, currents_id) is not null
)

select
    gaps.*,
    outbox.source_file,
    outbox.event_timestamp,
    outbox.date_hour
from gaps
left join {{ ref('fct_segment_outbox') }} as outbox
    on gaps.currents_id = outbox.message_id
