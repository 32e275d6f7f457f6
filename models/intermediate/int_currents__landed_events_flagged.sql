{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='append_new_columns',
    )
}}

{#- Every landed row once, flagged first copy or at-least-once duplicate. Incremental: a run
    reads only rows landed after the newest row already here (every landed row is kept, so that
    is exactly what was processed); a row whose id was kept by an earlier run is a duplicate. -#}

with new_rows as (
    select * from {{ ref('int_currents__landed_events') }}
    {% if is_incremental() -%}
    where loaded_at > (
        select coalesce(max(loaded_at), cast('1900-01-01 00:00:00' as timestamp)) from {{ this }}
    )
    {%- endif %}
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

{% if is_incremental() -%}
, kept_earlier as (
    select distinct
        kept.app_group_id,
        kept.currents_id
    from {{ this }} as kept
    inner join ranked
        on
            kept.currents_id = ranked.currents_id
            and coalesce(kept.app_group_id, '') = coalesce(ranked.app_group_id, '')
    where kept.is_first_copy
)
{%- endif %}

select
    ranked.currents_id,
    ranked.app_group_id,
    ranked.currents_event_type,
    ranked.family,
    ranked.event,
    ranked.braze_user_id,
    ranked.external_user_id,
    ranked.event_timestamp,
    {%- for shared in currents_shared_fields() %}
    ranked.{{ shared }},
    {%- endfor %}
    ranked.segment_context_json,
    ranked.segment_properties_json,
    ranked.file_id,
    ranked.row_in_file,
    ranked.source_file,
    ranked.integration_id,
    ranked.date_hour,
    ranked.loaded_at,
    ranked.is_test_event,
    {% if is_incremental() -%}
    (ranked.copy_number = 1 and kept_earlier.currents_id is null) as is_first_copy
    {%- else -%}
    (ranked.copy_number = 1) as is_first_copy
    {%- endif %}
from ranked
{%- if is_incremental() %}
left join kept_earlier
    on
        ranked.currents_id = kept_earlier.currents_id
        and coalesce(ranked.app_group_id, '') = coalesce(kept_earlier.app_group_id, '')
{%- endif %}
