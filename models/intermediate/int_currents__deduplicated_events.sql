{#- The first landed copy of each id per workspace, with its Segment context and properties
    joined back from the staging views (the flagged table is narrow). The join includes `family`
    and `loaded_at` so that filters on them reach both sides: a family mart reads only its own
    staging models, an incremental outbox run only the newly landed rows. -#}
select
    flagged.currents_id,
    flagged.app_group_id,
    flagged.currents_event_type,
    flagged.family,
    flagged.event,
    flagged.braze_user_id,
    flagged.external_user_id,
    flagged.event_timestamp,
    flagged.campaign_id,
    flagged.campaign_name,
    flagged.canvas_id,
    flagged.canvas_name,
    flagged.canvas_step_id,
    flagged.canvas_step_name,
    landed.segment_context_json,
    landed.segment_properties_json,
    flagged.file_id,
    flagged.row_in_file,
    flagged.source_file,
    flagged.integration_id,
    flagged.date_hour,
    flagged.loaded_at,
    flagged.is_test_event
from {{ ref('int_currents__landed_events_flagged') }} as flagged
inner join {{ ref('int_currents__landed_events') }} as landed
    on
        flagged.currents_event_type = landed.currents_event_type
        and flagged.family = landed.family
        and flagged.file_id = landed.file_id
        and flagged.row_in_file = landed.row_in_file
        and flagged.loaded_at = landed.loaded_at
where flagged.is_first_copy
