{{ stg_currents_event('users.messages.sms.ShortLinkClick') }}
