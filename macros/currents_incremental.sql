{#- The incremental watermark of a model as a SQL literal: the newest `column` already in the
    model, read once at compile time so the filter is a constant the engine can push into the
    raw table scans (DuckDB skips row groups by their min/max). On a first or full-refresh run,
    and where dbt is not executing (parsing, sqlfluff), it is 1900-01-01: everything. -#}
{% macro cs_incremental_watermark(column='loaded_at') -%}
    {%- set newest = none -%}
    {%- if execute is defined and execute and is_incremental() -%}
        {%- set newest = run_query('select max(' ~ column ~ ') from ' ~ this).columns[0].values()[0] -%}
    {%- endif -%}
    cast('{{ newest if newest is not none else "1900-01-01 00:00:00" }}' as timestamp)
{%- endmacro %}
