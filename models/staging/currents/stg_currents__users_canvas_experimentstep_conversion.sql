{{ stg_currents_event('users.canvas.experimentstep.Conversion') }}
