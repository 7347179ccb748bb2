"""The CLI repeats the settings' defaults as literals (so `--help` does not import torch); they must agree."""

import dataclasses

import click
import pytest

from compress.cli import main
from compress.distill import DistillSettings
from compress.recover import RecoverSettings


@pytest.mark.parametrize(("command", "settings"), [("recover", RecoverSettings), ("distill", DistillSettings)])
def test_cli_defaults_equal_the_settings_defaults(command, settings):
    ctx = click.Context(main.commands[command])
    options = {param.name: param.get_default(ctx) for param in main.commands[command].params}
    shared = [field for field in dataclasses.fields(settings) if field.name in options]
    assert len(shared) >= 8
    assert {f.name: options[f.name] for f in shared} == {f.name: f.default for f in shared}
