{#- Message engagement per workspace, channel, campaign or Canvas (and step) and day of the event
    (UTC), from the de-duplicated events (first copies of the flagged landed rows, which carry
    everything counted here); Braze test events are left out. Which count an event
    type adds to is the catalogue's `engagement_metric`. -#}
{%- set metrics = ['send', 'delivery', 'open', 'click', 'bounce', 'unsubscribe', 'conversion'] -%}
{%- set metric_columns = {
    'send': 'sends', 'delivery': 'deliveries', 'open': 'opens', 'click': 'clicks',
    'bounce': 'bounces', 'unsubscribe': 'unsubscribes', 'conversion': 'conversions'} -%}

with events as (
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
        cast(event_timestamp as date) as event_date
    from {{ ref('int_currents__landed_events_flagged') }}
    where is_first_copy and not is_test_event
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
    count(*) as engagement_events
from measured
group by 1, 2, 3, 4, 5, 6
