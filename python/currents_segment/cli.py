"""The ``currents-segment`` command line.

Subcommands are imported only when they run, so ``currents-segment --help`` stays fast: each
concern's module defines its own Click command named ``cli``.
"""

from __future__ import annotations

import importlib

import click

# command name -> (module, help line)
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": (
        "currents_segment.generate",
        "Write a synthetic Currents export in Braze's layout.",
    ),
    "ingest": ("currents_segment.landing", "Land Currents Avro exports in DuckDB, incrementally."),
    "build": ("currents_segment.transform", "Run dbt build on the landed data."),
    "emulator": ("currents_segment.emulator", "Serve a local Segment-compatible Tracking API."),
    "push": ("currents_segment.push", "Send the outbox to Segment with a durable ledger."),
    "receive": ("currents_segment.receive", "Load what Segment holds into the warehouse."),
    "reconcile": (
        "currents_segment.reconcile",
        "Compare exported, sent and received; write reports.",
    ),
    "run": (
        "currents_segment.pipeline",
        "ingest -> build -> push -> receive -> reconcile, end to end.",
    ),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module = importlib.import_module(COMMANDS[name][0])
        command = module.cli
        command.name = name
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help lists every command without importing any of them.
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, help_) in COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="currents-segment")
def main() -> None:
    """Make the Braze Currents -> Segment flow visible and repairable."""


if __name__ == "__main__":
    main()
