"""The `vla-ros` command line: exit codes and messages for verbs and mistakes."""
import subprocess

import pytest

from harness import console_script
from vla_ros import cli
from vla_ros.errors import VlaRosError


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([console_script("vla-ros"), *args], capture_output=True, text=True, timeout=60)


def test_unknown_verb_is_a_usage_error():
    """A typo'd verb exits 2 with argparse's list of valid verbs, not a traceback."""
    result = run("doctr")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr and "doctor" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("verb", cli.VERBS)
def test_every_verb_has_its_own_parser(verb, capsys):
    """A built verb answers --help (exit 0) with its own usage."""
    with pytest.raises(SystemExit) as exited:
        cli.main([verb, "--help"])
    assert exited.value.code == 0 and f"usage: vla-ros {verb}" in capsys.readouterr().out


def test_user_errors_print_a_message_and_exit_2(monkeypatch, capsys):
    """A VlaRosError raised by a verb becomes one line on stderr and exit code 2."""
    def fail(args):
        raise VlaRosError("config/arm7.yaml: key 'gainz' is unknown")

    monkeypatch.setattr("vla_ros.commands.doctor.run", fail)
    assert cli.main(["doctor"]) == 2
    assert capsys.readouterr().err.strip() == "vla-ros doctor: config/arm7.yaml: key 'gainz' is unknown"
