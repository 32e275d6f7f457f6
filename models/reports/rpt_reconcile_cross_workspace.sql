{{ config(materialized='table', schema='reports') }}

-- Findings across workspaces:
-- same_id_in_many_workspaces: one Currents event received in (or sent to) more than one Segment
--   workspace. same_message_id = true is the dangerous case: Segment de-duplicates messageIds
--   across workspaces, so such fan-out loses data sooner or later;
-- connectors_of_one_kind_in_one_workspace: two connectors of one kind feed one workspace (ledger
--   or routes), or one Currents event arrived through two sources of one workspace;
-- unexpected_source: events of a Braze workspace arriving in a source nothing sent them to.

with deliveries as (
    select * from {{ ref('rpt_reconcile_deliveries') }}
),

received as not materialized (
    select
        segment_workspace,
        segment_source,
        message_id,
        event
    from {{ ref('stg_segment__received') }}
),

ledger as not materialized (
    select * from {{ ref('stg_segment__ledger') }}
),

outbox as not materialized (
    select
        message_id as currents_id,
        app_group_id,
        event
    from {{ ref('fct_segment_outbox') }}
),

ledger_ids as (
    select distinct
        message_id,
        currents_id
    from ledger
),

-- Only looked for when there are several workspaces (or several sources in one workspace).
destinations as (
    select distinct
        segment_workspace,
        segment_source
    from received
),

shape as (
    select
        count(distinct segment_workspace) as workspaces,
        count(*) as destinations
    from destinations
),

ledger_shape as (
    select count(distinct segment_workspace) as workspaces from ledger
),

-- min <> max finds the ids held in two places in one cheap pass; lists only for those.
multi_workspace_keys as (
    select received.message_id
    from received
    cross join shape
    where shape.workspaces > 1
    group by received.message_id
    having min(received.segment_workspace) != max(received.segment_workspace)
),

multi_workspace_ids as (
    select
        received.message_id,
        any_value(received.event) as event,
        list(distinct received.segment_workspace order by received.segment_workspace)
            as workspaces,
        list(distinct received.segment_source order by received.segment_source) as sources
    from received
    inner join multi_workspace_keys on received.message_id = multi_workspace_keys.message_id
    group by received.message_id
),

multi_workspace_sent_keys as (
    select ledger.currents_id
    from ledger
    cross join ledger_shape
    where ledger.status = 'acknowledged' and ledger_shape.workspaces > 1
    group by ledger.currents_id
    having
        min(ledger.segment_workspace) != max(ledger.segment_workspace)
        and min(ledger.message_id) != max(ledger.message_id)
),

multi_workspace_sent as (
    select
        ledger.currents_id,
        any_value(ledger.app_group_id) as app_group_id,
        list(distinct ledger.segment_workspace order by ledger.segment_workspace) as workspaces,
        list(distinct ledger.segment_source order by ledger.segment_source) as sources
    from ledger
    inner join multi_workspace_sent_keys
        on ledger.currents_id = multi_workspace_sent_keys.currents_id
    where ledger.status = 'acknowledged'
    group by ledger.currents_id
),

multi_workspace as (
    select
        coalesce(ledger_ids.currents_id, ids.message_id) as currents_id,
        outbox.app_group_id,
        ids.event,
        ids.workspaces,
        ids.sources,
        true as same_message_id
    from multi_workspace_ids as ids
    left join ledger_ids on ids.message_id = ledger_ids.message_id
    left join outbox on coalesce(ledger_ids.currents_id, ids.message_id) = outbox.currents_id
    union all
    select
        sent.currents_id,
        sent.app_group_id,
        outbox.event,
        sent.workspaces,
        sent.sources,
        false as same_message_id
    from multi_workspace_sent as sent
    left join outbox on sent.currents_id = outbox.currents_id
),

multi_source_keys as (
    select
        received.segment_workspace,
        received.message_id
    from received
    cross join shape
    where shape.destinations > shape.workspaces
    group by received.segment_workspace, received.message_id
    having min(received.segment_source) != max(received.segment_source)
),

multi_source_ids as (
    select
        received.segment_workspace,
        received.message_id,
        any_value(received.event) as event,
        list(distinct received.segment_source order by received.segment_source) as sources
    from received
    inner join multi_source_keys
        on
            received.segment_workspace = multi_source_keys.segment_workspace
            and received.message_id = multi_source_keys.message_id
    group by received.segment_workspace, received.message_id
),

multi_source as (
    select
        ids.segment_workspace,
        coalesce(ledger_ids.currents_id, ids.message_id) as currents_id,
        outbox.app_group_id,
        ids.event,
        ids.sources
    from multi_source_ids as ids
    left join ledger_ids on ids.message_id = ledger_ids.message_id
    left join outbox on coalesce(ledger_ids.currents_id, ids.message_id) = outbox.currents_id
),

connector_kinds as (
    select distinct
        ledger.segment_workspace,
        ledger.connector,
        ledger.segment_source,
        {{ rpt_connector_kind(rpt_family_of('ledger.currents_event_type')) }} as connector_kind
    from ledger
    union
    select distinct
        routes.segment_workspace,
        routes.connector,
        routes.segment_source,
        coalesce(
            routes.connector_kind,
            {{ rpt_connector_kind(
                'coalesce(routes.family, ' ~ rpt_family_of('routes.currents_event_type') ~ ')'
            ) }}
        ) as connector_kind
    from {{ ref('stg_segment__routes') }} as routes
    where routes.connector is not null
),

unexpected_source as (
    select
        segment_workspace,
        segment_source,
        app_group_id,
        event,
        cast(sum(messages) as bigint) as events,
        list(message_id order by message_id)[1:20] as example_message_ids
    from deliveries
    where delivery_status = 'unexpected' and currents_id is not null
    group by segment_workspace, segment_source, app_group_id, event
)

select
    'same_id_in_many_workspaces' as finding,
    array_to_string(workspaces, ', ') as segment_workspaces,
    array_to_string(sources, ', ') as segment_sources,
    app_group_id,
    event,
    cast(null as varchar) as connector_kind,
    cast(null as varchar) as connectors,
    same_message_id,
    count(*) as events,
    list(currents_id order by currents_id)[1:20] as example_ids
from multi_workspace
group by workspaces, sources, app_group_id, event, same_message_id
union all
select
    'connectors_of_one_kind_in_one_workspace' as finding,
    segment_workspace as segment_workspaces,
    array_to_string(list(distinct segment_source order by segment_source), ', ')
        as segment_sources,
    cast(null as varchar) as app_group_id,
    cast(null as varchar) as event,
    connector_kind,
    array_to_string(list(distinct connector order by connector), ', ') as connectors,
    cast(null as boolean) as same_message_id,
    cast(null as bigint) as events,
    cast([] as varchar[]) as example_ids
from connector_kinds
group by segment_workspace, connector_kind
having count(distinct connector) > 1
union all
select
    'connectors_of_one_kind_in_one_workspace' as finding,
    segment_workspace as segment_workspaces,
    array_to_string(sources, ', ') as segment_sources,
    app_group_id,
    event,
    cast(null as varchar) as connector_kind,
    cast(null as varchar) as connectors,
    cast(null as boolean) as same_message_id,
    count(*) as events,
    list(currents_id order by currents_id)[1:20] as example_ids
from multi_source
group by segment_workspace, sources, app_group_id, event
union all
select
    'unexpected_source' as finding,
    segment_workspace as segment_workspaces,
    segment_source as segment_sources,
    app_group_id,
    event,
    cast(null as varchar) as connector_kind,
    cast(null as varchar) as connectors,
    cast(null as boolean) as same_message_id,
    events,
    example_message_ids as example_ids
from unexpected_source
