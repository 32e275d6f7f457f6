select
    currents_id,
    app_group_id,
    currents_event_type,
    source_file,
    file_id,
    row_in_file,
    date_hour,
    event_timestamp,
    loaded_at
from {{ ref('int_currents__landed_events_flagged') }}
where not is_first_copy
