{{ stg_currents_event('users.messages.inappmessage.Impression') }}
