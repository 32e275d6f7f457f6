{#- Engine-specific SQL, dispatched per adapter (duckdb__, spark__, default__). Models call only
    these and dbt's cross-database macros, so the project builds unchanged on another engine.
    Where `adapter` / `dbt` are undefined (sqlfluff's jinja templater lints without dbt), each
    falls back to its duckdb spelling so the linted SQL is the SQL dbt runs here. -#}

{#- Currents `time` (UNIX seconds, UTC) -> a TIMESTAMP without time zone, in UTC. -#}
{% macro cs_epoch_to_timestamp(epoch_seconds) -%}
    {%- if adapter is defined -%}
        {{ return(adapter.dispatch('cs_epoch_to_timestamp')(epoch_seconds)) }}
    {%- else -%}
        {{ return(duckdb__cs_epoch_to_timestamp(epoch_seconds)) }}
    {%- endif -%}
{%- endmacro %}

{% macro default__cs_epoch_to_timestamp(epoch_seconds) -%}
    {{ dbt.dateadd('second', epoch_seconds, "cast('1970-01-01 00:00:00' as timestamp)") }}
{%- endmacro %}

{% macro duckdb__cs_epoch_to_timestamp(epoch_seconds) -%}
    {#- make_timestamp(microseconds) is naive UTC: no session time zone involved. -#}
    make_timestamp(cast({{ epoch_seconds }} as bigint) * 1000000)
{%- endmacro %}

{% macro spark__cs_epoch_to_timestamp(epoch_seconds) -%}
    timestamp_seconds(cast({{ epoch_seconds }} as bigint))
{%- endmacro %}

{#- A TIMESTAMP (UTC) -> Segment's ISO-8601 text, second precision: 2034-06-13T09:08:24Z. -#}
{% macro cs_iso_timestamp(ts) -%}
    {%- if adapter is defined -%}
        {{ return(adapter.dispatch('cs_iso_timestamp')(ts)) }}
    {%- else -%}
        {{ return(duckdb__cs_iso_timestamp(ts)) }}
    {%- endif -%}
{%- endmacro %}

{% macro default__cs_iso_timestamp(ts) -%}
    to_char({{ ts }}, 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
{%- endmacro %}

{% macro duckdb__cs_iso_timestamp(ts) -%}
    strftime({{ ts }}, '%Y-%m-%dT%H:%M:%SZ')
{%- endmacro %}

{% macro spark__cs_iso_timestamp(ts) -%}
    date_format({{ ts }}, "yyyy-MM-dd'T'HH:mm:ss'Z'")
{%- endmacro %}

{#- Any scalar or array value -> its JSON text (strings quoted and escaped, arrays as arrays). -#}
{% macro cs_to_json(value) -%}
    {%- if adapter is defined -%}
        {{ return(adapter.dispatch('cs_to_json')(value)) }}
    {%- else -%}
        {{ return(duckdb__cs_to_json(value)) }}
    {%- endif -%}
{%- endmacro %}

{% macro default__cs_to_json(value) -%}
    cast(to_json({{ value }}) as {{ cs_type_string() }})
{%- endmacro %}

{% macro duckdb__cs_to_json(value) -%}
    cast(to_json({{ value }}) as varchar)
{%- endmacro %}

{% macro spark__cs_to_json(value) -%}
    {#- Spark's to_json takes structs only: wrap the value, then strip the wrapper. -#}
    regexp_extract(to_json(named_struct('v', {{ value }})), '^\\{"v":(.*)\\}$', 1)
{%- endmacro %}

{#- UTF-8 length in bytes of a string (Segment's 32 KB limit counts bytes). -#}
{% macro cs_byte_length(text) -%}
    {%- if adapter is defined -%}
        {{ return(adapter.dispatch('cs_byte_length')(text)) }}
    {%- else -%}
        {{ return(duckdb__cs_byte_length(text)) }}
    {%- endif -%}
{%- endmacro %}

{% macro default__cs_byte_length(text) -%}
    octet_length({{ text }})
{%- endmacro %}

{% macro duckdb__cs_byte_length(text) -%}
    strlen({{ text }})
{%- endmacro %}

{#- Strings -> one string; a null part yields null (the JSON builders rely on it). -#}
{% macro cs_concat_strict(parts) -%}
    {%- if adapter is defined -%}
        {{ return(adapter.dispatch('cs_concat_strict')(parts)) }}
    {%- else -%}
        {{ return(default__cs_concat_strict(parts)) }}
    {%- endif -%}
{%- endmacro %}

{% macro default__cs_concat_strict(parts) -%}
    ({{ parts | join(' || ') }})
{%- endmacro %}

{#- Null-skipping join of JSON members with commas (concat_ws skips nulls on every engine). -#}
{% macro cs_join_members(members) -%}
    {%- if members | length == 0 -%}
        ''
    {%- else -%}
        concat_ws(',', {{ members | join(', ') }})
    {%- endif -%}
{%- endmacro %}

