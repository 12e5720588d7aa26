"""`long-task`: the command-line client of the long_task HTTP API (SPEC §12).

It talks HTTP only (no Django, no database): `cli.py` the commands, `api.py` the requests,
`display.py` the progress (bars on a terminal, plain lines elsewhere). `humanize.py` and
`outcome.py` have no imports of their own, so that the server can share them.
"""
