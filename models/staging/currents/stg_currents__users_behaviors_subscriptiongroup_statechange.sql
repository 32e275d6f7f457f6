{{ stg_currents_event('users.behaviors.subscriptiongroup.StateChange') }}
