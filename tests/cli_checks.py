"""The CLI's contract for a user's mistake, checked in one place: exit code 2 and one line on stderr that starts with
``error:`` (no traceback) and names what the caller expects (the file, key or option and the bad value)."""
from __future__ import annotations

from bench.cli import main


def one_line_exit_2(capsys, argv, *needles):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, (argv, code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]
