{#- Reconciliation settings from project variables, checked at compile time. -#}

{#- A compile error naming the bad setting (sqlfluff's plain Jinja has no `exceptions`). -#}
{% macro rpt_fail(message) %}
    {%- if exceptions is defined -%}{{ exceptions.raise_compiler_error(message) }}{%- endif -%}
{% endmacro %}

{% macro rpt_mode() %}
    {%- set mode = var('reconcile_mode', 'auto') -%}
    {%- if mode not in ('auto', 'audit', 'push') -%}
        {{ rpt_fail("var reconcile_mode must be auto, audit or push, not " ~ mode) }}
    {%- endif -%}
    {{ return(mode) }}
{% endmacro %}

{% macro rpt_time_basis() %}
    {%- set basis = var('reconcile_time_basis', 'event_time') -%}
    {%- if basis not in ('event_time', 'date_hour') -%}
        {{ rpt_fail("var reconcile_time_basis must be event_time or date_hour, not " ~ basis) }}
    {%- endif -%}
    {{ return(basis) }}
{% endmacro %}

{% macro rpt_number_var(name, default) %}
    {%- set value = var(name, default) -%}
    {%- if value is string -%}{%- set value = value | float -%}{%- endif -%}
    {%- if value is not number or value < 0 -%}
        {{ rpt_fail("var " ~ name ~ " must be a non-negative number, not " ~ value) }}
    {%- endif -%}
    {{ return(value) }}
{% endmacro %}

{#- Braze's two connector kinds. -#}
{% macro rpt_connector_kind(family) -%}
    case when {{ family }} = 'behaviors' then 'customer_behavior' else 'message_engagement' end
{%- endmacro %}

{#- The report hour of a row under the chosen time basis (event time or the date= folder hour). -#}
{% macro rpt_period_hour(event_timestamp, date_hour, fallback_timestamp) -%}
    {%- if rpt_time_basis() == 'date_hour' -%}
coalesce({{ date_hour }}, date_trunc('hour', {{ fallback_timestamp }}))
{%- else -%}
        date_trunc('hour', coalesce({{ event_timestamp }}, {{ fallback_timestamp }}))
    {%- endif -%}
{%- endmacro %}

{#- Family of a Currents event type, from the catalogue (currents_catalogue(), kept equal to the
    seeds by a dbt test), so the reports need no seed loaded. -#}
{% macro rpt_family_of(event_type) -%}
    case {{ event_type }}
    {%- for t in currents_catalogue() %} when '{{ t.event_type }}' then '{{ t.family }}'{% endfor %}
end
{%- endmacro %}
