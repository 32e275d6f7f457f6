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
    is exactly what was processed); a row whose id an earlier run kept is a re-delivery. -#}

with new_rows as (
    select *
    from {{ ref('int_currents__landed_events') }}
    where loaded_at > {{ cs_incremental_watermark('loaded_at') }}
),

ranked as (
    select
        *,
        row_number() over (
            partition by app_group_id, currents_id
            order by file_id, row_in_file
        ) as copy_number
    from new_rows
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
        copy_number = 1
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
