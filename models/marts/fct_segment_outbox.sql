{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='append_new_columns',
    )
}}

{#- The outbox the pusher reads: every de-duplicated event of a supported type, one Segment track
    call each, with whether it may be sent and why not. Incremental by `loaded_at`: every
    de-duplicated event lands here, so the newest `loaded_at` here is what was processed.
    Changing a variable that decides `is_sendable` needs `--full-refresh` to apply to old rows. -#}
{%- set excluded_types = var('outbox_excluded_event_types', []) -%}
{%- if excluded_types is string -%}
    {%- set excluded_types = [excluded_types] -%}
{%- endif -%}
{%- do currents_check_event_types(excluded_types, 'outbox_excluded_event_types') -%}
{%- set include_anonymous = var('include_anonymous_users', false) | string | lower in ['true', '1', 'yes'] -%}

with track_calls as (
    {%- for family in currents_families() %}
        select *
        from {{ ref('fct_' ~ family ~ '_track_calls') }}
        where loaded_at > {{ cs_incremental_watermark('loaded_at') }}
        {%- if not loop.last %}
            union all
        {%- endif %}
    {%- endfor %}
),

reasons as (
    select
        *,
        case
            when is_test_event then 'test_event'
            {%- if excluded_types | length > 0 %}
                when currents_event_type in ('{{ excluded_types | join("', '") }}') then 'unsupported_type'
            {%- endif %}
            {%- if not include_anonymous %}
                when user_id is null then 'no_external_user_id'
            {%- endif %}
            when payload_bytes > 32768 then 'oversize'
        end as not_sendable_reason
    from track_calls
)

select
    message_id,
    currents_event_type,
    family,
    event,
    user_id,
    anonymous_id,
    event_timestamp,
    app_group_id,
    integration_id,
    source_file,
    date_hour,
    loaded_at,
    payload_json,
    payload_bytes,
    coalesce(not_sendable_reason is null, false) as is_sendable,
    not_sendable_reason,
    currents_id,
    file_id,
    row_in_file,
    is_test_event
from reasons
