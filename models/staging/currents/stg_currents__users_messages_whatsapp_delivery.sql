{{ stg_currents_event('users.messages.whatsapp.Delivery') }}
