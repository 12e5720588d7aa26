"""Test-only app for the worker subprocesses of the tests and of `make chaos`, never installed
outside them. It connects receivers to the worker's signals (operations.worker), controlled by
environment variables:

- LONG_TASK_TEST_GATE=<directory>, LONG_TASK_TEST_GATE_HOLD=<points>: hold the worker at those
  points until the test releases it (tests/gate.py);
- LONG_TASK_TEST_CHUNK_LOG=<directory>: after each committed chunk, append a JSON line
  {op, worker, first, last, start, end} to <directory>/<pid>.jsonl, from which a test checks
  that no two workers ever processed one operation at the same time (start: its rows written,
  end: committed);
- LONG_TASK_TEST_CHUNK_DELAY=<seconds>: every chunk sleeps that long inside its transaction,
  for load that holds the database's locks longer (`make chaos`, the SQLite control storm);
  never to wait for an import to be mid-way, which the gate does.
"""
