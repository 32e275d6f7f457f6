{{ stg_currents_event('users.canvas.exit.PerformedEvent') }}
