{{ stg_currents_event('users.canvas.Abort') }}
