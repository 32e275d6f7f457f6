{#- dbt's view materialization (dbt-adapters' default, Apache-2.0) for DuckDB, with one change:
    a view whose definition has not changed since it was last built is left as it is. dbt
    re-creates every view on every build; with the 51 staging views that was most of an
    incremental build's time on a large warehouse (each re-creation is several catalog commits).
    The fingerprint (compiled SQL plus the full relation name, so a renamed warehouse file or
    schema rebuilds) is kept in the view's comment; `--full-refresh` always rebuilds. -#}
{%- materialization view, adapter='duckdb' -%}

  {%- set existing_relation = load_cached_relation(this) -%}
  {%- set target_relation = this.incorporate(type='view') -%}
  {%- set fingerprint = 'cs_view_fingerprint:' ~ local_md5(target_relation ~ '\n' ~ sql) -%}

  {%- if existing_relation is not none and existing_relation.is_view
        and not should_full_refresh()
        and cs_view_comment(target_relation) == fingerprint -%}
    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}
    {% do store_result('main', response='view unchanged') %}
    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {{ adapter.commit() }}
    {{ run_hooks(post_hooks, inside_transaction=False) }}
    {{ return({'relations': [target_relation]}) }}
  {%- endif -%}

  {%- set intermediate_relation = make_intermediate_relation(target_relation) -%}
  {%- set preexisting_intermediate_relation = load_cached_relation(intermediate_relation) -%}
  {%- set backup_relation_type = 'view' if existing_relation is none else existing_relation.type -%}
  {%- set backup_relation = make_backup_relation(target_relation, backup_relation_type) -%}
  {%- set preexisting_backup_relation = load_cached_relation(backup_relation) -%}
  {% set grant_config = config.get('grants') %}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ drop_relation_if_exists(preexisting_intermediate_relation) }}
  {{ drop_relation_if_exists(preexisting_backup_relation) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {% call statement('main') -%}
    {{ get_create_view_as_sql(intermediate_relation, sql) }}
  {%- endcall %}

  {% if existing_relation is not none %}
    {% set existing_relation = load_cached_relation(existing_relation) %}
    {% if existing_relation is not none %}
      {{ adapter.rename_relation(existing_relation, backup_relation) }}
    {% endif %}
  {% endif %}
  {{ adapter.rename_relation(intermediate_relation, target_relation) }}
  {% call statement('cs_view_fingerprint') -%}
    comment on view {{ target_relation }} is '{{ fingerprint }}'
  {%- endcall %}

  {% set should_revoke = should_revoke(existing_relation, full_refresh_mode=True) %}
  {% do apply_grants(target_relation, grant_config, should_revoke=should_revoke) %}
  {% do persist_docs(target_relation, model) %}
  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {{ adapter.commit() }}
  {{ drop_relation_if_exists(backup_relation) }}
  {{ run_hooks(post_hooks, inside_transaction=False) }}

  {{ return({'relations': [target_relation]}) }}

{%- endmaterialization -%}

{#- The comment DuckDB holds for a view, or none. -#}
{% macro cs_view_comment(relation) -%}
  {%- set rows = run_query(
      "select comment from duckdb_views() where database_name = '" ~ relation.database
      ~ "' and schema_name = '" ~ relation.schema ~ "' and view_name = '" ~ relation.identifier ~ "'"
  ).rows -%}
  {{ return(rows[0][0] if rows | length > 0 else none) }}
{%- endmacro %}
