{#- Raw tables of types outside the catalogue are discovered at run time (information_schema):
    landed, counted here, never sent and never silently dropped. Two counts per group: every
    landed record (`event_count`, re-delivered copies included), and each event once
    (`distinct_event_count`: one per id and workspace, at the `date=` hour of its earliest
    landed copy), which is how supported events are counted as exported. -#}
{%- set tables = currents_unsupported_raw_tables() -%}
{%- set raw_schema = source('currents', 'users_behaviors_uninstall').schema -%}
{%- set string_type = cs_type_string() -%}
{%- set bigint_type = cs_type_bigint() -%}

with counted as (
    {#- The typed empty branch keeps the model's columns when no unsupported table exists. #}
    select
        cast(null as {{ string_type }}) as app_group_id,
        cast(null as {{ string_type }}) as currents_event_type,
        cast(null as {{ string_type }}) as raw_table_name,
        cast(null as timestamp) as date_hour,
        cast(0 as {{ bigint_type }}) as records,
        cast(0 as {{ bigint_type }}) as first_copies
    where 1 = 0
    {%- for table in tables %}
        {%- set app_group_id = 'app_group_id' if table[1] else 'null' %}
        {%- set event_type = '_event_type' if table[2] else "'" ~ table[0] ~ "'" %}
        {%- set relation = cs_quote(raw_schema) ~ '.' ~ cs_quote(table[0]) %}
    union all
    select
        cast({{ app_group_id }} as {{ string_type }}) as app_group_id,
        cast({{ event_type }} as {{ string_type }}) as currents_event_type,
        cast('{{ table[0] }}' as {{ string_type }}) as raw_table_name,
        _date_hour as date_hour,
        count(*) as records,
        {#- Without an id column every record counts as an event of its own. #}
        {{ '0' if table[3] else 'count(*)' }} as first_copies
    from {{ relation }}
    group by 1, 2, 3, 4
        {%- if table[3] %}
    union all
    select
        app_group_id,
        currents_event_type,
        raw_table_name,
        date_hour,
        0 as records,
        count(*) as first_copies
    from (
        select
            cast({{ app_group_id }} as {{ string_type }}) as app_group_id,
            cast({{ event_type }} as {{ string_type }}) as currents_event_type,
            cast('{{ table[0] }}' as {{ string_type }}) as raw_table_name,
            min(_date_hour) as date_hour
        from {{ relation }}
        group by 1, 2, 3, id
    ) as events
    group by 1, 2, 3, 4
        {%- endif %}
    {%- endfor %}
)

select
    app_group_id,
    currents_event_type,
    raw_table_name,
    date_hour,
    cast(sum(records) as {{ bigint_type }}) as event_count,
    cast(sum(first_copies) as {{ bigint_type }}) as distinct_event_count
from counted
group by app_group_id, currents_event_type, raw_table_name, date_hour
