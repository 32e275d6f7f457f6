{{ segment_family_track_calls('content_cards') }}
