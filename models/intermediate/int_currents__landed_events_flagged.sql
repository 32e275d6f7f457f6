{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='append_new_columns',
    )
}}

{#- Every landed row once, flagged first copy or at-least-once re-delivery. Narrow on purpose:
    the Segment JSON stays in the staging views and is joined back where needed, so the large
    strings are written once (in the outbox), not twice. Incremental: a run
    reads only rows landed after the newest row already here (every landed row is kept, so that
    is exactly what was processed); a row whose id an earlier run kept is a re-delivery.
    The first copy of each id per workspace is the lowest (`file_id`, `row_in_file`), found by one
    hash aggregate and a join back rather than a window, which sorted every landed row (most of this
    model's time); a position packs both into one number (`row_in_file` < 2^32). -#}

with new_rows as (
    select *
    from {{ ref('int_currents__landed_events') }}
    where loaded_at > {{ cs_incremental_watermark('loaded_at') }}
),

keyed as (
    select
        app_group_id,
        currents_id,
        min(file_id * 4294967296 + row_in_file) as first_position
    from new_rows
    group by app_group_id, currents_id
),

ranked as (
    select
        new_rows.*,
        new_rows.file_id * 4294967296 + new_rows.row_in_file = keyed.first_position as is_lowest_position
    from new_rows
    inner join keyed
        on
            new_rows.currents_id is not distinct from keyed.currents_id
            and new_rows.app_group_id is not distinct from keyed.app_group_id
)

select
    currents_id,
    app_group_id,
    currents_event_type,
    family,
    event,
    braze_user_id,
    external_user_id,
    event_timestamp,
    {{ currents_shared_fields() | join(',\n    ') }},
    file_id,
    row_in_file,
    source_file,
    integration_id,
    date_hour,
    loaded_at,
    is_test_event,
    coalesce(
        is_lowest_position
        {%- if is_incremental() %}
            and not exists (
                select 1
                from {{ this }} as kept
                where
                    kept.is_first_copy
                    and kept.currents_id = ranked.currents_id
                    and coalesce(kept.app_group_id, '') = coalesce(ranked.app_group_id, '')
            )
        {%- endif %},
        false
    ) as is_first_copy
from ranked
