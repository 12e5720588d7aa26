"""`python -m long_task_client` runs the `long-task` command."""

from long_task_client.cli import main

raise SystemExit(main())
