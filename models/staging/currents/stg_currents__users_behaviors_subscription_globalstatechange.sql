{{ stg_currents_event('users.behaviors.subscription.GlobalStateChange') }}
