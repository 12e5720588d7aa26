"""Processes and machine helpers that the tests, `make bench` and `make chaos` share, without
Django: free ports, waiting, a process's peak memory, a fresh PostgreSQL database, and moto's S3
server. It imports neither `tests` nor `bench`, so that the bench does not depend on the tests."""
