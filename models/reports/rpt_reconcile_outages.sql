{{ config(materialized='table', schema='reports') }}

-- Outages: runs of consecutive hours where, for one Segment source, what arrived fell to zero or
-- below outage_ratio x what was expected while Braze kept exporting. Braze holds events for a
-- key that stopped working for retention_hours (48 by default) and then deletes them: each outage
-- says how many hours are left before its first hour is gone.

with settings as (
    select * from {{ ref('rpt_reconcile_settings') }}
),

hours as (
    select
        segment_workspace,
        segment_source,
        period_hour,
        cast(sum(exported) as bigint) as exported,
        cast(sum(sendable) as bigint) as sendable,
        cast(sum(sent) as bigint) as sent,
        cast(sum(sendable) - sum(missing) as bigint) as arrived,
        cast(sum(missing) as bigint) as missing
    from {{ ref('rpt_reconcile_hourly') }}
    where segment_workspace is not null
    group by segment_workspace, segment_source, period_hour
),

outage_hours as (
    select
        hours.*,
        hours.period_hour - to_hours(
            row_number() over (
                partition by hours.segment_workspace, hours.segment_source
                order by hours.period_hour
            )
        ) as island
    from hours, settings
    where
        hours.sendable > 0
        and hours.arrived <= settings.outage_ratio * hours.sendable
),

windows as (
    select
        segment_workspace,
        segment_source,
        min(period_hour) as outage_start,
        max(period_hour) + interval 1 hour as outage_end,
        count(*) as hours,
        cast(sum(exported) as bigint) as exported,
        cast(sum(sendable) as bigint) as sendable,
        cast(sum(sent) as bigint) as sent,
        cast(sum(arrived) as bigint) as arrived,
        cast(sum(missing) as bigint) as missing
    from outage_hours
    group by segment_workspace, segment_source, island
)

select
    windows.*,
    windows.outage_start + to_hours(cast(settings.retention_hours as bigint)) as first_deletion_at,
    windows.outage_end + to_hours(cast(settings.retention_hours as bigint)) as last_deletion_at,
    round(
        epoch(windows.outage_start - settings.as_of) / 3600.0 + settings.retention_hours, 1
    ) as hours_left,
    case
        when
            windows.outage_end + to_hours(cast(settings.retention_hours as bigint))
            <= settings.as_of then 'expired'
        when
            windows.outage_start + to_hours(cast(settings.retention_hours as bigint))
            <= settings.as_of then 'partly_expired'
        else 'recoverable'
    end as recovery_status
from windows, settings
