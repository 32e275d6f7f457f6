{{ stg_currents_event('users.campaigns.EnrollInControl') }}
