{#- Message engagement per workspace, channel, campaign or Canvas (and step) and day of the event
    (UTC), from the de-duplicated events (first copies of the flagged landed rows, which carry
    everything counted here); Braze test events are left out. Which count an event
    type adds to is the catalogue's `engagement_metric`.
    Incremental (delete+insert by day): a run recomputes, from every flagged row of those days,
    only the days of the rows landed after the newest `loaded_at` already counted here (late events
    land into old days, so a day is always recomputed whole); other days are kept. Flags of landed
    rows never change once written, so this equals a full rebuild. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='event_date',
        on_schema_change='fail',
    )
}}
{%- set metrics = ['send', 'delivery', 'open', 'click', 'bounce', 'unsubscribe', 'conversion'] -%}
{%- set metric_columns = {
    'send': 'sends', 'delivery': 'deliveries', 'open': 'opens', 'click': 'clicks',
    'bounce': 'bounces', 'unsubscribe': 'unsubscribes', 'conversion': 'conversions'} -%}

{#- The days of the rows landed since the last run (every day on a first or full-refresh run;
    read only by an incremental run). -#}
with touched_days as (
    select distinct cast(event_timestamp as date) as event_date
    from {{ ref('int_currents__landed_events_flagged') }}
    where loaded_at > {{ cs_incremental_watermark('loaded_at') }}
),

events as (
    select
        app_group_id,
        family,
        currents_event_type,
        campaign_id,
        campaign_name,
        canvas_id,
        canvas_name,
        canvas_step_id,
        canvas_step_name,
        loaded_at,
        cast(event_timestamp as date) as event_date
    from {{ ref('int_currents__landed_events_flagged') }}
    where
        is_first_copy and not is_test_event
        {%- if is_incremental() %}
            and cast(event_timestamp as date) in (select touched_days.event_date from touched_days)
        {%- endif %}
),

catalogue as (
    select
        event_type,
        engagement_metric
    from {{ ref('currents_event_catalogue') }}
),

measured as (
    select
        events.*,
        catalogue.engagement_metric
    from events
    inner join catalogue
        on events.currents_event_type = catalogue.event_type
    where catalogue.engagement_metric is not null and catalogue.engagement_metric != ''
)

select
    event_date,
    app_group_id,
    family as channel,
    campaign_id,
    canvas_id,
    canvas_step_id,
    max(campaign_name) as campaign_name,
    max(canvas_name) as canvas_name,
    max(canvas_step_name) as canvas_step_name,
    {%- for metric in metrics %}
        sum(case when engagement_metric = '{{ metric }}' then 1 else 0 end) as {{ metric_columns[metric] }},
    {%- endfor %}
    count(*) as engagement_events,
    max(loaded_at) as loaded_at
from measured
group by 1, 2, 3, 4, 5, 6
