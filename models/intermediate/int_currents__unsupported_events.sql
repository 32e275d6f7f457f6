{#- Raw tables of types outside the catalogue are discovered at run time (information_schema):
    landed, counted here, never sent and never silently dropped. -#}
{%- set tables = currents_unsupported_raw_tables() -%}
{%- set raw_schema = source('currents', 'users_behaviors_uninstall').schema -%}
{%- set string_type = dbt.type_string() -%}

{% if tables | length == 0 -%}
select
    cast(null as {{ string_type }}) as app_group_id,
    cast(null as {{ string_type }}) as currents_event_type,
    cast(null as {{ string_type }}) as raw_table_name,
    cast(null as timestamp) as date_hour,
    cast(0 as {{ dbt.type_bigint() }}) as event_count
where 1 = 0
{%- else -%}
{%- for table in tables %}
select
    {% if table[1] -%}
    cast(app_group_id as {{ string_type }}) as app_group_id,
    {%- else -%}
    cast(null as {{ string_type }}) as app_group_id,
    {%- endif %}
    {% if table[2] -%}
    cast(_event_type as {{ string_type }}) as currents_event_type,
    {%- else -%}
    cast('{{ table[0] }}' as {{ string_type }}) as currents_event_type,
    {%- endif %}
    cast('{{ table[0] }}' as {{ string_type }}) as raw_table_name,
    _date_hour as date_hour,
    count(*) as event_count
from {{ adapter.quote(raw_schema) }}.{{ adapter.quote(table[0]) }}
group by 1, 2, 3, 4
{%- if not loop.last %}
union all
{%- endif %}
{%- endfor %}
{%- endif %}
