"""Operation types behind one interface (`base.OperationType`), found by name in `registry`.
The built-in ones (`upload.Upload`, `export.Export`) are registered in `OperationsConfig.ready()`."""
