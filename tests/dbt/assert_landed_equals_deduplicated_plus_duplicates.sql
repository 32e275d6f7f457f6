{#- Integrity, in the Fivetran manner: per workspace and event type, every landed row is either
    kept or a removed duplicate, and every kept row is in the outbox. Any difference fails.
    On an incremental build (macros/cs_data_tests_scope.sql) the comparison per workspace and type
    reads the rows landed since the previous build (`loaded_at` newer than its watermark; older rows
    were compared by the builds that added them and are not rewritten); every row is still counted
    per type: landed rows = flagged landed rows, and their first copies = outbox rows, so a row
    missed or lost anywhere (an old `loaded_at`, a deleted row) still fails. -#}
{%- set workspace = "coalesce(app_group_id, '(none)')" -%}
{%- set since = cs_data_tests_since() -%}
{%- set new_rows = 'where loaded_at > ' ~ since if since else '' -%}

-- depends_on: {{ ref('int_currents__landed_events_flagged') }}
with landed as (
    select
        {{ workspace }} as workspace,
        currents_event_type,
        count(*) as row_count
    from {{ ref('int_currents__landed_events') }}
    {{ new_rows }}
    group by 1, 2
),

deduplicated as (
    select
        {{ workspace }} as workspace,
        currents_event_type,
        count(*) as row_count
    from {{ ref('int_currents__deduplicated_events') }}
    {{ new_rows }}
    group by 1, 2
),

duplicates as (
    select
        {{ workspace }} as workspace,
        currents_event_type,
        count(*) as row_count
    from {{ ref('int_currents__duplicate_events') }}
    {{ new_rows }}
    group by 1, 2
),

outbox as (
    select
        {{ workspace }} as workspace,
        currents_event_type,
        count(*) as row_count
    from {{ ref('fct_segment_outbox') }}
    {{ new_rows }}
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
),

{% if since -%}
    landed_totals as (
        select
            currents_event_type,
            count(*) as row_count
        from {{ ref('int_currents__landed_events') }}
        group by 1
    ),

    flagged_totals as (
        select
            currents_event_type,
            count(*) as row_count,
            sum(case when is_first_copy then 1 else 0 end) as first_copies
        from {{ ref('int_currents__landed_events_flagged') }}
        group by 1
    ),

    outbox_totals as (
        select
            currents_event_type,
            count(*) as row_count
        from {{ ref('fct_segment_outbox') }}
        group by 1
    ),

    {# Used in `failures`, under the same `if since` (sqlfluff renders the other branch). #}
    type_totals as (  -- noqa: ST03
        select
            '(all)' as workspace,
            coalesce(landed_totals.currents_event_type, flagged_totals.currents_event_type) as currents_event_type,
            coalesce(landed_totals.row_count, 0) as landed_rows,
            coalesce(flagged_totals.first_copies, 0) as deduplicated_rows,
            coalesce(flagged_totals.row_count, 0) - coalesce(flagged_totals.first_copies, 0) as duplicate_rows,
            coalesce(outbox_totals.row_count, 0) as outbox_rows
        from landed_totals
        full outer join flagged_totals
            on landed_totals.currents_event_type = flagged_totals.currents_event_type
        full outer join outbox_totals
            on
                coalesce(landed_totals.currents_event_type, flagged_totals.currents_event_type)
                = outbox_totals.currents_event_type
    ),

{% endif -%}
failures as (
    select *
    from compared
    where
        landed_rows != deduplicated_rows + duplicate_rows
        or deduplicated_rows != outbox_rows
    {%- if since %}
        union all
        select *
        from type_totals
        where
            landed_rows != deduplicated_rows + duplicate_rows
            or deduplicated_rows != outbox_rows
    {%- endif %}
)

select * from failures
