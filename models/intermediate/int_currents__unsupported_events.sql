{#- Raw tables of types outside the catalogue are discovered at run time (information_schema):
    landed, counted here, never sent and never silently dropped. -#}
{%- set tables = currents_unsupported_raw_tables() -%}
{%- set raw_schema = source('currents', 'users_behaviors_uninstall').schema -%}
{%- set string_type = cs_type_string() -%}

{#- The typed empty branch keeps the model's columns when no unsupported table exists. -#}
select
    cast(null as {{ string_type }}) as app_group_id,
    cast(null as {{ string_type }}) as currents_event_type,
    cast(null as {{ string_type }}) as raw_table_name,
    cast(null as timestamp) as date_hour,
    cast(0 as {{ cs_type_bigint() }}) as event_count
where 1 = 0
{%- for table in tables %}
    union all
    select
        cast({{ 'app_group_id' if table[1] else 'null' }} as {{ string_type }}) as app_group_id,
        cast({{ '_event_type' if table[2] else "'" ~ table[0] ~ "'" }} as {{ string_type }}) as currents_event_type,
        cast('{{ table[0] }}' as {{ string_type }}) as raw_table_name,
        _date_hour as date_hour,
        count(*) as event_count
    from {{ cs_quote(raw_schema) }}.{{ cs_quote(table[0]) }}
    group by 1, 2, 3, 4
{%- endfor %}
