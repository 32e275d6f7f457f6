{{ config(materialized='table', schema='reports') }}

-- One row: how this reconciliation ran. Every report states the mode and the time basis.
{%- set as_of = var('reconcile_as_of', none) %}

with ledger as (
    select count(*) as ledger_rows from {{ ref('stg_segment__ledger') }}
),

received as (
    select count(*) as received_rows from {{ ref('stg_segment__received') }}
),

routes as (
    select count(*) as configured_routes from {{ ref('stg_segment__routes') }}
)

select
    {% if rpt_mode() == 'auto' -%}
        case when ledger.ledger_rows > 0 then 'push' else 'audit' end
    {%- else -%}
        '{{ rpt_mode() }}'
    {%- endif %} as mode,
    '{{ rpt_time_basis() }}' as time_basis,
    cast({{ rpt_number_var('braze_retention_hours', 48) }} as double) as retention_hours,
    cast({{ rpt_number_var('reconcile_outage_ratio', 0.1) }} as double) as outage_ratio,
    {% if as_of -%}
        cast('{{ as_of }}' as timestamp)
    {%- else -%}
        cast(timezone('UTC', now()) as timestamp)
    {%- endif %} as as_of,
    ledger.ledger_rows,
    received.received_rows,
    routes.configured_routes
from ledger, received, routes
