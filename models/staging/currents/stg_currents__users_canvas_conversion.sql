{{ stg_currents_event('users.canvas.Conversion') }}
