{#- The received and ledger snapshot tables, as python/currents_segment/receive.py TABLES defines
    them (tests/test_receive.py checks both agree). Staging models run it as a pre-hook so the
    reports build before any receive. -#}
{% macro rpt_received_tables() %}
{{ return({
        'received.tracks': [
            ('segment_workspace', 'VARCHAR'), ('segment_source', 'VARCHAR'), ('message_id', 'VARCHAR'),
            ('event', 'VARCHAR'), ('currents_event_type', 'VARCHAR'), ('event_text', 'VARCHAR'),
            ('user_id', 'VARCHAR'), ('anonymous_id', 'VARCHAR'), ('event_timestamp', 'TIMESTAMP'),
            ('received_at', 'TIMESTAMP'), ('origin', 'VARCHAR'), ('part', 'VARCHAR'),
            ('loaded_at', 'TIMESTAMP')],
        'received.event_volumes': [
            ('segment_workspace', 'VARCHAR'), ('segment_source', 'VARCHAR'), ('source_id', 'VARCHAR'),
            ('event', 'VARCHAR'), ('currents_event_type', 'VARCHAR'), ('event_text', 'VARCHAR'),
            ('period_start', 'TIMESTAMP'), ('granularity', 'VARCHAR'), ('event_count', 'BIGINT'),
            ('origin', 'VARCHAR'), ('loaded_at', 'TIMESTAMP')],
        'received.loaded_parts': [
            ('segment_workspace', 'VARCHAR'), ('segment_source', 'VARCHAR'), ('origin', 'VARCHAR'),
            ('part', 'VARCHAR'), ('fingerprint', 'VARCHAR'), ('row_count', 'BIGINT'),
            ('loaded_at', 'TIMESTAMP')],
        'received.routes': [
            ('connector', 'VARCHAR'), ('connector_kind', 'VARCHAR'), ('app_group_id', 'VARCHAR'),
            ('family', 'VARCHAR'), ('currents_event_type', 'VARCHAR'),
            ('segment_workspace', 'VARCHAR'), ('segment_source', 'VARCHAR')],
        'ledger.events': [
            ('connector', 'VARCHAR'), ('message_id', 'VARCHAR'), ('currents_id', 'VARCHAR'),
            ('currents_event_type', 'VARCHAR'), ('app_group_id', 'VARCHAR'),
            ('segment_workspace', 'VARCHAR'), ('segment_source', 'VARCHAR'), ('batch_id', 'VARCHAR'),
            ('status', 'VARCHAR'), ('attempts', 'BIGINT'), ('last_http_status', 'BIGINT'),
            ('reason', 'VARCHAR'), ('error', 'VARCHAR'), ('queued_at', 'TIMESTAMP'), ('sent_at', 'TIMESTAMP'),
            ('acked_at', 'TIMESTAMP')],
}) }}
{% endmacro %}

{% macro rpt_ensure_received_tables() %}
    {%- set statements = [] -%}
    {%- for table, columns in rpt_received_tables().items() -%}
        {%- do statements.append('create schema if not exists ' ~ table.split('.')[0]) -%}
        {%- set cols = [] -%}
        {%- for name, type in columns -%}{%- do cols.append(name ~ ' ' ~ type) -%}{%- endfor -%}
        {%- do statements.append('create table if not exists ' ~ table ~ ' (' ~ cols | join(', ') ~ ')') -%}
    {%- endfor -%}
    {{ statements | join(';\n') }}
{% endmacro %}
