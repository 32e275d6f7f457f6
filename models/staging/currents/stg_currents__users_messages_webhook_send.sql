{{ stg_currents_event('users.messages.webhook.Send') }}
