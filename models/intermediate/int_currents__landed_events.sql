{{ currents_landed_events_union() }}
