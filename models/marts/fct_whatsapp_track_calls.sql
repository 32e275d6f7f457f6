{{ segment_family_track_calls('whatsapp') }}
