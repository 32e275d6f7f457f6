{{ stg_currents_event('users.messages.pushnotification.IosForeground') }}
