"""`long-task`: the command-line client of the long_task HTTP API (SPEC §12).

It talks HTTP only (no Django, no database): `cli.py` the command line and the exit codes,
`control.py` the commands that start, follow and steer operations, `results.py` those that read
results back (errors, rows, export, download), `following.py` following an operation to its end,
`api.py` the requests, `display.py` the progress (bars on a terminal, plain lines elsewhere),
`output.py` what they print with. What it shares with the server (number formats, exit codes)
lives in `long_task_shared`.
"""
