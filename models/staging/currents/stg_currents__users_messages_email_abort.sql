{{ stg_currents_event('users.messages.email.Abort') }}
