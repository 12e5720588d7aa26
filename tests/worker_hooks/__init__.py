"""Test-only app for the worker subprocesses of the tests and of `make chaos`. Never installed
outside them. Controlled by environment variables:

- LONG_TASK_TEST_CHUNK_DELAY=<seconds>: every Upload chunk sleeps that long inside its
  transaction, so that a pause, a terminate or a kill reliably lands while a chunk is in flight;
- LONG_TASK_TEST_ROLLBACK_DELAY=<seconds>: the same for every rollback chunk of a terminate;
- LONG_TASK_TEST_CHUNK_LOG=<directory>: after each committed chunk, append a JSON line
  {op, worker, first, last, start, end} to <directory>/<pid>.jsonl, from which a test checks
  that no two workers ever processed one operation at the same time.
"""
