"""What the server and the command-line client share: how numbers are shown (`humanize`) and how
following an operation ends as an exit code (`outcome`). It imports neither side, so that either
can use it without pulling in the other (`make lint` checks this with import-linter)."""
