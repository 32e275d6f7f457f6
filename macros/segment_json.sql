{#- Building Segment track calls as JSON text. Member order is deterministic (the catalogue's
    field order), so payloads are byte-stable and `messageId` is always the first key. -#}

{#- One `"key":value` member, or null when the value is null (null members are omitted). -#}
{% macro segment_json_member(key, value_sql) -%}
    case when {{ value_sql }} is not null then {{ cs_concat_strict(["'\"" ~ key ~ "\":'", cs_to_json(value_sql)]) }} end
{%- endmacro %}

{#- A member whose value is already JSON text: an object built here, never null. -#}
{% macro segment_json_raw_member(key, json_sql) -%}
    {{ cs_concat_strict(["'\"" ~ key ~ "\":'", json_sql]) }}
{%- endmacro %}

{#- A JSON object from members (each a SQL expression yielding `"k":v` text or null). -#}
{% macro segment_json_object(members) -%}
    {{ cs_concat_strict(["'{'", cs_join_members(members), "'}'"]) }}
{%- endmacro %}

{#- `context` of the track call: {"device":{...},"traits":{...}} (both always present). -#}
{% macro segment_context_json(event) -%}
    {%- set device = [] -%}
    {%- for key, source_field in event.context_device.items() -%}
        {%- do device.append(segment_json_member(key, cs_quote(source_field))) -%}
    {%- endfor -%}
    {%- set traits = [] -%}
    {%- for key, source_field in event.context_traits.items() -%}
        {%- do traits.append(segment_json_member(key, cs_quote(source_field))) -%}
    {%- endfor -%}
    {{ segment_json_object([
        segment_json_raw_member('device', segment_json_object(device)),
        segment_json_raw_member('traits', segment_json_object(traits)),
    ]) }}
{%- endmacro %}

{#- `properties` of the track call: every remaining field, renamed, nulls omitted. -#}
{% macro segment_properties_json(event) -%}
    {%- set members = [] -%}
    {%- for pair in segment_property_fields(event) -%}
        {%- do members.append(segment_json_member(pair[1], cs_quote(pair[0]))) -%}
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
