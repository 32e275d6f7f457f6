select
    currents_id,
    app_group_id,
    currents_event_type,
    family,
    event,
    braze_user_id,
    external_user_id,
    event_timestamp,
    {{ currents_shared_fields() | join(',\n    ') }},
    segment_context_json,
    segment_properties_json,
    file_id,
    row_in_file,
    source_file,
    integration_id,
    date_hour,
    loaded_at,
    is_test_event
from {{ ref('int_currents__landed_events_flagged') }}
where is_first_copy
