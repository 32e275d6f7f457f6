{{ stg_currents_event('users.behaviors.Uninstall') }}
