"""Test-only app for worker subprocesses: LONG_TASK_TEST_CHUNK_DELAY=<seconds> makes every
Upload chunk sleep that long inside its transaction, so that tests can pause, terminate or
SIGKILL a worker while a chunk is reliably in flight. Never installed outside the tests."""
