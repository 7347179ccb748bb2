import click
from click.testing import CliRunner

from compress.clitools import command_line


def test_command_line_rebuilds_the_invocation_from_parsed_values():
    seen = []

    @click.group("compress")
    def group():
        pass

    @group.command("bench")
    @click.argument("targets", nargs=-1)
    @click.option("--backend", "backends")
    @click.option("--estimate", "estimates", multiple=True)
    @click.option("--strict", is_flag=True)
    @click.option("--runs", type=int, default=20)
    def bench(targets, backends, estimates, strict, runs):
        seen.append(command_line(click.get_current_context()))

    result = CliRunner().invoke(group, ["bench", "a b.onnx", "toy", "--backend", "ort-cpu", "--estimate", "x",
                                        "--estimate", "y", "--strict"])
    assert result.exit_code == 0, result.output
    assert seen == ["compress bench 'a b.onnx' toy --backend ort-cpu --estimate x --estimate y --strict --runs 20"]


def test_bare_command_and_bare_group_print_their_help_and_exit_0():
    import subprocess
    import sys

    for args in ([], ["sr"]):
        result = subprocess.run([sys.executable, "-m", "compress", *args], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("Usage: ") and "error" not in result.stdout + result.stderr
    wrong = subprocess.run([sys.executable, "-m", "compress", "no-such-command"], capture_output=True, text=True,
                           timeout=120)
    assert wrong.returncode == 2 and wrong.stderr.count("error:") == 1
