{{ stg_currents_event('users.messages.pushnotification.Bounce') }}
