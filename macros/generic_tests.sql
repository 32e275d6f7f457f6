{#- The few generic tests the project needs (dbt deps cannot reach the hub here). -#}

{#- No two rows share the combination (nulls compare equal, as a key within a workspace should). -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
select
    {{ combination_of_columns | join(', ') }},
    count(*) as copies
from {{ model }}
group by {{ combination_of_columns | join(', ') }}
having count(*) > 1
{% endtest %}

{#- Every row satisfies the boolean SQL expression. -#}
{% test expression_is_true(model, expression) %}
select *
from {{ model }}
where not coalesce({{ expression }}, false)
{% endtest %}

{#- Every track call goes back to a landed record of a staging model (same type, file, row). On an
    incremental build only the new track calls are read (macros/cs_data_tests_scope.sql); their
    landed records carry the same `loaded_at`, so the staging side is narrowed alike. -#}
{% test has_landed_row_in_staging(model) %}
{%- set since = cs_data_tests_since() %}
select
    marts.currents_event_type,
    marts.file_id,
    marts.row_in_file
from (select * from {{ model }}) as marts
left join (
    select
        currents_event_type,
        file_id,
        row_in_file,
        currents_id
    from {{ ref('int_currents__landed_events') }}
    where {{ 'loaded_at > ' ~ since if since else '1 = 1' }}
) as landed
    on
        marts.currents_event_type = landed.currents_event_type
        and marts.file_id = landed.file_id
        and marts.row_in_file = landed.row_in_file
        and marts.currents_id = landed.currents_id
where landed.currents_id is null
{% endtest %}
