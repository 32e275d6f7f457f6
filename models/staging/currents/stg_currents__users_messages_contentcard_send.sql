{{ stg_currents_event('users.messages.contentcard.Send') }}
