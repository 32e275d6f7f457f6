{{ config(materialized='table', schema='reports') }}

-- What became of every expected and every received message, per Segment workspace and source,
-- Braze workspace, event and hour. Clean outcomes are counted per group (message_id null);
-- exceptions (missing, unexpected, received more than once) keep one row per message id.
--
-- audit mode (Braze's own connector, no ledger): every exported event is expected under its
--   Currents id in the destinations its Braze workspace routes to: configured routes, else the
--   destinations where its workspace's events of the same connector kind were seen arriving.
-- push mode (this toolkit's pushes): the ledger names each destination and message id; exported
--   events never queued are expected where configured routes or the ledger send their kind.

with settings as (
    select mode from {{ ref('rpt_reconcile_settings') }}
),

-- Not materialised: a scan of the few columns needed is cheaper than a 10M-row temporary.
outbox as not materialized (
    select
        message_id as currents_id,
        currents_event_type,
        family,
        event,
        app_group_id,
        {{ rpt_period_hour('event_timestamp', 'date_hour', 'event_timestamp') }} as period_hour,
        is_sendable,
        not_sendable_reason,
        {{ rpt_connector_kind('family') }} as connector_kind
    from {{ ref('fct_segment_outbox') }}
),

ledger as (
    select ledger.*
    from {{ ref('stg_segment__ledger') }} as ledger, settings
    where settings.mode = 'push'
),

received as not materialized (
    select * from {{ ref('stg_segment__received') }}
),

configured_routes as (
    select * from {{ ref('stg_segment__routes') }}
),

-- Where no route is configured for a Braze workspace, learn its destinations from the data: a
-- deterministic 2% sample of what arrived (all of it up to 200,000 received rows; a destination
-- too rare to be sampled shows up as "unrouted" missing plus "unexpected" received, never
-- silently), or the ledger's destinations in push mode.
received_rows as (
    select count(*) as n from received
),

received_sample as (
    select
        received.segment_workspace,
        received.segment_source,
        received.message_id
    from received
    cross join received_rows
    where
        received_rows.n <= 200000
        or hash(received.message_id) % 50 = 0
),

sampled_outbox as (
    select
        outbox.currents_id,
        outbox.app_group_id,
        outbox.connector_kind
    from outbox
    where outbox.currents_id in (select received_sample.message_id from received_sample)
),

-- audit: per Braze workspace and connector kind; push: per Braze workspace and event type a
-- connector has queued before (a type no connector ever queued is not routed: skipped).
learnt_routes as (
    select distinct
        sampled_outbox.app_group_id,
        sampled_outbox.connector_kind,
        cast(null as varchar) as currents_event_type,
        received_sample.segment_workspace,
        received_sample.segment_source,
        cast(null as varchar) as connector
    from received_sample
    inner join sampled_outbox on received_sample.message_id = sampled_outbox.currents_id
    cross join settings
    where settings.mode = 'audit'
    union
    select distinct
        ledger.app_group_id,
        cast(null as varchar) as connector_kind,
        ledger.currents_event_type,
        ledger.segment_workspace,
        ledger.segment_source,
        ledger.connector
    from ledger
),

routes as (
    select
        connector,
        connector_kind,
        app_group_id,
        family,
        currents_event_type,
        segment_workspace,
        segment_source
    from configured_routes
    union all
    select
        learnt_routes.connector,
        learnt_routes.connector_kind,
        -- A learnt route of events without a Braze workspace (canvas.experimentstep.*) is for
        -- those events only, not a wildcard like a configured route's null.
        coalesce(learnt_routes.app_group_id, '(none)') as app_group_id,
        cast(null as varchar) as family,
        learnt_routes.currents_event_type,
        learnt_routes.segment_workspace,
        learnt_routes.segment_source
    from learnt_routes
    where not exists (
        select 1 from configured_routes as cr
        where cr.app_group_id is null or cr.app_group_id = learnt_routes.app_group_id
    )
),

-- Exported events that need routing: all of them in audit mode, the never-queued ones in push mode.
to_route as not materialized (
    select outbox.*
    from outbox
    where
        (select settings.mode from settings) = 'audit'
        or not exists (
            select 1 from ledger
            where ledger.currents_id = outbox.currents_id
        )
),

-- Routes match on wildcards: resolve them per distinct (workspace, type), then hash-join.
route_keys as (
    select
        keys.app_group_id,
        keys.currents_event_type,
        routes.segment_workspace,
        routes.segment_source,
        routes.connector
    from (
        select distinct
            app_group_id,
            currents_event_type,
            family,
            connector_kind
        from to_route
    ) as keys
    inner join routes
        on
            (
                routes.app_group_id is null
                or coalesce(keys.app_group_id, '(none)') = routes.app_group_id
            )
            and (routes.connector_kind is null or keys.connector_kind = routes.connector_kind)
            and (routes.family is null or keys.family = routes.family)
            and (
                routes.currents_event_type is null
                or keys.currents_event_type = routes.currents_event_type
            )
),

routed as (
    select
        to_route.*,
        route_keys.segment_workspace,
        route_keys.segment_source,
        route_keys.connector
    from to_route
    left join route_keys
        on
            to_route.app_group_id is not distinct from route_keys.app_group_id
            and to_route.currents_event_type = route_keys.currents_event_type
),

-- Unrouted events: where routes are configured (or in push mode, where connectors decide what
-- is sent), nothing was meant to send them: skipped, "not_routed". In audit mode without
-- configured routes nothing tells intent from loss (a Braze workspace none of whose events
-- arrived anywhere): missing, "unrouted".
routing_intent as (
    select settings.mode = 'push' or exists (select 1 from configured_routes) as is_known
    from settings
),

expected as (
    -- audit: received id = Currents id; push, never queued: no message id was ever made.
    select
        routed.segment_workspace,
        routed.segment_source,
        routed.connector,
        case
            when (select settings.mode from settings) = 'audit' then routed.currents_id
        end as message_id,
        routed.currents_id,
        routed.app_group_id,
        routed.currents_event_type,
        routed.event,
        routed.period_hour,
        true as is_exported,
        routed.is_sendable
        and not (routed.segment_workspace is null and routing_intent.is_known) as is_sendable,
        coalesce(
            routed.not_sendable_reason,
            case
                when routed.segment_workspace is null and routing_intent.is_known
                    then 'not_routed'
            end
        ) as not_sendable_reason,
        cast(null as varchar) as ledger_status
    from routed
    cross join routing_intent
    union all
    select
        ledger.segment_workspace,
        ledger.segment_source,
        ledger.connector,
        ledger.message_id,
        ledger.currents_id,
        coalesce(outbox.app_group_id, ledger.app_group_id) as app_group_id,
        coalesce(outbox.currents_event_type, ledger.currents_event_type) as currents_event_type,
        outbox.event,
        outbox.period_hour,
        outbox.currents_id is not null as is_exported,
        coalesce(outbox.is_sendable, ledger.status != 'skipped') as is_sendable,
        coalesce(outbox.not_sendable_reason, ledger.reason) as not_sendable_reason,
        ledger.status as ledger_status
    from ledger
    left join outbox on ledger.currents_id = outbox.currents_id
),

received_by_id as (
    select
        segment_workspace,
        segment_source,
        message_id,
        count(*) as received_count
    from received
    group by segment_workspace, segment_source, message_id
),

classified as (
    select
        coalesce(expected.segment_workspace, received_by_id.segment_workspace)
            as segment_workspace,
        coalesce(expected.segment_source, received_by_id.segment_source) as segment_source,
        expected.connector,
        coalesce(expected.message_id, received_by_id.message_id) as message_id,
        expected.currents_id,
        expected.app_group_id,
        expected.currents_event_type,
        expected.event,
        expected.period_hour,
        coalesce(expected.is_exported, false) as is_exported,
        expected.not_sendable_reason,
        expected.ledger_status,
        coalesce(received_by_id.received_count, 0) as received_count,
        case
            when expected.currents_id is null then 'unexpected'
            when received_by_id.received_count > 0 then 'delivered'
            when not coalesce(expected.is_sendable, true) then 'skipped'
            else 'missing'
        end as delivery_status,
        case
            when
                expected.currents_id is null
                or received_by_id.received_count > 0
                or not coalesce(expected.is_sendable, true)
                then null
            when expected.segment_workspace is null then 'unrouted'
            when expected.ledger_status is null and (select settings.mode from settings) = 'audit'
                then 'not_received'
            when expected.ledger_status = 'acknowledged' then 'lost_after_ack'
            else 'not_sent'
        end as missing_reason
    from expected
    full outer join received_by_id
        on
            expected.segment_workspace = received_by_id.segment_workspace
            and expected.segment_source = received_by_id.segment_source
            and expected.message_id = received_by_id.message_id
),

grouped as (
    select
        segment_workspace,
        segment_source,
        connector,
        app_group_id,
        currents_event_type,
        event,
        period_hour,
        delivery_status,
        missing_reason,
        not_sendable_reason,
        ledger_status,
        is_exported,
        case when is_exception then message_id end as message_id,
        case when is_exception then currents_id end as currents_id,
        count(*) as messages,
        cast(sum(received_count) as bigint) as received,
        cast(sum(greatest(received_count - 1, 0)) as bigint) as duplicates
    from (
        select
            *,
            delivery_status in ('missing', 'unexpected') or received_count > 1 as is_exception
        from classified
    ) as flagged
    group by all
),

-- Trace unexpected ids back to a Currents event (ledger pairs, else received id = Currents id);
-- what Segment says about them fills what is not known from Braze's side.
ledger_ids as (
    select distinct
        message_id,
        currents_id
    from {{ ref('stg_segment__ledger') }}
),

unexpected_ids as (
    select distinct
        segment_workspace,
        segment_source,
        message_id
    from grouped
    where delivery_status = 'unexpected'
),

received_info as (
    select
        received.segment_workspace,
        received.segment_source,
        received.message_id,
        any_value(received.currents_event_type) as currents_event_type,
        any_value(received.event) as event,
        date_trunc('hour', min(received.event_timestamp)) as period_hour
    from received
    inner join unexpected_ids
        on
            received.segment_workspace = unexpected_ids.segment_workspace
            and received.segment_source = unexpected_ids.segment_source
            and received.message_id = unexpected_ids.message_id
    group by received.segment_workspace, received.segment_source, received.message_id
),

unexpected as (
    select
        grouped.* replace (
            coalesce(grouped.currents_event_type, received_info.currents_event_type)
                as currents_event_type,
            coalesce(grouped.event, received_info.event) as event,
            coalesce(grouped.period_hour, received_info.period_hour) as period_hour
        )
    from grouped
    left join received_info
        on
            grouped.segment_workspace = received_info.segment_workspace
            and grouped.segment_source = received_info.segment_source
            and grouped.message_id = received_info.message_id
    where grouped.delivery_status = 'unexpected'
),

traced as (
    select
        unexpected.* replace (
            coalesce(ledger_ids.currents_id, outbox.currents_id) as currents_id,
            coalesce(unexpected.app_group_id, outbox.app_group_id) as app_group_id,
            coalesce(outbox.currents_event_type, unexpected.currents_event_type)
                as currents_event_type,
            coalesce(outbox.event, unexpected.event) as event,
            coalesce(outbox.period_hour, unexpected.period_hour) as period_hour
        )
    from unexpected
    left join ledger_ids on unexpected.message_id = ledger_ids.message_id
    left join outbox
        on coalesce(ledger_ids.currents_id, unexpected.message_id) = outbox.currents_id
)

select
    *,
    cast(period_hour as date) as period_day
from grouped
where delivery_status != 'unexpected'
union all
select
    *,
    cast(period_hour as date) as period_day
from traced
