{#- Building Segment track calls as JSON text. Member order is deterministic (the catalogue's
    field order), so payloads are byte-stable and `messageId` is always the first key. -#}

{#- One `"key":value` member, or null when the value is null (null members are omitted). -#}
{% macro segment_json_member(key, value_sql) -%}
    case when {{ value_sql }} is not null then {{ cs_concat_strict(["'\"" ~ key ~ "\":'", cs_to_json(value_sql)]) }} end
{%- endmacro %}

{#- A member whose value is already JSON text (an object built here). -#}
{% macro segment_json_raw_member(key, json_sql) -%}
    case when {{ json_sql }} is not null then {{ cs_concat_strict(["'\"" ~ key ~ "\":'", json_sql]) }} end
{%- endmacro %}

{#- A JSON object from members (each a SQL expression yielding `"k":v` text or null). -#}
{% macro segment_json_object(members) -%}
    {{ cs_concat_strict(["'{'", cs_join_members(members), "'}'"]) }}
{%- endmacro %}

{#- Fields never sent as properties: the ids and time that become top-level keys, and the
    user's time zone (Braze's Segment connector omits it). Per-type exclusions (traits, device,
    excluded_properties) come from the catalogue. -#}
{% macro segment_common_excluded_fields() -%}
    {{ return(['id', 'user_id', 'external_user_id', 'time', 'timezone']) }}
{%- endmacro %}

{#- `context` of the track call: {"device":{...},"traits":{...}} (both always present). -#}
{% macro segment_context_json(event) -%}
    {%- set device = [] -%}
    {%- for key, source_field in event.context_device.items() -%}
        {%- do device.append(segment_json_member(key, adapter.quote(source_field))) -%}
    {%- endfor -%}
    {%- set traits = [] -%}
    {%- for key, source_field in event.context_traits.items() -%}
        {%- do traits.append(segment_json_member(key, adapter.quote(source_field))) -%}
    {%- endfor -%}
    {{ segment_json_object([
        segment_json_raw_member('device', segment_json_object(device)),
        segment_json_raw_member('traits', segment_json_object(traits)),
    ]) }}
{%- endmacro %}

{#- The names of the fields that become properties, as (source field, property name) pairs. -#}
{% macro segment_property_fields(event) -%}
    {%- set skipped = segment_common_excluded_fields()
        + (event.context_traits.values() | list)
        + (event.context_device.values() | list)
        + event.excluded_properties -%}
    {%- set out = [] -%}
    {%- for field in event.fields -%}
        {%- if field[0] not in skipped -%}
            {%- do out.append([field[0], event.property_renames.get(field[0], field[0])]) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(out) }}
{%- endmacro %}

{#- `properties` of the track call: every remaining field, renamed, nulls omitted. -#}
{% macro segment_properties_json(event) -%}
    {%- set members = [] -%}
    {%- for pair in segment_property_fields(event) -%}
        {%- do members.append(segment_json_member(pair[1], adapter.quote(pair[0]))) -%}
    {%- endfor -%}
    {{ segment_json_object(members) }}
{%- endmacro %}

{#- The whole track call, messageId first. userId / anonymousId are omitted when null. -#}
{% macro segment_track_call_json(message_id, event_name, user_id, anonymous_id, iso_timestamp, context_json, properties_json) -%}
    {{ segment_json_object([
        segment_json_member('messageId', message_id),
        "'\"type\":\"track\"'",
        segment_json_member('event', event_name),
        segment_json_member('userId', user_id),
        segment_json_member('anonymousId', anonymous_id),
        segment_json_member('timestamp', iso_timestamp),
        segment_json_raw_member('context', context_json),
        segment_json_raw_member('properties', properties_json),
    ]) }}
{%- endmacro %}
