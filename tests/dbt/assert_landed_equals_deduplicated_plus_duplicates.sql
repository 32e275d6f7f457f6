{#- Integrity, in the Fivetran manner: per workspace and event type, every landed row is either
    kept or a removed duplicate, and every kept row is in the outbox. Any difference fails. -#}
{%- set workspace = "coalesce(app_group_id, '(none)')" -%}

with landed as (
    select
        {{ workspace }} as workspace,
        currents_event_type,
        count(*) as row_count
    from {{ ref('int_currents__landed_events') }}
    group by 1, 2
),

deduplicated as (
    select
        {{ workspace }} as workspace,
        currents_event_type,
        count(*) as row_count
    from {{ ref('int_currents__deduplicated_events') }}
    group by 1, 2
),

duplicates as (
    select
        {{ workspace }} as workspace,
        currents_event_type,
        count(*) as row_count
    from {{ ref('int_currents__duplicate_events') }}
    group by 1, 2
),

outbox as (
    select
        {{ workspace }} as workspace,
        currents_event_type,
        count(*) as row_count
    from {{ ref('fct_segment_outbox') }}
    group by 1, 2
),

groups as (
    select
        workspace,
        currents_event_type
    from landed
    union
    select
        workspace,
        currents_event_type
    from deduplicated
    union
    select
        workspace,
        currents_event_type
    from duplicates
    union
    select
        workspace,
        currents_event_type
    from outbox
),

compared as (
    select
        groups.workspace,
        groups.currents_event_type,
        coalesce(landed.row_count, 0) as landed_rows,
        coalesce(deduplicated.row_count, 0) as deduplicated_rows,
        coalesce(duplicates.row_count, 0) as duplicate_rows,
        coalesce(outbox.row_count, 0) as outbox_rows
    from groups
    left join landed
        on groups.workspace = landed.workspace and groups.currents_event_type = landed.currents_event_type
    left join deduplicated
        on
            groups.workspace = deduplicated.workspace
            and groups.currents_event_type = deduplicated.currents_event_type
    left join duplicates
        on
            groups.workspace = duplicates.workspace
            and groups.currents_event_type = duplicates.currents_event_type
    left join outbox
        on groups.workspace = outbox.workspace and groups.currents_event_type = outbox.currents_event_type
)

select *
from compared
where
    landed_rows != deduplicated_rows + duplicate_rows
    or deduplicated_rows != outbox_rows
