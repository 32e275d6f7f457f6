{#- Macros that return values (not SQL text) to other macros. They live apart from their callers
    on purpose: sqlfluff's jinja templater handles dbt's `return` only for calls that cross macro
    files, so keeping them here lets `sqlfluff lint` render the models exactly as dbt does. -#}

{#- dbt's cross-database types, with the duckdb spelling where dbt's context is absent. -#}
{% macro cs_type_string() -%}
    {%- if dbt is defined -%}{{ return(dbt.type_string()) }}{%- else -%}{{ return('varchar') }}{%- endif -%}
{%- endmacro %}

{% macro cs_type_bigint() -%}
    {%- if dbt is defined -%}{{ return(dbt.type_bigint()) }}{%- else -%}{{ return('bigint') }}{%- endif -%}
{%- endmacro %}

{#- A quoted identifier (Braze field names include SQL keywords such as `time`). -#}
{% macro cs_quote(name) -%}
    {%- if adapter is defined -%}{{ return(adapter.quote(name)) }}{%- else -%}{{ return('"' ~ name ~ '"') }}{%- endif -%}
{%- endmacro %}

{#- The catalogue entry of a type (dotted name), or a compile error naming it. -#}
{% macro currents_event(event_type) -%}
    {%- for event in currents_catalogue() -%}
        {%- if event.event_type == event_type -%}
            {{ return(event) }}
        {%- endif -%}
    {%- endfor -%}
    {{ exceptions.raise_compiler_error("'" ~ event_type ~ "' is not in the event catalogue (seeds/currents_event_catalogue.csv)") }}
{%- endmacro %}

{#- The families, in catalogue order, each once. -#}
{% macro currents_families() -%}
    {%- set families = [] -%}
    {%- for event in currents_catalogue() -%}
        {%- if event.family not in families -%}
            {%- do families.append(event.family) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(families) }}
{%- endmacro %}

{#- Columns the union of staging models carries beyond the ids (null where a type lacks them). -#}
{% macro currents_shared_fields() -%}
    {{ return(['campaign_id', 'campaign_name', 'canvas_id', 'canvas_name', 'canvas_step_id', 'canvas_step_name']) }}
{%- endmacro %}

{#- The fields that become properties, as [source field, property name] pairs in field order.
    Never properties: the ids and `time` (top-level keys of the track call) and the user's
    `timezone` (Braze's Segment connector leaves it out); nor the fields moved to context, nor
    the type's catalogue `excluded_properties`. -#}
{% macro segment_property_fields(event) -%}
    {%- set skipped = ['id', 'user_id', 'external_user_id', 'time', 'timezone']
        + (event.context_traits.values() | list)
        + (event.context_device.values() | list)
        + event.excluded_properties -%}
    {%- set out = [] -%}
    {%- for field in event.fields -%}
        {%- if field[0] not in skipped -%}
            {%- do out.append([field[0], event.property_renames.get(field[0], field[0])]) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(out) }}
{%- endmacro %}

{#- Fail with a clear message when a setting names a type the catalogue does not know. -#}
{% macro currents_check_event_types(event_types, setting) -%}
    {#- Only when dbt executes: sqlfluff's stand-in variables are not event types. -#}
    {%- if execute is defined and execute -%}
        {%- set known = currents_catalogue() | map(attribute='event_type') | list -%}
        {%- for event_type in event_types if event_type not in known -%}
            {{ exceptions.raise_compiler_error(
                "variable " ~ setting ~ ": '" ~ event_type
                ~ "' is not a Currents event type of the catalogue (use the dotted name)") }}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}
