"""`long-task`: the command-line client of the long_task HTTP API (SPEC §12).

It talks HTTP only (no Django, no database): `cli.py` the commands, `api.py` the requests,
`display.py` the progress (bars on a terminal, plain lines elsewhere). What it shares with the
server (number formats, exit codes) lives in `long_task_shared`.
"""
