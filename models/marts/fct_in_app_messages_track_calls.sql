{{ segment_family_track_calls('in_app_messages') }}
