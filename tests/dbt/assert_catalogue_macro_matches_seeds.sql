{#- macros/currents_catalogue.sql is generated from the seeds; this fails the build when someone
    edits a seed and forgets `python scripts/generate_staging_yml.py`. -#}
{%- set string_type = cs_type_string() -%}

with macro_types as (
    {%- for event in currents_catalogue() %}
    select
        cast('{{ event.event_type }}' as {{ string_type }}) as event_type,
        cast('{{ event.table_name }}' as {{ string_type }}) as table_name,
        cast('{{ event.family }}' as {{ string_type }}) as family,
        cast('{{ event.segment_event }}' as {{ string_type }}) as segment_event,
        cast('{{ cs_catalogue_pairs(event.context_traits) }}' as {{ string_type }}) as context_traits,
        cast('{{ cs_catalogue_pairs(event.context_device) }}' as {{ string_type }}) as context_device,
        cast('{{ cs_catalogue_pairs(event.property_renames) }}' as {{ string_type }}) as property_renames,
        cast('{{ event.excluded_properties | join(";") }}' as {{ string_type }}) as excluded_properties,
        cast('{{ event.engagement_metric }}' as {{ string_type }}) as engagement_metric
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

seed_types as (
    select
        event_type,
        table_name,
        family,
        segment_event,
        coalesce(context_traits, '') as context_traits,
        coalesce(context_device, '') as context_device,
        coalesce(property_renames, '') as property_renames,
        coalesce(excluded_properties, '') as excluded_properties,
        coalesce(engagement_metric, '') as engagement_metric
    from {{ ref('currents_event_catalogue') }}
),

macro_fields as (
    {%- for event in currents_catalogue() %}
    {%- set outer_loop = loop %}
    {%- for field in event.fields %}
    select
        cast('{{ event.event_type }}' as {{ string_type }}) as event_type,
        cast('{{ field[0] }}' as {{ string_type }}) as field_name,
        cast('{{ field[1] }}' as {{ string_type }}) as field_type,
        {{ loop.index }} as field_order
    {%- if not (loop.last and outer_loop.last) %}
    union all
    {%- endif %}
    {%- endfor %}
    {%- endfor %}
),

seed_fields as (
    select
        event_type,
        field_name,
        field_type,
        row_number() over (partition by event_type order by field_position) as field_order
    from {{ ref('currents_event_fields') }}
),

differences as (
    (select 'only in macro' as side, event_type, table_name as detail from (select * from macro_types except select * from seed_types) as m)
    union all
    (select 'only in seed' as side, event_type, table_name as detail from (select * from seed_types except select * from macro_types) as s)
    union all
    (select 'field only in macro' as side, event_type, field_name as detail from (select * from macro_fields except select * from seed_fields) as mf)
    union all
    (select 'field only in seed' as side, event_type, field_name as detail from (select * from seed_fields except select * from macro_fields) as sf)
)

select * from differences
