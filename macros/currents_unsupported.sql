{#- Raw tables of Currents types outside the catalogue: found at run time, they vary by export. -#}

{#- [(table_name, has_app_group_id, has_event_type, has_id)] of raw tables not in the catalogue. -#}
{% macro currents_unsupported_raw_tables() -%}
    {%- if not execute -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set supported = currents_catalogue() | map(attribute='table_name') | list -%}
    {%- set rows = run_query(cs_raw_table_columns_sql()) -%}
    {%- set tables = {} -%}
    {%- for row in rows -%}
        {%- set name = row[0] | lower -%}
        {%- if name not in supported -%}
            {%- if name not in tables -%}
                {%- do tables.update({name: []}) -%}
            {%- endif -%}
            {%- do tables[name].append(row[1] | lower) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set out = [] -%}
    {%- for name in tables | sort -%}
        {%- do out.append([name, 'app_group_id' in tables[name], '_event_type' in tables[name], 'id' in tables[name]]) -%}
    {%- endfor -%}
    {{ return(out) }}
{%- endmacro %}

{% macro cs_raw_table_columns_sql() -%}
    {{ return(adapter.dispatch('cs_raw_table_columns_sql')()) }}
{%- endmacro %}

{% macro default__cs_raw_table_columns_sql() -%}
    select table_name, column_name
    from information_schema.columns
    where lower(table_schema) = lower('{{ source("currents", "users_behaviors_uninstall").schema }}')
    order by table_name, ordinal_position
{%- endmacro %}

{% macro duckdb__cs_raw_table_columns_sql() -%}
    select table_name, column_name
    from information_schema.columns
    where
        lower(table_schema) = lower('{{ source("currents", "users_behaviors_uninstall").schema }}')
        and table_catalog = current_database()
    order by table_name, ordinal_position
{%- endmacro %}
